"""The one transition memory: entries per owner, visibility, one quality score, pruning, persistence."""
import math

import pytest
import torch

from memrec.errors import ConfigError, UnknownUserError
from memrec.memory.expert_memory import ExpertMemoryConfig, importance
from memrec.memory.transitions import QualityConfig, TransitionConfig, TransitionMemory, quality, visible

BANK = TransitionConfig(capacity=4, unique=True)


def test_quality_terms():
    cfg = QualityConfig(recency_scale=10.0)
    hits, credit, age = torch.tensor([0.0, 3.0, 7.0]), torch.tensor([0.0, 3.0, 21.0]), torch.tensor([0.0, 10.0, 0.0])
    q = quality(1.0, age, hits, credit, cfg)
    freq = torch.log1p(hits) / math.log1p(7.0)
    recency = torch.exp(-age / 10.0)
    useful = torch.tensor([0.0, 0.5, 0.75])  # shares 0, 1, 3 -> s / (1 + s)
    assert torch.allclose(q, (freq + recency + useful) / 3)
    assert torch.allclose(quality(1.0, age, hits, credit, QualityConfig(w_frequency=0, w_usefulness=0, recency_scale=10.0)), recency)


def test_relative_frequency_is_per_owner():
    hits = torch.tensor([1.0, 3.0, 1.0])
    only_frequency = QualityConfig(w_recency=0.0, w_usefulness=0.0)
    q = quality(1.0, torch.zeros(3), hits, torch.zeros(3), only_frequency, groups=torch.tensor([0, 0, 1]))
    assert q.tolist() == pytest.approx([math.log(2) / math.log(4), 1.0, 1.0])  # owner 1's best entry is its own top


def test_the_expert_memorys_importance_is_the_same_score():
    cfg = ExpertMemoryConfig(importance_half_life=10.0, access_gain=0.1)
    i0, created, access = torch.tensor([0.8, 0.8, 0.95]), torch.tensor([0.0, 0.0, 9.0]), torch.tensor([0.0, 3.0, 40.0])
    expected = (i0 * 2.0 ** (-(10.0 - created) / 10.0) + 0.1 * torch.log1p(access)).clamp(max=1.0)
    assert torch.allclose(importance(i0, created, access, 10.0, cfg), expected)
    assert importance(i0, created, access, 10.0, cfg)[2] == 1.0  # capped


@pytest.mark.parametrize("bad", [dict(w_frequency=-1.0), dict(w_frequency=0.0, w_recency=0.0, w_usefulness=0.0), dict(recency_scale=0.0)])
def test_bad_quality_config(bad):
    with pytest.raises(ConfigError):
        QualityConfig(**bad)
    with pytest.raises(ConfigError, match="capacity"):
        TransitionConfig(capacity=0)


def test_visibility_rule():
    owners, upto = torch.tensor([3, 3, 3, 4, -1]), torch.tensor([2, 4, 5, 9, 9])
    seen = visible(owners, upto, torch.tensor([[3], [-1]]), torch.tensor([[4], [0]]))
    assert seen.tolist() == [[True, True, False, True, True], [True] * 5]  # own entries up to the query's position only


def test_search_never_returns_an_invisible_entry():
    torch.manual_seed(0)
    mem = TransitionMemory(4)
    owners = torch.tensor([2, 0, 1, 0, 2, 0, 1, 1])
    upto = torch.tensor([1, 3, 1, 1, 2, 2, 2, 3])
    mem.add(torch.randn(8, 4), torch.arange(10, 18), owners, upto)
    queries = torch.randn(5, 4)
    query_owners, positions = torch.tensor([0, 0, 1, 2, 7]), torch.tensor([1, 2, 0, 5, 0])
    scores, rows = mem.nearest(queries, query_owners, k=8, positions=positions)
    ok = visible(mem.owners, mem.upto, query_owners[:, None], positions[:, None])  # (5, 8) after ordering
    for q in range(5):
        found = set(rows[q][rows[q] >= 0].tolist())
        assert found == set(ok[q].nonzero().flatten().tolist())  # every visible entry, nothing else
    _, none_own = mem.nearest(queries, query_owners, k=8)  # positions None: none of the owner's own
    assert not (mem.owners[none_own.clamp(min=0)][none_own >= 0] == query_owners[:, None].expand(-1, 8)[none_own >= 0]).any()


def test_banks_are_per_owner_and_refresh_entries():
    mem = TransitionMemory(2, config=BANK)
    mem.add(torch.arange(8.0).view(4, 2), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 5, 2, 2]), hits=torch.ones(4))
    assert mem.num_owners == 2 and len(mem) == 4
    assert mem.entries(5)["values"][:, 0].tolist() == [1, 2]
    mem.add(torch.full((1, 2), 9.0), torch.tensor([2]), torch.tensor([5]), hits=torch.tensor([2.0]))
    e = mem.entries(5)
    assert e["values"][:, 0].tolist() == [1, 2] and e["hits"].tolist() == [1.0, 3.0] and e["keys"][1].tolist() == [9.0, 9.0]
    assert e["last_used"].tolist() == [1.0, 2.0]
    keys, values = mem.gather(torch.tensor([2, 5, 0, 999, -1]))
    assert values[:, :2, 0].tolist() == [[3, 4], [1, 2], [-1, -1], [-1, -1], [-1, -1]] and keys.shape == (5, 4, 2)


def test_pruning_drops_the_lowest_quality():
    mem = TransitionMemory(1, config=TransitionConfig(capacity=3, unique=True, quality=QualityConfig(w_recency=0.0)))
    mem.add(torch.zeros(3, 1), torch.tensor([10, 11, 12]), torch.zeros(3, dtype=torch.int64), hits=torch.tensor([4.0, 1.0, 9.0]), credit=torch.tensor([4.0, 1.0, 9.0]))
    mem.add(torch.zeros(1, 1), torch.tensor([13]), torch.zeros(1, dtype=torch.int64), hits=torch.tensor([2.0]), credit=torch.tensor([2.0]))
    assert mem.entries(0)["values"][:, 0].tolist() == [10, 12, 13]  # 11 was retrieved least; the order is kept
    assert len(mem) == 3


def test_errors_for_unknown_owners_and_bad_input():
    mem = TransitionMemory(2, config=BANK)
    with pytest.raises(UnknownUserError, match="user 3 has no memory entries"):
        mem.entries(3)
    with pytest.raises(ValueError, match=r"expected keys \(M, 2\)"):
        mem.add(torch.zeros(2, 3), torch.ones(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        mem.add(torch.full((1, 2), float("nan")), torch.ones(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
    with pytest.raises(UnknownUserError, match=">= 0"):
        mem.add(torch.zeros(1, 2), torch.ones(1, dtype=torch.int64), torch.tensor([-4]))
    assert len(mem) == 0 and float(mem.clock) == 0  # nothing was written


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    mem = TransitionMemory(3, config=TransitionConfig(capacity=5, unique=True))
    for step in range(40):
        mem.add(torch.randn(4, 3), torch.randint(1, 30, (4,)), torch.full((4,), step % 23), hits=torch.rand(4))
    torch.save(mem.state_dict(), tmp_path / "mem.pt")
    fresh = TransitionMemory(3, config=TransitionConfig(capacity=5, unique=True))
    fresh.load_state_dict(torch.load(tmp_path / "mem.pt", weights_only=True))
    assert fresh.num_owners == 23 and len(fresh) == len(mem) and float(fresh.clock) == 40
    owners = torch.arange(-1, 25)
    assert all(torch.equal(a, b) for a, b in zip(fresh.gather(owners), mem.gather(owners)))
    assert torch.equal(fresh.entries(7)["quality"], mem.entries(7)["quality"])
    with pytest.raises(RuntimeError, match="4 dimensions|3 dimensions"):
        TransitionMemory(4).load_state_dict(mem.state_dict())


def test_banks_saved_before_the_transition_memory_load_as_they_were_read():
    c, d = 3, 2
    state = {"slot_of_user": torch.tensor([1, -1, 0]), "keys": torch.arange(12.0).view(2, c, d),
             "items": torch.tensor([[7, 8, 0], [5, 0, 0]]), "hits": torch.ones(2, c), "credit": torch.zeros(2, c),
             "last_used": torch.full((2, c), 3.0), "clock": torch.tensor(3.0, dtype=torch.float64)}
    mem = TransitionMemory(d, config=TransitionConfig(capacity=c, unique=True))
    mem.upgrade_state(state, "")  # what the checkpoint reader does first
    assert "slot_of_user" not in state and "items" not in state
    mem.load_state_dict(state)
    assert mem.owners.tolist() == [0, 2, 2] and mem.values[:, 0].tolist() == [5, 7, 8]
    assert mem.entries(2)["keys"].tolist() == [[0.0, 1.0], [2.0, 3.0]] and float(mem.clock) == 3.0

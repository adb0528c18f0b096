"""Episodic banks: keyed by user, quality-based pruning, adaptive K from entropy, persistence."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.errors import UnknownUserError
from memrec.memory.episodic import EpisodicConfig, EpisodicMemory, adaptive_k, diversity, last_occurrences, quality

ALL = lambda n: torch.ones(1, 1, n, dtype=torch.bool)  # noqa: E731  one query that sees n entries


def renyi2_from_spectrum(vectors: torch.Tensor) -> float:
    """The documented formula computed the long way: eigenvalues of the cosine Gram matrix."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=-1)
    lam = torch.linalg.eigvalsh(unit @ unit.T).clamp(min=0)
    p = lam / lam.sum()
    n, d = vectors.shape
    return float(-torch.log((p * p).sum()) / math.log(min(n, d)))


def test_diversity_is_0_for_identical_and_1_for_orthogonal_items():
    assert diversity(torch.ones(1, 5, 4), ALL(5)).item() == pytest.approx(0.0, abs=1e-5)
    assert diversity(torch.eye(4)[None] * 3.0, ALL(4)).item() == pytest.approx(1.0)
    assert diversity(torch.ones(1, 1, 4), ALL(1)).item() == 0.0  # one entry: nothing to be diverse about


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_diversity_equals_the_collision_entropy_of_the_spectrum(n, d, seed):
    vectors = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    assert diversity(vectors[None], ALL(n)).item() == pytest.approx(renyi2_from_spectrum(vectors), abs=1e-4)


def test_diversity_of_a_visible_subset_ignores_the_rest():
    torch.manual_seed(0)
    vectors = torch.randn(1, 6, 8)
    visible = torch.tensor([[[True, True, True, False, False, False], [True] * 6]])  # (1, 2, 6)
    h = diversity(vectors, visible)
    assert h[0, 0].item() == pytest.approx(diversity(vectors[:, :3], ALL(3)).item(), abs=1e-6)
    assert h[0, 1].item() == pytest.approx(diversity(vectors, ALL(6)).item(), abs=1e-6)


def test_more_diverse_users_get_a_larger_k():
    torch.manual_seed(0)
    focused = torch.randn(1, 8) + 0.05 * torch.randn(30, 8)  # 30 items around one taste
    broad = torch.randn(30, 8)
    h = torch.stack([diversity(v[None], ALL(30))[0, 0] for v in (focused, broad)])
    k = adaptive_k(h, torch.tensor([30, 30]), 3, 20)
    assert h[0] < 0.2 < 0.8 < h[1] and k[0] < k[1]


def test_adaptive_k_formula():
    h = torch.tensor([0.0, 0.25, 1.0, 1.0, 0.5])
    n = torch.tensor([100, 100, 100, 7, 0])
    assert adaptive_k(h, n, 3, 20).tolist() == [3, round(3 + 17 * 0.25), 20, 7, 0]
    with pytest.raises(ValueError, match="k_min <= k_max"):
        adaptive_k(h, n, 5, 4)


def test_quality_terms():
    cfg = EpisodicConfig(recency_scale=10.0)
    hits, credit, last = torch.tensor([0.0, 3.0, 7.0]), torch.tensor([0.0, 3.0, 21.0]), torch.tensor([10.0, 0.0, 10.0])
    q = quality(hits, credit, last, 10.0, cfg)
    freq = torch.log1p(hits) / math.log1p(7.0)
    recency = torch.exp(-(10.0 - last) / 10.0)
    useful = torch.tensor([0.0, 0.5, 0.75])  # shares 0, 1, 3 -> s / (1 + s)
    assert torch.allclose(q, (freq + recency + useful) / 3)
    only_recency = quality(hits, credit, last, 10.0, EpisodicConfig(w_frequency=0, w_usefulness=0, recency_scale=10.0))
    assert torch.allclose(only_recency, recency)


@pytest.mark.parametrize("bad", [dict(capacity=0), dict(w_frequency=-1.0), dict(w_frequency=0.0, w_recency=0.0, w_usefulness=0.0), dict(recency_scale=0.0)])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        EpisodicConfig(**bad)


def test_banks_are_keyed_by_user_and_refresh_entries():
    mem = EpisodicMemory(2, EpisodicConfig(capacity=4))
    keys = torch.arange(12.0).view(2, 3, 2)
    mem.write(torch.tensor([5, 2]), keys, torch.tensor([[1, 2, 0], [3, 3, 4]]), hits=torch.ones(2, 3))
    assert mem.num_users == 2 and len(mem) == 4
    assert mem.entries(5)["items"].tolist() == [1, 2]
    assert mem.entries(2)["items"].tolist() == [3, 4]  # a repeated item is one entry (the later one)
    assert torch.equal(mem.entries(2)["keys"][0], keys[1, 1])
    mem.write(torch.tensor([5]), torch.full((1, 1, 2), 9.0), torch.tensor([[2]]), hits=torch.tensor([[2.0]]))
    e = mem.entries(5)
    assert e["items"].tolist() == [1, 2] and e["hits"].tolist() == [1.0, 3.0] and e["keys"][1].tolist() == [9.0, 9.0]
    assert e["last_used"].tolist() == [1.0, 2.0]
    keys_b, items_b = mem.gather(torch.tensor([2, 5, 0, 999, -1]))
    assert items_b[:, :2].tolist() == [[3, 4], [1, 2], [0, 0], [0, 0], [0, 0]] and keys_b.shape == (5, 4, 2)


def test_pruning_drops_the_lowest_quality():
    mem = EpisodicMemory(1, EpisodicConfig(capacity=3, w_recency=0.0))
    mem.write(torch.tensor([0]), torch.zeros(1, 3, 1), torch.tensor([[10, 11, 12]]), hits=torch.tensor([[4.0, 1.0, 9.0]]), credit=torch.tensor([[4.0, 1.0, 9.0]]))
    mem.write(torch.tensor([0]), torch.zeros(1, 1, 1), torch.tensor([[13]]), hits=torch.tensor([[2.0]]), credit=torch.tensor([[2.0]]))
    assert sorted(mem.entries(0)["items"].tolist()) == [10, 12, 13]  # 11 was retrieved least
    assert len(mem) == 3


def test_errors_for_unknown_users_and_bad_input():
    mem = EpisodicMemory(2)
    with pytest.raises(UnknownUserError, match="user 3 has no memory bank"):
        mem.entries(3)
    with pytest.raises(ValueError, match="expected users"):
        mem.write(torch.tensor([0]), torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        mem.write(torch.tensor([0]), torch.full((1, 1, 2), float("nan")), torch.ones(1, 1, dtype=torch.int64))
    with pytest.raises(UnknownUserError, match=">= 0"):
        mem.write(torch.tensor([-4]), torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.int64))


def test_state_dict_round_trip_restores_every_bank(tmp_path):
    torch.manual_seed(0)
    mem = EpisodicMemory(3, EpisodicConfig(capacity=5))
    for step in range(40):  # enough users to grow the tensors several times
        mem.write(torch.tensor([step % 23]), torch.randn(1, 4, 3), torch.randint(1, 30, (1, 4)), hits=torch.rand(1, 4))
    torch.save(mem.state_dict(), tmp_path / "mem.pt")
    state = torch.load(tmp_path / "mem.pt", weights_only=True)
    assert state["keys"].shape[0] == mem.num_users == 23  # spare slots are not saved
    fresh = EpisodicMemory(3, EpisodicConfig(capacity=5))
    fresh.load_state_dict(state)
    assert fresh.num_users == 23 and len(fresh) == len(mem) and float(fresh.clock) == 40
    users = torch.arange(-1, 25)
    assert all(torch.equal(a, b) for a, b in zip(fresh.gather(users), mem.gather(users)))
    assert torch.equal(fresh.entries(7)["quality"], mem.entries(7)["quality"])
    with pytest.raises(RuntimeError, match="capacity, dim"):
        EpisodicMemory(3, EpisodicConfig(capacity=6)).load_state_dict(state)


def test_last_occurrences():
    assert last_occurrences(torch.tensor([4, 4, 4])).tolist() == [2]
    assert last_occurrences(torch.zeros(0, dtype=torch.int64)).tolist() == []

"""The neighbour memory: other users' entries only, a mixture that leaves the model alone at weight 0,
and a setting chosen on validation that keeps weight 0 when neighbours do not help."""
import numpy as np
import pytest
import torch

from memrec.data.batching import make_eval_batch
from memrec.data.split import EvalSet
from memrec.config import NeighbourConfig
from memrec.errors import ConfigError
from memrec.memory.neighbours import NeighbourMemory, contexts, followers, memory_mass, mix_scores, seen_mask, tune


def memory(n=40, dim=4, users=5, items=20, seed=0) -> NeighbourMemory:
    g = torch.Generator().manual_seed(seed)
    mem = NeighbourMemory(dim)
    mem.build(torch.randn(n, dim, generator=g), torch.randint(1, items + 1, (n,), generator=g), torch.arange(n) % users)
    return mem


def test_search_returns_the_nearest_entries_of_other_users_only():
    mem = memory()
    queries = torch.randn(6, 4)
    users = torch.tensor([0, 1, 2, 3, 4, 7])
    sims, values = mem.search(queries, users, k=8)
    cos = torch.nn.functional.normalize(queries, dim=1) @ mem.keys.T
    for r, u in enumerate(users.tolist()):
        others = (mem.owners != u).nonzero().flatten()
        best = others[cos[r, others].argsort(descending=True)[:8]]
        assert values[r].tolist() == mem.values[best].tolist()
        assert torch.allclose(sims[r], cos[r, best])


def test_search_pads_missing_neighbours():
    mem = NeighbourMemory(2)
    mem.build(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([3, 4]), torch.tensor([0, 1]))
    sims, values = mem.search(torch.tensor([[1.0, 1.0]]), torch.tensor([0]), k=3)
    assert values.tolist() == [[[4], [-1]]] and sims[0, 1] == float("-inf")  # one other user's entry; the own one is masked


def test_weight_zero_is_the_model_and_unpointed_items_keep_their_logits():
    logits = torch.randn(3, 21)
    seen = torch.zeros(3, 21, dtype=torch.bool)
    seen[:, 0] = True
    seen[0, 5] = True
    sims, values = torch.randn(3, 4), torch.tensor([[5, 6, 6, 7], [1, 2, 3, -1], [9, 9, 9, 9]])
    assert torch.equal(mix_scores(logits, seen, sims, values, 0.3, 0.0), logits.double())
    mixed = mix_scores(logits, seen, sims, values, 0.3, 0.5)
    pointed = torch.zeros_like(seen)
    pointed.scatter_(1, values.clamp(min=0), values >= 0)
    pointed[0, 5] = False  # a seen item gets no mass
    assert torch.equal(mixed[~pointed], logits.double()[~pointed])
    assert (mixed[pointed] > logits.double()[pointed]).all()


def test_the_mixture_ranks_as_the_explicit_probability_mixture():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 31, generator=g) * 3
    seen = torch.rand(4, 31, generator=g) < 0.2
    seen[:, 0] = True
    sims, values = torch.rand(4, 6, generator=g), torch.randint(1, 31, (4, 6), generator=g)
    scores = mix_scores(logits, seen, sims, values, 0.2, 0.4)
    p_model = torch.softmax(logits.double().masked_fill(seen, float("-inf")), dim=1)
    p = 0.6 * p_model + 0.4 * memory_mass(seen, sims, values, 0.2)
    for r in range(4):  # same order of the rankable items, and log p up to a row constant
        rankable = ~seen[r]
        diff = scores[r, rankable] - p[r, rankable].log()
        assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-9)


def test_memory_mass_is_a_distribution_over_unseen_items():
    seen = torch.zeros(2, 10, dtype=torch.bool)
    seen[:, 0] = True
    seen[0, 3] = True
    mass = memory_mass(seen, torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.2, float("-inf")]]), torch.tensor([[3, 4, 4], [7, 8, -1]]), 0.3)
    assert mass[0, 3] == 0 and mass[0, 4] == pytest.approx(1.0)
    assert mass[1, 7] == pytest.approx(0.5) and mass[1].sum() == pytest.approx(1.0)


def test_contexts_hold_every_training_position_and_nothing_after_it():
    sequences = [np.array([1, 2, 3, 4]), np.array([], dtype=np.int64), np.array([9, 8])]
    moments, positions = contexts(sequences)
    assert moments.users.tolist() == [0, 0, 0, 2] and positions.tolist() == [1, 2, 3, 1]
    for h, v, t, u in zip(moments.histories, moments.targets, positions, moments.users):
        assert h.tolist() == sequences[u][:t].tolist() and v == sequences[u][t]


def _pointing_memory(targets: np.ndarray, towards: bool) -> tuple[NeighbourMemory, callable]:
    """Queries are one-hot per example; another user's entry with the same key points at the example's
    target (``towards``) or at a fixed wrong item."""
    n = len(targets)
    mem = NeighbourMemory(n)
    values = torch.from_numpy(targets) if towards else torch.full((n,), 49)
    mem.build(torch.eye(n), values, torch.arange(n) + 1000)

    def states(batch):
        g = torch.Generator().manual_seed(int(batch.users[0]))
        return torch.randn(len(batch.users), 51, generator=g), torch.eye(n)[batch.users]
    return mem, states


@pytest.mark.parametrize("towards", [True, False])
def test_tune_uses_the_memory_only_when_it_helps(towards):
    targets = np.arange(1, 31)
    evalset = EvalSet(np.arange(30), [np.array([40 + (i % 5)]) for i in range(30)], targets)
    mem, states = _pointing_memory(targets, towards)
    table = tune(mem, evalset, max_len=5, states=states, grid=NeighbourConfig(ks=(1, 4), temperatures=(0.1,), weights=(0.3, 0.7), decays=(0.0,)))
    assert len(table) == 1 + 2 * 2 and table[0]["weight"] == 0.0
    if towards:
        assert mem.weight > 0 and max(r["ndcg@10"] for r in table) > table[0]["ndcg@10"]
    else:
        assert mem.weight == 0.0 and not mem.active


@pytest.mark.parametrize("helped, used", [(2, False), (12, True)])
def test_tune_skips_a_gain_within_noise(helped, used):
    """The memory points at the target for ``helped`` of 60 users and at a seen item (no mass) for the rest:
    2 helped users raise the mean but not above noise at 95%; 12 do."""
    n = 60
    targets = np.arange(1, n + 1)
    histories = [np.array([40 + (i % 5)]) for i in range(n)]
    mem = NeighbourMemory(n)
    mem.build(torch.eye(n), torch.from_numpy(np.where(np.arange(n) < helped, targets, [h[0] for h in histories])), torch.arange(n) + 1000)

    def states(batch):
        return torch.zeros(len(batch.users), 61), torch.eye(n)[batch.users]
    evalset = EvalSet(np.arange(n), histories, targets)
    grid = NeighbourConfig(ks=(1,), temperatures=(0.1,), weights=(0.5,), decays=(0.0,))
    plain, mixed_row = tune(mem, evalset, max_len=5, states=states, grid=grid)
    assert mixed_row["ndcg@10"] > plain["ndcg@10"] and mixed_row["gain_low"] < mixed_row["gain_high"]
    assert mixed_row["eligible"] is used and (mixed_row["gain_low"] > 0) is used and mem.active is used
    tune(mem, evalset, max_len=5, states=states, grid=NeighbourConfig(ks=(1,), temperatures=(0.1,), weights=(0.5,), decays=(0.0,), confidence=0.0))
    assert mem.active  # without the test any gain counts


def test_the_gate_mixes_only_queries_whose_nearest_entry_is_close_enough():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 21, generator=g)
    seen = torch.zeros(4, 21, dtype=torch.bool)
    seen[:, 0] = True
    sims = torch.tensor([[0.95, 0.9], [0.8, 0.7], [0.9, 0.1], [float("-inf"), float("-inf")]])
    values = torch.tensor([[3, 4], [5, 6], [7, 8], [-1, -1]])
    gated, ungated = mix_scores(logits, seen, sims, values, 0.3, 0.5, gate=0.9), mix_scores(logits, seen, sims, values, 0.3, 0.5)
    assert torch.equal(gated[[0, 2]], ungated[[0, 2]])  # nearest similarity 0.95 and 0.9 reach the gate
    assert torch.equal(gated[[1, 3]], logits.double()[[1, 3]])  # 0.8 and no entry: the model alone
    assert torch.equal(mix_scores(logits, seen, sims, values, 0.3, 0.5, gate=-1.0), ungated)
    assert torch.equal(mix_scores(logits, seen, sims, values, 0.3, 0.5, gate=1.0), logits.double())


def test_tune_picks_a_gate_that_spares_the_queries_the_memory_would_hurt():
    n = 30  # the first half's queries match an entry exactly, which points at the target; the second half's
    targets = np.arange(1, n + 1)  # nearest entry (cosine 0.78) points at a wrong item
    mem = NeighbourMemory(n + 1)
    keys = torch.eye(n + 1)[:n]
    mem.build(keys, torch.from_numpy(np.where(np.arange(n) < n // 2, targets, 49)), torch.arange(n) + 1000)
    queries = keys.clone()
    queries[n // 2:, n] = 0.8

    def states(batch):
        g = torch.Generator().manual_seed(int(batch.users[0]))
        return torch.randn(len(batch.users), 51, generator=g), queries[batch.users]
    evalset = EvalSet(np.arange(n), [np.array([40 + (i % 5)]) for i in range(n)], targets)
    grid = NeighbourConfig(ks=(1,), temperatures=(0.1,), weights=(0.7,), gates=(-1.0, 0.9), decays=(0.0,))
    table = tune(mem, evalset, max_len=5, states=states, grid=grid)
    assert [(r["weight"], r["gate"]) for r in table] == [(0.0, -1.0), (0.7, -1.0), (0.7, 0.9)]
    assert table[2]["ndcg@10"] > table[1]["ndcg@10"] and table[2]["ndcg@10"] > table[0]["ndcg@10"]
    assert (mem.weight, mem.gate) == (0.7, 0.9)


def test_state_dict_round_trip_and_old_checkpoints():
    mem = memory()
    mem.set(k=8, temperature=0.3, weight=0.5)
    other = NeighbourMemory(4)
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.keys, mem.keys) and torch.equal(other.values, mem.values) and (other.k, other.weight) == (8, 0.5)
    old = NeighbourMemory(4)
    old.load_state_dict({}, strict=True)  # written before the memory existed: empty, inactive
    assert len(old) == 0 and not old.active
    before_gate = {**mem.state_dict(), "setting": mem.setting[:3].clone()}  # k, T, w: saved before the gate
    ungated = NeighbourMemory(4)
    ungated.load_state_dict(before_gate)
    assert (ungated.k, ungated.temperature, ungated.weight, ungated.gate, ungated.decay) == (8, 0.3, 0.5, -1.0, 0.0)
    # saved before the horizon: one next item per entry (M,) and four settings
    before_horizon = {**mem.state_dict(), "values": mem.values[:, 0].clone(), "setting": mem.setting[:4].clone()}
    next_only = NeighbourMemory(4)
    next_only.load_state_dict(before_horizon)
    assert torch.equal(next_only.values, mem.values) and next_only.decay == 0.0
    queries, users = torch.randn(3, 4), torch.tensor([0, 1, 2])
    logits, seen = torch.randn(3, 21), torch.zeros(3, 21, dtype=torch.bool)
    assert torch.equal(next_only.mix(logits, seen, queries, users), mem.mix(logits, seen, queries, users))


def test_followers_are_the_owners_next_items_within_its_sequence():
    sequences = [np.array([1, 2, 3, 4]), np.array([9, 8])]
    moments, positions = contexts(sequences)
    values = followers(sequences, moments.users, positions, horizon=3)
    assert values.tolist() == [[2, 3, 4], [3, 4, -1], [4, -1, -1], [8, -1, -1]]
    assert values[:, 0].tolist() == moments.targets.tolist()  # the first value is the entry's next item
    with pytest.raises(ValueError, match="horizon"):
        followers(sequences, moments.users, positions, horizon=0)


def test_decay_weighs_a_neighbours_later_items_and_zero_keeps_the_next_item_only():
    seen = torch.zeros(1, 10, dtype=torch.bool)
    seen[0, 0] = True
    seen[0, 6] = True
    sims = torch.tensor([[0.9, 0.1]])
    values = torch.tensor([[[3, 4, 6], [5, -1, -1]]])  # neighbour 1 did 3, then 4, then 6 (seen); neighbour 2 did 5
    first = torch.softmax(sims.double() / 0.5, dim=1)[0]
    next_only = memory_mass(seen, sims, values, 0.5, decay=0.0)
    assert torch.allclose(next_only, memory_mass(seen, sims, values[:, :, 0], 0.5))  # decay 0 = the horizon-1 memory
    assert next_only[0, 4] == 0 and next_only[0, 3] == pytest.approx(first[0].item())
    mass = memory_mass(seen, sims, values, 0.5, decay=0.5)
    total = first[0] * 1.5 + first[1]  # the seen item 6 carries nothing
    assert mass[0, 4] == pytest.approx(first[0].item() * 0.5 / total.item()) and mass[0, 6] == 0
    assert mass[0].sum() == pytest.approx(1.0)
    logits = torch.zeros(1, 10)
    assert torch.equal(mix_scores(logits, seen, sims, values, 0.5, 0.5, decay=0.0), mix_scores(logits, seen, sims, values[:, :, 0], 0.5, 0.5))
    assert mix_scores(logits, seen, sims, values, 0.5, 0.5, decay=0.5)[0, 4] > 0  # a later item is boosted


def test_bad_input_is_refused():
    mem = NeighbourMemory(4)
    with pytest.raises(ValueError, match="expected keys"):
        mem.build(torch.randn(3, 5), torch.ones(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        mem.build(torch.full((2, 4), float("nan")), torch.ones(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="weight"):
        mem.set(k=4, temperature=0.3, weight=1.0)
    with pytest.raises(ValueError, match="weights in"):
        NeighbourConfig(weights=(0.0,)).settings()
    with pytest.raises(ValueError, match="gate in"):
        mem.set(k=4, temperature=0.3, weight=0.5, gate=1.5)
    with pytest.raises(ValueError, match="gates in"):
        NeighbourConfig(gates=(2.0,)).settings()
    with pytest.raises(ValueError, match="decay in"):
        mem.set(k=4, temperature=0.3, weight=0.5, decay=1.5)
    with pytest.raises(ValueError, match="decays in"):
        NeighbourConfig(decays=(-0.1,)).settings()
    with pytest.raises(ValueError, match=r"confidence in \[0, 1\)"):
        NeighbourConfig(confidence=1.0).settings()
    with pytest.raises(ValueError, match=r"values \(M,\) or \(M, H\)"):
        mem.build(torch.randn(3, 4), torch.ones(2, 2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))


def test_seen_mask_marks_padding_and_the_full_history():
    b = make_eval_batch(np.array([0, 1]), [np.array([2, 3]), np.array([4])], np.array([5, 6]), max_len=1)
    seen = seen_mask(b, 8)
    assert seen[0].nonzero().flatten().tolist() == [0, 2, 3] and seen[1].nonzero().flatten().tolist() == [0, 4]


def test_the_index_setting_chooses_the_search_and_travels_with_the_checkpoint(tmp_path):
    from memrec.config import RunConfig
    from memrec.data import SequenceDataset, split_dataset
    from memrec.memory.neighbours import build_neighbours
    from memrec.models import build_model
    from memrec.train.checkpoint import load_checkpoint, save_checkpoint

    ds = SequenceDataset.from_sequences({f"u{i}": [f"i{(i * 7 + j) % 13}" for j in range(6)] for i in range(30)})
    split = split_dataset(ds)
    reports = {}
    for index in ("torch", "faiss"):
        torch.manual_seed(0)
        model = build_model("gru4rec", ds.num_items, 5)
        reports[index] = build_neighbours(model, split, 5, NeighbourConfig(enabled=True, ks=(4,), index=index), log=lambda *_: None)
        assert model.neighbours.search_config.backend == index
    assert reports["torch"] == reports["faiss"]  # both exact: the same validation table
    config = RunConfig.from_dict({"model": "gru4rec", "data": {"max_len": 5}, "memory": {"neighbours": {"enabled": True, "index": "hnsw"}}})
    save_checkpoint(tmp_path / "m.pt", model, config, ds)
    assert load_checkpoint(tmp_path / "m.pt").model.neighbours.search_config.backend == "hnsw"
    with pytest.raises(ConfigError, match="memory.neighbours.index: expected one of auto, torch, faiss, ivf, hnsw, got 'annoy'"):
        NeighbourConfig(index="annoy")

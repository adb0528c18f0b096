"""RAMRec: memory trained end to end, causal entries, banks keyed by the real user, ablation switches,
the neighbour memory built after training."""
import copy

import numpy as np
import pytest
import torch

from memrec.config import RunConfig
from memrec.data.split import Split
from memrec.data.batching import TrainBatch, TrainBatches, make_eval_batch, training_windows
from memrec.errors import ConfigError, UnknownItemError
from memrec.memory.adaptive_k import adaptive_k, diversity
from memrec.config import NeighbourConfig
from memrec.memory.neighbours import build_neighbours
from memrec.models import RAMRec, RAMRecConfig, SASRec, SASRecConfig, build_model
from memrec.train.checkpoint import load_checkpoint, save_checkpoint
from memrec.train.evaluate import rank_evalset
from memrec.train.losses import make_objective

MAX_LEN = 20
CE = make_objective("ce")


def learn(model, b):
    """The model's loss on ``b``, then the trainer's memory step (``loss`` itself changes nothing)."""
    writes = []
    loss = model.loss(b, CE, writes)
    model.write_memory(writes)
    return loss


def tiny(num_items=60, **config) -> RAMRec:
    torch.manual_seed(0)
    return RAMRec(num_items, MAX_LEN, RAMRecConfig(**{"hidden_size": 16, "inner_size": 32, "num_layers": 1, "dropout": 0.0, **config}))


def batch(users, rows) -> TrainBatch:
    """A training batch from full windows: inputs are rows[:, :-1], targets rows[:, 1:]."""
    rows = torch.tensor(rows)
    return TrainBatch(torch.tensor(users), rows[:, :-1], rows[:, 1:])


def trained_on(split, num_items, users=200, epochs=1, **config) -> RAMRec:
    """A small RAMRec trained on the first users' training sequences (real ML-100K data)."""
    model = build_model("ramrec", num_items, MAX_LEN, RAMRecConfig(hidden_size=32, inner_size=64, **config))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = TrainBatches(training_windows(split.train[:users], MAX_LEN), batch_size=64)
    model.train()
    for epoch in range(epochs):
        for b in batches.epoch(epoch):
            optimizer.zero_grad()
            writes = []
            model.loss(b, CE, writes).backward()
            optimizer.step()
            model.write_memory(writes)
    return model.eval()


@pytest.fixture(scope="module")
def trained(ml100k, ml100k_split):
    torch.manual_seed(0)
    return trained_on(ml100k_split, ml100k.num_items)


def test_memory_is_trained_end_to_end():
    model = tiny().train()
    learn(model, batch([0, 1], [[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])).backward()
    for p in [*model.cross.parameters(), *model.gate.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_an_entry_is_visible_only_after_its_item_was_seen():
    items = torch.tensor([[4, 8, 15, 16, 0]])
    hidden = torch.randn(1, 5, 3)
    keys, followed, visible = RAMRec.window_entries(hidden, items)
    assert followed.tolist() == [[8, 15, 16, 0]] and torch.equal(keys, hidden[:, :4])
    for t in range(5):  # position t may use entry j (item j + 1) only if j + 1 <= t: never its own target
        assert visible[0, t].nonzero().flatten().tolist() == [j for j in range(4) if j + 1 <= t and followed[0, j] > 0]


def test_training_output_at_t_ignores_later_items_in_train_mode_too():
    model = tiny(dropout=0.0).train()
    a = model.encode_positions(torch.tensor([[4, 8, 15, 16, 23]]))
    b = model.encode_positions(torch.tensor([[4, 8, 15, 42, 7]]))
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)


def test_training_writes_each_users_own_transitions_to_their_bank():
    model = tiny().train()
    learn(model, batch([3, 8], [[5, 6, 7, 8], [20, 21, 0, 0]]))
    assert model.bank.entries(3)["values"][:, 0].tolist() == [6, 7, 8]  # what followed each prefix, the last target included
    assert model.bank.entries(8)["values"][:, 0].tolist() == [21]
    assert model.bank.num_owners == 2
    hits = model.bank.entries(3)["hits"]
    assert hits[-1] == 0 and hits[0] > 0  # the earliest entry was retrieved by the later positions


def test_banks_never_hold_a_validation_or_test_target(trained, ml100k_split):
    for u in range(200):
        items = set(trained.bank.entries(u)["values"][:, 0].tolist())
        assert items <= set(ml100k_split.train[u].tolist()), u
        assert int(ml100k_split.valid.targets[u]) not in items and int(ml100k_split.test.targets[u]) not in items
    assert trained.bank.num_owners == 200 and max(len(s) for s in ml100k_split.train[:200]) > 100
    assert len(trained.bank.entries(int(np.argmax([len(s) for s in ml100k_split.train[:200]])))["values"]) == 100  # pruned to capacity


def test_evaluation_reads_the_users_bank(trained, ml100k_split):
    b = make_eval_batch(np.arange(8), ml100k_split.test.histories[:8], ml100k_split.test.targets[:8], MAX_LEN)
    with_bank = trained.score_all(b)
    assert not torch.allclose(with_bank, trained.score_all(make_eval_batch(np.full(8, -1), ml100k_split.test.histories[:8], ml100k_split.test.targets[:8], MAX_LEN)))
    trained.config.bank_at_eval = False
    try:
        assert torch.equal(trained.encode(b.history, b.lengths, b.users), trained.encode(b.history, b.lengths))
    finally:
        trained.config.bank_at_eval = True


def test_bank_entries_already_in_the_window_are_not_read_twice():
    model = tiny(fixed_k=10).eval()  # read every visible entry
    history = np.array([5, 6, 7, 8])
    model.update_memory(torch.tensor([0]), [history])  # the bank holds exactly the window's entries
    b = make_eval_batch(np.array([0]), [history], np.array([1]), MAX_LEN)
    assert torch.equal(model.encode(b.history, b.lengths, b.users), model.encode(b.history, b.lengths))
    model.update_memory(torch.tensor([0]), [np.array([30, 31, 32])])  # older history outside the window
    assert not torch.equal(model.encode(b.history, b.lengths, b.users), model.encode(b.history, b.lengths))


def test_rankings_with_banks_do_not_depend_on_batch_size(trained, ml100k_split):
    evalset = ml100k_split.test.subset(np.arange(60))
    reference = rank_evalset(trained, evalset, MAX_LEN, batch_size=60)
    for batch_size in (1, 7):
        assert np.array_equal(rank_evalset(trained, evalset, MAX_LEN, batch_size), reference)


def test_checkpoint_keeps_the_banks(trained, ml100k, ml100k_split, tmp_path):
    config = RunConfig.from_dict({"model": "ramrec", "data": {"max_len": MAX_LEN}, "model_config": {"hidden_size": 32, "inner_size": 64}})
    save_checkpoint(tmp_path / "m.pt", trained, config, ml100k)
    loaded = load_checkpoint(tmp_path / "m.pt").model
    assert loaded.bank.num_owners == 200 and len(loaded.bank) == len(trained.bank)
    b = make_eval_batch(np.arange(50), ml100k_split.test.histories[:50], ml100k_split.test.targets[:50], MAX_LEN)
    assert torch.equal(loaded.score_all(b), trained.score_all(b))


@pytest.mark.parametrize("fixed_k", [None, 1, 4])
def test_each_position_reads_k_entries(fixed_k):
    model = tiny(fixed_k=fixed_k)
    items = torch.randint(1, 60, (3, 12), generator=torch.Generator().manual_seed(1))
    hidden = model.encoder(model.embed(items))
    keys, followed, visible = model.window_entries(hidden, items)
    _, selected, weights, k = model.read_memory(hidden, keys, followed, visible)
    n = visible.sum(-1)
    want = n.clamp(max=fixed_k) if fixed_k else adaptive_k(diversity(model.item_emb(followed), visible), n, 3, 20)
    assert torch.equal(k, want) and torch.equal(selected.sum(-1), want)
    assert torch.allclose(weights.sum(-1), (want > 0).float(), atol=1e-5)  # attention spreads over the K keys


def test_without_memory_it_is_sasrec():
    torch.manual_seed(0)
    sasrec = SASRec(60, MAX_LEN, SASRecConfig(hidden_size=16, inner_size=32, num_layers=1))
    plain = tiny(use_memory=False, dropout=0.2).train()
    items = torch.tensor([[4, 8, 15, 16, 23]])
    sasrec.eval(), plain.eval()
    assert torch.equal(plain.encode_positions(items), sasrec.encode_positions(items))
    learn(plain.train(), batch([0], [[4, 8, 15]]))
    assert plain.bank.num_owners == 0


def test_public_code_mode_trains_no_fusion_and_pools_one_vector():
    model = tiny(public_code_mode=True)
    learn(model.train(), batch([0], [[5, 6, 7, 8, 9]])).backward()
    assert all(p.grad is None and not p.requires_grad for p in [*model.cross.parameters(), *model.gate.parameters()])
    assert model.bank.entries(0)["values"][:, 0].tolist() == [6, 7, 8, 9]  # banks are still written
    items = torch.tensor([[5, 6, 7, 8]])
    model.eval()
    hidden = model.encoder(model.embed(items))
    assert not torch.allclose(model.encode_positions(items), hidden)  # memory is read at evaluation only
    model.train()
    assert torch.equal(model.encode_positions(items), model.encoder(model.embed(items)))


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="fixed_k"):
        tiny(fixed_k=0)
    with pytest.raises(ConfigError, match="k_min <= k_max"):
        tiny(k_min=5, k_max=2)
    with pytest.raises(ConfigError, match="divisible by memory_heads"):
        tiny(memory_heads=3)
    model = tiny()
    with pytest.raises(UnknownItemError):
        model.update_memory(torch.tensor([0]), [np.array([1, 2, 61])])
    with pytest.raises(ValueError, match="2 users but 1 sequences"):
        model.update_memory(torch.tensor([0, 1]), [np.array([1, 2])])
    with pytest.raises(ConfigError, match="unknown keys"):
        RunConfig.from_dict({"model": "ramrec", "model_config": {"memory_size": 3}})


def test_after_training_builds_the_neighbour_memory_from_training_positions_only(trained, ml100k, ml100k_split, tmp_path):
    model = copy.deepcopy(trained)
    config = NeighbourConfig(enabled=True, gates=(-1.0, 0.95), horizon=3, decays=(0.0, 0.5))  # gates, horizon and decays reach the grid
    users = np.arange(200)
    split = Split(ml100k_split.train[:200], ml100k_split.valid.subset(users), ml100k_split.test.subset(users), ml100k_split.protocol)
    info = build_neighbours(model, split, MAX_LEN, config, batch_size=128, log=lambda *_: None)["neighbour_memory"]
    assert [(r["gate"], r["decay"]) for r in info["grid"][1:5]] == [(-1.0, 0.0), (-1.0, 0.5), (0.95, 0.0), (0.95, 0.5)]
    assert len(info["grid"]) == 1 + 4 * 2 * 4 * 2 * 2  # the weight 0, then ks x temperatures x weights x gates x decays
    assert info["chosen"]["gate"] == model.neighbours.gate in (-1.0, 0.95) and info["chosen"]["decay"] == model.neighbours.decay
    mem = model.neighbours
    assert len(mem) == info["entries"] == sum(len(s) - 1 for s in split.train)
    for owner in (0, 57, 199):
        values = mem.values[mem.owners == owner]  # (entries, 3): each position's next three training items
        train = split.train[owner]
        assert values[:, 0].tolist() == train[1:].tolist()  # the user's training items after the first, nothing held out
        assert values[:, 2].tolist() == train[3:].tolist() + [-1, -1][:len(train) - 1]  # -1 past the training sequence
    assert info["grid"][0]["weight"] == 0.0 and info["valid_ndcg@10_with"] >= info["valid_ndcg@10_without"]
    low, high = info["valid_ndcg@10_gain_interval"]  # the chosen setting's gain is above noise, or it is the model alone
    assert (low > 0.0 and model.neighbours.active) or (low == high == 0.0 and not model.neighbours.active)
    assert all(row["eligible"] == (row["weight"] == 0.0 or row["gain_low"] > 0.0) for row in info["grid"])

    model.neighbours.set(k=64, temperature=0.3, weight=0.5)  # in use, whatever validation chose
    b = make_eval_batch(users[:40], split.test.histories[:40], split.test.targets[:40], MAX_LEN)
    plain = model.scores_and_states(b)[0]
    assert not torch.equal(model.score_all(b), plain.double())
    evalset = split.test.subset(np.arange(60))
    reference = rank_evalset(model, evalset, MAX_LEN, batch_size=60)
    assert np.array_equal(rank_evalset(model, evalset, MAX_LEN, batch_size=7), reference)

    config = RunConfig.from_dict({"model": "ramrec", "data": {"max_len": MAX_LEN}, "model_config": {"hidden_size": 32, "inner_size": 64}})
    save_checkpoint(tmp_path / "m.pt", model, config, ml100k)
    loaded = load_checkpoint(tmp_path / "m.pt").model
    assert len(loaded.neighbours) == len(mem) and loaded.neighbours.k == 64 and loaded.neighbours.weight == 0.5
    assert torch.equal(loaded.score_all(b), model.score_all(b))


def test_neighbours_off_builds_nothing(trained, ml100k_split):
    model = copy.deepcopy(trained)
    assert build_neighbours(model, ml100k_split, MAX_LEN, NeighbourConfig(enabled=False), log=lambda *_: None) == {}
    assert len(model.neighbours) == 0


def test_loss_changes_nothing_until_the_memory_step():
    model = tiny().train()
    b = batch([3], [[5, 6, 7, 8]])
    writes = []
    model.loss(b, CE)
    model.loss(b, CE, writes)
    assert model.bank.num_owners == 0 and len(writes) == 1  # asked, not written
    model.write_memory(writes)
    assert model.bank.entries(3)["values"][:, 0].tolist() == [6, 7, 8]

"""memory-moe: memory trained end to end, never holding a predicted item, read-only and batch-free at evaluation."""
import numpy as np
import pytest
import torch

from memrec.config import RunConfig
from memrec.data.batching import TrainBatch, TrainBatches, make_eval_batch, training_windows
from memrec.errors import ConfigError, UnknownItemError
from memrec.memory.expert_memory import MemoryInputError
from memrec.models import MemoryMoEConfig, MemoryMoERec, build_model
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
SMALL = {"hidden_size": 32, "inner_size": 64, "num_experts": 3, "store_per_step": 128, "similarity_threshold": 0.3}


def tiny(**config) -> MemoryMoERec:
    torch.manual_seed(0)
    return MemoryMoERec(60, MAX_LEN, MemoryMoEConfig(**{"hidden_size": 16, "inner_size": 32, "num_layers": 1, "num_experts": 2,
                                                        "dropout": 0.0, "similarity_threshold": -1.0, **config}))


def memories(model: MemoryMoERec) -> list:
    return [e.memory for moe in model.memory_layers() for e in moe.experts]


@pytest.fixture(scope="module")
def trained(ml100k, ml100k_split):
    torch.manual_seed(0)
    model = build_model("memory-moe", ml100k.num_items, MAX_LEN, MemoryMoEConfig(**SMALL))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for b in TrainBatches(training_windows(ml100k_split.train[:150], MAX_LEN), batch_size=64).epoch(0):
        optimizer.zero_grad()
        writes = []
        model.loss(b, CE, writes).backward()
        optimizer.step()
        model.write_memory(writes)
    return model.eval()


def test_memory_is_trained_end_to_end():
    model = tiny().train()
    rows = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])
    b = TrainBatch(torch.tensor([0, 1]), rows[:, :-1], rows[:, 1:], torch.tensor([0, 0]))
    learn(model, b)  # fills the memories
    model.zero_grad()
    other = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])
    model.loss(TrainBatch(torch.tensor([2, 3]), other[:, :-1], other[:, 1:], torch.tensor([0, 0])), CE).backward()
    read = [e for e in model.blocks[-1].moe.experts if len(e.memory)]
    assert read
    for expert in read:
        for p in (expert.read_proj.weight, expert.read_gate.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.item_emb.weight.grad[[6, 7, 8, 9]].abs().sum() > 0


def test_a_position_never_reads_its_own_target_or_anything_later():
    model = tiny(store_per_step=100).train()
    rows = torch.tensor([[5, 6, 7, 8, 9]])
    b = TrainBatch(torch.tensor([4]), rows[:, :-1], rows[:, 1:], torch.tensor([10]))  # window at positions 10..13
    learn(model, b)
    entries = [(int(m.tiers["short_term"].items[i]), int(m.tiers["short_term"].upto[i])) for m in memories(model) for i in range(len(m.tiers["short_term"]))]
    assert sorted(entries) == [(6, 11), (7, 12), (8, 13), (9, 14)]  # item and where it sits in user 4's sequence
    context = model.training_context(b)
    assert context.positions.tolist() == [10, 11, 12, 13]
    x = model.embed(b.inputs).reshape(-1, 16).detach()
    for m in memories(model):
        if len(m):
            recall = m.retrieve(x, k=8, threshold=-1.0, owners=context.owners, positions=context.positions)
            for row in range(4):  # position 10 + row predicts item 6 + row: it may read items 6..5+row only
                assert set(recall.items[row][recall.valid[row]].tolist()) <= set(range(6, 6 + row)), row
            other = m.retrieve(x, k=8, threshold=-1.0, owners=torch.full((4,), 5), positions=context.positions)
            assert other.valid.sum(1).eq(len(m)).all()  # another user sees all of them


def test_without_window_offsets_a_users_own_entries_are_never_read_back_in_training():
    model = tiny(store_per_step=100).train()
    rows = torch.tensor([[5, 6, 7, 8]])
    learn(model, TrainBatch(torch.tensor([4]), rows[:, :-1], rows[:, 1:]))
    x = torch.randn(3, 16)
    for m in memories(model):
        if len(m):
            assert not m.retrieve(x, k=8, threshold=-1.0, owners=torch.full((3,), 4), positions=torch.tensor([0, 50, 10**6])).valid.any()


def test_memories_hold_only_training_transitions(trained, ml100k_split):
    seen = 0
    for m in memories(trained):
        for tier in m.tiers.values():
            for item, owner, upto in zip(tier.items.tolist(), tier.owner.tolist(), tier.upto.tolist()):
                train = ml100k_split.train[owner]
                assert 0 <= owner < 150 and 1 <= upto < len(train)
                if item >= 0:  # the item it recalls is the training item at that position
                    assert train[upto] == item
                    assert item != ml100k_split.valid.targets[owner] and item != ml100k_split.test.targets[owner]
                    seen += 1
    assert seen > 100 and trained.memory_statistics()["total_memories"] > 100


def test_evaluation_reads_memory_and_writes_nothing(trained, ml100k_split):
    b = make_eval_batch(np.arange(30), ml100k_split.test.histories[:30], ml100k_split.test.targets[:30], MAX_LEN)
    before = str(trained.state_dict())
    with_memory = trained.score_all(b)
    assert str(trained.state_dict()) == before
    trained.config.use_memory = False
    try:
        assert not torch.allclose(with_memory, trained.score_all(b))
    finally:
        trained.config.use_memory = True


def test_rankings_with_memory_do_not_depend_on_batch_size(trained, ml100k_split):
    evalset = ml100k_split.test.subset(np.arange(60))
    reference = rank_evalset(trained, evalset, MAX_LEN, batch_size=60)
    for batch_size in (1, 7):
        assert np.array_equal(rank_evalset(trained, evalset, MAX_LEN, batch_size), reference)


def test_checkpoint_keeps_the_memories(trained, ml100k, ml100k_split, tmp_path):
    config = RunConfig.from_dict({"model": "memory-moe", "data": {"max_len": MAX_LEN}, "model_config": SMALL})
    save_checkpoint(tmp_path / "m.pt", trained, config, ml100k)
    loaded = load_checkpoint(tmp_path / "m.pt")
    b = make_eval_batch(np.arange(40), ml100k_split.test.histories[:40], ml100k_split.test.targets[:40], MAX_LEN)
    assert torch.equal(loaded.model.score_all(b), trained.score_all(b))
    assert loaded.model.memory_statistics() == trained.memory_statistics()


def test_without_memory_nothing_is_stored_or_read():
    model = tiny(use_memory=False).train()
    rows = torch.tensor([[5, 6, 7, 8]])
    learn(model, TrainBatch(torch.tensor([0]), rows[:, :-1], rows[:, 1:], torch.tensor([0])))
    assert model.memory_statistics()["total_memories"] == 0 and model.memory_layers() == []
    with pytest.raises(ConfigError, match="memory_layers must be in 0..num_layers=1"):
        tiny(memory_layers=2)


def test_few_shot_adapt_stores_each_transition_of_the_new_user_as_an_episodic_memory():
    model = tiny().eval()
    info = model.few_shot_adapt(torch.tensor([5, 6, 7, 8]), user=99)
    assert info == {"num_examples": 3, "memories_stored": 3}
    entries = sorted((int(t.items[i]), int(t.owner[i]), int(t.upto[i])) for m in memories(model) for t in [m.tiers["episodic"]] for i in range(len(t)))
    assert entries == [(6, 99, 1), (7, 99, 2), (8, 99, 3)]  # item t + 1, its owner, its position; the last item recalls nothing
    assert model.memory_statistics()["short_term_count"] == 0 and not model.training


def test_few_shot_memories_change_the_new_users_ranking_and_are_undone_exactly(trained, ml100k_split):
    history = ml100k_split.train[500][:6]
    b = make_eval_batch(np.array([500]), [history], np.array([ml100k_split.train[500][6]]), MAX_LEN)
    before, saved = trained.score_all(b), trained.memory_state()
    trained.few_shot_adapt(history, user=500)
    assert trained.memory_statistics()["episodic_count"] == 5
    adapted = trained.score_all(b)
    assert not torch.equal(adapted, before)  # the last position recalls the user's own transitions
    trained.load_memory_state(saved)
    assert torch.equal(trained.score_all(b), before) and trained.memory_statistics()["episodic_count"] == 0


def test_few_shot_adapt_gives_clear_errors():
    with pytest.raises(MemoryInputError, match="at least 2 interactions"):
        tiny().few_shot_adapt(torch.tensor([5]))
    with pytest.raises(MemoryInputError, match="no memory layers"):
        tiny(use_memory=False).few_shot_adapt(torch.tensor([5, 6]))
    with pytest.raises(UnknownItemError):
        tiny().few_shot_adapt(torch.tensor([5, 600]))
    with pytest.raises(MemoryInputError, match="holds 0 memory layers"):
        tiny().load_memory_state([])


def test_few_shot_adapt_keeps_the_last_max_len_transitions():
    model = tiny()
    items = torch.arange(1, MAX_LEN + 6)  # 25 items: 24 transitions, the last 20 are kept
    assert model.few_shot_adapt(items, user=3)["memories_stored"] == MAX_LEN
    upto = sorted(int(u) for m in memories(model) for u in m.tiers["episodic"].upto)
    assert upto == list(range(5, MAX_LEN + 5))


def test_loss_changes_nothing_until_the_memory_step():
    model = tiny(store_per_step=100).train()
    rows = torch.tensor([[5, 6, 7, 8, 9]])
    b = TrainBatch(torch.tensor([4]), rows[:, :-1], rows[:, 1:], torch.tensor([0]))
    probe = make_eval_batch(np.array([1]), [np.array([5, 6, 7])], np.array([8]), MAX_LEN)
    before = model.eval().score_all(probe)
    writes = []
    model.train().loss(b, CE)
    model.loss(b, CE, writes)
    assert model.memory_statistics()["total_memories"] == 0 and writes  # asked, not written
    assert torch.equal(model.eval().score_all(probe), before)  # (the gates' usage counts, like BatchNorm's, do not score)
    model.write_memory(writes)
    assert model.memory_statistics()["total_memories"] == 4

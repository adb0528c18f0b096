"""The per-user memory: each trigger fires exactly when it should, training and serving agree, gradients flow."""
import numpy as np
import pytest
import torch

from memrec.errors import ConfigError
from memrec.memory.user_memory import MemoryCell, MemoryConfig, UpdateTrigger, UserMemory

ITEM_DIM, MEMORY_DIM = 6, 5


def make_cell(**kw) -> tuple[MemoryCell, torch.Tensor]:
    torch.manual_seed(0)
    cell = MemoryCell(ITEM_DIM, MemoryConfig(memory_dim=MEMORY_DIM, **kw))
    return cell, torch.randn(30, ITEM_DIM)  # item vectors, row 0 = padding


def serve(cell, vectors, items, times=None) -> tuple[list[bool], UserMemory]:
    memory = cell.new_memory()
    fired = [cell.observe(memory, i, vectors, None if times is None else times[k]) for k, i in enumerate(items)]
    return fired, memory


def test_interaction_count_fires_every_n_interactions():
    cell, vectors = make_cell(interaction_threshold=3)
    fired, memory = serve(cell, vectors, [1, 2, 3, 4, 5, 6, 7])
    assert fired == [False, False, True, False, False, True, False]
    assert memory.updates == 2 and memory.pending_items == [7] and memory.interaction_count == 7
    assert memory.history.shape == (2, MEMORY_DIM)


def test_time_based_fires_when_the_period_has_passed_in_data_time():
    cell, vectors = make_cell(update_trigger="time_based", time_period=10.0)
    times = [100.0, 104.0, 109.9, 110.0, 115.0, 121.0, 500.0]
    fired, memory = serve(cell, vectors, [1, 2, 3, 4, 5, 6, 7], times)
    # first at t=110 (10 after the first interaction), then >= 10 after each update: 121 (not 115), 500
    assert fired == [False, False, False, True, False, True, True]
    assert memory.last_update_time == 500.0
    with pytest.raises(ConfigError, match="timestamp"):
        cell.observe(cell.new_memory(), 1, vectors)


def aligned_cell(threshold: float) -> tuple[MemoryCell, torch.Tensor, UserMemory]:
    """A cell whose preference for item 1 points along the memory and for item 2 against it."""
    cell, _ = make_cell(update_trigger="drift_threshold", drift_threshold=threshold)
    with torch.no_grad():
        cell.input.weight.zero_(), cell.input.bias.zero_()
        cell.input.weight[:, 0] = 1.0
    vectors = torch.zeros(3, ITEM_DIM)
    vectors[1, 0], vectors[2, 0] = 1.0, -1.0
    memory = cell.new_memory()
    memory.vector = np.ones(MEMORY_DIM, dtype=np.float32)
    return cell, vectors, memory


@pytest.mark.parametrize("threshold, fires", [(0.5, [False, True]), (1.5, [False, False])])
def test_drift_fires_when_the_preference_turns_away_from_the_memory(threshold, fires):
    cell, vectors, memory = aligned_cell(threshold)
    # item 1: cosine distance 0; then items 1 and 2 pending: their mean is orthogonal, distance 1
    assert [cell.observe(memory, 1, vectors), cell.observe(memory, 2, vectors)] == fires
    assert memory.updates == sum(fires)


def test_drift_fires_on_an_opposite_preference():
    cell, vectors, memory = aligned_cell(1.5)
    assert cell.observe(memory, 2, vectors) is True  # distance 2


def test_explicit_never_fires_by_itself_and_force_reset_starts_over():
    cell, vectors = make_cell(update_trigger="explicit")
    fired, memory = serve(cell, vectors, list(range(1, 25)))
    assert not any(fired) and memory.updates == 0
    cell.step(memory, vectors)
    assert memory.updates == 1 and memory.pending_items == []
    assert not np.allclose(memory.vector, cell.new_memory().vector)
    cell.step(memory, vectors, force_reset=True)
    assert np.array_equal(memory.vector, cell.new_memory().vector) and memory.history.shape[0] == 0


def test_history_keeps_the_last_max_memory_size_states():
    cell, vectors = make_cell(interaction_threshold=1, max_memory_size=3)
    states = []
    memory = cell.new_memory()
    for item in range(1, 8):
        states.append(memory.vector.copy())
        cell.observe(memory, item, vectors)
    assert memory.history.shape == (3, MEMORY_DIM)
    assert np.array_equal(memory.history, np.stack(states[-3:]))


@pytest.mark.parametrize("trigger", ["interaction_count", "drift_threshold", "time_based", "explicit"])
def test_training_unroll_equals_serving_event_by_event(trigger):
    cell, vectors = make_cell(update_trigger=trigger, interaction_threshold=3, drift_threshold=0.9, time_period=5.0)
    rng = np.random.default_rng(1)
    rows = [rng.integers(1, 30, size=n) for n in (12, 7, 1)]
    times = [np.cumsum(rng.uniform(0, 4, size=len(r))) for r in rows]
    items = torch.zeros(3, 12, dtype=torch.long)
    stamps = torch.zeros(3, 12, dtype=torch.float64)
    for r, (seq, ts) in enumerate(zip(rows, times)):
        items[r, : len(seq)] = torch.from_numpy(seq)
        stamps[r, : len(seq)] = torch.from_numpy(ts)
    with torch.no_grad():
        unrolled = cell.unroll(items, vectors[items], stamps)  # (3, 12, D)
    for r, (seq, ts) in enumerate(zip(rows, times)):
        memory = cell.new_memory()
        for k, (item, t) in enumerate(zip(seq, ts)):
            cell.observe(memory, int(item), vectors, float(t))
            assert np.allclose(unrolled[r, k].numpy(), memory.vector, atol=1e-5), (trigger, r, k)


def test_gradients_reach_the_cell_and_the_item_vectors():
    cell, vectors = make_cell(interaction_threshold=2)
    vectors.requires_grad_(True)
    items = torch.tensor([[1, 2, 3, 4, 5, 0]])
    cell.unroll(items, vectors[items]).sum().backward()
    assert cell.gru.weight_hh.grad.abs().sum() > 0 and cell.input.weight.grad.abs().sum() > 0
    assert cell.initial.grad.abs().sum() > 0
    assert vectors.grad[1:5].abs().sum() > 0 and vectors.grad[6:].abs().sum() == 0  # only items that updated


def test_memory_never_sees_the_future():
    cell, vectors = make_cell(interaction_threshold=2)
    a = cell.unroll(torch.tensor([[1, 2, 3, 4]]), vectors[torch.tensor([[1, 2, 3, 4]])])
    b = cell.unroll(torch.tensor([[1, 2, 9, 9]]), vectors[torch.tensor([[1, 2, 9, 9]])])
    assert torch.equal(a[:, :2], b[:, :2]) and not torch.allclose(a[:, 3], b[:, 3])


def test_config_and_record_validation():
    with pytest.raises(ConfigError, match="expected one of"):
        MemoryConfig(update_trigger="sometimes")
    with pytest.raises(ConfigError, match="decay_factor"):
        MemoryConfig(decay_factor=1.5)
    assert MemoryConfig(update_trigger=UpdateTrigger.TIME_BASED).period == 10.0  # the seed reuses interaction_threshold
    good = UserMemory.fresh(np.zeros(3, dtype=np.float32)).to_dict()
    assert UserMemory.from_dict(good).vector.shape == (3,)
    with pytest.raises(ValueError, match="not a valid user memory record"):
        UserMemory.from_dict({"vector": [1.0]})
    with pytest.raises(ValueError, match="finite"):
        UserMemory.from_dict({**good, "vector": [float("nan")] * 3})
    cell, vectors = make_cell()
    with pytest.raises(ValueError, match="out of range"):
        cell.observe(cell.new_memory(), 30, vectors)


def test_version_changes_with_weights_and_config():
    cell, _ = make_cell()
    v = cell.version()
    assert v == make_cell()[0].version()
    with torch.no_grad():
        cell.gru.bias_hh.add_(1e-3)
    assert cell.version() != v
    assert make_cell(decay_factor=0.9)[0].version() != v

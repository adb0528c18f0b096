"""The seed's examples (ur4rec_moe_memory.md), run as written with `from memrec.ur4rec import ...` and device='cpu'."""
import json

import numpy as np
import pytest
import torch

from memrec.errors import ConfigError
from memrec.memory.user_memory import MemoryVersionError
from memrec.ur4rec import MemoryConfig, MemoryRetriever, UpdateTrigger, UR4RecMoEMemory


@pytest.fixture(scope="module")
def seed_model():
    torch.manual_seed(0)
    memory_config = MemoryConfig(memory_dim=256, update_trigger=UpdateTrigger.INTERACTION_COUNT, interaction_threshold=10, enable_persistence=True)
    return UR4RecMoEMemory(num_items=10000, embedding_dim=256, memory_config=memory_config, device="cpu").eval()  # no dropout: comparable scores


def test_basic_use_top_k_and_stats(seed_model):
    model = seed_model
    user_ids = [1, 2, 3]
    history_items = torch.randint(1, 10000, (3, 20))
    target_items = torch.randint(1, 10000, (3,))
    scores, info = model(user_ids=user_ids, history_items=history_items, target_items=target_items, update_memory=True)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    weights = info["routing_weights"]
    assert weights.shape == (3, 3) and torch.allclose(weights.sum(-1), torch.ones(3)) and info["expert_names"] == ["user", "text", "image"]

    candidates = torch.randint(1, 10000, (3, 100))
    top_items, top_scores = model.predict_top_k(user_ids=user_ids, history_items=history_items, candidate_items=candidates, k=10)
    assert top_items.shape == (3, 10) and top_scores.shape == (3, 10)
    assert all(set(top_items[r].tolist()) <= set(candidates[r].tolist()) for r in range(3))
    assert (top_scores[:, :-1] >= top_scores[:, 1:]).all()

    full_items, _ = model.predict_top_k(user_ids=user_ids, history_items=history_items, k=10)  # whole catalogue
    assert not any(set(full_items[r].tolist()) & set(history_items[r].tolist()) for r in range(3))

    stats = model.get_memory_stats()
    assert set(stats) == {"num_users", "avg_interactions", "avg_memory_history_size", "global_step"}
    assert stats["num_users"] >= 3 and stats["global_step"] >= 3


def test_memory_updates_after_n_interactions_and_changes_scores(seed_model):
    model = seed_model
    history = torch.randint(1, 10000, (1, 20))
    before, _ = model(user_ids=[77], history_items=history, target_items=torch.tensor([5]), update_memory=False)
    fired = []
    for item in range(10, 20):
        _, info = model(user_ids=[77], history_items=history, target_items=torch.tensor([item]), update_memory=True)
        fired.append(bool(info["memory_updated"][0]))
    assert fired == [False] * 9 + [True]  # interaction_threshold=10
    after, _ = model(user_ids=[77], history_items=history, target_items=torch.tensor([5]), update_memory=False)
    assert not torch.allclose(before, after)  # the memory feeds the user-preference expert
    memory = model.retriever.memory(77)
    assert memory.updates == 1 and memory.interaction_count == 10 and len(memory.history) == 1


def test_multimodal_input_and_item_feature_updates(seed_model):
    model = seed_model
    item_descriptions = ["Wireless noise-canceling headphones", "Portable Bluetooth speaker", "USB-C fast charging cable"]
    item_images = torch.randn(3, 3, 224, 224)
    scores, info = model(user_ids=[1, 2, 3], history_items=torch.randint(1, 10000, (3, 20)), target_items=torch.tensor([101, 102, 103]),
                         item_descriptions=item_descriptions, item_images=item_images, update_memory=True)
    assert scores.shape == (3,)
    text = model.net.text_features[[101, 102, 103]]
    assert text.shape == (3, 384) and (text.norm(dim=1) > 0).all()
    cos = torch.nn.functional.cosine_similarity
    assert cos(text[0], text[1], dim=0) > cos(text[0], text[2], dim=0)  # headphones ~ speaker more than ~ cable
    assert (model.net.image_features[[101, 102, 103]].norm(dim=1) > 0).all()
    model.update_item_embeddings_from_text(torch.tensor([1, 2, 3]), ["Product 1 description", "Product 2 description", "Product 3 description"])
    model.update_item_embeddings_from_images(torch.tensor([1, 2, 3]), torch.randn(3, 3, 224, 224))
    assert (model.net.image_features[[1, 2, 3]].norm(dim=1) > 0).all()


def test_explicit_update_and_force_reset(seed_model):
    model = seed_model
    model(user_ids=[123], history_items=torch.randint(1, 10000, (1, 20)), target_items=torch.tensor([9]), update_memory=True)
    initial = model.net.memory.new_memory().vector
    model.retriever.explicit_update_memory(user_id=123)
    updated = model.retriever.memory(123)
    assert updated.pending_items == [] and not np.allclose(updated.vector, initial)
    model.retriever.explicit_update_memory(user_id=123, force_reset=True)
    assert np.array_equal(model.retriever.memory(123).vector, initial)


def test_save_and_load_with_memories(seed_model, tmp_path):
    model = seed_model
    model(user_ids=[5, 6], history_items=torch.randint(1, 10000, (2, 20)), target_items=torch.tensor([7, 8]), update_memory=True)
    model.save_model(tmp_path / "checkpoint.pt", save_memories=True)
    saved = json.loads((tmp_path / "checkpoint_memories.json").read_text())
    assert set(saved["memories"]) >= {"5", "6"}

    twin = UR4RecMoEMemory(num_items=10000, embedding_dim=256, memory_config=model.memory_config, device="cpu").eval()
    twin.load_model(tmp_path / "checkpoint.pt", load_memories=True)
    history = torch.randint(1, 10000, (2, 20))
    a, _ = model(user_ids=[5, 6], history_items=history, target_items=torch.tensor([1, 2]), update_memory=False)
    b, _ = twin(user_ids=[5, 6], history_items=history, target_items=torch.tensor([1, 2]), update_memory=False)
    assert torch.allclose(a, b)
    model.retriever.save_memories(tmp_path / "user_memories.json")
    twin.retriever.load_memories(tmp_path / "user_memories.json")

    other = UR4RecMoEMemory(num_items=10000, embedding_dim=256, memory_config=model.memory_config, device="cpu")  # other weights
    with pytest.raises(MemoryVersionError):
        other.retriever.load_memories(tmp_path / "user_memories.json")
    smaller = UR4RecMoEMemory(num_items=10000, embedding_dim=128, memory_config=model.memory_config, device="cpu")
    with pytest.raises(MemoryVersionError, match="built with"):
        smaller.load_model(tmp_path / "checkpoint.pt")


def test_durable_sqlite_memories_survive_a_new_process_object(tmp_path):
    torch.manual_seed(0)
    config = MemoryConfig(memory_dim=16, interaction_threshold=2)
    model = UR4RecMoEMemory(num_items=50, embedding_dim=16, memory_config=config, store=tmp_path / "m.db")
    for item in (3, 4, 5):
        model(user_ids=["alice"], history_items=torch.tensor([[1, 2]]), target_items=torch.tensor([item]))
    model.save_model(tmp_path / "ckpt.pt", save_memories=False)
    reopened = UR4RecMoEMemory(num_items=50, embedding_dim=16, memory_config=config)
    reopened.load_model(tmp_path / "ckpt.pt", load_memories=False)
    memory = MemoryRetriever(reopened.net, tmp_path / "m.db").memory("alice")  # same weights: the file is accepted
    assert memory.interaction_count == 3 and memory.updates == 1 and memory.pending_items == [5]
    with pytest.raises(MemoryVersionError):  # other weights: refused
        MemoryRetriever(UR4RecMoEMemory(num_items=50, embedding_dim=16, memory_config=config).net, tmp_path / "m.db")


def test_bad_input_is_refused_clearly(seed_model):
    with pytest.raises(ConfigError, match="not available"):
        UR4RecMoEMemory(num_items=10, embedding_dim=8, device="cuda")
    with pytest.raises(Exception, match="outside 1..10000"):
        seed_model(user_ids=[1], history_items=torch.tensor([[1, 2]]), target_items=torch.tensor([10001]))
    with pytest.raises(ValueError, match="right-padded"):
        seed_model(user_ids=[1], history_items=torch.tensor([[0, 2]]), target_items=torch.tensor([3]))
    with pytest.raises(ValueError, match="user ids"):
        seed_model(user_ids=[1, 2], history_items=torch.tensor([[1, 2]]), target_items=torch.tensor([3]))


def test_what_the_facade_saves_memrec_serve_loads(tmp_path):
    """One checkpoint format: the seed facade's save_model writes what the service and `memrec evaluate` read."""
    from memrec.serve.model import ServedModel
    from memrec.store.events import Event

    model = UR4RecMoEMemory(num_items=30, embedding_dim=16, modalities=("id",), device="cpu",
                            memory_config=MemoryConfig(memory_dim=8, update_trigger=UpdateTrigger.INTERACTION_COUNT, interaction_threshold=2))
    model.save_model(tmp_path / "seed.pt", save_memories=False)
    served = ServedModel.load(tmp_path / "seed.pt")
    assert served.name == "ur4rec-moe" and served.num_items == 30 and served.has_memory
    history = [Event(str(i), float(t)) for t, i in enumerate([3, 7, 9])]
    rec = served.recommend(history, None, k=5)  # no stored memory yet: the initial one, as for the facade's new user
    items, scores = model.predict_top_k(["new"], torch.tensor([[3, 7, 9]]), k=5)
    assert rec.items == [str(i) for i in items[0].tolist()] and not {"3", "7", "9"} & set(rec.items)
    assert rec.scores == pytest.approx(scores[0].tolist(), abs=1e-5) and rec.routing is not None

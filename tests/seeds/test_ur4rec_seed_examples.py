"""Every code example of ../shared/seeds/ur4rec_moe_memory.md, each its own test, run as written.

Only the import line changes (``from models import ...`` -> ``from memrec.ur4rec import ...``) and
``device='cuda'`` -> ``device='cpu'``. The examples after "Basic use" continue from its names
(``model``, ``user_ids``, ``history_items``, ``target_items``), so :func:`basic_use` runs it first.
The seed's bash blocks (pip install, its own training script) and its JSON data layout are not
memrec code and are not run here.
"""
import pytest
import torch
from torch import manual_seed

from memrec.ur4rec import MemoryConfig, UpdateTrigger, UR4RecMoEMemory


def basic_use():
    """Example "1. Basic use", verbatim but for the import line and device='cpu'."""
    manual_seed(0)  # not torch.manual_seed: the example's `import torch` makes torch a local name here
    # --- the seed's code ---
    from memrec.ur4rec import UR4RecMoEMemory, MemoryConfig, UpdateTrigger
    import torch

    memory_config = MemoryConfig(
        memory_dim=256,
        update_trigger=UpdateTrigger.INTERACTION_COUNT,
        interaction_threshold=10,
        enable_persistence=True
    )

    model = UR4RecMoEMemory(
        num_items=10000,
        embedding_dim=256,
        memory_config=memory_config,
        device='cpu'
    )

    user_ids = [1, 2, 3]
    history_items = torch.randint(1, 10000, (3, 20))  # [batch, seq_len]
    target_items = torch.randint(1, 10000, (3,))      # [batch]

    scores, info = model(
        user_ids=user_ids,
        history_items=history_items,
        target_items=target_items,
        update_memory=True
    )

    print(f"Scores: {scores}")                              # [batch] preference scores
    print(f"Routing weights: {info['routing_weights']}")    # expert weights
    # --- end ---
    return model, user_ids, history_items, target_items, scores, info


def test_1_basic_use():
    model, user_ids, history_items, target_items, scores, info = basic_use()
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert info["routing_weights"].shape == (3, 3) and torch.allclose(info["routing_weights"].sum(-1), torch.ones(3))
    assert model.get_memory_stats()["num_users"] == 3


def test_2_top_k_prediction():
    model, user_ids, history_items, target_items, _, _ = basic_use()
    # --- the seed's code ---
    candidates = torch.randint(1, 10000, (3, 100))  # [batch, num_candidates]

    top_items, top_scores = model.predict_top_k(
        user_ids=user_ids,
        history_items=history_items,
        candidate_items=candidates,
        k=10
    )
    print(f"Top-10 items: {top_items}")    # [batch, 10]
    print(f"Top-10 scores: {top_scores}")  # [batch, 10]
    # --- end ---
    assert top_items.shape == top_scores.shape == (3, 10)
    assert all(set(top_items[r].tolist()) <= set(candidates[r].tolist()) for r in range(3))
    assert (top_scores[:, :-1] >= top_scores[:, 1:]).all()


def test_3_multimodal_input():
    model, user_ids, history_items, target_items, _, _ = basic_use()
    # --- the seed's code ---
    item_descriptions = [
        "Wireless noise-canceling headphones",
        "Portable Bluetooth speaker",
        "USB-C fast charging cable"
    ]
    item_images = torch.randn(3, 3, 224, 224)  # [batch, 3, H, W]

    scores, info = model(
        user_ids=[1, 2, 3],
        history_items=history_items,
        target_items=torch.tensor([101, 102, 103]),
        item_descriptions=item_descriptions,
        item_images=item_images,
        update_memory=True
    )
    # --- end ---
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert (model.net.text_features[[101, 102, 103]].norm(dim=1) > 0).all()
    assert (model.net.image_features[[101, 102, 103]].norm(dim=1) > 0).all()


def test_4_update_trigger_kinds():
    model, user_ids, history_items, target_items, _, _ = basic_use()
    # --- the seed's code ---
    from memrec.ur4rec import UpdateTrigger

    # 1. interaction count (suited to training)
    MemoryConfig(update_trigger=UpdateTrigger.INTERACTION_COUNT, interaction_threshold=10)  # update every 10 interactions
    # 2. drift detection (suited to online serving)
    MemoryConfig(update_trigger=UpdateTrigger.DRIFT_THRESHOLD, drift_threshold=0.3)  # update when cosine-similarity change > 0.3
    # 3. time based
    MemoryConfig(update_trigger=UpdateTrigger.TIME_BASED, interaction_threshold=100)  # update every 100 time units
    # 4. explicit (manual control)
    MemoryConfig(update_trigger=UpdateTrigger.EXPLICIT)
    model.retriever.explicit_update_memory(user_id=123)
    # --- end ---
    assert model.retriever.memory(123).updates == 0  # nothing pending: an explicit update has nothing to fold in


TRIGGERS = {  # the configs of example 4, each used by the seed's forward call
    "interaction_count": MemoryConfig(update_trigger=UpdateTrigger.INTERACTION_COUNT, interaction_threshold=10),
    "drift_threshold": MemoryConfig(update_trigger=UpdateTrigger.DRIFT_THRESHOLD, drift_threshold=0.3),
    "time_based": MemoryConfig(update_trigger=UpdateTrigger.TIME_BASED, interaction_threshold=100),
    "explicit": MemoryConfig(update_trigger=UpdateTrigger.EXPLICIT),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_4_each_trigger_runs_the_seeds_forward_call(trigger):
    torch.manual_seed(0)
    model = UR4RecMoEMemory(num_items=10000, embedding_dim=256, memory_config=TRIGGERS[trigger], device='cpu')
    user_ids = [1, 2, 3]
    history_items = torch.randint(1, 10000, (3, 20))
    target_items = torch.randint(1, 10000, (3,))
    scores, info = model(user_ids=user_ids, history_items=history_items, target_items=target_items, update_memory=True)
    assert scores.shape == (3,) and info["memory_updated"].shape == (3,)


def test_4_time_based_without_timestamps_counts_global_steps():
    """'update every 100' with no timestamps: each user's memory updates once 100 of the model's
    global steps (interactions observed, all users) have passed since its first interaction."""
    torch.manual_seed(0)
    model = UR4RecMoEMemory(num_items=10000, embedding_dim=64, memory_config=TRIGGERS["time_based"], device='cpu')
    history_items, target_items = torch.randint(1, 10000, (3, 20)), torch.randint(1, 10000, (3,))
    fired = [model(user_ids=[1, 2, 3], history_items=history_items, target_items=target_items)[1]["memory_updated"].tolist()
             for _ in range(70)]
    # user r's steps are r, r + 3, ...: its first update is at the first step >= r + 100, in call 35; the next in call 69
    assert [n for n, row in enumerate(fired, 1) if any(row)] == [35, 69] and fired[34] == fired[68] == [True] * 3
    assert model.get_memory_stats()["global_step"] == 210 and model.retriever.memory(1).updates == 2


def test_4_time_based_with_timestamps_counts_data_time():
    torch.manual_seed(0)
    model = UR4RecMoEMemory(num_items=10000, embedding_dim=64, memory_config=TRIGGERS["time_based"], device='cpu')
    history_items, target_items = torch.randint(1, 10000, (2, 20)), torch.randint(1, 10000, (2,))
    updated = [model(user_ids=[1, 2], history_items=history_items, target_items=target_items, timestamps=[t, t])[1]["memory_updated"].tolist()
               for t in (0.0, 99.0, 100.0, 150.0, 200.0)]
    assert updated == [[False, False], [False, False], [True, True], [False, False], [True, True]]


def test_save_and_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes beside it
    model, user_ids, history_items, target_items, _, _ = basic_use()
    # --- the seed's code ---
    model.save_model('checkpoint.pt', save_memories=True)
    # writes checkpoint.pt (model weights) and checkpoint_memories.json (user memories)
    model.load_model('checkpoint.pt', load_memories=True)
    model.retriever.save_memories('user_memories.json')
    model.retriever.load_memories('user_memories.json')
    # --- end ---
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "checkpoint_memories.json", "user_memories.json"}
    assert model.get_memory_stats()["num_users"] == 3


def test_memory_statistics():
    model, user_ids, history_items, target_items, _, _ = basic_use()
    # --- the seed's code ---
    stats = model.get_memory_stats()
    # {'num_users': 1000, 'avg_interactions': 25.3, 'avg_memory_history_size': 8.7, 'global_step': 5000}
    # --- end ---
    assert stats == {"num_users": 3, "avg_interactions": 1.0, "avg_memory_history_size": 0.0, "global_step": 3}


def test_advanced_use():
    model, user_ids, history_items, target_items, _, _ = basic_use()
    # --- the seed's code ---
    # fully reset a user's memory (e.g. the user's behaviour changed abruptly)
    model.retriever.explicit_update_memory(user_id=123, force_reset=True)

    # initialise item embeddings from text
    model.update_item_embeddings_from_text(torch.tensor([1, 2, 3]), ["Product 1 description", "Product 2 description", "Product 3 description"])
    # initialise item embeddings from images
    model.update_item_embeddings_from_images(torch.tensor([1, 2, 3]), torch.randn(3, 3, 224, 224))

    # inference without memory update
    scores, info = model(user_ids=user_ids, history_items=history_items, target_items=target_items, update_memory=False)
    # --- end ---
    assert scores.shape == (3,) and not info["memory_updated"].any()
    assert (model.net.text_features[[1, 2, 3]].norm(dim=1) > 0).all() and (model.net.image_features[[1, 2, 3]].norm(dim=1) > 0).all()
    assert model.get_memory_stats()["global_step"] == 3  # the last call recorded nothing

"""The UR4Rec-MoE-Memory seed's API, on memrec's model (:class:`memrec.models.UR4RecMoE`).

``from memrec.ur4rec import UR4RecMoEMemory, MemoryConfig, UpdateTrigger`` runs the seed's examples
as written (with ``device='cpu'``). The network, the memory cell and the triggers are memrec's own,
the same that ``memrec train --model ur4rec-moe`` trains; this module adds per-user memories kept
between calls (:class:`MemoryRetriever`), the seed's method names, and save / load with memories.

``forward(..., update_memory=True)`` scores the targets with each user's current memory, then
records each row's target item as that user's next interaction; the memory is updated when the
configured trigger fires (see :mod:`memrec.memory.user_memory`). ``TIME_BASED`` counts data time
when ``forward`` is given ``timestamps``, else the model's global steps (every interaction observed).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from memrec.encoders.common import check_device
from memrec.errors import ConfigError, UnknownItemError
from memrec.memory.user_memory import MemoryConfig, MemoryVersionError, UpdateTrigger, UserMemory
from memrec.models import masked_topk
from memrec.models.ur4rec_moe import UR4RecConfig, UR4RecMoE
from memrec.store import InProcessStore, MemoryStore, open_store

FORMAT = "memrec-ur4rec/1"

__all__ = ["UR4RecMoEMemory", "MemoryConfig", "UpdateTrigger", "MemoryRetriever"]


class MemoryRetriever:
    """Per-user memories of a :class:`UR4RecMoE` network: observe interactions, explicit updates, save / load.

    ``store``: None keeps memories in this process; a path or URL (``memories.db``,
    ``sqlite:///...``) keeps them durably, tied to the network's current weights (a store written
    by other weights is refused).
    """

    def __init__(self, net: UR4RecMoE, store: str | Path | None = None):
        if net.memory is None:
            raise ConfigError("this network has no memory (use_memory=False)")
        self.net = net
        self.store: MemoryStore = InProcessStore(model_version="live") if store is None else open_store(store, net.memory_version())
        self.global_step = 0

    def memory(self, user_id) -> UserMemory:
        return self.store.get(str(user_id)) or self.net.memory.new_memory()

    def memory_vectors(self, user_ids) -> torch.Tensor:  # (B, D)
        return torch.from_numpy(np.stack([self.memory(u).vector for u in user_ids]))

    def observe(self, user_id, item: int, item_vectors: torch.Tensor, time: float | None = None) -> bool:
        """Record one interaction at data time ``time``; returns whether the trigger fired and the
        memory was updated. Without a time the clock is the global step (the interactions observed,
        all users): TIME_BASED's period then counts steps, as in the seed. Feed times always or never."""
        clock = self.global_step + 1 if time is None else time  # this interaction's step
        fired = []

        def change(memory: UserMemory | None) -> UserMemory:
            memory = memory or self.net.memory.new_memory()
            fired.append(self.net.memory.observe(memory, int(item), item_vectors, clock))
            return memory

        self.store.update(str(user_id), change)
        self.global_step += 1
        return fired[0]

    def explicit_update_memory(self, user_id, force_reset: bool = False) -> None:
        """Update the user's memory now from the interactions since the last update (the EXPLICIT
        trigger), or with ``force_reset`` start the user over from the initial memory."""
        with torch.no_grad():
            vectors = self.net.item_embeddings()  # (N + 1, d): what the cell reads
        self.store.update(str(user_id), lambda m: _stepped(self.net, m, vectors, force_reset))

    def save_memories(self, path: str | Path) -> int:
        """Write every user's memory to a JSON file, tagged with the network's memory version."""
        snapshot = InProcessStore(model_version=self.net.memory_version())
        snapshot.put_many({u: self.store.get(u) for u in self.store.users()})
        return snapshot.export_json(path)

    def load_memories(self, path: str | Path) -> int:
        """Read memories written by :meth:`save_memories`; refused (MemoryVersionError) if they
        were written by a network with other memory weights or settings."""
        snapshot = InProcessStore(model_version=self.net.memory_version())
        count = snapshot.import_json(path)
        self.store.put_many({u: snapshot.get(u) for u in snapshot.users()})
        return count

    def get_memory_stats(self) -> dict:
        memories = [self.store.get(u) for u in self.store.users()]
        return {
            "num_users": len(memories),
            "avg_interactions": float(np.mean([m.interaction_count for m in memories])) if memories else 0.0,
            "avg_memory_history_size": float(np.mean([len(m.history) for m in memories])) if memories else 0.0,
            "global_step": self.global_step,
        }


def _stepped(net: UR4RecMoE, memory: UserMemory | None, vectors: torch.Tensor, force_reset: bool) -> UserMemory:
    memory = memory or net.memory.new_memory()
    net.memory.step(memory, vectors, force_reset=force_reset)
    return memory


class UR4RecMoEMemory(nn.Module):
    """The seed's model: three experts fused by a router, and a memory per user.

    Example:
        >>> import torch
        >>> from memrec.ur4rec import UR4RecMoEMemory, MemoryConfig, UpdateTrigger
        >>> config = MemoryConfig(memory_dim=16, update_trigger=UpdateTrigger.INTERACTION_COUNT, interaction_threshold=2)
        >>> model = UR4RecMoEMemory(num_items=100, embedding_dim=16, memory_config=config, device="cpu")
        >>> scores, info = model(user_ids=[1, 2], history_items=torch.randint(1, 100, (2, 5)), target_items=torch.tensor([3, 4]))
        >>> scores.shape, info["routing_weights"].shape
        (torch.Size([2]), torch.Size([2, 3]))
    """

    def __init__(self, num_items: int, embedding_dim: int = 256, memory_config: MemoryConfig | None = None, device: str = "cpu",
                 max_len: int = 50, num_layers: int = 2, num_heads: int = 2, dropout: float = 0.1,
                 modalities: tuple[str, ...] = ("id", "text", "image"), store: str | Path | None = None):
        super().__init__()
        self.device = torch.device(check_device(device))
        m = memory_config or MemoryConfig()
        self.init_args = {"num_items": num_items, "embedding_dim": embedding_dim, "max_len": max_len, "num_layers": num_layers,
                          "num_heads": num_heads, "dropout": dropout, "modalities": list(modalities)}
        self.config = UR4RecConfig(
            hidden_size=embedding_dim, num_layers=num_layers, num_heads=num_heads, inner_size=4 * embedding_dim, dropout=dropout,
            modalities=list(modalities), memory_dim=m.memory_dim, update_trigger=m.update_trigger.value,
            interaction_threshold=m.interaction_threshold, drift_threshold=m.drift_threshold, decay_factor=m.decay_factor,
            max_memory_size=m.max_memory_size, time_period=m.time_period,
        )
        self.memory_config = m
        self.net = UR4RecMoE(num_items, max_len, self.config)
        self.retriever = MemoryRetriever(self.net, store)
        self._text_encoder = self._image_encoder = None

    @property
    def num_items(self) -> int:
        return self.net.num_items

    # -- scoring ------------------------------------------------------------------------------
    def forward(self, user_ids, history_items: torch.Tensor, target_items: torch.Tensor, item_descriptions: list[str] | None = None,
                item_images: torch.Tensor | None = None, update_memory: bool = True, timestamps=None) -> tuple[torch.Tensor, dict]:
        """Scores (B,) of ``target_items`` (B,) for users with ``history_items`` (B, L), and ``info``
        with ``routing_weights`` (B, 3), ``expert_names`` and ``memory_updated`` (B,) bool.
        ``item_descriptions`` / ``item_images`` describe the target items and update their features first."""
        targets = self._items(target_items, "target_items", dim=1)
        if item_descriptions is not None:
            self.update_item_embeddings_from_text(targets, item_descriptions)
        if item_images is not None:
            self.update_item_embeddings_from_images(targets, item_images)
        users = self._users(user_ids, len(targets))
        table = self.net.item_embeddings()  # (N + 1, d), once per call
        fused, weights = self._user_vectors(users, history_items, table)
        scores = (fused * table[targets]).sum(-1)
        updated = torch.zeros(len(users), dtype=torch.bool)
        if update_memory:
            vectors = table.detach()
            times = [None] * len(users) if timestamps is None else [float(t) for t in timestamps]
            for r, (user, item, time) in enumerate(zip(users, targets.tolist(), times)):
                updated[r] = self.retriever.observe(user, item, vectors, time)
        info = {"routing_weights": weights, "expert_names": list(self.net.experts), "memory_updated": updated}
        return scores, info

    @torch.no_grad()
    def predict_top_k(self, user_ids, history_items: torch.Tensor, candidate_items: torch.Tensor | None = None, k: int = 10,
                      exclude_history: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k items and scores per user, (B, k) each: among ``candidate_items`` (B, C), or over the
        whole catalogue when None (padding and, by default, the history excluded)."""
        users = self._users(user_ids, len(history_items))
        was_training = self.training
        self.eval()  # ranking is deterministic: no dropout
        try:
            table = self.net.item_embeddings()
            fused, _ = self._user_vectors(users, history_items, table)
        finally:
            self.train(was_training)
        if candidate_items is None:
            history = self._history(history_items)  # (B, L), 0 = padding
            rows, cols = history.nonzero(as_tuple=True)
            return masked_topk(fused @ table.T, k, (rows, history[rows, cols]) if exclude_history else None)
        candidates = self._items(candidate_items, "candidate_items", dim=2)
        scores = (fused[:, None, :] * table[candidates]).sum(-1)  # (B, C)
        top = scores.topk(min(k, candidates.size(1)), dim=1)
        return candidates.gather(1, top.indices), top.values

    def _user_vectors(self, users: list[str], history_items: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        history = self._history(history_items)
        lengths = (history > 0).sum(dim=1)
        window = torch.zeros(len(history), self.net.max_len, dtype=torch.long)  # last max_len real items, right-padded
        for r, n in enumerate(lengths.tolist()):
            keep = history[r, :n][-self.net.max_len :]
            window[r, : len(keep)] = keep
        last = (lengths.clamp(max=self.net.max_len) - 1).clamp(min=0)
        return self.net.fuse_at(window, last, self.retriever.memory_vectors(users), table)

    # -- inputs -------------------------------------------------------------------------------
    def _history(self, history_items) -> torch.Tensor:
        history = self._items(history_items, "history_items", dim=2)
        real = history > 0  # right-pad: real items first, then 0s
        if (real[:, 1:] & ~real[:, :-1]).any():
            raise ValueError("history_items must be right-padded with 0: real items first, then padding")
        return history

    def _items(self, items, name: str, dim: int) -> torch.Tensor:
        items = torch.as_tensor(items)
        if items.dtype not in (torch.int64, torch.int32) or items.dim() != dim:
            raise ValueError(f"{name} must be an integer tensor with {dim} dimension(s), got {items.dtype} {tuple(items.shape)}")
        if items.numel() and (items.min() < 0 or items.max() > self.num_items):
            raise UnknownItemError(f"{name} holds item ids outside 1..{self.num_items} (0 = padding)")
        return items.long()

    @staticmethod
    def _users(user_ids, rows: int) -> list[str]:
        users = [str(u) for u in (user_ids.tolist() if isinstance(user_ids, torch.Tensor) else user_ids)]
        if len(users) != rows:
            raise ValueError(f"got {len(users)} user ids for {rows} rows")
        return users

    # -- item features ------------------------------------------------------------------------
    def update_item_embeddings_from_text(self, item_ids, texts: list[str]) -> None:
        """Encode ``texts`` with the frozen text encoder (MiniLM offline) into the items' text features."""
        from memrec.encoders import TextEncoder, TextEncoderConfig

        ids = self._items(item_ids, "item_ids", dim=1)
        if len(texts) != len(ids):
            raise ValueError(f"got {len(texts)} texts for {len(ids)} items")
        if "text" not in self.config.modalities:
            raise ConfigError("this model has no text modality")
        if self._text_encoder is None:
            self._text_encoder = TextEncoder(TextEncoderConfig(model=self.config.text_encoder))
        with torch.no_grad():
            self.net.text_features[ids] = self._text_encoder(list(texts)).float()

    def update_item_embeddings_from_images(self, item_ids, images) -> None:
        """Encode images ((B, 3, 224, 224) tensors, paths or PIL images) into the items' image features."""
        from memrec.encoders import ImageEncoder, ImageEncoderConfig

        ids = self._items(item_ids, "item_ids", dim=1)
        if "image" not in self.config.modalities:
            raise ConfigError("this model has no image modality")
        if self._image_encoder is None:
            self._image_encoder = ImageEncoder(ImageEncoderConfig(model=self.config.image_encoder))
        with torch.no_grad():
            features = self._image_encoder(images).float()
        if len(features) != len(ids):
            raise ValueError(f"got {len(features)} images for {len(ids)} items")
        self.net.image_features[ids] = features

    # -- persistence --------------------------------------------------------------------------
    def save_model(self, path: str | Path, save_memories: bool = True) -> None:
        """Write a memrec checkpoint of the network (the format ``memrec serve`` and ``memrec
        evaluate`` read; item ids are the indices as text) with this facade's settings, and with
        ``save_memories`` the memories, to ``<stem>_memories.json``."""
        from memrec.config import RunConfig
        from memrec.train.checkpoint import save_checkpoint

        path, n = Path(path), self.num_items
        catalogue = SimpleNamespace(item_ids=["[PAD]", *map(str, range(1, n + 1))], user_ids=[], fingerprint=lambda: f"ur4rec-seed-{n}")
        config = RunConfig(model=self.net.name, model_config=self.config)
        config.data.dataset, config.data.max_len = "ur4rec-seed-facade", self.net.max_len
        save_checkpoint(path, self.net, config, catalogue, extra={"facade": {"format": FORMAT, "init_args": self.init_args,
                                                                             "memory_config": _memory_dict(self.memory_config)}})
        if save_memories:
            self.retriever.save_memories(memories_path(path))

    def load_model(self, path: str | Path, load_memories: bool = True) -> None:
        """Read weights written by :meth:`save_model` into this model (same architecture) and, with
        ``load_memories``, its memories."""
        path = Path(path)
        payload = torch.load(path, map_location="cpu", weights_only=True)
        facade = payload.get("facade") if isinstance(payload, dict) else None
        if not isinstance(facade, dict) or facade.get("format") != FORMAT:
            raise ValueError(f"{path} is not a UR4RecMoEMemory checkpoint (expected one written by save_model, format {FORMAT!r})")
        mine = (self.init_args, _memory_dict(self.memory_config))
        theirs = (facade["init_args"], facade["memory_config"])
        if mine != theirs:
            raise MemoryVersionError(f"{path} was saved by a model built with {theirs}, this one is built with {mine}")
        self.net.load_state_dict(payload["state_dict"])
        if load_memories:
            self.retriever.load_memories(memories_path(path))

    def get_memory_stats(self) -> dict:
        return self.retriever.get_memory_stats()


def memories_path(checkpoint: Path) -> Path:
    """``checkpoint.pt`` -> ``checkpoint_memories.json`` (the seed's layout)."""
    return checkpoint.with_name(f"{checkpoint.stem}_memories.json")


def _memory_dict(config: MemoryConfig) -> dict:
    return {k: (v.value if isinstance(v, UpdateTrigger) else v) for k, v in vars(config).items()}

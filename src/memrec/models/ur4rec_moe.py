"""UR4Rec-MoE-Memory: a router over three experts (user preference with memory, item text, item image).

At each position t of a user's sequence::

    h_t   = CausalTransformer(item vectors + positions)             history aggregator, (B, L, d)
    m_t   = per-user memory after the interactions 0..t              memrec.memory.user_memory, (B, L, D)
    E_u   = LayerNorm(h_t + W_m m_t)                                 user-preference expert
    E_txt = CausalTransformer_1(text vectors of the history)         item-text expert   (if "text" in modalities)
    E_img = CausalTransformer_1(image vectors of the history)        item-image expert  (if "image" in modalities)
    w_t   = softmax(Router([h_t; W_m m_t]))                          routing weights, one per expert
    u_t   = sum_e w_t,e E_e                                          fused user representation
    score(i) = u_t . v_i,   v_i = sum over modalities of (ID embedding, W_txt text_i, W_img image_i)

Item text and image features come from frozen encoders (:mod:`memrec.encoders`), encoded once per
data set in :meth:`prepare` and kept as buffers, so checkpoints carry them.

Memory is unrolled over the user's whole history, not only the window the Transformer reads: in
training over the training sequence up to the window's end (``TrainBatch.starts`` locates the
window), at evaluation over the full history (the batch's ``seen`` items). This is where memory can
add what the window cannot: everything older than ``max_len`` items.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memrec.data.batching import EvalBatch, TrainBatch
from memrec.errors import ConfigError
from memrec.memory.neighbours import seen_mask
from memrec.memory.user_memory import MemoryCell, MemoryConfig
from memrec.models.sasrec import SASRec, SASRecConfig
from memrec.nn import CausalTransformer

MODALITIES = ("id", "text", "image")


@dataclass
class UR4RecConfig(SASRecConfig):
    """The aggregator's settings (:class:`SASRecConfig`), the modalities and the memory's settings."""

    modalities: list[str] = field(default_factory=lambda: ["id", "text"])
    use_memory: bool = True
    memory_dim: int = 64
    update_trigger: str = "interaction_count"
    interaction_threshold: int = 10
    drift_threshold: float = 0.3
    decay_factor: float = 0.95
    max_memory_size: int = 10
    time_period: float | None = None
    text_encoder: str = "all-MiniLM-L6-v2"
    text_dim: int = 384
    image_encoder: str = "efficientnet-lite0"
    image_dim: int = 1280

    def __post_init__(self):
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")

    def memory_config(self) -> MemoryConfig:
        return MemoryConfig(
            memory_dim=self.memory_dim, max_memory_size=self.max_memory_size, update_trigger=self.update_trigger,
            interaction_threshold=self.interaction_threshold, drift_threshold=self.drift_threshold,
            decay_factor=self.decay_factor, time_period=self.time_period,
        )


class UR4RecMoE(SASRec):
    """Example:
    >>> import torch
    >>> model = UR4RecMoE(50, 8, UR4RecConfig(hidden_size=16, memory_dim=8, modalities=["id"], text_dim=4))
    >>> model.encode_positions(torch.tensor([[3, 4, 0]])).shape
    torch.Size([1, 3, 16])
    """

    name = "ur4rec-moe"
    config_class = UR4RecConfig

    def __init__(self, num_items: int, max_len: int, config: UR4RecConfig):
        super().__init__(num_items, max_len, config)
        d, mods = config.hidden_size, config.modalities
        self.experts = ["user"] + [m for m in ("text", "image") if m in mods]
        self.register_buffer("text_features", torch.zeros(num_items + 1, config.text_dim if "text" in mods else 0))
        self.register_buffer("image_features", torch.zeros(num_items + 1, config.image_dim if "image" in mods else 0))
        self.text_proj = nn.Linear(config.text_dim, d) if "text" in mods else None
        self.image_proj = nn.Linear(config.image_dim, d) if "image" in mods else None
        self.modal_encoders = nn.ModuleDict({
            m: CausalTransformer(d, config.num_heads, config.inner_size, 1, config.dropout) for m in self.experts[1:]
        })
        self.memory = MemoryCell(d, config.memory_config()) if config.use_memory else None
        self.memory_out = nn.Linear(config.memory_dim, d) if config.use_memory else None
        self.user_norm = nn.LayerNorm(d)
        self.router = nn.Linear(2 * d, len(self.experts))
        self.apply(self._init)
        self.sequences: list[np.ndarray] | None = None  # training sequences, set by prepare()
        self.times: list[np.ndarray] | None = None  # per user, all interactions' timestamps

    # -- data ---------------------------------------------------------------------------------
    def prepare(self, dataset, split) -> None:
        """Read item text / images (encoded once, cached) and the users' training sequences and times."""
        self.sequences, self.times = split.train, dataset.timestamps
        if "text" in self.config.modalities and not self.text_features.any():
            from memrec.encoders import encode_item_texts

            if not dataset.items.has_text:
                raise ConfigError(f"modality 'text' needs item text, and data set {dataset.name!r} has none; use modalities=[id]")
            self.set_item_features("text", encode_item_texts(dataset, self.config.text_encoder).features)
        if "image" in self.config.modalities and not self.image_features.any():
            from memrec.encoders import encode_item_images

            self.set_item_features("image", encode_item_images(dataset, self.config.image_encoder).features)

    def set_item_features(self, modality: str, features: torch.Tensor) -> None:
        """Install (N + 1, dim) frozen features for ``modality`` ('text' or 'image'), row 0 = padding."""
        buffer = getattr(self, f"{modality}_features")
        if features.shape != buffer.shape:
            raise ValueError(f"{modality} features must have shape {tuple(buffer.shape)} (items 0..N x {modality}_dim), got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise ValueError(f"{modality} features contain NaN or infinite values")
        buffer.copy_(features)

    # -- representations ----------------------------------------------------------------------
    def item_embeddings(self) -> torch.Tensor:  # (N + 1, d)
        mods = self.config.modalities
        vectors = self.item_emb.weight if "id" in mods else torch.zeros_like(self.item_emb.weight)
        if self.text_proj is not None:
            vectors = vectors + self.text_proj(self.text_features)
        if self.image_proj is not None:
            vectors = vectors + self.image_proj(self.image_features)
        return torch.cat([vectors.new_zeros(1, vectors.size(1)), vectors[1:]])  # padding row stays zero

    def _embed(self, vectors: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
        return self.dropout(self.norm(vectors + self.pos_emb.weight[: vectors.size(1)]))

    def _fuse(self, h: torch.Tensor, memory: torch.Tensor | None, experts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """h (..., d), memory (..., D) or None, modal experts [(..., d)] -> fused (..., d), routing weights (..., E)."""
        m = self.memory_out(memory) if memory is not None else torch.zeros_like(h)
        user = self.user_norm(h + m)
        weights = self.router(torch.cat([h, m], dim=-1)).softmax(dim=-1)
        fused = sum(w[..., None] * e for w, e in zip(weights.unbind(-1), [user, *experts]))
        return fused, weights

    def _modal_inputs(self, items: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for m in self.experts[1:]:
            proj, feats = (self.text_proj, self.text_features) if m == "text" else (self.image_proj, self.image_features)
            out.append(self._embed(proj(feats[items])))  # (B, L, d)
        return out

    def _memories(self, items: torch.Tensor, table: torch.Tensor, users: torch.Tensor | None, offsets: torch.Tensor | None) -> torch.Tensor | None:
        """Memory after each position of ``items`` (B, L): (B, L, D), unrolled over each user's earlier
        training items too when the window ``offsets`` are given; ``table`` (N + 1, d) item vectors."""
        if self.memory is None:
            return None
        context = self._context(users, offsets) if offsets is not None else None
        full = items if context is None else torch.cat([context, items], dim=1)  # (B, C + L), context left-padded
        times = self._times(users, full) if self.config.update_trigger == "time_based" else None
        memories = self.memory.unroll(full, table[full], times)  # (B, C + L, D)
        return memories[:, full.size(1) - items.size(1) :]

    def _context(self, users: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor | None:
        """Training items before each window, left-padded: (B, C), or None if there are none."""
        if self.sequences is None or users is None or int(offsets.max()) == 0:
            return None
        width = int(offsets.max())
        context = np.zeros((len(users), width), dtype=np.int64)
        for r, (u, start) in enumerate(zip(users.tolist(), offsets.tolist())):
            if start:
                context[r, width - start :] = self.sequences[u][:start]
        return torch.from_numpy(context)

    def _times(self, users: torch.Tensor | None, full: torch.Tensor) -> torch.Tensor:
        """Timestamps aligned with ``full`` (B, T), whose real items in each row are a prefix of that user's sequence."""
        if self.times is None or users is None or (users < 0).any():
            raise ConfigError("update_trigger=time_based needs the users' timestamps: call prepare(dataset, split) on a data set that has them (an anonymous history has none)")
        out = np.zeros(full.shape, dtype=np.float64)
        valid = (full > 0).numpy()
        for r, u in enumerate(users.tolist()):
            cols = np.flatnonzero(valid[r])
            out[r, cols] = self.times[u][: len(cols)]
        return torch.from_numpy(out)

    # -- the interface ------------------------------------------------------------------------
    def _positions(self, items: torch.Tensor, users: torch.Tensor | None, offsets: torch.Tensor | None,
                   table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused user vectors and routing weights at every position: (B, L, d), (B, L, E); ``table`` is
        ``item_embeddings()`` (N + 1, d), computed once by the caller."""
        h = self.encoder(self._embed(table[items]))
        experts = [enc(x) for enc, x in zip(self.modal_encoders.values(), self._modal_inputs(items))]
        memory = self._memories(items, table, users, offsets)
        return self._fuse(h, memory, experts)

    def encode_positions(self, items: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self._positions(items, users, None, self.item_embeddings())[0]

    def encode_last(self, items: torch.Tensor, last: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.fuse_at(items, last, None)[0]

    def fuse_at(self, items: torch.Tensor, last: torch.Tensor, memory: torch.Tensor | None,
                table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused vector at position ``last`` of each row; ``memory`` (B, D) or None to unroll over ``items``;
        ``table``: ``item_embeddings()`` if the caller already has it."""
        rows = torch.arange(len(last))
        table = self.item_embeddings() if table is None else table
        h = self.encoder.forward_at(self._embed(table[items]), last)  # (B, d)
        experts = [enc.forward_at(x, last) for enc, x in zip(self.modal_encoders.values(), self._modal_inputs(items))]
        if memory is None and self.memory is not None:
            memory = self._memories(items, table, None, None)[rows, last]  # (B, D)
        return self._fuse(h, memory, experts)

    def loss(self, batch: TrainBatch, objective, writes: list | None = None) -> torch.Tensor:
        self.check_items(batch.inputs)
        offsets = batch.starts if batch.starts is not None else torch.zeros(len(batch.users), dtype=torch.long)
        table = self.item_embeddings()  # (N + 1, d)
        hidden, _ = self._positions(batch.inputs, batch.users, offsets, table)  # (B, L, d)
        mask = batch.targets > 0
        return objective(hidden[mask], batch.targets[mask], table)

    def scores_and_states(self, batch: EvalBatch, states: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores from the fused user vector (memory unrolled over the full history), which is also the neighbour state."""
        table = self.item_embeddings()
        user = self.user_vectors(batch, table)[0]  # (B, d)
        return user @ table.T, user if states else None

    def user_vectors(self, batch: EvalBatch, table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused user vectors (B, d) and routing weights (B, E), memory unrolled over the full history."""
        self.check_items(batch.history)
        table = self.item_embeddings() if table is None else table
        last = (batch.lengths - 1).clamp(min=0)
        memory = None
        if self.memory is not None:
            full = full_histories(batch)  # (B, H)
            self.check_items(full, any_length=True)
            counts = (full > 0).sum(dim=1)
            times = self._times(batch.users, full) if self.config.update_trigger == "time_based" else None
            states = self.memory.unroll(full, table[full], times)  # (B, H, D)
            at = (counts - 1).clamp(min=0)
            memory = torch.where((counts > 0)[:, None], states[torch.arange(len(at)), at], self.memory.initial.expand(len(at), -1))
        return self.fuse_at(batch.history, last, memory, table)

    def user_memory_cell(self):
        return self.memory

    def serve_scores(self, batch: EvalBatch, memory: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float] | None]:
        """Scores from the stored memory (B, D) instead of unrolling the cell over the history (the
        initial memory when None), mixed with the neighbour memory when it is in use; the routing
        weights of the first row by expert."""
        self.check_items(batch.history)
        if self.memory is not None and memory is None:
            memory = self.memory.initial.expand(len(batch.history), -1)
        table = self.item_embeddings()
        fused, weights = self.fuse_at(batch.history, (batch.lengths - 1).clamp(min=0), memory, table)  # (B, d), (B, E)
        scores = fused @ table.T
        if self.neighbours.active:
            scores = self.neighbours.mix(scores, seen_mask(batch, scores.size(1)), fused, batch.users)
        return scores, {name: round(float(w), 6) for name, w in zip(self.experts, weights[0].tolist())}

    @torch.no_grad()
    def memory_version(self) -> str:
        """Fingerprint of what stored memories depend on: the cell (weights, settings) and the item
        vectors it reads. Stores refuse memories written under another version."""
        h = hashlib.sha256(self.memory.version().encode())
        h.update(self.item_embeddings().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def full_histories(batch: EvalBatch) -> torch.Tensor:
    """The complete histories of an evaluation batch (its ``seen`` items, in order), right-padded: (B, H)."""
    b = len(batch.history)
    counts = torch.bincount(batch.seen_rows, minlength=b)
    width = int(counts.max()) if b and len(batch.seen_rows) else 0
    out = torch.zeros(b, max(width, 1), dtype=torch.long)
    starts = torch.cumsum(counts, 0) - counts
    cols = torch.arange(len(batch.seen_rows)) - starts[batch.seen_rows]
    out[batch.seen_rows, cols] = batch.seen_items
    return out

"""One memory vector per user, folded forward by a GRU cell when an update trigger fires.

Between two updates a user's interactions collect as **pending** items. When the trigger fires, the
mean representation of the pending items ``x`` updates the memory::

    m <- GRUCell(W_in x, decay * m)          decay = MemoryConfig.decay_factor

and the previous ``m`` joins a bounded **history** of past states (``max_memory_size``, oldest
dropped). A new user starts from a learned initial vector.

The four triggers (:class:`UpdateTrigger`), checked after each interaction:

- ``INTERACTION_COUNT``: ``interaction_threshold`` pending interactions;
- ``DRIFT_THRESHOLD``: the cosine distance ``1 - cos(W_in x, m)`` between the current preference
  (the projected mean of the pending items) and the memory exceeds ``drift_threshold``;
- ``TIME_BASED``: at least ``time_period`` has passed, in the data's own timestamps, since the last
  update (or since the user's first interaction); :mod:`memrec.ur4rec`, called without timestamps,
  passes its global step as the time, so the period counts steps;
- ``EXPLICIT``: never by itself; only :meth:`MemoryCell.step` with ``force=True`` (an explicit
  request) updates. In training this means the memory stays at its initial vector.

The same cell and the same trigger rules run in training, unrolled over each user's whole
sequence so that the cell and everything that reads the memory receive gradients
(:meth:`MemoryCell.unroll`), and online, one user and one event at a time (:meth:`MemoryCell.observe`).
A test checks that both give the same vectors.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memrec.errors import ConfigError, MemrecError

MAX_PENDING = 1000  # pending items kept per user; older ones are dropped (EXPLICIT can wait long)


class UpdateTrigger(str, Enum):
    INTERACTION_COUNT = "interaction_count"
    DRIFT_THRESHOLD = "drift_threshold"
    TIME_BASED = "time_based"
    EXPLICIT = "explicit"


@dataclass
class MemoryConfig:
    """Settings of the per-user memory (the seed's names and defaults).

    Example:
        >>> MemoryConfig(update_trigger="drift_threshold").update_trigger
        <UpdateTrigger.DRIFT_THRESHOLD: 'drift_threshold'>
    """

    memory_dim: int = 256
    max_memory_size: int = 10  # past memory states kept per user
    update_trigger: UpdateTrigger = UpdateTrigger.INTERACTION_COUNT
    interaction_threshold: int = 10  # INTERACTION_COUNT: pending interactions per update
    drift_threshold: float = 0.3  # DRIFT_THRESHOLD: cosine distance in [0, 2]; calibrate it: with a trained
    # ML-100K model 0.3 (the seed's value) fires on every interaction, 1.0 about every 6, 1.1 about every 44
    # (benchmarks/drift_rates.py)
    decay_factor: float = 0.95  # the memory is multiplied by this before each update
    enable_persistence: bool = True  # save memories with the model
    time_period: float | None = None  # TIME_BASED: period in data time units (None: interaction_threshold, as in the seed)

    def __post_init__(self):
        try:
            self.update_trigger = UpdateTrigger(self.update_trigger)
        except ValueError:
            raise ConfigError(f"unknown update_trigger {self.update_trigger!r}: expected one of {[t.value for t in UpdateTrigger]}") from None
        if self.memory_dim < 1 or self.max_memory_size < 0 or self.interaction_threshold < 1:
            raise ConfigError("expected memory_dim >= 1, max_memory_size >= 0 and interaction_threshold >= 1")
        if not 0.0 < self.decay_factor <= 1.0:
            raise ConfigError(f"decay_factor must be in (0, 1], got {self.decay_factor}")
        if not 0.0 <= self.drift_threshold <= 2.0:
            raise ConfigError(f"drift_threshold is a cosine distance in [0, 2], got {self.drift_threshold}")
        if self.time_period is not None and self.time_period <= 0:
            raise ConfigError(f"time_period must be > 0, got {self.time_period}")

    @property
    def period(self) -> float:
        return float(self.interaction_threshold if self.time_period is None else self.time_period)


class MemoryVersionError(MemrecError, ValueError):
    """A stored memory was written by a model whose memory is not compatible with this one."""


@dataclass
class UserMemory:
    """The memory state of one user, as stored between visits (numpy, JSON-safe through ``to_dict``).

    Example:
        >>> m = UserMemory.fresh(np.zeros(4, dtype=np.float32))
        >>> UserMemory.from_dict(m.to_dict()).interaction_count
        0
    """

    vector: np.ndarray  # (D,) float32
    history: np.ndarray  # (H, D) float32: past states, oldest first
    interaction_count: int = 0
    pending_items: list[int] = field(default_factory=list)  # items since the last update, oldest first
    first_time: float | None = None  # data timestamp of the first interaction
    last_update_time: float | None = None  # data timestamp of the last update
    last_event_time: float | None = None
    updates: int = 0

    @classmethod
    def fresh(cls, initial: np.ndarray) -> "UserMemory":
        initial = np.asarray(initial, dtype=np.float32)
        return cls(initial.copy(), np.zeros((0, len(initial)), dtype=np.float32))

    def to_dict(self) -> dict:
        return {
            "vector": self.vector.tolist(),
            "history": self.history.tolist(),
            "interaction_count": self.interaction_count,
            "pending_items": list(self.pending_items),
            "first_time": self.first_time,
            "last_update_time": self.last_update_time,
            "last_event_time": self.last_event_time,
            "updates": self.updates,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "UserMemory":
        """Rebuild and validate a stored memory; raises ValueError saying what is wrong."""
        try:
            vector = np.asarray(d["vector"], dtype=np.float32)
            history = np.asarray(d["history"], dtype=np.float32).reshape(-1, len(vector))
            memory = cls(
                vector,
                history,
                int(d["interaction_count"]),
                [int(i) for i in d["pending_items"]],
                _optional_float(d.get("first_time")),
                _optional_float(d.get("last_update_time")),
                _optional_float(d.get("last_event_time")),
                int(d.get("updates", 0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid user memory record ({type(e).__name__}: {e}); expected the keys of UserMemory.to_dict()") from None
        if vector.ndim != 1 or not np.isfinite(vector).all() or not np.isfinite(history).all():
            raise ValueError("user memory vector must be one finite (D,) vector and its history finite (H, D)")
        return memory


def _optional_float(x) -> float | None:
    return None if x is None else float(x)


class MemoryCell(nn.Module):
    """The update rule and the triggers, shared by training and serving.

    Example:
        >>> cell = MemoryCell(item_dim=8, config=MemoryConfig(memory_dim=4, interaction_threshold=2))
        >>> emb = torch.randn(10, 8)
        >>> memory = cell.new_memory()
        >>> [cell.observe(memory, item, emb) for item in (3, 5, 7)]  # fires on the 2nd interaction
        [False, True, False]
        >>> memory.updates, memory.pending_items
        (1, [7])
    """

    def __init__(self, item_dim: int, config: MemoryConfig):
        super().__init__()
        self.config = config
        self.input = nn.Linear(item_dim, config.memory_dim)
        self.gru = nn.GRUCell(config.memory_dim, config.memory_dim)
        self.initial = nn.Parameter(torch.zeros(config.memory_dim))

    # -- the update rule ---------------------------------------------------------------------
    def update(self, memory: torch.Tensor, pending_mean: torch.Tensor) -> torch.Tensor:
        """(B, D) memory, (B, item_dim) mean of pending items -> (B, D) updated memory."""
        return self.gru(self.input(pending_mean), self.config.decay_factor * memory)

    def drift(self, memory: torch.Tensor, pending_mean: torch.Tensor) -> torch.Tensor:
        """Cosine distance between the current preference and the memory: (B, D), (B, item_dim) -> (B,)."""
        return 1.0 - F.cosine_similarity(self.input(pending_mean), memory, dim=-1, eps=1e-8)

    # -- training: unrolled over whole sequences ---------------------------------------------
    def unroll(self, items: torch.Tensor, item_vectors: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Memory after each position: items (B, T) with 0 = padding (anywhere), item_vectors (B, T, item_dim),
        times (B, T) or None -> (B, T, D). Differentiable in the cell and in ``item_vectors``.

        Pending sums are cumulative sums; the GRU runs once per update, batched over users.
        """
        valid = items > 0  # (B, T)
        fires = self.fire_mask(items, item_vectors, times)  # (B, T) bool, data-driven
        b, t = items.shape
        csum = torch.cumsum(item_vectors * valid[..., None], dim=1)  # (B, T, item_dim)
        ccount = torch.cumsum(valid, dim=1)  # (B, T)
        counts = fires.sum(dim=1)  # (B,) updates per row
        steps = int(counts.max()) if b else 0
        memory = self.initial.expand(b, -1)
        states = [memory]
        if steps:
            # fire positions per row, packed left: (B, S); rows with fewer updates repeat their last one
            order = torch.sort((~fires).to(torch.int8), dim=1, stable=True).indices[:, :steps]  # (B, S)
            has = torch.arange(steps)[None, :] < counts[:, None]  # (B, S)
            end_sum = csum.gather(1, order[..., None].expand(-1, -1, csum.size(-1)))  # (B, S, item_dim)
            end_count = ccount.gather(1, order)  # (B, S)
            start_sum = torch.cat([csum.new_zeros(b, 1, csum.size(-1)), end_sum[:, :-1]], dim=1)
            start_count = torch.cat([ccount.new_zeros(b, 1), end_count[:, :-1]], dim=1)
            means = (end_sum - start_sum) / (end_count - start_count).clamp(min=1)[..., None]  # (B, S, item_dim)
            for s in range(steps):
                memory = torch.where(has[:, s, None], self.update(memory, means[:, s]), memory)
                states.append(memory)
        states = torch.stack(states, dim=1)  # (B, S + 1, D): state after 0, 1, ... updates
        done = torch.cumsum(fires, dim=1)  # (B, T) updates at or before each position
        return states.gather(1, done[..., None].expand(-1, -1, states.size(-1)))  # (B, T, D)

    @torch.no_grad()
    def fire_mask(self, items: torch.Tensor, item_vectors: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        """Where the trigger fires, (B, T) bool: after the interaction at that position."""
        c = self.config
        valid = items > 0
        trigger = c.update_trigger
        if trigger is UpdateTrigger.EXPLICIT:
            return torch.zeros_like(valid)
        if trigger is UpdateTrigger.TIME_BASED and times is None:
            raise ConfigError("update_trigger=time_based needs timestamps, and this data has none; use interaction_count or drift_threshold")
        if trigger is UpdateTrigger.INTERACTION_COUNT:  # pending resets at each update: every N-th interaction
            return valid & (torch.cumsum(valid, dim=1) % c.interaction_threshold == 0)
        fires = torch.zeros_like(valid)
        b = items.size(0)
        pending = torch.zeros(b, dtype=torch.long)
        pending_sum = item_vectors.new_zeros(b, item_vectors.size(-1))
        since = torch.full((b,), float("nan"), dtype=torch.float64)  # time of the last update or first interaction
        memory = self.initial.expand(b, -1)
        for t in range(items.size(1)):
            v = valid[:, t]
            if not v.any():
                continue
            pending += v
            pending_sum += item_vectors[:, t] * v[:, None]
            if trigger is UpdateTrigger.TIME_BASED:
                now = times[:, t].double()
                since = torch.where(v & since.isnan(), now, since)
                fire = v & (now - since >= c.period)
                since = torch.where(fire, now, since)
            else:  # DRIFT_THRESHOLD
                mean = pending_sum / pending.clamp(min=1)[:, None]
                fire = v & (self.drift(memory, mean) > c.drift_threshold)
                if fire.any():
                    memory = torch.where(fire[:, None], self.update(memory, mean), memory)
            fires[:, t] = fire
            pending = torch.where(fire, 0, pending)
            pending_sum = torch.where(fire[:, None], 0.0, pending_sum)
        return fires

    # -- serving: one user, one event ---------------------------------------------------------
    def new_memory(self) -> UserMemory:
        return UserMemory.fresh(self.initial.detach().numpy())

    @torch.no_grad()
    def observe(self, memory: UserMemory, item: int, item_vectors: torch.Tensor, time: float | None = None) -> bool:
        """Add one interaction to ``memory`` (in place) and update it if the trigger fires.

        ``item_vectors`` (N + 1, item_dim) are the representations the model feeds the cell.
        Returns whether an update happened.
        """
        c = self.config
        if item < 1 or item >= len(item_vectors):
            raise ValueError(f"item index {item} is out of range 1..{len(item_vectors) - 1}")
        memory.interaction_count += 1
        memory.pending_items = (memory.pending_items + [int(item)])[-MAX_PENDING:]
        if time is not None:
            time = float(time)
            if memory.first_time is None:
                memory.first_time = time
            memory.last_event_time = time
        trigger = c.update_trigger
        if trigger is UpdateTrigger.INTERACTION_COUNT:
            fire = len(memory.pending_items) >= c.interaction_threshold
        elif trigger is UpdateTrigger.TIME_BASED:
            if time is None:
                raise ConfigError("update_trigger=time_based needs the event's time (its timestamp, or a step count)")
            since = memory.first_time if memory.last_update_time is None else memory.last_update_time
            fire = time - since >= c.period
        elif trigger is UpdateTrigger.DRIFT_THRESHOLD:
            m = torch.from_numpy(memory.vector)[None]
            fire = bool(self.drift(m, self._pending_mean(memory, item_vectors))[0] > c.drift_threshold)
        else:
            fire = False
        if fire:
            self.step(memory, item_vectors, time)
        return fire

    @torch.no_grad()
    def step(self, memory: UserMemory, item_vectors: torch.Tensor, time: float | None = None, force_reset: bool = False) -> None:
        """Update ``memory`` now from its pending items (an explicit update); ``force_reset`` starts
        the user over from the initial vector and forgets the history and pending items."""
        if force_reset:
            fresh = self.new_memory()
            memory.vector, memory.history, memory.pending_items = fresh.vector, fresh.history, []
            memory.last_update_time = memory.last_event_time if time is None else float(time)
            return
        if not memory.pending_items:
            return
        m = torch.from_numpy(memory.vector)[None]
        new = self.update(m, self._pending_mean(memory, item_vectors))[0].numpy()
        if self.config.max_memory_size:
            memory.history = np.concatenate([memory.history, memory.vector[None]])[-self.config.max_memory_size :]
        memory.vector = new.astype(np.float32)
        memory.pending_items = []
        memory.updates += 1
        memory.last_update_time = memory.last_event_time if time is None else float(time)

    @staticmethod
    def _pending_mean(memory: UserMemory, item_vectors: torch.Tensor) -> torch.Tensor:
        return item_vectors[torch.tensor(memory.pending_items)].mean(dim=0, keepdim=True)  # (1, item_dim)

    def version(self) -> str:
        """Fingerprint of everything a stored memory depends on: the config and the cell's weights."""
        h = hashlib.sha256(repr(sorted(vars(self.config).items())).encode())
        for name, p in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

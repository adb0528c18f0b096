"""Per-user episodic memory banks with quality-based pruning, and entropy-driven adaptive K.

An **entry** records one moment of one user's own past: ``key`` is the sequence model's hidden state
after the user's items ``0..j`` (the prefix representation) and ``item`` is the item that came next
(``j + 1``). Banks are keyed by the data set's user index, never by a hash of the sequence, and are
written only from training sequences, so no entry holds an item that is later predicted at
validation or test. An item appears at most once per bank: writing it again refreshes its key and
adds to its statistics.

**Quality** of an entry, each term in [0, 1], weights ``w_*`` from :class:`EpisodicConfig`::

    q = (w_f * F + w_r * R + w_u * U) / (w_f + w_r + w_u)
    F = log(1 + hits) / log(1 + max hits in the bank)      frequency: how often it was retrieved
    R = exp(-(clock - last_used) / recency_scale)          recency: bank writes since it was last written or retrieved
    U = c / (1 + c),  c = credit / max(hits, 1)            usefulness: its mean attention share when retrieved
                                                           (credit adds attention weight x K per retrieval, so 1 = a fair share)

When a bank is over capacity the entries with the lowest quality are dropped. Reading (evaluation,
serving) never changes a bank, so results do not depend on the order or size of evaluation batches.

**Adaptive K** from the diversity of the items in memory (``n`` item vectors, unit-normalised, ``d`` dims)::

    G = cosine Gram matrix of the n vectors (n x n)
    H = log(n^2 / ||G||_F^2) / log(min(n, d))      for n >= 2, else 0;  H in [0, 1]
    K = min(n, round(k_min + (k_max - k_min) * H))

``n^2 / ||G||_F^2`` is the exponential of the Rényi-2 (collision) entropy of the normalised spectrum
of ``G``, the "effective number of directions" the user's items span: 1 when every item is alike
(H = 0, K = k_min), n when they are orthogonal (H = 1, K = k_max). A diverse user gets more memories.
It needs only ``||G||_F^2``, so it is computed per position, over the entries visible there, in one matmul.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from memrec.errors import UnknownUserError


@dataclass
class EpisodicConfig:
    capacity: int = 100  # entries per user bank
    w_frequency: float = 1.0
    w_recency: float = 1.0
    w_usefulness: float = 1.0
    recency_scale: float = 1000.0  # in bank writes (training steps)

    def __post_init__(self):
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {self.capacity}")
        weights = (self.w_frequency, self.w_recency, self.w_usefulness)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"quality weights must be >= 0 and not all 0, got {weights}")
        if self.recency_scale <= 0:
            raise ValueError(f"recency_scale must be > 0, got {self.recency_scale}")


def diversity(vectors: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Normalised collision entropy H in [0, 1] of the vectors each query sees.

    vectors (B, n, d), visible (B, Q, n) bool -> (B, Q). See the module docstring for the formula.

    Example:
        >>> same = torch.ones(1, 4, 3)
        >>> orthogonal = torch.eye(3).unsqueeze(0)
        >>> round(diversity(same, torch.ones(1, 1, 4, dtype=torch.bool)).item(), 4), diversity(orthogonal, torch.ones(1, 1, 3, dtype=torch.bool)).item()
        (0.0, 1.0)
    """
    unit = F.normalize(vectors.detach().float(), dim=-1)
    gram2 = (unit @ unit.transpose(1, 2)).square()  # (B, n, n)
    a = visible.float()  # (B, Q, n)
    frob = ((a @ gram2) * a).sum(-1)  # (B, Q): ||G||_F^2 over the visible entries
    n = a.sum(-1)
    span = n.clamp(max=float(vectors.size(-1))).clamp(min=2.0)  # min(n, d), at least 2
    h = torch.log(n.square() / frob.clamp(min=1e-12)) / torch.log(span)
    return torch.where(n >= 2, h, torch.zeros_like(h)).clamp(0.0, 1.0)


def adaptive_k(h: torch.Tensor, n: torch.Tensor, k_min: int, k_max: int) -> torch.Tensor:
    """K = min(n, round(k_min + (k_max - k_min) * H)), elementwise; ``n`` entries are available.

    Example:
        >>> adaptive_k(torch.tensor([0.0, 0.5, 1.0, 1.0]), torch.tensor([50, 50, 50, 4]), 3, 20).tolist()
        [3, 12, 20, 4]
    """
    if not 1 <= k_min <= k_max:
        raise ValueError(f"expected 1 <= k_min <= k_max, got {k_min} and {k_max}")
    k = torch.round(k_min + (k_max - k_min) * h).long()
    return torch.minimum(k, n.long())


def quality(hits: torch.Tensor, credit: torch.Tensor, last_used: torch.Tensor, clock: float, config: EpisodicConfig) -> torch.Tensor:
    """Quality in [0, 1] of each entry of one bank (all arguments (n,)); see the module docstring.

    Example:
        >>> cfg = EpisodicConfig()
        >>> quality(torch.tensor([0.0, 9.0]), torch.tensor([0.0, 18.0]), torch.tensor([5.0, 5.0]), 5.0, cfg).tolist()
        [0.3333333432674408, 0.8888888955116272]
    """
    top = hits.max() if len(hits) else hits.new_tensor(0.0)
    freq = torch.log1p(hits) / math.log1p(top.item()) if top > 0 else torch.zeros_like(hits)
    recency = torch.exp(-(clock - last_used) / config.recency_scale)
    share = credit / hits.clamp(min=1.0)
    useful = share / (1.0 + share)
    total = config.w_frequency + config.w_recency + config.w_usefulness
    return (config.w_frequency * freq + config.w_recency * recency + config.w_usefulness * useful) / total


def last_occurrences(items: torch.Tensor) -> torch.Tensor:
    """Positions of the last occurrence of each distinct value, in order: (n,) -> (m,).

    Example:
        >>> last_occurrences(torch.tensor([5, 7, 5, 9])).tolist()
        [1, 2, 3]
    """
    n = len(items)
    pos = torch.arange(n, device=items.device)
    later = (items[:, None] == items[None, :]) & (pos[None, :] > pos[:, None])
    return (~later.any(1)).nonzero().flatten()


STATS = ("items", "hits", "credit", "last_used")


class EpisodicMemory(nn.Module):
    """One bank of at most ``capacity`` entries per user, stored as buffers (saved with the model).

    Tensors: ``keys (S, C, d)``, ``items (S, C)`` (0 = empty), ``hits``, ``credit``, ``last_used``
    ``(S, C)``; ``slot_of_user (U,)`` maps a user index to its bank (-1: none yet).

    Example:
        >>> mem = EpisodicMemory(dim=4, config=EpisodicConfig(capacity=2))
        >>> keys = torch.randn(1, 3, 4)
        >>> mem.write(torch.tensor([7]), keys, torch.tensor([[11, 12, 13]]), hits=torch.tensor([[5.0, 0.0, 1.0]]))
        >>> sorted(mem.entries(7)["items"].tolist())  # item 12 (never retrieved) was pruned
        [11, 13]
        >>> mem.gather(torch.tensor([7, 3]))[1].tolist()  # user 3 has no bank: empty entries
        [[11, 13], [0, 0]]
    """

    def __init__(self, dim: int, config: EpisodicConfig | None = None):
        super().__init__()
        self.dim = dim
        self.config = config or EpisodicConfig()
        c = self.config.capacity
        self.register_buffer("slot_of_user", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("keys", torch.zeros(0, c, dim))
        self.register_buffer("items", torch.zeros(0, c, dtype=torch.int64))
        self.register_buffer("hits", torch.zeros(0, c))
        self.register_buffer("credit", torch.zeros(0, c))
        self.register_buffer("last_used", torch.zeros(0, c))
        self.register_buffer("clock", torch.zeros((), dtype=torch.float64))
        self.num_slots = 0  # slots in use; the tensors may hold spare slots beyond it

    def __len__(self) -> int:
        """Number of entries over all banks."""
        return int((self.items[: self.num_slots] > 0).sum())

    @property
    def num_users(self) -> int:
        return self.num_slots

    def slot(self, user: int) -> int:
        """The bank of ``user``, or -1 when the user has none."""
        return int(self.slot_of_user[user]) if 0 <= user < len(self.slot_of_user) else -1

    def _allocate(self, user: int) -> int:
        if user < 0:
            raise UnknownUserError(f"user index must be >= 0, got {user}")
        if user >= len(self.slot_of_user):
            grow = max(user + 1, 2 * len(self.slot_of_user)) - len(self.slot_of_user)
            self.slot_of_user = torch.cat([self.slot_of_user, self.slot_of_user.new_full((grow,), -1)])
        if self.slot_of_user[user] < 0:
            if self.num_slots == len(self.items):  # double the spare room
                grow = max(16, self.num_slots)
                for name in ("keys", *STATS):
                    old = getattr(self, name)
                    setattr(self, name, torch.cat([old, old.new_zeros(grow, *old.shape[1:])]))
            self.slot_of_user[user] = self.num_slots
            self.num_slots += 1
        return int(self.slot_of_user[user])

    @torch.no_grad()
    def write(self, users: torch.Tensor, keys: torch.Tensor, items: torch.Tensor, hits: torch.Tensor | None = None, credit: torch.Tensor | None = None) -> None:
        """Add or refresh entries: users (B,), keys (B, L, d), items (B, L) (0 = no entry),
        hits and credit (B, L) retrieval statistics gathered while these entries were used."""
        b, length = items.shape
        if users.shape != (b,) or keys.shape != (b, length, self.dim):
            raise ValueError(f"expected users ({b},) and keys ({b}, {length}, {self.dim}), got {tuple(users.shape)} and {tuple(keys.shape)}")
        if not torch.isfinite(keys).all():
            raise ValueError("memory keys contain NaN or infinite values")
        hits = keys.new_zeros(b, length) if hits is None else hits.float()
        credit = keys.new_zeros(b, length) if credit is None else credit.float()
        self.clock += 1
        for r in range(b):
            keep = (items[r] > 0).nonzero().flatten()
            keep = keep[last_occurrences(items[r, keep])]
            if len(keep):
                self._write_row(int(users[r]), keys[r, keep].float(), items[r, keep], hits[r, keep], credit[r, keep])

    def _write_row(self, user: int, keys, items, hits, credit) -> None:  # (n, d), (n,) x 3
        s = self._allocate(user)
        clock = float(self.clock)
        match = (items[:, None] == self.items[s][None, :]) & (self.items[s] > 0)  # (n, C)
        found = match.any(1)
        at = match.float().argmax(1)[found]
        self.keys[s, at] = keys[found]
        self.hits[s, at] += hits[found]
        self.credit[s, at] += credit[found]
        self.last_used[s, at] = clock
        new = ~found
        if not new.any():
            return
        occupied = (self.items[s] > 0).nonzero().flatten()
        pool = {
            "keys": torch.cat([self.keys[s, occupied], keys[new]]),
            "items": torch.cat([self.items[s, occupied], items[new]]),
            "hits": torch.cat([self.hits[s, occupied], hits[new]]),
            "credit": torch.cat([self.credit[s, occupied], credit[new]]),
            "last_used": torch.cat([self.last_used[s, occupied], keys.new_full((int(new.sum()),), clock)]),
        }
        n = len(pool["items"])
        if n > self.config.capacity:  # prune: keep the best `capacity` entries
            kept = quality(pool["hits"], pool["credit"], pool["last_used"], clock, self.config).topk(self.config.capacity).indices.sort().values
            pool = {name: t[kept] for name, t in pool.items()}
            n = self.config.capacity
        for name, t in pool.items():
            getattr(self, name)[s].zero_()
            getattr(self, name)[s, :n] = t

    def gather(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's bank for a batch: users (B,) -> keys (B, C, d), items (B, C) (0 = empty).
        A user without a bank (new, unknown, or negative = anonymous) gets an empty one."""
        known = (users >= 0) & (users < len(self.slot_of_user))  # (B,)
        slots = torch.full_like(users, -1)
        slots[known] = self.slot_of_user[users[known]]
        has = slots >= 0
        keys = self.keys.new_zeros(len(users), self.config.capacity, self.dim)
        items = self.items.new_zeros(len(users), self.config.capacity)
        keys[has], items[has] = self.keys[slots[has]], self.items[slots[has]]
        return keys, items

    def entries(self, user: int) -> dict[str, torch.Tensor]:
        """The stored entries of one user with their quality; an error if the user has no bank."""
        s = self.slot(int(user))
        if s < 0:
            raise UnknownUserError(f"user {user} has no memory bank (banks exist for {self.num_slots} users, written during training)")
        live = self.items[s] > 0
        out = {name: getattr(self, name)[s, live] for name in ("keys", *STATS)}
        out["quality"] = quality(out["hits"], out["credit"], out["last_used"], float(self.clock), self.config)
        return out

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in ("keys", *STATS):  # only the slots in use
            destination[prefix + name] = destination[prefix + name][: self.num_slots]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        incoming = state_dict.get(prefix + "keys")
        if incoming is not None and incoming.shape[1:] != self.keys.shape[1:]:
            error_msgs.append(f"{prefix}keys: stored banks have shape {tuple(incoming.shape[1:])}, this memory expects {tuple(self.keys.shape[1:])} (capacity, dim)")
            return
        for name in ("slot_of_user", "keys", *STATS):  # resize to the stored sizes, then copy as usual
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        self.num_slots = len(self.items)

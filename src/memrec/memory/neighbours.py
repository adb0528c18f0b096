"""A memory of other users' moments: the nearest contexts of other users, and what they did next.

A user's own history cannot tell a sequence model anything it does not already read, and full
ranking masks every item of it. Other users' histories can. This memory holds one entry per
training position of every user, kNN-LM style (Khandelwal et al., ICLR 2020):

- **key**: the model's state after the owner's items ``0..t`` (unit-normalised), **values**: the
  items at ``t + 1 .. t + H`` (``H``, the horizon, fixed when the memory is built; -1 past the end
  of the owner's training sequence), **owner**: the user the entry belongs to.
- **query**: the state of the user being ranked. The ``k`` nearest entries of *other* owners (exact
  cosine search, a matmul and ``topk``) give a distribution over what they did next::

      p_mem(i) = sum over neighbours n and steps j with value_nj = i of softmax_n(cos(q, key_n) / T) * decay^(j - 1)

  with no mass on padding or on items the user has seen (renormalised over the rest). ``decay`` 0
  counts the next item only (``0^0 = 1``); a positive decay spreads each neighbour's mass over
  what it did after that too.
- **mixture**: ``p = (1 - w) p_model + w p_mem``, ranked through
  ``score(i) = logit(i) + softplus(log(w / (1 - w)) + log p_mem(i) + logsumexp(logits) - logit(i))``,
  which is ``log p(i)`` up to a per-row constant: an item no neighbour points to keeps exactly its
  logit, and ``w = 0`` returns the model's scores unchanged.

- **gate** (optional): a query mixes only when its nearest entry's similarity reaches ``gate``; below
  it the model's scores are kept as they are. The default, -1, mixes every query. A memory of one
  part of the data (say, an older period or a catalogue section) can so leave queries about other
  parts alone: it is used where it has close matches.

``k``, ``T``, ``w`` (and ``gate`` and ``decay`` when the grid offers more than one) are chosen on validation
(:func:`tune`), the weight 0 among the candidates. A setting is a candidate only when its per-user
validation gain is above 0 with 95% confidence (``NeighbourConfig.confidence``): with a thousand
validation users, the best of dozens of settings often gains by chance, and a data set where
neighbours do not measurably help keeps the model's own ranking. Entries are built from training
sequences only, so no entry holds a validation or test target.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from memrec import progress
from memrec.data.batching import EvalBatch, eval_batches
from memrec.data.split import EvalSet
from memrec.config import NeighbourConfig
from memrec.memory.transitions import TransitionMemory


def contexts(sequences: list[np.ndarray]) -> tuple[EvalSet, np.ndarray]:
    """Every position ``t >= 1`` of every sequence as an example (owner, items before t, item t), and t.

    Example:
        >>> moments, positions = contexts([np.array([5, 6, 7]), np.array([8])])
        >>> moments.users.tolist(), [h.tolist() for h in moments.histories], moments.targets.tolist(), positions.tolist()
        ([0, 0], [[5], [5, 6]], [6, 7], [1, 2])
    """
    owners, histories, values, positions = [], [], [], []
    for user, seq in enumerate(sequences):
        for t in range(1, len(seq)):
            owners.append(user)
            histories.append(seq[:t])
            values.append(int(seq[t]))
            positions.append(t)
    return EvalSet(np.array(owners, dtype=np.int64), histories, np.array(values, dtype=np.int64)), np.array(positions, dtype=np.int64)


def followers(sequences: list[np.ndarray], owners: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
    """(M, horizon) the items at ``t .. t + horizon - 1`` of each entry's owner sequence (-1 past its end):
    the values of the entries :func:`contexts` returns, with their positions.

    Example:
        >>> moments, positions = contexts([np.array([5, 6, 7])])
        >>> followers([np.array([5, 6, 7])], moments.users, positions, horizon=2).tolist()
        [[6, 7], [7, -1]]
    """
    if horizon < 1:
        raise ValueError(f"the horizon must be at least 1, got {horizon}")
    out = np.full((len(owners), horizon), -1, dtype=np.int64)
    for row, (user, t) in enumerate(zip(owners, positions)):
        after = sequences[user][t:t + horizon]
        out[row, :len(after)] = after
    return out


def seen_mask(batch: EvalBatch, width: int) -> torch.Tensor:
    """(B, width) bool: padding (column 0) and every item of each row's full history. B counts the
    batch's users (an evaluation batch may be padded with empty rows that have no target)."""
    seen = torch.zeros(len(batch.users), width, dtype=torch.bool)
    seen[:, 0] = True
    seen[batch.seen_rows, batch.seen_items] = True
    return seen


def memory_mass(seen: torch.Tensor, sims: torch.Tensor, values: torch.Tensor, temperature: float, decay: float = 0.0) -> torch.Tensor:
    """p_mem (B, N + 1), float64: softmax(sims / T) times decay^(j-1) summed per value item, zero on
    ``seen``, renormalised. sims (B, k), values (B, k) or (B, k, H); slots with similarity -inf carry no mass."""
    values = values if values.dim() == 3 else values.unsqueeze(2)  # (B, k, H)
    steps = decay ** torch.arange(values.size(2), dtype=torch.float64)  # (H,): 1, decay, decay^2, ...
    weights = (torch.softmax(sims.double() / temperature, dim=1).nan_to_num(0.0).unsqueeze(2) * steps).flatten(1)  # (B, k H)
    values = values.flatten(1)
    weights = weights.masked_fill(seen.gather(1, values.clamp(min=0)) | (values < 0), 0.0)
    total = weights.sum(dim=1, keepdim=True)
    weights = torch.where(total > 0, weights / total.clamp_min(1e-300), weights)
    return torch.zeros(seen.shape, dtype=torch.float64).scatter_add_(1, values.clamp(min=0), weights)


def log_ratio(logits_at: torch.Tensor, mass_at: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """log(p_mem / p_model) at given items (-inf where p_mem is 0); ``lse`` = logsumexp of the rankable logits."""
    return mass_at.log() + lse - logits_at


def mixed(logits_at: torch.Tensor, ratio: torch.Tensor, weight: float) -> torch.Tensor:
    """log((1 - w) p_model + w p_mem) up to a per-row constant: the logit plus a boost that is 0 where p_mem is 0."""
    return logits_at + F.softplus(math.log(weight / (1.0 - weight)) + ratio)


def mix_scores(logits: torch.Tensor, seen: torch.Tensor, sims: torch.Tensor, values: torch.Tensor, temperature: float, weight: float,
               gate: float = -1.0, decay: float = 0.0) -> torch.Tensor:
    """Scores (B, N + 1), float64, ranked as ``(1 - w) softmax(logits over unseen items) + w p_mem`` in the
    rows whose nearest similarity (``sims`` sorted descending) reaches ``gate``, the logits elsewhere.
    sims (B, k); values (B, k) next items or (B, k, H) the next H items of each neighbour.

    Example:
        >>> logits = torch.tensor([[0.0, 2.0, 1.0, 0.5]])
        >>> seen = torch.tensor([[True, False, False, False]])
        >>> sims, values = torch.tensor([[0.9, 0.8]]), torch.tensor([[3, 3]])
        >>> mix_scores(logits, seen, sims, values, 0.3, 0.0).argmax().item(), mix_scores(logits, seen, sims, values, 0.3, 0.9).argmax().item()
        (1, 3)
        >>> mix_scores(logits, seen, sims, values, 0.3, 0.9, gate=0.95).argmax().item()  # no entry close enough
        1
        >>> later = torch.tensor([[[3, 2], [3, 2]]])  # each neighbour's next two items
        >>> mix_scores(logits, seen, sims, later, 0.3, 0.9, decay=0.0)[0, 2] == logits[0, 2]  # decay 0: the next item only
        tensor(True)
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"the memory weight must be in [0, 1), got {weight}")
    base = logits.double()
    open_rows = sims[:, :1] >= gate if gate > -1.0 else None  # (B, 1)
    if weight == 0.0 or values.numel() == 0 or (open_rows is not None and not open_rows.any()):
        return base.clone()
    values = values if values.dim() == 3 else values.unsqueeze(2)  # (B, k, H)
    if decay == 0.0:
        values = values[:, :, :1]
    lse = base.masked_fill(seen, float("-inf")).logsumexp(dim=1, keepdim=True)
    mass = memory_mass(seen, sims, values, temperature, decay)
    values = values.flatten(1)  # (B, k H)
    at = values.clamp(min=0)
    base_at = base.gather(1, at)
    boosted = mixed(base_at, log_ratio(base_at, mass.gather(1, at), lse), weight)
    use = values >= 0 if open_rows is None else (values >= 0) & open_rows
    return base.scatter(1, at, torch.where(use, boosted, base_at))


class NeighbourMemory(TransitionMemory):
    """A transition memory of every user's training positions (unit keys, the next ``H`` items), and the
    chosen ``k``, ``T``, weight, gate and decay, saved with the model.

    Example:
        >>> mem = NeighbourMemory(dim=2)
        >>> mem.build(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]), torch.tensor([4, 5, 6]), torch.tensor([0, 1, 2]))
        >>> sims, values = mem.search(torch.tensor([[1.0, 0.0]]), users=torch.tensor([0]), k=2)  # user 0's own entry is skipped
        >>> values[:, :, 0].tolist()
        [[6, 5]]
        >>> mem.set(k=2, temperature=0.1, weight=0.5)
        >>> mem.active
        True
    """

    def __init__(self, dim: int = 0):
        super().__init__(dim)
        self.register_buffer("setting", torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0], dtype=torch.float64))  # k, temperature, weight, gate, decay
        self._online: tuple[NeighbourMemory, ...] = ()  # entries added while serving (not saved): see attach_online

    def attach_online(self, entries: "NeighbourMemory | None") -> None:
        """Also search ``entries`` (a memory of positions seen after training, e.g. built by a service
        from its event logs) whenever this memory mixes; None detaches them. They are not saved."""
        self._online = () if entries is None else (entries,)

    @property
    def k(self) -> int:
        return int(self.setting[0])

    @property
    def temperature(self) -> float:
        return float(self.setting[1])

    @property
    def weight(self) -> float:
        return float(self.setting[2])

    @property
    def gate(self) -> float:
        return float(self.setting[3])

    @property
    def decay(self) -> float:
        return float(self.setting[4])

    @property
    def active(self) -> bool:
        return self.weight > 0 and self.k > 0 and len(self) > 0

    def describe(self) -> dict:
        """The setting in use, by name (as ``metrics.json`` reports it)."""
        return {"k": self.k, "temperature": self.temperature, "weight": self.weight, "gate": self.gate, "decay": self.decay}

    def set(self, k: int, temperature: float, weight: float, gate: float = -1.0, decay: float = 0.0) -> None:
        if k < 0 or temperature <= 0 or not 0 <= weight < 1 or not -1.0 <= gate <= 1.0 or not 0.0 <= decay <= 1.0:
            raise ValueError(f"expected k >= 0, temperature > 0, weight in [0, 1), gate in [-1, 1] and decay in [0, 1], "
                             f"got {k}, {temperature}, {weight}, {gate}, {decay}")
        self.setting = torch.tensor([float(k), temperature, weight, gate, decay], dtype=torch.float64)

    def build(self, keys: torch.Tensor, values: torch.Tensor, owners: torch.Tensor, upto: torch.Tensor | None = None) -> None:
        """Hold exactly these entries: keys (M, d), values (M,) the next items or (M, H) the next H items
        (-1 past the end of a sequence: :func:`followers`), owners (M,), upto (M,) or None."""
        self._replace({name: getattr(self, name)[:0] for name in ("keys", "values", "owners", "upto", "hits", "credit", "last_used")})
        self.add(F.normalize(keys.detach().float(), dim=-1), values, owners, upto)

    def search(self, queries: torch.Tensor, users: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` nearest entries of other users: queries (B, d), users (B,) -> cosine similarities
        (B, k') and values (B, k', H), k' = min(k, M); missing slots have similarity -inf and values -1.
        Through the index ``search_config`` chooses (exact, a matmul and ``topk``, below 10^6 entries)."""
        if not len(self):
            return queries.new_zeros(len(users), 0), self.values.new_zeros(len(users), 0, self.values.size(1))
        sims, rows = self.nearest(F.normalize(queries.float(), dim=1), users, k)
        return sims, torch.where(rows.unsqueeze(2) >= 0, self.values[rows.clamp(min=0)], -1)

    def explain(self, queries: torch.Tensor, users: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The entries :meth:`mix` reads for each query, from this memory and the online one, nearest first:
        queries (B, d), users (B,) -> similarities (B, k'), owners (B, k') and values (B, k', H); ``k``
        defaults to the chosen one; missing slots have similarity -inf, owner -1 and values -1."""
        k = self.k if k is None else k
        found = []
        for memory in (m for m in (self, *self._online) if len(m)):
            sims, rows = memory.nearest(F.normalize(queries.float(), dim=1), users, k)
            ok = rows >= 0
            found.append((sims, torch.where(ok, memory.owners[rows.clamp(min=0)], -1), torch.where(ok[..., None], memory.values[rows.clamp(min=0)], -1)))
        if not found:
            return queries.new_zeros(len(users), 0), users.new_zeros(len(users), 0), users.new_zeros(len(users), 0, 1)
        width = max(v.size(2) for _, _, v in found)
        sims = torch.cat([s for s, _, _ in found], 1)
        owners = torch.cat([o for _, o, _ in found], 1)
        values = torch.cat([F.pad(v, (0, width - v.size(2)), value=-1) for _, _, v in found], 1)
        top = sims.topk(min(k, sims.size(1)), dim=1)
        return top.values, owners.gather(1, top.indices), values.gather(1, top.indices.unsqueeze(2).expand(-1, -1, width))

    def mix(self, logits: torch.Tensor, seen: torch.Tensor, queries: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """The model's scores (B, N + 1) mixed with the memory at the chosen setting (float64)."""
        if not self.active:
            return logits
        sims, _, values = self.explain(queries, users, self.k)  # the nearest k of the built and the online memory
        return mix_scores(logits, seen, sims, values, self.temperature, self.weight, self.gate, self.decay)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        values = state_dict.get(prefix + "values")
        if values is not None and values.dim() == 1:  # saved before the horizon: the next item only
            state_dict[prefix + "values"] = values.unsqueeze(1)
        setting = state_dict.get(prefix + "setting")
        if setting is not None and setting.numel() < 5:  # saved before the gate (every query mixed) or the decay (next item only)
            state_dict[prefix + "setting"] = torch.cat([setting, setting.new_tensor([-1.0, 0.0][setting.numel() - 3:])])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def gain_interval(gain: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided normal interval of the mean of per-user gains at ``confidence`` (0: the mean itself).

    Example:
        >>> low, high = gain_interval(np.array([0.0, 0.2, 0.1, 0.1]), 0.95)
        >>> round(low, 4), round(high, 4)
        (0.02, 0.18)
    """
    mean = float(gain.mean()) if len(gain) else 0.0
    if len(gain) < 2 or confidence == 0.0:
        return mean, mean
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * float(gain.std(ddof=1)) / math.sqrt(len(gain))
    return mean - half, mean + half


@torch.no_grad()
def tune(memory: NeighbourMemory, evalset: EvalSet, max_len: int, states: Callable[[EvalBatch], tuple[torch.Tensor, torch.Tensor]],
         grid: NeighbourConfig, batch_size: int = 256) -> list[dict]:
    """NDCG@10 on ``evalset`` of every setting of ``grid``; sets ``memory`` to the best of the eligible ones.

    A setting is eligible when the ``grid.confidence`` interval of its per-user NDCG@10 gain over the
    model alone (the weight-0 row, always eligible) lies above 0: a memory whose validation gain is
    within noise is not used. Ties go to the memory used less (the smaller weight, then the higher
    gate, then the smaller decay). ``states(batch)`` returns the model's own scores (B, N + 1) and the
    queries (B, d). The neighbours are searched once per batch at the largest k. Returns one row per
    setting, in grid order, with its gain interval (``gain_low``, ``gain_high``), ``eligible`` and ``chosen``.
    """
    from memrec.train.evaluate import metrics_from_ranks, rank_targets, user_ndcg  # the evaluator's own ranking

    settings = grid.settings()
    kmax = max(setting[0] for setting in settings)
    ranks = [np.zeros(len(evalset), dtype=np.int64) for _ in settings]
    for rows, batch in progress.track(eval_batches(evalset, max_len, batch_size), len(evalset), f"neighbour memory: {len(settings)} settings", "user", size=lambda b: len(b[0])):
        logits, queries = states(batch)
        seen = seen_mask(batch, logits.size(1))
        sims, values = memory.search(queries, batch.users, kmax) if len(memory) else (logits.new_zeros(len(rows), 0), batch.users.new_zeros(len(rows), 0, 1))
        for i, (k, temperature, weight, gate, decay) in enumerate(settings):
            scores = mix_scores(logits, seen, sims[:, :k], values[:, :k], temperature, weight, gate, decay)
            ranks[i][rows] = rank_targets(scores, batch).numpy()
    plain = user_ndcg(ranks[0])
    table = []
    for (k, t, w, g, d), r in zip(settings, ranks):
        low, high = gain_interval(user_ndcg(r) - plain, grid.confidence)
        table.append({"k": k, "temperature": t, "weight": w, "gate": g, "decay": d, "ndcg@10": metrics_from_ranks(r, ks=(10,))["ndcg@10"],
                      "gain_low": low, "gain_high": high, "eligible": w == 0.0 or low > 0.0})
    best = max((row for row in table if row["eligible"]), key=lambda row: (row["ndcg@10"], -row["weight"], row["gate"], -row["decay"]))
    for row in table:
        row["chosen"] = row is best
    memory.set(best["k"], best["temperature"], best["weight"], best["gate"], best["decay"])
    return table


@torch.no_grad()  # not inference mode: the memory's tensors are kept and read later with autograd on
def build_neighbours(model, split, max_len: int, config: NeighbourConfig, batch_size: int = 256, log=print) -> dict:
    """The trainer's memory-write step for any model: every training position of every user becomes
    an entry of ``model.neighbours`` (key: the model's neighbour state there, from
    ``model.scores_and_states``; values: the owner's next ``config.horizon`` training items), and the
    setting is chosen on ``split.valid`` by :func:`tune`. Returns the report for ``metrics.json``.

    Example:
        >>> from memrec.data import SequenceDataset, split_dataset
        >>> from memrec.models import build_model
        >>> ds = SequenceDataset.from_sequences({f"u{i}": ["a", "b", "c", "d", "e"][i % 2:] for i in range(6)})
        >>> model = build_model("gru4rec", ds.num_items, 5)
        >>> report = build_neighbours(model, split_dataset(ds), 5, NeighbourConfig(enabled=True, ks=(2,)), log=lambda *_: None)
        >>> report["neighbour_memory"]["entries"], len(model.neighbours)
        (9, 9)
    """
    if not config.enabled:
        return {}
    was = model.training
    model.eval()
    model.neighbours.search_config = config.search()
    try:
        moments, positions = contexts(split.train)  # training positions only: no held-out target is a value
        keys = None
        for rows, batch in progress.track(eval_batches(moments, max_len, batch_size), len(moments), "neighbour memory: keys", "entry", size=lambda b: len(b[0])):
            states = model.scores_and_states(batch)[1]  # (B, d)
            keys = states.new_zeros(len(moments), states.size(1)) if keys is None else keys
            keys[torch.from_numpy(rows)] = states.float()
        values = followers(split.train, moments.users, positions, config.horizon)
        if keys is None:
            log("neighbour memory: no training position to remember (every training sequence has one item)")
            return {}
        upto = positions + (values >= 0).sum(1) - 1  # the latest item each entry holds
        model.neighbours.build(keys, torch.from_numpy(values), torch.from_numpy(moments.users), torch.from_numpy(upto))
        table = tune(model.neighbours, split.valid, max_len, model.scores_and_states, config, batch_size)
    finally:
        model.train(was)
    chosen = model.neighbours.describe()
    plain = table[0]["ndcg@10"]
    used = next(row for row in table if row["chosen"])
    top = max(table, key=lambda row: row["ndcg@10"])
    log(f"neighbour memory: {len(model.neighbours)} entries; chosen on validation {chosen}: NDCG@10 {plain:.4f} -> {used['ndcg@10']:.4f}"
        + ("" if top["ndcg@10"] == used["ndcg@10"] else f" (best {top['ndcg@10']:.4f}, gain interval [{top['gain_low']:+.4f},"
                                                       f" {top['gain_high']:+.4f}] at confidence {config.confidence}: within noise, not used)"))
    return {"neighbour_memory": {"entries": len(model.neighbours), "chosen": chosen, "valid_ndcg@10_without": plain,
                                 "valid_ndcg@10_with": used["ndcg@10"], "valid_ndcg@10_gain_interval": [used["gain_low"], used["gain_high"]],
                                 "confidence": config.confidence, "grid": table}}

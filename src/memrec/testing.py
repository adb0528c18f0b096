"""The conformance suite: properties every memrec model must have, runnable on any model.

Every registered model passes it (``tests/models/test_conformance.py``), and so can yours: give it
a function that builds the model from ``(num_items, max_len)`` and a data set. :func:`check_model`
raises an ``AssertionError`` naming the first property that does not hold::

    from memrec.testing import check_model
    check_model(lambda num_items, max_len: MyModel(num_items, max_len), dataset=my_dataset)

With pytest, one test per check (:data:`CHECKS`, run by :func:`run_check` on a :class:`Subject`)::

    SUBJECT = Subject(lambda num_items, max_len: MyModel(num_items, max_len), my_dataset)

    @pytest.mark.parametrize("check", CHECKS)
    def test_my_model(check):
        if not run_check(check, SUBJECT):
            pytest.skip(f"{check} does not apply to this model")

The checks, on a few users of the data set (the first users with a test example):

- ``causal``: the state at position t does not change when later items change (and does when item t does);
- ``encode_last``: ``encode_last`` equals ``encode_positions`` at the last position;
- ``padding_ignored``: more right-padding changes no score;
- ``batch_size_independent``: a row's scores and ranks do not depend on the other rows of its batch;
- ``padding_not_recommended`` and ``history_excluded``: ``recommend`` never lists item 0, nor, with
  ``exclude_seen``, any item of the row's full history;
- ``save_load``: a fresh model loading the state dict (through a file, ``weights_only``) scores the
  same, bit for bit; nothing scoring needs may live outside the state dict;
- ``unknown_items_refused``: item indices outside 1..N raise :class:`~memrec.errors.UnknownItemError`;
- ``empty_history``: an empty history, and an unknown user (index -1), get finite scores;
- ``loss_gradient``: ``loss`` is a finite scalar with a finite, non-zero gradient;
- ``loss_learns``: a few optimizer steps on one batch lower its loss;
- ``loss_no_side_effects``: ``loss`` twice, then ``score_all``, scores as ``loss`` once: the loss
  only collects memory writes (``writes``), the trainer's explicit step ``write_memory`` applies them;
- ``memory_is_read`` (``Subject(memory=True)`` only): the memory changes scores, either the entries
  ``remember`` wrote or the history older than the window (a memory unrolled over it, as UR4Rec-MoE's);
- ``served_memory`` (models with a ``user_memory_cell()``): the per-user memory after each event of
  the history (``cell.observe``, as serving keeps it) is read by ``serve_scores``, which then scores
  as ``score_all`` does;
- ``neighbours`` (models with a ``neighbours`` :class:`~memrec.memory.neighbours.NeighbourMemory`):
  a few entries at a non-zero setting change every row's scores, never through the row's own user's
  entries, and survive save/load.

With ``memory=True`` every check runs on a model whose memories hold entries: its own
(:func:`fill_memory`, or the ``remember`` function given) and its neighbour memory (:func:`fill_neighbours`).

Example:
    >>> import torch
    >>> from memrec.data import SequenceDataset
    >>> from memrec.models import SequentialRecommender
    >>> class MeanOfPast(SequentialRecommender):  # the user vector: the mean of the items so far
    ...     name = "mean-of-past"
    ...     def __init__(self, num_items, max_len):
    ...         super().__init__(num_items, max_len, config=None)
    ...         self.emb = torch.nn.Embedding(num_items + 1, 8, padding_idx=0)
    ...     def encode_positions(self, items, users=None):  # (B, L) -> (B, L, 8)
    ...         return self.emb(items).cumsum(1) / torch.arange(1, items.size(1) + 1)[:, None]
    ...     def item_embeddings(self):  # (N + 1, 8)
    ...         return self.emb.weight
    >>> ds = SequenceDataset.from_sequences({f"u{i}": list("abcdefgh")[i % 3:] for i in range(6)})
    >>> ran = check_model(MeanOfPast, ds)
    >>> "causal" in ran and "save_load" in ran
    True
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from memrec.data.batching import EvalBatch, TrainBatch, make_eval_batch, training_windows
from memrec.data.dataset import SequenceDataset
from memrec.data.split import EvalSet, Split, split_dataset
from memrec.errors import UnknownItemError
from memrec.train.evaluate import rank_evalset
from memrec.train.losses import make_objective

Factory = Callable[[int, int], torch.nn.Module]  # (num_items, max_len) -> an untrained model

# --- memory -------------------------------------------------------------------------------------


@torch.no_grad()
def fill_memory(model, split: Split, users: np.ndarray) -> list[str]:
    """Write the training sequences of ``users`` into the model's own memories, through the writing
    APIs the registered models have; returns what it called. Weights do not change.

    - the trainer's memory step: ``model.loss(batch, objective, writes)`` in training mode on the
      users' last training windows, then ``model.write_memory(writes)`` (RAMRec's banks, memory-moe's
      expert memories);
    - ``model.update_memory(users, sequences)`` (RAMRec's banks, as serving writes them);
    - ``model.few_shot_adapt(sequence, user=u)`` per user (memory-moe's episodic memories).

    A model whose memory is written elsewhere passes its own ``remember(model, split, users)`` to
    :class:`Subject`. UR4Rec-MoE needs none: its memory is unrolled over each scored history.
    """
    done = []
    was = model.training
    batch = train_batch(split, users, model.max_len)
    if batch is not None and collects_writes(model):
        model.train()
        torch.manual_seed(0)
        writes = []
        model.loss(batch, make_objective("ce"), writes)
        model.write_memory(writes)
        done.append("write_memory")
    model.eval()
    sequences = [split.train[u][-(model.max_len + 1):] for u in users]
    if hasattr(model, "update_memory"):
        model.update_memory(torch.as_tensor(users), sequences)
        done.append("update_memory")
    if hasattr(model, "few_shot_adapt"):
        for user, seq in zip(users.tolist(), sequences):
            if len(seq) >= 2:
                model.few_shot_adapt(torch.as_tensor(seq), user=user)
        done.append("few_shot_adapt")
    model.train(was)
    return done


def collects_writes(model) -> bool:
    """Whether ``model.loss`` takes ``writes`` (the memory writes it asks for, applied by ``write_memory``)."""
    return "writes" in inspect.signature(model.loss).parameters and hasattr(model, "write_memory")


def state_size(model, batch: EvalBatch) -> int:
    """Width of the model's neighbour state: the memory's, or the one ``scores_and_states`` returns."""
    if model.neighbours.dim:
        return model.neighbours.dim
    return model.scores_and_states(batch)[1].size(1)


@torch.no_grad()
def fill_neighbours(model, batch: EvalBatch, per_user: int = 2, others: int = 3) -> dict[int, set[int]]:
    """Build ``model.neighbours`` with ``per_user`` entries for each user of ``batch`` and for
    ``others`` users outside it (random keys, distinct items none of the batch's rows has seen,
    while the catalogue lasts), at a setting that mixes every entry; returns each owner's items.

    Example:
        >>> from memrec.models import build_model
        >>> model = build_model("gru4rec", num_items=30, max_len=4).eval()
        >>> owned = fill_neighbours(model, make_eval_batch(np.array([0]), [np.array([1, 2])], np.array([3]), 4))
        >>> sorted(owned), len(model.neighbours), model.neighbours.active
        ([0, 1, 2, 3], 8, True)
    """
    seen = set(batch.seen_items.tolist())
    unseen = [i for i in range(1, model.num_items + 1) if i not in seen]
    assert unseen, "the data set is too small for the neighbour check: the probe histories hold every item"
    first_other = int(batch.users.max()) + 1
    owners = [u for u in batch.users.tolist() + list(range(first_other, first_other + others)) for _ in range(per_user)]
    values = [unseen[j % len(unseen)] for j in range(len(owners))]
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(len(owners), state_size(model, batch), generator=generator)  # (M, d)
    model.neighbours.build(keys, torch.tensor(values), torch.tensor(owners))
    model.neighbours.set(k=len(owners), temperature=1.0, weight=0.5)
    owned: dict[int, set[int]] = {}
    for owner, item in zip(owners, values):
        owned.setdefault(owner, set()).add(item)
    return owned


def has_neighbours(model) -> bool:
    return getattr(model, "neighbours", None) is not None


# --- the subject under test ---------------------------------------------------------------------


def train_batch(split: Split, users, max_len: int, back: int = 0) -> TrainBatch | None:
    """The last training window of each user with at least two training items (None if none has);
    ``back``: the window ending that many items earlier."""
    sequences = {u: split.train[u][: max(0, len(split.train[u]) - back)] for u in users}
    rows = [(u, *training_windows([seq], max_len, mode="last")[0][1:]) for u, seq in sequences.items() if len(seq) >= 2]
    if not rows:
        return None
    inputs = torch.zeros(len(rows), max(len(w) for _, _, w in rows) - 1, dtype=torch.int64)  # (B, L)
    targets = torch.zeros_like(inputs)
    for r, (_, _, w) in enumerate(rows):
        inputs[r, : len(w) - 1], targets[r, : len(w) - 1] = torch.from_numpy(w[:-1]), torch.from_numpy(w[1:])
    users_, starts = (torch.tensor([row[i] for row in rows]) for i in (0, 1))
    return TrainBatch(users_, inputs, targets, starts)


@dataclass
class Subject:
    """A model factory and a data set, with what the checks share: the split, a few probe users
    (the first ``num_users`` users with a test example) and the model built once, prepared, filled
    when ``memory`` is True, in evaluation mode; :meth:`model` hands out copies.

    ``factory(num_items, max_len)`` builds an untrained model; ``remember(model, split, users)``
    writes the model's own memories (default :func:`fill_memory`); ``name`` names it in messages.
    """

    factory: Factory
    dataset: SequenceDataset
    max_len: int = 8
    memory: bool = False
    remember: Callable = fill_memory
    num_users: int = 8
    name: str = ""
    seed: int = 0
    split: Split = field(init=False, repr=False)
    _built: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        self.split = split_dataset(self.dataset)
        if not len(self.split.test):
            raise ValueError("the data set has no test example: give users at least 3 interactions")
        self.name = self.name or getattr(self.factory, "__name__", "the model")

    @property
    def evalset(self) -> EvalSet:
        return self.split.test.subset(np.arange(min(self.num_users, len(self.split.test))))

    @property
    def users(self) -> np.ndarray:
        return self.evalset.users

    def batch(self, histories: list[np.ndarray] | None = None, width: int | None = None) -> EvalBatch:
        """The probe users' test histories (or ``histories``) as one batch of ``width`` (max_len) columns."""
        s = self.evalset
        return make_eval_batch(s.users, s.histories if histories is None else histories, s.targets, width or self.max_len)

    def train_batch(self, back: int = 0) -> TrainBatch:
        """The probe users' last training windows, or those ending ``back`` items earlier."""
        batch = train_batch(self.split, self.users, self.max_len, back)
        assert batch is not None, "no probe user has two training items"
        return batch

    def model(self, memory: bool | None = None, neighbours: bool | None = None):
        """A copy of the prepared model, in evaluation mode; ``memory`` / ``neighbours``: with its own
        memory / neighbour memory filled (default: ``self.memory`` for both)."""
        memory = self.memory if memory is None else memory
        neighbours = memory if neighbours is None else neighbours
        key = (memory, neighbours and has_neighbours(self.blank()))
        if key not in self._built:
            model = copy.deepcopy(self.blank())
            if memory:
                self.remember(model, self.split, self.users)
            if key[1]:
                fill_neighbours(model, self.batch())
            self._built[key] = model.eval()
        return copy.deepcopy(self._built[key])

    def blank(self):
        """The prepared model as the factory built it (seeded), memories empty; not to be changed."""
        if "blank" not in self._built:
            torch.manual_seed(self.seed)
            model = self.factory(self.dataset.num_items, self.max_len)
            if hasattr(model, "prepare"):
                model.prepare(self.dataset, self.split)
            self._built["blank"] = model.eval()
        return self._built["blank"]

    def reload(self, model):
        """A fresh model from the factory, loading ``model``'s state dict through a file (evaluation mode)."""
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        fresh = self.factory(self.dataset.num_items, self.max_len)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        return fresh.eval()


# --- the checks ---------------------------------------------------------------------------------


def probe_items(s: Subject, length: int) -> torch.Tensor:
    """(1, length) items of the first probe user's history, repeated if it is shorter."""
    history = s.evalset.histories[0]
    return torch.from_numpy(np.resize(history, length)).unsqueeze(0)


@torch.no_grad()
def check_causal(s: Subject) -> None:
    model = s.model()
    a = probe_items(s, min(s.max_len, 6))  # (1, L)
    t = a.size(1) // 2
    b = a.clone()
    b[:, t:] = a[:, t:] % s.dataset.num_items + 1  # other items from position t on
    users = torch.from_numpy(s.users[:1])
    states_a, states_b = model.encode_positions(a, users), model.encode_positions(b, users)  # (1, L, d)
    assert torch.allclose(states_a[:, :t], states_b[:, :t], atol=1e-5), f"changing the items from position {t} on changed the states before it"
    assert not torch.allclose(states_a[:, t], states_b[:, t], atol=1e-6), f"changing item {t} did not change the state at position {t}"


@torch.no_grad()
def check_encode_last(s: Subject) -> None:
    model = s.model()
    items = probe_items(s, min(s.max_len, 6)).repeat(2, 1)  # (2, L)
    items[1, 2:] = 0
    last = torch.tensor([items.size(1) - 1, 1])
    every = model.encode_positions(items)  # (2, L, d)
    assert torch.allclose(model.encode_last(items, last), every[[0, 1], last], atol=1e-5), "encode_last differs from encode_positions at the last position"


@torch.no_grad()
def check_padding_ignored(s: Subject) -> None:
    model = s.model()
    short = [h[: min(3, s.max_len)] for h in s.evalset.histories]
    narrow, wide = model.score_all(s.batch(short, width=len(max(short, key=len)))), model.score_all(s.batch(short))
    assert torch.allclose(narrow, wide, atol=1e-5), "more right-padding changed the scores"


@torch.no_grad()
def check_batch_size_independent(s: Subject) -> None:
    model = s.model()
    together = model.score_all(s.batch())  # (B, N + 1)
    for r in range(len(s.users)):
        alone = model.score_all(make_eval_batch(s.users[r:r + 1], s.evalset.histories[r:r + 1], s.evalset.targets[r:r + 1], s.max_len))
        assert torch.allclose(alone[0], together[r], rtol=1e-4, atol=1e-4), f"row {r} scores differently alone and in a batch"
    reference = rank_evalset(model, s.evalset, s.max_len, batch_size=len(s.evalset))
    for size in (1, 3):
        assert np.array_equal(rank_evalset(model, s.evalset, s.max_len, size), reference), f"ranks change with batch size {size}"


@torch.no_grad()
def check_padding_not_recommended(s: Subject) -> None:
    model, batch = s.model(), s.batch([np.zeros(0, dtype=np.int64)] + s.evalset.histories[1:])
    for exclude_seen in (False, True):
        items, _ = model.recommend(batch, k=10, exclude_seen=exclude_seen)
        assert items.numel() and (items > 0).all(), f"recommend (exclude_seen={exclude_seen}) listed padding (item 0)"


@torch.no_grad()
def check_history_excluded(s: Subject) -> None:
    model, batch = s.model(), s.batch()
    most_seen = max(len(set(h.tolist())) for h in s.evalset.histories)
    items, _ = model.recommend(batch, k=max(1, s.dataset.num_items - most_seen), exclude_seen=True)  # (B, k)
    for r, history in enumerate(s.evalset.histories):
        listed = set(items[r].tolist()) & set(history.tolist())
        assert not listed, f"recommend(exclude_seen=True) listed items {sorted(listed)[:5]} of row {r}'s history"


@torch.no_grad()
def check_save_load(s: Subject) -> None:
    model, batch = s.model(), s.batch()
    loaded = s.reload(model)
    assert torch.equal(loaded.score_all(batch), model.score_all(batch)), "a fresh model loading the state dict scores differently"


@torch.no_grad()
def check_unknown_items_refused(s: Subject) -> None:
    model, n = s.model(), s.dataset.num_items
    for bad in (n + 1, -3):
        try:
            model.score_all(s.batch([np.array([1, bad])] + s.evalset.histories[1:]))
        except UnknownItemError:
            continue
        raise AssertionError(f"score_all accepted item index {bad} (known items: 1..{n}) instead of raising UnknownItemError")


@torch.no_grad()
def check_empty_history(s: Subject) -> None:
    model = s.model()
    batch = make_eval_batch(np.array([s.users[0], -1]), [np.zeros(0, dtype=np.int64)] * 2, np.zeros(2, dtype=np.int64), s.max_len)
    scores = model.score_all(batch)
    assert scores.shape == (2, s.dataset.num_items + 1), f"scores have shape {tuple(scores.shape)}, expected (2, N + 1)"
    assert torch.isfinite(scores[:, 1:]).all(), "an empty history (known user, and unknown user -1) got non-finite scores"


def check_loss_gradient(s: Subject) -> None:
    model = s.model().train()
    loss = model.loss(s.train_batch(), make_objective("ce"))
    assert loss.dim() == 0 and torch.isfinite(loss), f"loss is {loss}, expected a finite scalar"
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), "the loss's gradient is missing or not finite"
    assert any(g.abs().sum() > 0 for g in grads), "the loss's gradient is zero everywhere"


def check_loss_learns(s: Subject, steps: int = 8) -> None:
    model, batch, objective = s.model(), s.train_batch(), make_objective("ce")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = model.eval().loss(batch, objective).item()
    for _ in range(steps):
        optimizer.zero_grad()
        model.train().loss(batch, objective).backward()
        optimizer.step()
    with torch.no_grad():
        after = model.eval().loss(batch, objective).item()
    assert after < before, f"{steps} optimizer steps on one batch did not lower its loss ({before:.4f} -> {after:.4f})"


def check_loss_no_side_effects(s: Subject) -> None:
    once, twice, batch = s.model(), s.model(), s.batch()
    objective = make_objective("ce")
    first = s.train_batch()
    second = next(b for b in (train_batch(s.split, s.users, s.max_len, back) for back in (s.max_len, 1, 0)) if b is not None)  # earlier windows
    for model, batches in ((once, [first]), (twice, [first, second])):
        torch.manual_seed(0)  # the same dropout in both first calls
        model.train()
        for b in batches:
            model.loss(b, objective, *([[]] if collects_writes(model) else []))  # memory writes collected, never applied
        model.eval()
    with torch.no_grad():
        assert torch.equal(once.score_all(batch), twice.score_all(batch)), \
            "a second loss call changed the scores: loss changes state that evaluation reads (memory belongs in write_memory)"


@torch.no_grad()
def check_memory_is_read(s: Subject) -> None:
    batch = s.batch()
    filled = s.model(neighbours=False).score_all(batch)
    if not torch.equal(s.model(memory=False, neighbours=False).score_all(batch), filled):
        return  # the written memory is read (at initialisation its effect may be tiny: any change counts)
    in_window = s.batch([h[-s.max_len:] for h in s.evalset.histories])
    assert not torch.equal(s.model(neighbours=False).score_all(in_window), filled), \
        "memory=True, yet neither the memory written by remember() nor the history older than the window changes any score"


def memory_cell(model):
    """The per-user memory cell the model keeps between requests (UR4Rec-MoE's), or None."""
    return model.user_memory_cell() if hasattr(model, "user_memory_cell") else None


@torch.no_grad()
def check_served_memory(s: Subject) -> None:
    model, batch = s.model(), s.batch()
    cell, table = memory_cell(model), model.item_embeddings()  # table: what serving feeds the cell, (N + 1, d)
    memories = []
    for history in s.evalset.histories:  # each user's memory after the events of its whole history
        memory = cell.new_memory()
        for item in history.tolist():
            cell.observe(memory, item, table)
        memories.append(torch.from_numpy(memory.vector))
    served = model.serve_scores(batch, torch.stack(memories))[0]  # (B, N + 1)
    assert not torch.equal(served, model.serve_scores(batch, None)[0]), "serve_scores ignores the stored per-user memory"
    assert torch.allclose(served, model.score_all(batch), atol=1e-5), "serve_scores with the memory after the history's events differs from score_all"


@torch.no_grad()
def check_neighbours(s: Subject) -> None:
    model, batch = s.model(neighbours=False), s.batch([h[: max(1, s.max_len // 2)] for h in s.evalset.histories])
    off = model.score_all(batch).double()  # (B, N + 1)
    owned = fill_neighbours(model, batch)
    on = model.score_all(batch).double()
    queries = torch.randn(len(batch.users), state_size(model, batch), generator=torch.Generator().manual_seed(1))
    found = model.neighbours.search(queries, batch.users, k=len(model.neighbours))[1]  # (B, k, H) items
    for r, user in enumerate(batch.users.tolist()):
        assert not torch.allclose(on[r], off[r], atol=1e-6), f"the neighbour memory did not change row {r}'s scores"
        own_only = sorted(owned[user] - set().union(*(v for u, v in owned.items() if u != user)))  # items no other owner has
        assert torch.allclose(on[r, own_only], off[r, own_only], atol=1e-5), f"user {user}'s own neighbour entries changed its scores"
        assert not set(found[r].flatten().tolist()) & set(own_only), f"search returned user {user}'s own entries to it"
    loaded = s.reload(model)
    assert loaded.neighbours.describe() == model.neighbours.describe(), "save/load lost the neighbour setting"
    assert torch.equal(loaded.score_all(batch), model.score_all(batch)), "save/load changed the scores with the neighbour memory"


def follows_logs(model) -> bool:
    """Whether the model keeps per-user state derived from event logs (RAMRec's banks), or not."""
    return hasattr(model, "follows_logs") and model.follows_logs()


@torch.no_grad()
def check_logged_state(s: Subject) -> None:
    model = s.model(neighbours=False)
    long = [np.resize(h, 2 * s.max_len + 1) for h in s.evalset.histories]  # logs longer than the window
    batch = s.batch(long)
    before = model.score_all(batch)
    user, log = int(batch.users[0]), long[0].tolist()
    assert model.follow_log(user, log, start=len(log)) == 0, "follow_log wrote entries for positions it was not given"
    assert torch.equal(model.score_all(batch), before), "follow_log without positions changed the scores"
    assert model.follow_log(user, log, start=1) == len(log) - 1, "follow_log should write one entry per position from start on"
    after = model.score_all(batch)
    assert not torch.equal(after[0], before[0]), "the logged positions changed nothing for their user: the state is not read"
    assert torch.equal(after[1:], before[1:]), "one user's logged positions changed another user's scores"


CHECKS: dict[str, Callable[[Subject], None]] = {
    "causal": check_causal,
    "encode_last": check_encode_last,
    "padding_ignored": check_padding_ignored,
    "batch_size_independent": check_batch_size_independent,
    "padding_not_recommended": check_padding_not_recommended,
    "history_excluded": check_history_excluded,
    "save_load": check_save_load,
    "unknown_items_refused": check_unknown_items_refused,
    "empty_history": check_empty_history,
    "loss_gradient": check_loss_gradient,
    "loss_learns": check_loss_learns,
    "loss_no_side_effects": check_loss_no_side_effects,
    "memory_is_read": check_memory_is_read,
    "served_memory": check_served_memory,
    "neighbours": check_neighbours,
    "logged_state": check_logged_state,
}


def applies(check: str, s: Subject) -> bool:
    """Whether ``check`` applies to the subject (``memory_is_read``: memory=True; ``served_memory``: a
    per-user memory cell; ``neighbours``: a neighbour memory; ``logged_state``: state grown from
    event logs)."""
    if check == "memory_is_read":
        return s.memory
    if check == "neighbours":
        return has_neighbours(s.blank())
    if check == "served_memory":
        return memory_cell(s.blank()) is not None
    if check == "logged_state":
        return follows_logs(s.model(neighbours=False))
    return True


def run_check(check: str, s: Subject) -> bool:
    """Run one check; False if it does not apply. Any failure, an unexpected exception included,
    is an ``AssertionError`` naming the check and the subject."""
    if check not in CHECKS:
        raise KeyError(f"unknown conformance check {check!r}: expected one of {list(CHECKS)}")
    if not applies(check, s):
        return False
    try:
        CHECKS[check](s)
    except Exception as exc:  # AssertionError included
        what = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
        raise AssertionError(f"conformance check {check!r} failed for {s.name}: {what}") from exc
    return True


def check_model(factory: Factory, dataset: SequenceDataset, checks: list[str] | None = None, **options) -> list[str]:
    """Run the checks (default: all of :data:`CHECKS`) on the model ``factory(num_items, max_len)``
    builds; ``options`` go to :class:`Subject` (``max_len``, ``memory``, ``remember``, ``num_users``,
    ``name``). Returns the checks that applied; raises ``AssertionError`` naming the first that failed.
    See the module's example."""
    subject = Subject(factory, dataset, **options)
    return [check for check in (checks or CHECKS) if run_check(check, subject)]


# --- the registered models ----------------------------------------------------------------------

SMALL = {"hidden_size": 16, "embedding_size": 16, "inner_size": 32, "num_layers": 1, "num_experts": 2, "memory_dim": 8}


@dataclass
class Case:
    """A registered model at one setting: ``id`` (e.g. ``ramrec-memory``), its name and config, and
    whether its memory is on (then checked with ``Subject(memory=True)``)."""

    id: str
    model: str
    config: object
    memory: bool

    def factory(self, num_items: int, max_len: int):
        from memrec.models import build_model

        return build_model(self.model, num_items, max_len, copy.deepcopy(self.config))


def conformance_cases(names=None, **settings) -> list[Case]:
    """Every registered model (or those ``names``), small (:data:`SMALL` and ``settings``, where its
    config has the field), with and without memory where its config has ``use_memory``.

    Example:
        >>> [case.id for case in conformance_cases(["sasrec", "ramrec"])]
        ['sasrec', 'ramrec-memory', 'ramrec-no-memory']
    """
    from memrec.models import MODELS

    cases = []
    for name in names or MODELS:
        fields = {f.name for f in dataclasses.fields(MODELS[name].config_class)}
        small = {k: v for k, v in {**SMALL, **settings}.items() if k in fields}
        for memory in ((True, False) if "use_memory" in fields else (None,)):
            config = MODELS[name].config_class(**small, **({} if memory is None else {"use_memory": memory}))
            suffix = "" if memory is None else "-memory" if memory else "-no-memory"
            cases.append(Case(name + suffix, name, config, bool(memory)))
    return cases

"""benchmarks/knn_memory.py's core on a tiny real slice of ML-100K: the memory leaves the evaluator's
ranks untouched at lam = 0, never retrieves the queried user's entries or a held-out target, and
does move a retrieved item up."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import knn_memory  # noqa: E402
from memrec.data.batching import make_eval_batch  # noqa: E402
from memrec.models.sasrec import SASRec, SASRecConfig  # noqa: E402
from memrec.train.evaluate import rank_evalset, rank_targets  # noqa: E402

USERS = 40
MAX_LEN = 20


@pytest.fixture(scope="module")
def tiny(ml100k, ml100k_split):
    torch.manual_seed(0)
    model = SASRec(ml100k.num_items, MAX_LEN, SASRecConfig(hidden_size=16, num_layers=1, num_heads=1, inner_size=32)).eval()
    seqs = [s[:30] for s in ml100k.sequences[:USERS]]  # the first 30 items of 40 real users
    train = [s[:-2] for s in seqs]
    valid = ml100k_split.valid.subset(np.arange(USERS))
    valid.histories, valid.targets = train, np.array([s[-2] for s in seqs])
    return model, seqs, train, valid


def test_bank_holds_every_training_position_and_no_held_out_target(tiny):
    model, seqs, train, valid = tiny
    bank = knn_memory.build_bank(model, train, MAX_LEN)
    assert len(bank) == sum(len(s) - 1 for s in train)
    assert all(int(v) == train[u][p] for u, p, v in zip(bank.owners, bank.upto, bank.values[:, 0]))
    assert (bank.upto < torch.tensor([len(train[u]) for u in bank.owners])).all()  # validation target sits at len(train)
    # a key is the user vector of the items before its value, as the evaluator computes it
    b = make_eval_batch(np.array([3]), [train[3][:7]], np.array([train[3][7]]), MAX_LEN)
    row = int(((bank.owners == 3) & (bank.upto == 7)).nonzero())
    torch.testing.assert_close(bank.keys[row], model.encode(b.history, b.lengths)[0], rtol=1e-5, atol=1e-6)
    knn_memory.leak_checker(bank, valid, seqs)  # passes on the training bank ...
    with pytest.raises(AssertionError, match="held-out target"):  # ... and fails on one built from full sequences
        knn_memory.leak_checker(knn_memory.build_bank(model, seqs, MAX_LEN), valid, seqs)


def test_lam_zero_reproduces_the_evaluator_and_no_own_entry_is_retrieved(tiny):
    model, seqs, train, valid = tiny
    bank = knn_memory.build_bank(model, train, MAX_LEN)
    retrieved = []

    def check(rows, batch, bank_rows):
        retrieved.append((batch.users.clone(), bank_rows.clone()))

    settings = [{"similarity": s, "k": 16, "temperature": 0.1, "lam": lam} for s in ("ip", "cos") for lam in (0.0, 0.3)]
    ranks = knn_memory.rank_with_memory(model, valid, bank, settings, MAX_LEN, batch_size=16, check_bank=check)
    plain = rank_evalset(model, valid, MAX_LEN)
    assert np.array_equal(ranks[0], plain) and np.array_equal(ranks[2], plain)
    assert any(not np.array_equal(ranks[i], plain) for i in (1, 3))  # the memory does change something
    many = [{"similarity": s, "k": k, "temperature": t, "lam": lam} for s in ("ip", "cos") for k in (1, 4, 64) for t in (0.05, 1.0) for lam in (0.1, 0.9)]
    many += [{"similarity": "pop", "k": None, "temperature": 1.0, "lam": lam} for lam in (0.1, 0.9)]
    exact = knn_memory.rank_with_memory(model, valid, bank, many, MAX_LEN, batch_size=8)
    fast = knn_memory.rank_with_memory(model, valid, bank, many, MAX_LEN, batch_size=8, fast=True)
    assert all(np.array_equal(e, f) for e, f in zip(exact, fast))  # the target-only ranking used for tuning is rank_targets'
    assert retrieved and all((bank.owners[rows] != users[:, None]).all() for users, rows in retrieved)
    assert all(int(n) < USERS for _, rows in retrieved for n in bank.owners[rows].flatten())
    # the benchmark's own guard accepts these retrievals and rejects a retrieval of the user's own entry
    guard = knn_memory.leak_checker(bank, valid, seqs)
    users, rows = retrieved[0]
    guard(None, type("B", (), {"users": users}), rows)
    own = torch.nonzero(bank.owners == users[0])[0]
    with pytest.raises(AssertionError, match="own user"):
        guard(None, type("B", (), {"users": users[:1]}), own[None, :])


def test_memory_scores_move_retrieved_items_up_and_leave_the_rest_alone(tiny):
    model, seqs, train, valid = tiny
    b = make_eval_batch(valid.users[:2], valid.histories[:2], valid.targets[:2], MAX_LEN)
    logits = model.score_all(b)
    values = torch.tensor([[int(valid.targets[0])], [int(train[1][0])]])  # row 1 points at a history item
    sims = torch.zeros(2, 1)
    scores = knn_memory.memory_scores(logits, b, sims, values, temperature=1.0, lam=0.9)
    assert torch.equal(knn_memory.memory_scores(logits, b, sims, values, 1.0, 0.0), logits.double())
    others = torch.ones_like(scores, dtype=torch.bool)
    others[0, values[0]] = False
    assert torch.equal(scores[others], logits.double()[others])  # masked item's mass is dropped: row 1 unchanged
    assert scores[0, values[0, 0]] > logits[0, values[0, 0]]
    assert rank_targets(scores, b)[0] == 0  # lam = 0.9 on the target alone puts it first

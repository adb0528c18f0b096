"""benchmarks/continual.py: both continual-learning scenarios split as documented and run end to end."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import continual  # noqa: E402


def assert_leave_one_out(part, sequences):
    """``part`` is ``sequences`` (one per user) split leave-one-out: the last item tests, the one before validates."""
    tested = dict(zip(part.test.users.tolist(), range(len(part.test))))
    validated = dict(zip(part.valid.users.tolist(), range(len(part.valid))))
    assert len(part.train) == len(sequences)
    for u, seq in enumerate(sequences):
        if len(seq) < 3:  # trained on, never evaluated
            assert u not in tested and u not in validated and np.array_equal(part.train[u], seq)
            continue
        t, v = tested[u], validated[u]
        assert np.array_equal(part.train[u], seq[:-2])
        assert part.valid.targets[v] == seq[-2] and np.array_equal(part.valid.histories[v], seq[:-2])
        assert part.test.targets[t] == seq[-1] and np.array_equal(part.test.histories[t], seq[:-1])


def check_report(report, scenario):
    assert report["scenario"] == scenario
    assert set(report["results"]) == set(continual.MODELS)
    for r in report["results"].values():
        assert math.isclose(r["forgetting"]["ndcg@10"], r["A_before"]["ndcg@10"] - r["A_after"]["ndcg@10"])
        assert r["forgetting_ndcg@10_ci95"][0] <= r["forgetting_ndcg@10_ci95"][1]
        assert r["phase1"]["epochs"] == 1 and r["phase2"]["epochs"] == 1
        assert all(0.0 <= r[k]["ndcg@10"] <= r[k]["hit@10"] <= 1.0 for k in ("A_before", "A_after", "B_after"))
    verdict = report["memory_halves_forgetting"]
    assert set(verdict) == {"memory-moe, memory", "memory-moe, memory frozen in phase 2"}
    for v in verdict.values():  # decided only where the model without memory measurably forgets
        assert (v["met"] is None) == (v["without_memory_ci95"][0] <= 0)
        assert v["excess_over_half_ci95"][0] <= v["excess_over_half_ci95"][1]
    assert "forgetting" in continual.table(report)


def test_continual_splits_the_time_line_and_measures_forgetting(ml100k, shared_data):
    part_a, part_b, cut = continual.time_halves(ml100k)
    for u, (a, b) in enumerate(zip(part_a.train, part_b.train)):  # A's training items precede the cut, B's follow it
        seq, k = ml100k.sequences[u], int((ml100k.timestamps[u] < cut).sum())
        assert len(a) <= k and np.array_equal(a, seq[: len(a)]) and np.array_equal(b, seq[k : k + len(b)])
    assert len(part_a.test) == 489 and len(part_b.test) == 584
    report = continual.run(epochs_a=1, epochs_b=1, max_minutes=None, data_dir=str(shared_data), max_users=60, log=lambda *_: None)
    check_report(report, "time")
    assert report["cut_timestamp"] > 0


def test_genre_split_rule_picks_drama_and_partitions_the_items(ml100k):
    assert continual.most_common_genre(ml100k) == "Drama"
    in_a = continual.genre_items(ml100k, "Drama")
    assert not in_a[0] and in_a.sum() == 725 and ml100k.num_items - in_a.sum() == 957
    assert all(("Drama" in ml100k.items.category[i].split()) == in_a[i] for i in range(1, ml100k.num_items + 1))


def test_genre_parts_are_disjoint_in_items_and_each_is_leave_one_out(ml100k):
    part_a, part_b, genre = continual.genre_halves(ml100k)
    assert genre == "Drama"
    in_a = continual.genre_items(ml100k, genre)

    def items(part):
        return set(np.concatenate(part.train).tolist()) | set(part.valid.targets.tolist()) | set(part.test.targets.tolist())

    a_items, b_items = items(part_a), items(part_b)
    assert not a_items & b_items
    assert all(in_a[i] for i in a_items) and not any(in_a[i] for i in b_items)
    seqs_a = [seq[in_a[seq]] for seq in ml100k.sequences]  # each user's A items and B items, in time order
    seqs_b = [seq[~in_a[seq]] for seq in ml100k.sequences]
    assert all(len(a) + len(b) == len(seq) for a, b, seq in zip(seqs_a, seqs_b, ml100k.sequences))
    assert_leave_one_out(part_a, seqs_a)
    assert_leave_one_out(part_b, seqs_b)
    assert len(part_a.test) == 941 and len(part_b.test) == 942


def test_unknown_scenario_is_refused(ml100k):
    with pytest.raises(ValueError, match="unknown scenario"):
        continual.scenario_parts(ml100k, "random", 10)


def test_continual_genre_scenario_runs_end_to_end(shared_data):
    report = continual.run(epochs_a=1, epochs_b=1, max_minutes=None, data_dir=str(shared_data), max_users=40, log=lambda *_: None,
                           scenario="genre")
    check_report(report, "genre")
    assert report["genre"] == "Drama" and report["A_items"] + report["B_items"] == 1682
    assert report["A_test_users"] == 40 and report["B_test_users"] == 40

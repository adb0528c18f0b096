"""benchmarks/continual.py: both continual-learning scenarios split as documented and run end to end."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import continual  # noqa: E402
from bench_common import fit, frozen_config  # noqa: E402
from memrec.config import NeighbourConfig  # noqa: E402
from memrec.models import build_model  # noqa: E402
from memrec.train.evaluate import rank_evalset, user_ndcg  # noqa: E402

TINY_GRID = NeighbourConfig(ks=(8, 64), temperatures=(0.3,), weights=(0.3, 0.7), decays=(0.0,), confidence=0.0)


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
    if "episodic_memory" in report:
        check_episodic(report)
    else:
        assert all("episodic_memory" not in r for r in report["results"].values())


def check_episodic(report):
    """The episodic memory of part A: both key policies reported for every model, forgetting against
    the same network's A before, weight 0 of the sweep equal to the model alone, and the verdict."""
    assert set(report["episodic_memory"]["policies"]) == {"phase1_keys", "reindexed", "gated", "retuned"}
    assert set(report["episodic_memory_halves_forgetting"]) == set(report["results"])
    for label, r in report["results"].items():
        e = r["episodic_memory"]
        assert e["entries"] > 0 and 0.0 <= e["chosen"]["weight"] < 1.0
        assert e["valid_grid"][0]["weight"] == 0.0 and e["valid_ndcg@10_with"] >= e["valid_ndcg@10_without"]
        rows = e["weight_sweep_not_used_for_selection"]["rows"]
        assert rows[0]["weight"] == 0.0
        gate = e["gate"]  # the lowest candidate that costs B's validation nothing (1.0 when none does)
        ok = [row["gate"] for row in gate["B_valid"] if row["B_valid_ndcg@10"] >= row["B_valid_ndcg@10_without"]]
        assert gate["chosen"] == (min(ok, default=1.0) if gate["B_valid"] else -1.0)
        assert -1.0 <= gate["nearest_cosine_A_test"]["p5"] <= gate["nearest_cosine_A_test"]["p95"] <= 1.0 + 1e-6
        retuned = e["retuning"]  # chosen again on A's validation after phase 2, then gated on B's validation
        assert retuned["A_valid_ndcg@10_with"] >= retuned["A_valid_ndcg@10_without"]
        ok = [row["gate"] for row in retuned["B_valid"] if row["B_valid_ndcg@10"] >= row["B_valid_ndcg@10_without"]]
        assert retuned["chosen"]["gate"] == (min(ok, default=1.0) if retuned["B_valid"] else -1.0)
        for policy in ("phase1_keys", "reindexed", "gated", "retuned"):
            m = e[policy]
            assert math.isclose(m["forgetting"]["ndcg@10"], r["A_before"]["ndcg@10"] - m["A_after"]["ndcg@10"])
            assert m["forgetting_ndcg@10_ci95"][0] <= m["forgetting_ndcg@10_ci95"][1]
            assert math.isclose(m["B_change_ndcg@10"], m["B_after"]["ndcg@10"] - r["B_after"]["ndcg@10"])
            assert all(0.0 <= m[k]["ndcg@10"] <= m[k]["hit@10"] <= 1.0 for k in ("A_after", "B_after"))
            assert math.isclose(rows[0][f"A_ndcg@10_{policy}"], r["A_after"]["ndcg@10"])  # weight 0: the model alone
            assert math.isclose(rows[0][f"B_ndcg@10_{policy}"], r["B_after"]["ndcg@10"])
            v = report["episodic_memory_halves_forgetting"][label][policy]
            assert v["forgetting"] == m["forgetting"]["ndcg@10"] and v["without_memory"] == r["forgetting"]["ndcg@10"]
            assert (v["met"] is None) == (r["forgetting_ndcg@10_ci95"][0] <= 0)
            assert v["excess_over_half_ci95"][0] <= v["excess_over_half_ci95"][1]
    assert "A after + mem (a)" in continual.episodic_table(report) and "B + mem (d)" in continual.episodic_table(report)


def test_continual_splits_the_time_line_and_measures_forgetting(ml100k, shared_data):
    part_a, part_b, cut = continual.time_halves(ml100k)
    for u, (a, b) in enumerate(zip(part_a.train, part_b.train)):  # A's training items precede the cut, B's follow it
        seq, k = ml100k.sequences[u], int((ml100k.timestamps[u] < cut).sum())
        assert len(a) <= k and np.array_equal(a, seq[: len(a)]) and np.array_equal(b, seq[k : k + len(b)])
    assert len(part_a.test) == 489 and len(part_b.test) == 584
    report = continual.run(epochs_a=1, epochs_b=1, max_minutes=None, data_dir=str(shared_data), max_users=60, log=lambda *_: None,
                           episodic=False)  # the episodic memory is checked in the genre scenario (the time line barely forgets)
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
                           scenario="genre", grid=TINY_GRID, seed=3)
    check_report(report, "genre")
    assert report["seed"] == 3
    assert "episodic_memory_halves_forgetting" in report
    assert report["genre"] == "Drama" and report["A_items"] + report["B_items"] == 1682
    assert report["A_test_users"] == 40 and report["B_test_users"] == 40


@pytest.fixture(scope="module")
def tiny_genre(ml100k):
    """Parts A and B of 40 users and a SASRec trained 1 epoch on A, with A's episodic memory."""
    part_a, part_b, genre = continual.genre_halves(ml100k, max_users=40)
    config = frozen_config("sasrec", "ml-100k", None, 1)
    model, _ = fit(config, ml100k.num_items, part_a, log=lambda line: None)
    memory, episodes, table = continual.episodic_memory(model, part_a, config.data.max_len, TINY_GRID)
    return part_a, part_b, continual.genre_items(ml100k, genre), config, model, memory, episodes, table


def test_episodic_memory_holds_only_part_a_training_episodes(tiny_genre):
    part_a, _, in_a, _, _, memory, episodes, table = tiny_genre
    assert len(memory) == len(episodes) == sum(max(len(seq) - 1, 0) for seq in part_a.train)
    assert in_a[memory.values.numpy()].all()  # A items only
    held_out = {(int(u), int(t)) for ev in (part_a.valid, part_a.test) for u, t in zip(ev.users, ev.targets)}
    for u, seq in enumerate(part_a.train):  # each owner's values: exactly the items of its training sequence after the first
        values = memory.values[memory.owners == u, 0].tolist()
        assert sorted(values) == sorted(seq[1:].tolist())
        assert not {(u, v) for v in values} & held_out  # no A validation or test target of the owner is a value
    for u, h, v in zip(episodes.users, episodes.histories, episodes.targets):  # an episode is a training prefix and its next item
        seq = part_a.train[u]
        assert np.array_equal(seq[: len(h)], h) and seq[len(h)] == v
    assert table[0]["weight"] == 0.0 and len(table) == len(TINY_GRID.settings())
    assert (memory.k, memory.temperature, memory.weight) in {(r["k"], r["temperature"], r["weight"]) for r in table}


def test_episodic_memory_at_weight_0_reproduces_the_models_ranks(tiny_genre):
    part_a, part_b, _, config, model, memory, episodes, table = tiny_genre
    max_len = config.data.max_len
    for evalset in (part_a.test, part_b.test):
        plain = rank_evalset(model, evalset, max_len)
        ranks = continual.memory_ranks(model, memory, evalset, max_len, 64, 0.3, [0.0, 0.7])
        assert np.array_equal(ranks[0.0], plain)
        assert ranks[0.7].shape == plain.shape
        chosen, sweep = continual.with_memory(model, memory, evalset, max_len, continual.sweep_setting(table), plain)  # checks weight 0 itself
        assert set(sweep) >= {0.0, *continual.SWEEP_WEIGHTS}


def test_reindexing_recomputes_only_the_keys(tiny_genre, ml100k):
    part_a, _, _, config, model, memory, episodes, _ = tiny_genre
    same = continual.reindex(memory, model, episodes, config.data.max_len)  # the same encoder: the same memory
    assert torch.allclose(same.keys, memory.keys) and torch.equal(same.values, memory.values) and torch.equal(same.owners, memory.owners)
    other = build_model(config.model, ml100k.num_items, config.data.max_len, config.model_config)  # another encoder
    moved = continual.reindex(memory, other.eval(), episodes, config.data.max_len)
    assert not torch.allclose(moved.keys, memory.keys)
    assert torch.equal(moved.values, memory.values) and torch.equal(moved.owners, memory.owners)
    assert (moved.k, moved.temperature, moved.weight) == (memory.k, memory.temperature, memory.weight)


def test_the_gate_is_the_lowest_that_costs_bs_validation_nothing(tiny_genre):
    part_a, part_b, _, config, model, memory, episodes, _ = tiny_genre
    max_len = config.data.max_len
    strong = continual.reindex(memory, model, episodes, max_len)
    strong.set(64, 0.3, 0.7)  # in use whatever A's validation chose
    out, rows = continual.gated(strong, model, part_b.valid, max_len)
    assert [r["gate"] for r in rows] == list(continual.GATES) and strong.gate == -1.0  # the input is left as it was
    plain = float(np.mean(user_ndcg(rank_evalset(model, part_b.valid, max_len))))
    assert all(math.isclose(r["B_valid_ndcg@10_without"], plain) for r in rows)
    ok = [r["gate"] for r in rows if r["B_valid_ndcg@10"] >= plain]
    assert out.gate == min(ok, default=1.0) and (out.k, out.temperature, out.weight) == (64, 0.3, 0.7)
    chosen = continual.memory_ranks(model, out, part_b.valid, max_len, 64, 0.3, [0.7], out.gate)[0.7]
    assert np.mean(user_ndcg(chosen)) >= plain  # at the chosen gate B's validation loses nothing

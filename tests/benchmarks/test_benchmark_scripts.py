"""The benchmark scripts' core functions run end to end on a tiny real subset, so they cannot rot."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import few_shot  # noqa: E402
import memory_retrieval  # noqa: E402
from bench_common import subset_split  # noqa: E402


def test_memory_retrieval_measures_every_backend_and_faiss_agrees_with_exact_search():
    report = memory_retrieval.run(sizes=(2000,), dims=(16,), large_dims=(), batch=32, chunk=500, min_seconds=0.02, log=lambda *_: None)
    assert {r["backend"] for r in report["rows"]} == ({"torch", "faiss"} if report["faiss"] else {"torch"})
    for row in report["rows"]:
        assert row["memory_entries"] == 2000
        assert all(row[k] > 0 for k in row if k.endswith("_per_s"))
        assert row["recall@10_vs_exact"] in (None, 1.0)  # memrec's FAISS index is flat: exact
    assert "| 2000 | 16 | torch |" in memory_retrieval.table(report)


def test_few_shot_scores_every_variant_on_the_same_held_out_users(shared_data):
    report = few_shot.run("ml-100k", None, epochs=1, data_dir=str(shared_data), max_users=6, max_training_users=60, log=lambda *_: None)
    assert [r["n"] for r in report["results"]] == [3, 5, 10]
    for r in report["results"]:
        assert r["users"] == 6  # every ML-100K user has more than 10 training items
        for v in few_shot.VARIANTS:
            assert 0.0 <= r[v]["ndcg@10"] <= r[v]["hit@10"] <= 1.0
    assert all(0.0 <= r["few_shot_share_of_memories_read"] <= 1.0 for r in report["results"])
    assert report["training"]["memory-moe"]["epochs"] == 1
    assert "memory-moe + few_shot_adapt" in few_shot.table(report)


def test_held_out_users_never_reach_training(ml100k_split):
    held = few_shot.held_out_users(943, 0.2, seed=0)
    assert len(held) == 189 and np.array_equal(held, few_shot.held_out_users(943, 0.2, seed=0))
    split = subset_split(ml100k_split, np.setdiff1d(np.arange(943), held), "test")
    assert all(len(split.train[u]) == 0 for u in held)
    assert not set(split.valid.users) & set(held) and not set(split.test.users) & set(held)
    shots = few_shot.shot_set(ml100k_split.train, held, 5)
    assert all(len(h) == 5 for h in shots.histories)
    assert all(t == ml100k_split.train[u][5] for u, t in zip(shots.users, shots.targets))


def test_gc_pauses_counts_what_the_service_freezes(shared_data, tmp_path):
    import json
    import os
    import subprocess

    out = tmp_path / "gc.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gc_pauses.py"
    subprocess.run([sys.executable, str(script), "--data-dir", str(shared_data), "--repeats", "1", "--json", str(out)],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    report = json.loads(out.read_text())
    assert report["tracked_objects"] > 50_000 and report["frozen_objects"] > 50_000
    assert report["tracked_objects_after_freeze"] < 1_000

"""benchmarks/neighbours_every_model.py on a real one-epoch SASRec of ML-100K trained with the neighbour
memory: its figures with the memory as chosen are metrics.json's and `memrec evaluate`'s, its figures
with the memory off are `memrec evaluate --memory off`'s, and seeds are summarised as mean ± std."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import neighbours_every_model as bench  # noqa: E402
from bench_common import paired_ci  # noqa: E402
from memrec.cli import main as memrec  # noqa: E402


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("nb") / "sasrec-nb"
    assert memrec(["train", "--model", "sasrec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out),
                   "--train.epochs=1", "--model_config.hidden_size=16", "--memory.neighbours.enabled=true",
                   "--memory.neighbours.ks=[64]", "--memory.neighbours.temperatures=[0.3]", "--memory.neighbours.weights=[0.3]",
                   "--memory.neighbours.decays=[0.5]", "--memory.neighbours.confidence=0.0"]) == 0
    return out


def evaluated(folder, shared_data, tmp_path, memory):
    path = tmp_path / f"eval-{memory}.json"
    assert memrec(["evaluate", str(folder), "--data-dir", str(shared_data), "--memory", memory, "--json", str(path)]) == 0
    return next(row for row in json.loads(path.read_text()) if row["split"] == "test")


def test_figures_are_the_evaluators_with_and_without_memory(run_folder, shared_data, tmp_path):
    report = bench.run([run_folder], str(shared_data), log=lambda *_: None)
    saved = json.loads((run_folder / "metrics.json").read_text())
    (record,) = report["runs"]
    assert record["memory_used"], "confidence 0: the one setting is chosen if it gains at all on validation"
    assert record["chosen"] == saved["neighbour_memory"]["chosen"] and record["chosen"]["k"] == 64
    assert record["valid_ndcg@10_gain_interval"] == saved["neighbour_memory"]["valid_ndcg@10_gain_interval"]
    assert record["grid"] == "ks=[64] temperatures=[0.3] weights=[0.3] decays=[0.5] confidence=0.0"
    assert record["matches_metrics_json"]
    with_mem, without = evaluated(run_folder, shared_data, tmp_path, "as-trained"), evaluated(run_folder, shared_data, tmp_path, "off")
    for metric in ("ndcg@10", "hit@10"):
        assert record["test_with"][metric] == with_mem[metric] == saved["test"][metric]
        assert record["test_without"][metric] == without[metric]
    assert record["test_with"]["ndcg@10"] != record["test_without"]["ndcg@10"]  # the memory does move ranks
    (summary,) = report["summary"]
    assert summary["seeds"] == [42] and summary["test_with"]["ndcg@10"]["std"] is None
    assert summary["test_with"]["ndcg@10"]["mean"] == record["test_with"]["ndcg@10"]
    assert summary["test_ndcg@10_gain_ci95"] == record["test_ndcg@10_gain_ci95"]
    lo, hi = summary["test_ndcg@10_gain_ci95"]
    assert lo <= record["test_with"]["ndcg@10"] - record["test_without"]["ndcg@10"] <= hi
    assert "| ml-100k | sasrec (ks=[64]" in report["markdown"] and "42: k64 t0.3 w0.3 d0.5 [" in report["markdown"]


def test_seeds_are_summarised_as_mean_std_and_seed_averaged_user_gain():
    base = {"dataset": "d", "model": "m", "grid": "generic", "chosen": {"k": 8, "temperature": 0.3, "weight": 0.5, "gate": -1.0, "decay": 0.0},
            "memory_used": True, "valid_ndcg@10_gain_interval": [0.001, 0.002]}
    records = [{**base, "run": f"r{s}", "seed": s, "test_without": {"ndcg@10": 0.1 * s, "hit@10": 0.2}, "test_with": {"ndcg@10": 0.2 * s, "hit@10": 0.3}}
               for s in (1, 2)]
    gains = [np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.5])]
    (summary,) = bench.summarise(records, gains)
    assert summary["test_with"]["ndcg@10"]["mean"] == pytest.approx(0.3)
    assert summary["test_with"]["ndcg@10"]["std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert summary["test_ndcg@10_relative_gain"] == "+100.0%"
    assert summary["test_ndcg@10_gain_ci95"] == paired_ci(np.full(3, 0.5))
    with pytest.raises(SystemExit, match="seed given twice"):
        bench.summarise([records[0], records[0]], gains)

"""benchmarks/ramrec_memory.py on a real one-epoch RAMRec of ML-100K: the variants switch exactly the
memory they name, "full" is what the evaluator ranks for the checkpoint, and read costs are measured."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import ramrec_memory  # noqa: E402
from bench_common import load_run, subset_split  # noqa: E402
from memrec.config import RunConfig  # noqa: E402
from memrec.train.evaluate import rank_evalset  # noqa: E402
from memrec.train.run import train_and_evaluate  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("ramrec")
    config = RunConfig.from_dict({
        "model": "ramrec", "data": {"dataset": "ml-100k", "data_dir": str(shared_data), "max_len": 10}, "train": {"epochs": 1},
        "model_config": {"hidden_size": 16, "inner_size": 32, "num_layers": 1, "neighbour_ks": [64], "neighbour_temperatures": [0.3],
                         "neighbour_weights": [0.3]}})
    metrics = train_and_evaluate(config, out, log=lambda *_: None, progress=False)
    assert metrics["neighbour_memory"]["entries"] > 90_000  # every training position of 943 users
    return out / "checkpoint.pt", metrics


def test_variants_switch_the_memories_they_name(checkpoint):
    path, metrics = checkpoint
    model, config, _, split = load_run(path)
    model.neighbours.set(k=64, temperature=0.3, weight=0.3)  # in use, whatever validation chose
    copies = ramrec_memory.variants(model)
    assert copies["full"].neighbours.active and copies["no own bank"].neighbours.active
    assert not copies["no neighbour memory"].neighbours.active and not copies["neither"].neighbours.active
    assert copies["full"].config.bank_at_eval and not copies["neither"].config.bank_at_eval
    assert model.neighbours.active and model.config.bank_at_eval  # the copies left the model alone
    test = split.test.subset(np.arange(120))
    full = rank_evalset(copies["full"], test, config.data.max_len)
    assert np.array_equal(full, rank_evalset(model, test, config.data.max_len))
    assert not np.array_equal(full, rank_evalset(copies["no neighbour memory"], test, config.data.max_len))


def test_report_matches_the_training_run_and_measures_costs(checkpoint):
    path, metrics = checkpoint
    report = ramrec_memory.run(path, single_users=20, log=lambda *_: None)
    assert report["test"]["full"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-12)
    assert report["neighbour_setting"] == metrics["neighbour_memory"]["chosen"]
    for label in ("batched", "single"):
        assert report["read_costs"][label]["forward_us"] > 0
    assert report["read_costs"]["neighbour_entries"] == metrics["neighbour_memory"]["entries"]
    assert set(report["test"]) == {"full", "no neighbour memory", "no own bank", "neither"}
    assert report["training_costs"] is None  # only with --epoch-cost


def test_epoch_costs_train_both_models_side_by_side(checkpoint):
    _, config, ds, split = load_run(checkpoint[0])
    small = subset_split(split, np.arange(100), split.protocol)
    costs = ramrec_memory.epoch_costs(config, ds.num_items, small, log=lambda *_: None)
    assert costs["sasrec_epoch_s"] > 0 and costs["ramrec_epoch_s"] > 0 and costs["ramrec_neighbour_memory_build_and_tune_s"] > 0
    assert costs["epoch_ratio_ramrec_over_sasrec"] == round(costs["ramrec_epoch_s"] / costs["sasrec_epoch_s"], 2)

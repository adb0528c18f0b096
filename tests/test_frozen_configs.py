"""Every frozen config loads, names a known model and data set, and states the figures it reaches:
the ones benchmarks/results/runs.json holds for it, the docs' one source for training runs."""
import json
import re
from pathlib import Path

import pytest

from memrec.cli import CONFIG_DIR, frozen_config
from memrec.config import RunConfig
from memrec.data import REGISTRY

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
RUNS = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "runs.json").read_text())["runs"]
STATED = re.compile(r"test NDCG@10 (0\.\d{4}), HR@10 (0\.\d{4})")


def test_there_are_frozen_configs():
    assert {p.name for p in CONFIGS} >= {"sasrec-ml-100k.yaml", "gru4rec-ml-100k.yaml"}


def test_every_frozen_run_has_a_config():
    frozen = {run_id for run_id, run in RUNS.items() if "frozen_config" in run}
    assert frozen == {p.stem for p in CONFIGS}
    assert all(RUNS[run_id]["frozen_config"] == f"{run_id}.yaml" for run_id in frozen)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_frozen_config_is_valid_and_states_its_numbers(path):
    config = RunConfig.from_yaml(path)
    assert path.stem == f"{config.model}-{config.data.dataset}"
    assert config.data.dataset in REGISTRY
    assert frozen_config(config.model, config.data.dataset) == path
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    stated = STATED.findall(header)
    assert len(stated) == 1, "state the measured figures once: 'test NDCG@10 0.xxxx, HR@10 0.xxxx'"
    run = RUNS[path.stem]
    assert stated[0] == (f"{run['test']['ndcg@10']:.4f}", f"{run['test']['hit@10']:.4f}"), \
        f"{path.name} states {stated[0]}, benchmarks/results/runs.json {path.stem!r} holds {run['test']}"
    assert (run["model"], run["dataset"], run["seeds"]) == (config.model, config.data.dataset, [config.train.seed])
    assert f"Reproduce: {run['command']}\n" in header

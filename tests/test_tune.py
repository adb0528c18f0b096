"""memrec tune: an Optuna study on validation NDCG@10 that prunes, resumes and writes a config memrec train takes."""
import csv
import json
import subprocess
import sys

import pytest

from memrec.config import RunConfig
from memrec.errors import ConfigError
from memrec.tune import configured, search_space

SPACE = "model_config.hidden_size: [8, 16]\ntrain.lr: [0.000001, 0.003]\n"
TINY = ["--data.max_len=10", "--train.epochs=2"]


def tune(tmp_path, trials: int, prune_from: int = 1):
    cmd = [sys.executable, "-m", "memrec", "tune", "--model", "sasrec", "--dataset", "ml-100k", "--space", str(tmp_path / "space.yaml"),
           "--trials", str(trials), "--startup", "3", "--prune-from", str(prune_from), "--output", str(tmp_path / "study"), *TINY]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_study_prunes_resumes_and_writes_the_best_config(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    first = tune(tmp_path, 8)
    assert first["trials"] == 8 and first["pruned"] >= 1  # a trial below the median is stopped after its first epoch
    assert first["best"]["train.lr"] == 0.003
    rows = list(csv.DictReader(open(tmp_path / "study" / "trials.csv")))
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert all(r["epochs_reported"] == "1" and float(r["valid_ndcg@10"]) < first["best_valid_ndcg@10"] for r in pruned)  # stopped early
    assert all(float(r["seconds"]) > 0 for r in rows)  # a pruned trial's time is counted too
    best = RunConfig.from_yaml(tmp_path / "study" / "best.yaml")
    assert (best.model_config.hidden_size, best.train.lr, best.data.max_len) == (first["best"]["model_config.hidden_size"], 0.003, 10)
    assert (tmp_path / "study" / "tune.png").stat().st_size > 10_000
    again = tune(tmp_path, 9)  # resumed: one more trial, the first eight kept
    assert again["trials"] == 9 and again["complete"] + again["pruned"] == 9
    assert again[f"best_valid_ndcg@10"] >= first["best_valid_ndcg@10"]


def test_no_trial_is_pruned_before_the_epoch_prune_from_names(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    summary = tune(tmp_path, 8, prune_from=2)  # the seeded sampler draws the same trials as the study above
    rows = list(csv.DictReader(open(tmp_path / "study" / "trials.csv")))
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert summary["pruned"] >= 1 and all(r["epochs_reported"] == "2" for r in pruned)  # with --prune-from 1 they stop at epoch 1


def test_a_trial_left_running_by_a_killed_process_is_failed_and_run_again(tmp_path):
    import optuna

    (tmp_path / "space.yaml").write_text("model_config.hidden_size: [8]\n")
    tune(tmp_path, 1)
    study = optuna.load_study(study_name="memrec", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    study.ask()  # what a process killed during a trial leaves behind: a trial still RUNNING
    again = tune(tmp_path, 2)
    states = [t.state.name for t in optuna.load_study(study_name="memrec", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}").trials]
    assert states.count("RUNNING") == 0 and states.count("FAIL") == 1
    assert again["complete"] + again["pruned"] == 2  # the failed trial does not count: two finished, as asked


def test_a_study_refuses_another_space_in_the_same_folder(tmp_path):
    (tmp_path / "space.yaml").write_text("model_config.hidden_size: [8]\n")
    tune(tmp_path, 1)
    (tmp_path / "space.yaml").write_text("model_config.hidden_size: [16]\n")
    done = subprocess.run([sys.executable, "-m", "memrec", "tune", "--model", "sasrec", "--space", str(tmp_path / "space.yaml"),
                           "--trials", "2", "--output", str(tmp_path / "study"), *TINY], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "holds a study of another space" in done.stderr


def test_every_models_declared_space_names_real_settings():
    from memrec.models import MODELS

    for name in MODELS:
        space = search_space(name)
        base = RunConfig.from_dict({"model": name})
        for key, spec in space.items():  # each value a config accepts: an unknown or refused key raises
            values = spec if isinstance(spec, list) else [spec["low"], spec["high"]]
            for value in values:
                assert configured(base, {key: value}).to_dict()[key.split(".")[0]][key.split(".")[1]] == value
    assert search_space("sasrec")["train.train_windows"] == ["all", "prefixes"]
    assert "train.train_windows" not in search_space("ramrec")  # its banks are written from whole windows


def test_spaces_are_checked_before_any_training():
    assert {"train.lr", "model_config.hidden_size", "model_config.bank_capacity"} <= set(search_space("ramrec"))
    base = RunConfig.from_dict({"model": "sasrec"})
    with pytest.raises(ConfigError, match="unknown keys"):
        configured(base, {"model_config.hidden": 8})
    with pytest.raises(ConfigError, match="low < high"):
        from memrec.tune import _check_spec
        _check_spec("train.lr", {"low": 0.1, "high": 0.01})

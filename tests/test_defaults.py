"""Settings for data nobody tuned: the rules of memrec.defaults, applied by run_config and
`memrec train` without a frozen config; anything the user gives wins."""
import json
import subprocess
import sys

import pytest

from memrec.api import run_config
from memrec.defaults import data_defaults, prefix_positions


@pytest.fixture
def clicks(tmp_path):
    """A CSV of 40 users with 6 items each: short sequences, few users."""
    rows = "".join(f"u{u},i{(u * 7 + j) % 30},{j}\n" for u in range(40) for j in range(6))
    path = tmp_path / "clicks.csv"
    path.write_text("user,item,timestamp\n" + rows)
    return path


def test_the_rules_follow_the_statistics():
    sparse = data_defaults({"users": 22_363, "interactions": 198_502, "avg_sequence_length": 8.9, "prefix_positions": 1_100_000})
    dense = data_defaults({"users": 943, "interactions": 100_000, "avg_sequence_length": 106.0, "prefix_positions": 3_810_000})
    assert sparse == {"model_config": {"dropout": 0.5}, "train": {"batch_size": 256, "patience": 10, "eval_every": 2, "train_windows": "prefixes"}}
    assert dense == {"model_config": {"dropout": 0.2}, "train": {"batch_size": 64, "patience": 15, "eval_every": 1, "train_windows": "prefixes"}}


def test_no_model_gives_the_recommended_configuration_with_settings_from_the_data(clicks):
    said = []
    cfg = run_config(None, str(clicks), log=said.append)
    assert (cfg.model, cfg.memory.neighbours.enabled) == ("sasrec", True)
    assert (cfg.model_config.dropout, cfg.train.batch_size, cfg.train.patience, cfg.train.train_windows) == (0.5, 64, 15, "prefixes")
    assert "from the data's statistics" in said[0] and "dropout=0.5" in said[0] and "train_windows=prefixes" in said[0]


def test_prefix_positions_count_what_an_epoch_of_prefixes_encodes():
    import numpy as np

    from memrec.data.batching import training_windows

    lengths = [3, 5, 9, 30]
    sequences = [np.arange(1, n - 1) for n in lengths]  # leave-one-out: the last two items are held out
    windows = training_windows(sequences, max_len=8, mode="prefixes")
    assert prefix_positions(lengths, max_len=8) == sum(len(w) - 1 for _, _, w in windows)  # inputs of every sample


def test_long_sequences_keep_prefixes_while_an_epoch_stays_affordable():
    long_small = {"users": 1_090, "interactions": 52_551, "avg_sequence_length": 48.2, "prefix_positions": 1_710_000}  # LastFM
    ml_100k = {"users": 943, "interactions": 100_000, "avg_sequence_length": 106.0, "prefix_positions": 3_810_000}
    long_large = {"users": 50_000, "interactions": 5_000_000, "avg_sequence_length": 100.0, "prefix_positions": 200_000_000}
    assert data_defaults(long_small)["train"]["train_windows"] == "prefixes"
    assert data_defaults(ml_100k)["train"]["train_windows"] == "prefixes"
    assert data_defaults(long_large)["train"]["train_windows"] == "all"  # an epoch of prefixes would cost hours
    assert data_defaults(long_small)["model_config"]["dropout"] == 0.2


def test_the_training_samples_rule_only_reaches_models_that_search_them(clicks):
    assert run_config("sasrec", str(clicks)).train.train_windows == "prefixes"
    assert run_config("ramrec", str(clicks)).train.train_windows == "all"  # its banks are written from whole windows
    assert run_config("gru4rec", str(clicks)).train.train_windows == "all"  # not measured there
    assert run_config("sasrec", str(clicks), overrides=["train.train_windows=last"]).train.train_windows == "last"  # the user wins


def test_what_the_user_gives_wins_over_the_rules(clicks):
    cfg = run_config("gru4rec", str(clicks), overrides=["train.batch_size=8"], memory="off")
    assert (cfg.model, cfg.train.batch_size, cfg.memory.neighbours.enabled, cfg.model_config.dropout) == ("gru4rec", 8, False, 0.5)
    plain = run_config("gru4rec", str(clicks), frozen=False)  # --no-frozen: the built-in defaults alone
    assert plain.train.batch_size == type(plain.train)().batch_size and plain.train.patience == type(plain.train)().patience


def test_a_frozen_config_wins_over_the_rules():
    cfg = run_config("sasrec", "beauty")  # the frozen config: no data loaded, its own settings
    assert (cfg.model_config.dropout, cfg.train.batch_size, cfg.memory.neighbours.enabled) == (0.5, 256, False)
    assert run_config(None, "beauty").memory.neighbours.enabled, "no model named: the recommended configuration"


def test_memrec_train_without_a_model_trains_sasrec_with_the_neighbour_memory(clicks, tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "memrec", "train", "--dataset", str(clicks), "--output", str(out), "--train.epochs=1"],
                   check=True, capture_output=True, text=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "sasrec"
    assert metrics["neighbour_memory"]["entries"] > 0  # built, then used or switched off by validation

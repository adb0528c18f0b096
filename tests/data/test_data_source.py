"""A checkpoint remembers where its data was read (issue 22): `memrec evaluate CHECKPOINT` and
`memrec.load` work in a fresh shell without MEMREC_DATA_DIR; older checkpoints, without the record,
still load through their config; a record whose files have gone falls back to the name."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import memrec
from memrec.cli import main
from memrec.config import RunConfig
from memrec.models import build_model
from memrec.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(ml100k, tmp_path_factory):
    """A GRU4Rec over ML-100K whose config names the data set only (found through MEMREC_DATA_DIR when trained)."""
    config = RunConfig.from_dict({"model": "gru4rec", "data": {"dataset": "ml-100k", "download": False},
                                  "model_config": {"embedding_size": 8, "hidden_size": 8}})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, build_model("gru4rec", ml100k.num_items, config.data.max_len, config.model_config), config, ml100k)
    return path


@pytest.fixture
def fresh_shell(monkeypatch, tmp_path):
    """No MEMREC_DATA_DIR, an empty cache, and another working directory."""
    monkeypatch.delenv("MEMREC_DATA_DIR", raising=False)
    monkeypatch.setenv("MEMREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return {k: v for k, v in os.environ.items() if k != "MEMREC_DATA_DIR"}


def with_payload(checkpoint, path, **changes):
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in {**payload, **changes}.items() if v is not None}, path)
    return path


def test_the_checkpoint_records_the_files_it_was_trained_on(checkpoint, ml100k, shared_data):
    source = load_checkpoint(checkpoint).data_source
    assert source == ml100k.origin == {"path": str((shared_data / "ml-100k" / "ml-100k.inter").resolve()), "name": "ml-100k",
                                       "format": "atomic", "item_file": None}


def test_evaluate_in_a_fresh_shell_reads_the_recorded_files(checkpoint, fresh_shell, tmp_path):
    done = subprocess.run([sys.executable, "-m", "memrec.cli", "evaluate", str(checkpoint), "--json", "e.json"], env=fresh_shell,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "e.json").read_text())
    assert [r["dataset"] for r in rows] == ["ml-100k", "ml-100k"] and "full ranking over 1682 items" in done.stdout


def test_load_in_a_fresh_shell_and_the_record_is_what_makes_it_work(checkpoint, fresh_shell, tmp_path, capsys):
    rec = memrec.load(checkpoint)
    assert rec.dataset.name == "ml-100k" and rec.dataset.num_interactions == 100_000
    old = with_payload(checkpoint, tmp_path / "old.pt", data_source=None)  # as written before the record existed
    assert load_checkpoint(old).data_source is None
    assert main(["evaluate", str(old)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memrec evaluate: error: data set 'ml-100k' not found; looked for") and err.count("\n") == 1


def test_files_that_moved_are_found_by_name_again(checkpoint, shared_data, fresh_shell, tmp_path, monkeypatch, capsys):
    moved = with_payload(checkpoint, tmp_path / "moved.pt",
                         data_source={"path": str(tmp_path / "gone" / "ml-100k.inter"), "name": "ml-100k", "format": "atomic", "item_file": None})
    assert main(["evaluate", str(moved)]) == 2
    assert f"(it was read from {tmp_path / 'gone' / 'ml-100k.inter'}, which is no longer there)" in capsys.readouterr().err
    monkeypatch.setenv("MEMREC_DATA_DIR", str(shared_data))
    assert memrec.load(moved).dataset.origin["path"] == str((shared_data / "ml-100k" / "ml-100k.inter").resolve())


def test_a_bad_record_is_one_checkpoint_error(checkpoint, tmp_path):
    bad = with_payload(checkpoint, tmp_path / "bad.pt", data_source=["ml-100k"])
    with pytest.raises(CheckpointError, match=r"bad.pt: data_source is a list, expected a mapping with the data's path"):
        load_checkpoint(bad)

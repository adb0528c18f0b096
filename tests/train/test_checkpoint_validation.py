"""A checkpoint is checked before a model is built or a server starts (issue 17, items 1 and 2): what
does not fit is one `CheckpointError` line naming the file, exit status 2, in `memrec evaluate`,
`memrec recommend` and `memrec serve` alike; a run folder stands for its checkpoint.pt."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from memrec.cli import main
from memrec.serve.testing import TINY, free_port


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "gru"
    assert main(["train", "--model", "gru4rec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out),
                 "--train.epochs=1", "--model_config.hidden_size=16"]) == 0
    return out


@pytest.fixture(scope="module")
def payload(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)


def config_with(payload, **changes) -> dict:
    return {**payload["config"], **changes}


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


# name -> (how the checkpoint is spoiled, what the one line must say)
SPOILED = {
    "no state_dict": (lambda p: without(p, "state_dict"), "state_dict is missing, expected a mapping of tensors"),
    "another model's config": (
        lambda p: {**p, "config": config_with(p, model="sasrec", model_config=TINY["sasrec"])},
        "state_dict has 4 keys the sasrec model does not have (gru.weight_hh_l0, gru.weight_ih_l0, project.bias, … 1 more) "
        "and lacks 15 it needs (encoder.blocks.0.attn.out.bias"),
    "another hidden size": (
        lambda p: {**p, "config": config_with(p, model_config={**p["config"]["model_config"], "hidden_size": 32})},
        "state_dict has 3 weights whose shapes differ from the gru4rec model's (stored vs expected: gru.weight_ih_l0 (48, 64) vs (96, 64)"),
    "a config the model does not have": (
        lambda p: {**p, "config": config_with(p, model_config={"num_heads": 2})},
        "its config does not build a model (model_config: unknown keys ['num_heads']"),
    "short item_ids": (lambda p: {**p, "item_ids": p["item_ids"][:1500]}, "item_ids has 1500 entries, expected num_items + 1 = 1683"),
    "num_items as text": (lambda p: {**p, "num_items": "1682"}, "num_items is '1682', expected a positive integer"),
    "no max_len": (lambda p: without(p, "max_len"), "max_len is missing, expected a positive integer"),
    "no fingerprint": (lambda p: without(p, "fingerprint"), "fingerprint is missing, expected a string"),
    "repeated user ids": (lambda p: {**p, "user_ids": ["196", "196"]}, "user_ids must be distinct strings"),
}


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"memrec {command}: error: "), err
    return err.strip()


@pytest.mark.parametrize("case", sorted(SPOILED))
@pytest.mark.parametrize("command", ["evaluate", "recommend"])
def test_a_checkpoint_that_does_not_fit_is_one_line_and_exit_2(case, command, payload, tmp_path, capsys):
    spoil, message = SPOILED[case]
    bad = tmp_path / "bad.pt"
    torch.save(spoil(payload), bad)
    assert main([command, str(bad), *(["--user", "196"] if command == "recommend" else [])]) == 2
    assert f"checkpoint {bad}: {message}" in one_error_line(capsys, command)


def test_the_spoiled_copies_start_from_a_checkpoint_that_loads(run_dir, payload, tmp_path, capsys):
    torch.save(dict(payload), tmp_path / "same.pt")  # written again the way the spoiled copies are: still loads
    assert main(["recommend", str(tmp_path / "same.pt"), "--user", "196", "-k", "3"]) == 0
    assert "top 3 for user 196" in capsys.readouterr().out


def test_serve_refuses_a_bad_checkpoint_before_it_opens_the_store(payload, tmp_path, capsys, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn", reason="the service needs the serve extra")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("memrec serve started a server on a bad checkpoint"))
    bad, store = tmp_path / "short.pt", tmp_path / "state.db"
    torch.save({**payload, "item_ids": payload["item_ids"][:1500]}, bad)  # served before: every /recommend answered 500
    assert main(["serve", str(bad), "--store", str(store), "--port", "0"]) == 2
    assert one_error_line(capsys, "serve") == f"memrec serve: error: checkpoint {bad}: item_ids has 1500 entries, expected num_items + 1 = 1683"
    assert not store.exists()


def test_serve_as_a_process_exits_2_with_one_line(payload, tmp_path):
    pytest.importorskip("fastapi", reason="the service needs the serve extra")
    bad = tmp_path / "nosd.pt"
    torch.save(without(payload, "state_dict"), bad)
    done = subprocess.run([sys.executable, "-m", "memrec.cli", "serve", str(bad), "--store", str(tmp_path / "s.db"), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"memrec serve: error: checkpoint {bad}: state_dict is missing, expected a mapping of tensors\n"


def test_a_run_folder_stands_for_its_checkpoint(run_dir, tmp_path, capsys):
    assert main(["recommend", str(run_dir), "--user", "196", "-k", "3"]) == 0
    assert "top 3 for user 196" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path)]) == 2
    assert one_error_line(capsys, "evaluate") == f"memrec evaluate: error: {tmp_path} is a folder without checkpoint.pt: give a run folder of `memrec train` or a checkpoint file"


@pytest.mark.parametrize("content", [None, b"just some text\n", os.urandom(4096), b""], ids=["metrics.json", "text", "random", "empty"])
def test_a_file_that_is_not_a_checkpoint_says_so_without_torch_advice(content, run_dir, tmp_path, capsys):
    path = run_dir / "metrics.json" if content is None else tmp_path / "file.pt"
    if content is not None:
        path.write_bytes(content)
    assert main(["recommend", str(path), "--user", "196"]) == 2
    line = one_error_line(capsys, "recommend")
    assert line.startswith(f"memrec recommend: error: {path} is not a memrec checkpoint (") and line.endswith(")")
    assert "weights_only" not in line and "torch.load" not in line


def test_memory_buffers_that_do_not_fit_are_one_line_too(tmp_path):
    """Buffers sized by the data (RAMRec's banks) are checked by the model's own load hooks: still one CheckpointError line."""
    from memrec.serve.testing import tiny_checkpoint
    from memrec.train.checkpoint import CheckpointError, load_checkpoint

    payload = torch.load(tiny_checkpoint(tmp_path / "ramrec.pt", "ramrec", ["[PAD]", "a", "b", "c"]), weights_only=True)
    torch.save({**payload, "state_dict": {**payload["state_dict"], "bank.keys": torch.zeros(0, 5)}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "bad.pt")
    message = str(caught.value)
    assert message.startswith(f"checkpoint {tmp_path / 'bad.pt'}: state_dict does not fit the ramrec model (") and "\n" not in message
    assert "bank.keys: stored entries have 5 dimensions, this memory expects 16" in message

"""What `memrec train` and the parser do with bad input (issue 17, items 5, 6, 8): nothing written
before the run can start, no run overwritten without --overwrite, one line for a file that is not
text, a help text with its default for every option, --version, a config of another model refused,
a benchmark given a model it cannot use says what it needs."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memrec.cli import _subparsers, main, make_parser

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train.epochs=1", "--model_config.hidden_size=16", "--model_config.embedding_size=16"]


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "gru"
    assert main(["train", "--model", "gru4rec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out), *TINY]) == 0
    return out


def one_line_error(capsys, start: str) -> str:
    """The one error line on stderr (other lines may say which config was read), without a traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(start) and "Traceback" not in err, err
    return errors[0]


def test_a_failed_run_leaves_an_existing_run_folder_as_it_was(run_dir, tmp_path, capsys):
    before = {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()}
    malformed = tmp_path / "malformed.inter"
    malformed.write_text("user_id:token\titem_id:token\n196\n")  # a row without its item
    for bad in (["--dataset", str(tmp_path / "missing.inter")], ["--dataset", str(malformed)]):
        assert main(["train", "--output", str(run_dir), "--overwrite", "--no-frozen", *bad]) == 2
        capsys.readouterr()
    assert {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()} == before


def test_a_run_folder_is_not_overwritten_without_overwrite(run_dir, shared_data, tmp_path, capsys):
    out = tmp_path / "gru"
    shutil.copytree(run_dir, out)
    before = (out / "config.yaml").read_bytes()
    again = ["train", "--model", "gru4rec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out), *TINY, "--train.seed=7"]
    assert main(again) == 2
    err = one_line_error(capsys, "memrec train: error: ")
    assert f"{out} already holds a run (config.yaml, checkpoint.pt, metrics.json); choose another --output or pass --overwrite" in err
    assert (out / "config.yaml").read_bytes() == before
    assert main([*again, "--overwrite"]) == 0  # replaced: the new run's config, one run's curves
    assert "seed: 7" in (out / "config.yaml").read_text() and json.loads((out / "metrics.json").read_text())["seed"] == 7
    assert len(list((out / "tensorboard").glob("events.*"))) == 1


@pytest.mark.parametrize("content, where", [(b"196 242\n186 \xe9t\xe9\n", "line 2: byte 12 (0xe9) is not utf-8 text"),
                                            (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1: byte 0 (0x89) is not utf-8 text"),
                                            (b"user item\nu1 i\x00\n", "line 2: byte 14 is a NUL byte: this is a binary file")])
def test_a_file_that_is_not_utf8_text_is_one_line(content, where, tmp_path, capsys):
    data = tmp_path / "data.txt"
    data.write_bytes(content)
    for argv in (["datasets", str(data)], ["train", "--dataset", str(data), "--output", str(tmp_path / "run")]):
        assert main(argv) == 2
        err = one_line_error(capsys, f"memrec {argv[0]}: error: ")
        assert f"{data}, {where}" in err
    assert not (tmp_path / "run").exists()


def all_options():
    from memrec.assist import grpo
    from memrec.assist.llm import server
    from memrec.cli import DefaultsFormatter

    parser = make_parser()
    delegated = [module.add_arguments(argparse.ArgumentParser(prog=name, formatter_class=DefaultsFormatter))
                 for name, module in (("train-rl", grpo), ("serve-llm", server))]
    for sub in [parser, *_subparsers(parser), *delegated]:
        for action in sub._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                yield sub, action


def test_every_option_of_every_subcommand_says_what_it_is_and_its_default(capsys):
    options = list(all_options())
    assert len(options) > 60
    missing = [f"{sub.prog} {action.dest}" for sub, action in options if not (action.help or "").strip() or action.help == argparse.SUPPRESS]
    assert missing == []
    for sub, action in options:  # the text `--help` shows: the value, or where the author wrote the default out, their words
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            shown = sub.formatter_class(sub.prog)._expand_help(action)
            expected = "default" if "default" in action.help else f"(default: {action.default})"
            assert expected in shown, f"{sub.prog} {action.option_strings}: {shown}"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "port to bind (default: 8000)" in " ".join(capsys.readouterr().out.split())


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("memrec 0.")


def test_a_config_of_another_model_is_refused(tmp_path, capsys):
    config = tmp_path / "ramrec.yaml"
    config.write_text((ROOT / "src/memrec/configs/ramrec-ml-100k.yaml").read_text())
    assert main(["train", "--model", "sasrec", "--config", str(config), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"memrec train: error: config {config} is for model ramrec, not sasrec: its model_config would not apply; " \
                  "drop --model or give a sasrec config\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script, model, needs", [
    ("drift_rates.py", "gru4rec", "needs a per-user memory with a drift trigger (use_memory: true): give a ur4rec-moe checkpoint"),
    ("ramrec_memory.py", "gru4rec", "needs RAMRec's own bank, which it switches on and off: give a ramrec checkpoint"),
    ("eval_precision.py", "ur4rec-moe", "needs a model that ranks through encode_last, which it runs in bfloat16"),
    ("audit_ml100k.py", "ur4rec-moe", "needs a model that reads only the history, no per-user state")])
def test_a_benchmark_given_a_model_it_cannot_use_says_what_it_needs(script, model, needs, run_dir, shared_data, tmp_path):
    from memrec.serve.testing import tiny_checkpoint

    checkpoint = run_dir / "checkpoint.pt" if model == "gru4rec" else tiny_checkpoint(tmp_path / "m.pt", model, ["[PAD]", "1", "2"])
    flag = ["--checkpoint"] if script == "ramrec_memory.py" else []
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *flag, str(checkpoint), "--data-dir", str(shared_data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{script}: error: {checkpoint} is a {model} checkpoint; this benchmark {needs}")


def test_a_config_file_that_is_not_text_is_one_line(tmp_path, capsys):
    config = tmp_path / "binary.yaml"
    config.write_bytes(b"model: sasrec\n\xff\xfe\x00")
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{config}, line 2: byte 14 (0xff) is not utf-8 text" in err and "Traceback" not in err

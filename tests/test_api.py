"""The Python API on real ML-100K: memrec.train / memrec.load, recommendations as the data set's own
ids with titles (as `memrec recommend --json` prints them), evaluation as `memrec evaluate` with the
neighbour memory on and off, and one clear error for every bad request."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import memrec
from memrec.cli import main
from memrec.data.batching import make_eval_batch
from memrec.errors import ConfigError, MemrecError, UnknownItemError, UnknownUserError


@pytest.fixture(scope="module")
def rec(shared_data, tmp_path_factory):
    """GRU4Rec, one epoch, with a neighbour memory chosen on validation (confidence 0: the best setting is used)."""
    return memrec.train("gru4rec", "ml-100k", tmp_path_factory.mktemp("api") / "run", data_dir=str(shared_data), memory="neighbours",
                        epochs=1, hidden_size=16, embedding_size=16, ks=[64], temperatures=[0.3], confidence=0.0, log=None)


def test_train_returns_the_loaded_run_with_its_metrics(rec):
    assert isinstance(rec, memrec.Recommender) and rec.config.model == "gru4rec" and rec.config.model_config.hidden_size == 16
    assert rec.metrics == json.loads((rec.path / "metrics.json").read_text())
    assert rec.metrics["epochs"] == 1 and rec.metrics["neighbour_memory"]["chosen"]["k"] == 64
    assert "hidden_size: 16" in (rec.path / "config.yaml").read_text()


def test_recommend_gives_the_data_sets_ids_and_titles_never_padding(rec, ml100k):
    top = rec.recommend(user="196", k=10)
    seen = {ml100k.item_ids[i] for i in ml100k.sequence("196")}
    assert [r.rank for r in top] == list(range(1, 11)) and not seen & {r.item for r in top}
    assert all(r.item in ml100k.item_ids[1:] and r.title == ml100k.items.title[ml100k.item_index(r.item)] != "" for r in top)
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    assert rec.recommend(user=196, k=3) == top[:3]  # an int id is the same user
    # the model's own ranking, by index, is the same list
    batch = make_eval_batch(np.array([ml100k.user_index("196")]), [ml100k.sequence("196")], np.array([0]), rec.config.data.max_len)
    indices, scores = rec.model.recommend(batch, k=10)
    assert [r.item for r in top] == [ml100k.item_ids[i] for i in indices[0].tolist()]
    assert [r.score for r in top] == scores[0].tolist()
    assert ml100k.items.title[ml100k.item_index("50")] == "Star Wars"


def test_recommend_for_a_history_and_the_cli_answers_the_same(rec, capsys):
    top = rec.recommend(history=["50", "181"], k=5)
    assert not {"50", "181"} & {r.item for r in top}
    assert main(["recommend", str(rec.path), "--history", "50,181", "-k", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == [r.to_dict() for r in top]
    assert main(["recommend", str(rec.path), "--user", "196", "--history", "50"]) == 2
    assert capsys.readouterr().err == "memrec recommend: error: give --user U (a user of the data set), --history ITEM,ITEM,... or --all, one of them\n"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"user": "nobody"}, UnknownUserError, "unknown user 'nobody' in data set 'ml-100k'"),
    ({"history": ["50", "zzz"]}, UnknownItemError, "unknown item 'zzz' in data set 'ml-100k'"),
    ({"history": []}, MemrecError, "empty history: expected at least one item id"),
    ({"history": "50,181"}, MemrecError, "history: expected a list of item ids, got the string '50,181'"),
    ({}, MemrecError, "give user=... (a user id of the data set) or history=[item id, ...], one of them"),
    ({"user": "196", "history": ["50"]}, MemrecError, "one of them"),
    ({"user": "196", "k": 0}, MemrecError, "k must be a positive integer, got 0"),
    ({"user": "196", "memory": "sometimes"}, MemrecError, "memory must be one of ('as-trained', 'off'), got 'sometimes'"),
])
def test_bad_requests_are_one_clear_error(rec, kwargs, error, message):
    with pytest.raises(error) as caught:
        rec.recommend(**kwargs)
    assert message in str(caught.value)


def test_evaluate_is_the_runs_protocol_with_the_memory_on_and_off(rec):
    memory = rec.metrics["neighbour_memory"]
    assert rec.evaluate("valid") == rec.metrics["valid"] and rec.evaluate() == rec.metrics["test"]
    assert rec.evaluate("valid", memory="off")["ndcg@10"] == memory["valid_ndcg@10_without"] < memory["valid_ndcg@10_with"]
    assert rec.evaluate("valid")["ndcg@10"] == memory["valid_ndcg@10_with"]  # switched back on after the call
    assert rec.recommend(user="196", k=5, memory="off") != rec.recommend(user="196", k=5)
    with pytest.raises(MemrecError, match="split must be 'valid' or 'test', got 'train'"):
        rec.evaluate("train")


def test_load_a_run_folder_or_its_checkpoint_with_the_memory_off(rec):
    again = memrec.load(rec.path / "checkpoint.pt")
    assert again.metrics == rec.metrics and again.recommend(user="196", k=5) == rec.recommend(user="196", k=5)
    off = memrec.load(rec.path, memory="off")
    assert off.evaluate("valid")["ndcg@10"] == rec.metrics["neighbour_memory"]["valid_ndcg@10_without"]
    assert off.evaluate("valid", memory="as-trained") == rec.metrics["valid"]
    with pytest.raises(MemrecError, match="memory must be one of"):
        memrec.load(rec.path, memory="no")


def test_train_settings_are_checked_before_anything_is_written(shared_data, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="unknown setting 'epoch': expected a key of data, train, model_config or memory.neighbours"):
        memrec.train("gru4rec", "ml-100k", out, data_dir=str(shared_data), epoch=1, log=None)
    with pytest.raises(ConfigError, match=r"train.epochs: expected int, got 'one'"):
        memrec.train("gru4rec", "ml-100k", out, data_dir=str(shared_data), train={"epochs": "one"}, log=None)
    with pytest.raises(ConfigError, match="memory must be 'neighbours' or 'off'"):
        memrec.train("gru4rec", "ml-100k", out, memory="yes", log=None)
    with pytest.raises(MemrecError, match="give output=FOLDER"):
        memrec.train("gru4rec", "ml-100k", log=None)
    assert not out.exists()


ONE_EPOCH = """\
import memrec.api as _api
_run_config = _api.run_config
_api.run_config = lambda *args, **kwargs: _run_config(*args, **kwargs).with_overrides(["train.epochs=1"])
"""


def test_the_python_guide_runs_as_written(shared_data, tmp_path):
    """docs/python.md's blocks, in order, in a fresh shell (PATH, HOME, OMP_NUM_THREADS=1) in a folder laid
    out as a checkout (../shared/data beside it), training capped at one epoch."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "python.md").read_text()
    code = "\n".join(m.group(1) for m in re.finditer(r"^```python\n(.*?)^```$", guide, re.S | re.M))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data.resolve())
    (tmp_path / "main").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", ONE_EPOCH + code], cwd=tmp_path / "main", env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Recommendation(rank=1, item=" in out and "'ndcg@10':" in out
    assert "UnknownUserError unknown user 'nobody'" in out and "UnknownItemError unknown item 'no-such-item'" in out
    assert "MemrecError empty history: expected at least one item id" in out
    assert (tmp_path / "main" / "runs" / "shop" / "run" / "checkpoint.pt").is_file()


def test_import_memrec_is_cheap_and_train_stays_callable():
    code = ("import sys, memrec; cheap = 'torch' not in sys.modules; import memrec.train.run; "
            "print(cheap, callable(memrec.train), memrec.train.run.__name__, sorted(memrec.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "True True memrec.train.run ['Recommendation', 'Recommender', 'load', 'run_config', 'train']\n"

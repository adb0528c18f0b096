"""`memrec recommend -k` and `memrec evaluate --batch-size` take positive integers only, and a `-k`
above what can be ranked lists only rankable items (issue 17, item 7)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from memrec.cli import main
from memrec.config import RunConfig
from memrec.data.batching import make_eval_batch
from memrec.models import build_model
from memrec.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(ml100k, shared_data, tmp_path_factory):
    """An untrained GRU4Rec over ML-100K, saved as `memrec train` saves one."""
    config = RunConfig.from_dict({"model": "gru4rec", "data": {"dataset": "ml-100k", "data_dir": str(shared_data), "download": False},
                                  "model_config": {"embedding_size": 16, "hidden_size": 16}})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, build_model("gru4rec", ml100k.num_items, config.data.max_len, config.model_config), config, ml100k)
    return path


@pytest.mark.parametrize("argv, message", [
    (["recommend", "--user", "196", "-k", "0"], "memrec recommend: error: -k must be a positive integer, got 0"),
    (["recommend", "--user", "196", "-k", "-3"], "memrec recommend: error: -k must be a positive integer, got -3"),
    (["evaluate", "--batch-size", "0"], "memrec evaluate: error: --batch-size must be a positive integer, got 0"),
    (["evaluate", "--batch-size", "-5"], "memrec evaluate: error: --batch-size must be a positive integer, got -5"),
])
def test_sizes_below_one_are_refused(argv, message, checkpoint, capsys):
    assert main([argv[0], str(checkpoint), *argv[1:]]) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""


def test_k_above_the_catalogue_lists_only_rankable_items(checkpoint, ml100k, capsys):
    assert main(["recommend", str(checkpoint), "--user", "196", "-k", "5000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["items"]
    seen = {ml100k.item_ids[i] for i in ml100k.sequence("196")}
    assert len(rows) == ml100k.num_items - len(seen) == 1682 - 39
    assert all(np.isfinite(r["score"]) for r in rows) and not seen & {r["item"] for r in rows}
    assert main(["recommend", str(checkpoint), "--user", "196", "-k", "5000"]) == 0
    assert capsys.readouterr().out.startswith("top 1643 for user 196 (39 history items, excluded):")


def test_the_models_recommend_drops_masked_items_and_refuses_k_below_one():
    model = build_model("gru4rec", num_items=6, max_len=4).eval()
    batch = make_eval_batch(np.array([0, 1]), [np.array([1, 2]), np.array([3])], np.array([0, 0]), 4)
    items, scores = model.recommend(batch, k=10)
    assert items.shape == (2, 4) and torch.isfinite(scores).all()  # row 0 can rank 4 items (3..6), row 1 five
    assert not {1, 2} & set(items[0].tolist()) and 3 not in items[1].tolist()
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        model.recommend(batch, k=0)


def test_a_reader_that_stops_early_ends_the_listing_quietly(checkpoint):
    """`memrec recommend ... | head -1`: the closed pipe ends the command without a traceback."""
    import subprocess
    import sys

    listing = subprocess.Popen([sys.executable, "-m", "memrec.cli", "recommend", str(checkpoint), "--user", "196", "-k", "1600"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = listing.stdout.readline()
    listing.stdout.close()  # as `head -1` does
    err = listing.stderr.read().decode()
    assert listing.wait(timeout=120) == 141 and first.startswith(b"top ")
    assert "Traceback" not in err and "BrokenPipe" not in err

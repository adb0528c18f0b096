"""The command line end to end on ML-100K: train, evaluate, recommend, compare, datasets, errors."""
import json

import pytest

from memrec.cli import main

REQUIRED = {"model", "dataset", "protocol", "seed", "epochs", "train_seconds_per_epoch", "eval_seconds", "valid", "test"}


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "gru"
    code = main(["train", "--model", "gru4rec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out),
                 "--train.epochs=2", "--model_config.hidden_size=32"])
    assert code == 0
    return out


def test_train_writes_every_artefact(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert REQUIRED <= set(metrics)
    assert metrics["model"] == "gru4rec" and metrics["dataset"] == "ml-100k" and metrics["epochs"] == 2
    for split in ("valid", "test"):
        assert {"hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20", "recall@5"} <= set(metrics[split])
        assert 0 < metrics[split]["ndcg@10"] < metrics[split]["hit@10"] < 1
    for name in ("config.yaml", "checkpoint.pt", "curve.png", "results.txt"):
        assert (run_dir / name).stat().st_size > 0
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "model_config:\n  embedding_size: 64\n  hidden_size: 32" in (run_dir / "config.yaml").read_text()


def test_evaluate_reproduces_the_training_run(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir / "checkpoint.pt"), "--json", str(tmp_path / "e.json"), "--batch-size", "5"]) == 0
    rows = {r["split"]: r for r in json.loads((tmp_path / "e.json").read_text())}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert rows[split]["ndcg@10"] == metrics[split]["ndcg@10"]
    assert "full ranking over 1682 items" in capsys.readouterr().out


def test_recommend_for_a_user_and_for_a_history(run_dir, ml100k, capsys):
    assert main(["recommend", str(run_dir / "checkpoint.pt"), "--user", "196", "-k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    seen = {ml100k.item_ids[i] for i in ml100k.sequence("196")}
    assert len(out["items"]) == 5 and not seen & {r["item"] for r in out["items"]}
    assert main(["recommend", str(run_dir / "checkpoint.pt"), "--history", "50,181", "-k", "3"]) == 0
    assert "top 3 for the given history" in capsys.readouterr().out


def test_bad_requests_exit_2_with_one_clear_line(run_dir, capsys):
    assert main(["recommend", str(run_dir / "checkpoint.pt"), "--user", "nobody"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err
    assert main(["recommend", str(run_dir / "checkpoint.pt"), "--history", "50,zzz"]) == 2
    assert "unknown item 'zzz'" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--dataset", "nope", "--output", str(run_dir / "x")]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err
    assert main(["train", "--dataset", "ml-100k", "--output", str(run_dir / "x"), "--train.nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err


def test_compare_prints_one_table_and_draws_one_chart(run_dir, tmp_path, capsys):
    assert main(["compare", str(run_dir), str(run_dir), "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert out.count("gru4rec (gru)") == 2 and "ndcg@10" in out
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_datasets_lists_and_describes(shared_data, capsys):
    assert main(["datasets"]) == 0
    assert "ml-100k: MovieLens 100K" in capsys.readouterr().out
    assert main(["datasets", "lastfm", "--data-dir", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert '"users": 1090' in out and '"prefix_positions": 1705818' in out and '"train_windows": "prefixes"' in out
    assert main(["datasets", "nope"]) == 2


def test_ur4rec_trains_from_the_seeds_json_layout_and_recommends(ml100k, tmp_path, capsys):
    """The UR4Rec seed's data layout (train/val/test_sequences.json) through `memrec train`, then `recommend`."""
    data = tmp_path / "seed-json"
    data.mkdir()
    seqs = {ml100k.user_ids[u]: [int(ml100k.item_ids[i]) for i in s] for u, s in enumerate(ml100k.sequences[:120])}
    for name, cut in (("train", -2), ("val", -1), ("test", None)):
        (data / f"{name}_sequences.json").write_text(json.dumps({u: s[:cut] for u, s in seqs.items()}))
    out = tmp_path / "run"
    common = ["--model", "ur4rec-moe", "--dataset", str(data), "--output", str(out), "--no-frozen", "--train.epochs=1", "--data.max_len=20"]
    assert main(["train", *common, "--model_config.hidden_size=16", "--model_config.memory_dim=8"]) == 2  # default modalities need item text
    assert "needs item text" in capsys.readouterr().err
    assert main(["train", *common, "--model_config.hidden_size=16", "--model_config.memory_dim=8", "--model_config.modalities=[id]"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "ur4rec-moe" and metrics["test"]["hit@10"] >= 0 and len(metrics["curve"]) == 1
    user = next(iter(seqs))
    capsys.readouterr()  # the training log
    assert main(["recommend", str(out / "checkpoint.pt"), "--user", user, "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3

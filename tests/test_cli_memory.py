"""The neighbour memory from the command line: `train --memory neighbours` for any model, `evaluate
--memory off` for the same weights without it, a bad grid refused before training (real ML-100K)."""
import json

import pytest

from memrec.cli import main

TINY = ["--train.epochs=1", "--model_config.hidden_size=16", "--model_config.embedding_size=16"]


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("memory") / "gru"
    code = main(["train", "--model", "gru4rec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out),
                 "--memory", "neighbours", "--memory.neighbours.ks=[64]", "--memory.neighbours.temperatures=[0.3]",
                 "--memory.neighbours.confidence=0.0", *TINY])  # confidence 0: the best validation setting is used
    assert code == 0
    return out


def test_train_builds_the_neighbour_memory_for_a_model_without_one(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    memory = metrics["neighbour_memory"]
    assert memory["entries"] == 100_000 - 2 * 943 - 943  # every training position after each user's first item (97,171)
    assert memory["chosen"]["weight"] > 0 and memory["chosen"]["k"] == 64
    assert metrics["valid"]["ndcg@10"] == memory["valid_ndcg@10_with"] > memory["valid_ndcg@10_without"]
    assert "memory:\n  neighbours:\n    enabled: true" in (run_dir / "config.yaml").read_text()


def test_evaluate_with_and_without_the_memory_on_the_same_weights(run_dir, tmp_path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert main(["evaluate", str(run_dir / "checkpoint.pt"), "--json", str(tmp_path / "on.json")]) == 0
    assert main(["evaluate", str(run_dir / "checkpoint.pt"), "--memory", "off", "--json", str(tmp_path / "off.json")]) == 0
    on = {r["split"]: r for r in json.loads((tmp_path / "on.json").read_text())}
    off = {r["split"]: r for r in json.loads((tmp_path / "off.json").read_text())}
    assert on["valid"]["ndcg@10"] == metrics["valid"]["ndcg@10"] and on["test"]["ndcg@10"] == metrics["test"]["ndcg@10"]
    assert off["valid"]["ndcg@10"] == metrics["neighbour_memory"]["valid_ndcg@10_without"]


def test_recommend_uses_the_memory_unless_it_is_off(run_dir, capsys):
    assert main(["recommend", str(run_dir / "checkpoint.pt"), "--user", "196", "-k", "5", "--json"]) == 0
    on = json.loads(capsys.readouterr().out)["items"]
    assert main(["recommend", str(run_dir / "checkpoint.pt"), "--user", "196", "-k", "5", "--json", "--memory", "off"]) == 0
    off = json.loads(capsys.readouterr().out)["items"]
    assert len(on) == len(off) == 5 and [r["score"] for r in on] != [r["score"] for r in off]


def test_a_bad_neighbour_grid_is_refused_before_training(shared_data, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", "--model", "sasrec", "--dataset", "ml-100k", "--data-dir", str(shared_data), "--output", str(out),
                 "--memory", "neighbours", "--memory.neighbours.weights=[1.0]"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "memory.neighbours: expected" in err and "weights in (0, 1)" in err and "Traceback" not in err

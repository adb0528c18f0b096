"""The service knows the users it was trained on (`--import-training-users`): a training user gets the
same answer from GET /recommend as from `memrec recommend --user` (real ML-100K, a model with a
neighbour memory in use and one with a per-user memory); a second import records nothing."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from memrec.cli import main
from memrec.serve.app import ServeConfig, create_app

RUNS = {
    "gru4rec": ["--memory", "neighbours", "--memory.neighbours.ks=[64]", "--memory.neighbours.temperatures=[0.3]",
                "--memory.neighbours.confidence=0.0", "--model_config.hidden_size=16", "--model_config.embedding_size=16"],
    "ur4rec-moe": ["--model_config.modalities=[id]", "--model_config.hidden_size=16", "--model_config.memory_dim=8",
                   "--model_config.interaction_threshold=5", "--data.max_len=20"],
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def checkpoint(request, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / request.param
    assert main(["train", "--model", request.param, "--dataset", "ml-100k", "--data-dir", str(shared_data), "--no-frozen",
                 "--output", str(out), "--train.epochs=1", *RUNS[request.param]]) == 0
    return out / "checkpoint.pt"


def test_a_training_user_is_known_to_the_service(checkpoint, shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMREC_DATA_DIR", str(shared_data))
    assert main(["recommend", str(checkpoint), "--user", "196", "-k", "10", "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    config = ServeConfig(checkpoint=str(checkpoint), store=str(tmp_path / "state.db"), import_training_users=True)
    client = TestClient(create_app(config), base_url="http://localhost")
    assert "imported 943 training users (100000 events); 0 already had a log" in capsys.readouterr().err
    online = client.get("/recommend", params={"user": "196", "k": 10}).json()
    assert online["known"] and online["history_length"] == offline["history_length"] == 39
    assert [r["item"] for r in online["items"]] == [r["item"] for r in offline["items"]]
    assert [r["score"] for r in online["items"]] == pytest.approx([r["score"] for r in offline["items"]], abs=1e-4)

    client.post("/events", json={"user": "196", "item": online["items"][0]["item"], "timestamp": 2e9})  # their log grows
    again = create_app(config)  # a restart with the flag imports nothing new and keeps 196's new event
    assert "imported 0 training users (0 events); 943 already had a log" in capsys.readouterr().err
    assert len(again.state.store.history("196")) == 40

"""The service in process (FastAPI's TestClient) on a real SQLite state file, for every model."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from memrec.cli import main
from memrec.memory.user_memory import MemoryVersionError
from memrec.models import MODELS
from memrec.serve.app import ServeConfig, create_app
from memrec.store.events import Event
from memrec.serve.testing import tiny_checkpoint

from .conftest import ITEMS, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(checkpoint, store, **options) -> TestClient:
    return TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=str(store), token=TOKEN, **options)), base_url="http://localhost")


def events(user, items, start=0, keys=True):
    return {"events": [{"user": user, "item": i, "timestamp": float(start + n), **({"key": f"{user}-{start + n}"} if keys else {})}
                       for n, i in enumerate(items)]}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_records_events_and_recommends_without_the_history(name, checkpoints, tmp_path):
    client = client_for(checkpoints[name], tmp_path / "state.db")
    reply = client.post("/events", json=events("u1", ["i1", "i2", "i3", "i4"]), headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 4 and reply.json()["duplicates"] == 0
    rec = client.get("/recommend", params={"user": "u1", "k": 56}, headers=AUTH).json()
    assert rec["known"] and rec["history_length"] == 4 and rec["model"] == name
    items = [r["item"] for r in rec["items"]]
    assert len(items) == 56 and not {"i1", "i2", "i3", "i4"} & set(items)  # the whole rest of the catalogue
    scores = [r["score"] for r in rec["items"]]
    assert scores == sorted(scores, reverse=True)
    cold = client.get("/recommend", params={"user": "never-seen", "k": 10}, headers=AUTH)
    assert cold.status_code == 200 and not cold.json()["known"] and len(cold.json()["items"]) == 10
    if name == "ur4rec-moe":  # memory stats and routing weights; the trigger fired on the 3rd event
        assert rec["memory"]["interaction_count"] == 4 and rec["memory"]["updates"] == 1
        assert set(rec["routing_weights"]) == {"user"} and [e["memory_updated"] for e in reply.json()["events"]] == [False, False, True, False]
    else:
        assert rec["memory"] is None


def test_the_memory_after_events_is_the_memory_of_the_replayed_history(checkpoints, tmp_path):
    client = client_for(checkpoints["ur4rec-moe"], tmp_path / "state.db")
    rng = np.random.default_rng(0)
    for start in range(0, 20, 4):
        client.post("/events", json=events("u", [f"i{n}" for n in rng.integers(1, 61, 4)], start), headers=AUTH)
    history, memory = client.app.state.store.snapshot("u")
    replayed = client.app.state.served.replay(history)
    assert len(history) == 20 and memory.updates == 6
    np.testing.assert_array_equal(memory.vector, replayed.vector)
    assert memory.to_dict() == replayed.to_dict()


def test_a_repeated_idempotency_key_is_applied_once(checkpoints, tmp_path):
    client = client_for(checkpoints["ur4rec-moe"], tmp_path / "state.db")
    batch = events("u", ["i1", "i2"])
    assert client.post("/events", json=batch, headers=AUTH).json()["accepted"] == 2
    again = client.post("/events", json=batch, headers=AUTH).json()
    assert again["accepted"] == 0 and again["duplicates"] == 2
    same_key_twice = {"events": [{"user": "u", "item": "i5", "timestamp": 9, "key": "x"}, {"user": "u", "item": "i5", "timestamp": 9, "key": "x"}]}
    assert [e["applied"] for e in client.post("/events", json=same_key_twice, headers=AUTH).json()["events"]] == [True, False]
    other_user = {"user": "v", "item": "i1", "timestamp": 0, "key": "u-0"}  # keys are per user
    assert client.post("/events", json=other_user, headers=AUTH).json()["accepted"] == 1
    user = client.get("/users/u", headers=AUTH).json()
    assert user["history_length"] == 3 and user["memory"]["interaction_count"] == 3


def test_bad_input_gets_a_clear_4xx_and_records_nothing(checkpoints, tmp_path):
    client = client_for(checkpoints["sasrec"], tmp_path / "state.db", max_body_bytes=4096)
    unknown = client.post("/events", json={"events": [{"user": "u", "item": "i1", "timestamp": 1}, {"user": "u", "item": "nope", "timestamp": 2}]}, headers=AUTH)
    assert unknown.status_code == 422 and "unknown item id(s) 'nope'" in unknown.json()["detail"] and "nothing was recorded" in unknown.json()["detail"]
    assert client.get("/users/u", headers=AUTH).json()["history_length"] == 0
    for body in ({"user": "u", "timestamp": 1}, {"user": "", "item": "i1", "timestamp": 1}, {"user": "u", "item": "i1", "timestamp": 1, "extra": 1},
                 {"events": []}, {"user": "u", "item": "i1", "timestamp": "soon"}, {"user": "u", "item": "i1", "timestamp": False},
                 {"user": "a\x00b", "item": "i1", "timestamp": 1}, {"events": [{"user": "u", "item": "i1", "timestamp": 1, "key": "\x00"}]}):
        assert client.post("/events", json=body, headers=AUTH).status_code == 422, body
    one = client.post("/events", json={"user": "u", "item": "i1", "timestamp": "soon"}, headers=AUTH).json()["detail"]
    assert [(d["loc"], d["type"]) for d in one] == [(["body", "event", "timestamp"], "float_type")]  # the single-event form only
    batch = client.post("/events", json={"events": [{"user": "u", "timestamp": 1}]}, headers=AUTH).json()["detail"]
    assert [(d["loc"], d["type"]) for d in batch] == [(["body", "batch", "events", 0, "item"], "missing")]
    nan = client.post("/events", content=b'{"user": "u", "item": "i1", "timestamp": NaN}', headers={**AUTH, "content-type": "application/json"})
    assert nan.status_code == 422
    not_json = client.post("/events", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["msg"].startswith("JSON decode error: Expecting")
    not_utf8 = client.post("/events", content=b'{"user": "\xff"}', headers={**AUTH, "content-type": "application/json"})
    assert not_utf8.status_code == 400 and "not UTF-8 JSON text" in not_utf8.json()["detail"]
    big = client.post("/events", json=events("u", ["i1"] * 100), headers=AUTH)
    assert big.status_code == 413 and "larger than 4096 bytes" in big.json()["detail"]
    for params in ({"user": "u", "k": 0}, {"user": "u", "k": 5000}, {"k": 3}, {"user": ""}, {"user": "a\x00b"}):
        assert client.get("/recommend", params=params, headers=AUTH).status_code == 422, params
    assert client.get("/users/a%00b", headers=AUTH).status_code == 422  # PostgreSQL cannot store NUL: refused everywhere
    assert client.get("/users/u", headers=AUTH).json()["history_length"] == 0


def test_writes_and_admin_endpoints_need_the_token(checkpoints, tmp_path):
    client = client_for(checkpoints["ur4rec-moe"], tmp_path / "state.db")
    event = {"user": "u", "item": "i1", "timestamp": 1}
    for method, path in (("post", "/events"), ("get", "/recommend?user=u"), ("get", "/users/u"), ("delete", "/users/u/memory"),
                         ("post", "/users/u/memory:update")):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            reply = client.request(method.upper(), path, json=event if path == "/events" else None, headers=headers)
            assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer", (method, path)
    assert client.get("/health").json()["status"] == "ok"


def test_explicit_update_and_reset_of_a_memory(checkpoints, tmp_path):
    client = client_for(checkpoints["ur4rec-moe"], tmp_path / "state.db")
    client.post("/events", json=events("u", ["i1", "i2", "i3", "i4", "i5"]), headers=AUTH)
    assert client.get("/users/u", headers=AUTH).json()["memory"]["pending_items"] == 2
    updated = client.post("/users/u/memory:update", headers=AUTH).json()["memory"]
    assert updated["updates"] == 2 and updated["pending_items"] == 0
    reset = client.delete("/users/u/memory", headers=AUTH).json()["memory"]
    assert reset["norm"] == 0.0 and reset["history_size"] == 0 and reset["interaction_count"] == 5  # the log is kept
    assert client.get("/users/u", headers=AUTH).json()["history_length"] == 5
    plain = client_for(checkpoints["sasrec"], tmp_path / "plain.db")
    refused = plain.post("/users/u/memory:update", headers=AUTH)
    assert refused.status_code == 409 and "keeps no per-user memory" in refused.json()["detail"]


def test_metrics_and_openapi(checkpoints, tmp_path):
    client = client_for(checkpoints["ur4rec-moe"], tmp_path / "state.db")
    client.post("/events", json=events("u", ["i1", "i2", "i3"]), headers=AUTH)
    client.get("/recommend", params={"user": "u"}, headers=AUTH)
    text = client.get("/metrics").text
    assert 'memrec_requests_total{method="GET",route="/recommend",status="200"} 1.0' in text
    assert 'memrec_events_total{result="applied"} 3.0' in text and 'memrec_memory_updates_total{cause="trigger"} 1.0' in text
    assert "memrec_request_seconds_bucket" in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/events", "/recommend", "/users/{user_id}", "/users/{user_id}/memory", "/users/{user_id}/memory:update", "/health", "/metrics"} <= set(paths)


def test_memories_of_other_weights_are_refused_at_start_up(checkpoints, tmp_path, capsys):
    store = tmp_path / "state.db"
    client_for(checkpoints["ur4rec-moe"], store).post("/events", json=events("u", ["i1", "i2", "i3"]), headers=AUTH)
    other = tiny_checkpoint(tmp_path / "other.pt", "ur4rec-moe", ITEMS, seed=1)
    with pytest.raises(MemoryVersionError, match="was written by a model with memory version"):
        client_for(other, store)
    assert main(["serve", str(other), "--store", str(store), "--port", "1"]) == 2  # refused before it binds the port
    assert "memrec serve: error:" in capsys.readouterr().err
    plain = client_for(checkpoints["sasrec"], store)  # a model without memory serves from the logs, memories untouched
    assert plain.get("/recommend", params={"user": "u"}, headers=AUTH).json()["history_length"] == 3
    restarted = client_for(other, store, reset_memories=True)  # memories forgotten, logs kept
    user = restarted.get("/users/u", headers=AUTH).json()
    assert user["history_length"] == 3 and user["memory"] is None
    assert restarted.app.state.store.history("u") == [Event("i1", 0.0, "u-0"), Event("i2", 1.0, "u-1"), Event("i3", 2.0, "u-2")]

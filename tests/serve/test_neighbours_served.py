"""A neighbour memory in use is served for any model (here SASRec): a user of the training data is
never offered their own training entries, online as offline; and it grows with the store's logs, across
services on one SQLite, Redis or PostgreSQL store."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from memrec.config import NeighbourConfig, RunConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.batching import make_eval_batch
from memrec.memory.growing import GrowingNeighbours
from memrec.memory.neighbours import build_neighbours
from memrec.models import build_model
from memrec.serve.app import ServeConfig, create_app
from memrec.serve.testing import TINY, fresh_store_url
from memrec.train.checkpoint import load_checkpoint, save_checkpoint

K = 20
MAX_LEN = 8
USERS = [f"user{n}" for n in range(12)]


@pytest.fixture(scope="module")
def sasrec_with_neighbours(tmp_path_factory):
    """An untrained SASRec over a small JSON data set, with a neighbour memory of every training position in use."""
    folder = tmp_path_factory.mktemp("neighbours")
    rng = np.random.default_rng(3)
    raw = {user: [f"m{i}" for i in rng.permutation(30)[:15]] for user in USERS}
    (folder / "data.json").write_text(json.dumps(raw))
    config = RunConfig.from_dict({"model": "sasrec", "data": {"dataset": str(folder / "data.json"), "max_len": MAX_LEN},
                                  "model_config": TINY["sasrec"]})
    ds = load_dataset(config.data)
    torch.manual_seed(0)
    model = build_model("sasrec", ds.num_items, MAX_LEN, config.model_config).eval()
    build_neighbours(model, split_dataset(ds), MAX_LEN, NeighbourConfig(enabled=True), log=lambda *_: None)
    model.neighbours.set(k=8, temperature=0.3, weight=0.5)  # in use, whatever validation chose
    save_checkpoint(folder / "sasrec.pt", model, config, ds)
    return folder / "sasrec.pt", raw, ds


def offline(checkpoint, history: list[str], user: int) -> list[tuple[str, float]]:
    ckpt = load_checkpoint(checkpoint)
    index = {raw: i for i, raw in enumerate(ckpt.item_ids)}
    seen = np.array([index[i] for i in history], dtype=np.int64)
    items, scores = ckpt.model.recommend(make_eval_batch(np.array([user]), [seen], np.array([0]), MAX_LEN), k=K)
    return [(ckpt.item_ids[i], round(s, 6)) for i, s in zip(items[0].tolist(), scores[0].tolist())]


def test_a_training_user_is_served_without_their_own_entries(sasrec_with_neighbours, tmp_path):
    checkpoint, raw, ds = sasrec_with_neighbours
    client = TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    history = raw["user3"][:6]
    events = [{"user": "user3", "item": item, "timestamp": float(n)} for n, item in enumerate(history)]
    assert client.post("/events", json={"events": events}).status_code == 200
    got = [(r["item"], r["score"]) for r in client.get("/recommend", params={"user": "user3", "k": K}).json()["items"]]
    expected = offline(checkpoint, history, ds.user_index("user3"))
    assert [i for i, _ in got] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=2e-6)
    anonymous = offline(checkpoint, history, -1)
    assert got != anonymous, "excluding the user's own entries changed nothing: the test could not see it missing"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
        return
    with fresh_store_url(request.param) as url:
        yield url


def top(client: TestClient, user: str) -> list[tuple[str, float]]:
    return [(r["item"], r["score"]) for r in client.get("/recommend", params={"user": user, "k": K}).json()["items"]]


def test_a_new_users_events_reach_another_users_next_request_through_the_store(sasrec_with_neighbours, store_url):
    """Two services on one store: a newcomer's events, written through one, become neighbour entries
    that the other finds on its next request for a training user, as the same entries built offline do."""
    checkpoint, raw, ds = sasrec_with_neighbours
    writer, reader = (TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=store_url)), base_url="http://localhost")
                      for _ in range(2))
    history = raw["user3"][:6]
    writer.post("/events", json={"events": [{"user": "user3", "item": i, "timestamp": float(n)} for n, i in enumerate(history)]})
    before = top(reader, "user3")
    fresh = next(i for i in ds.item_ids[1:] if i not in raw["user3"])  # an item user3 has not seen
    newcomer = history + [fresh]  # the newcomer did what user3 did, then took `fresh`: its entry's key is user3's state
    assert writer.post("/events", json={"events": [{"user": "newbie", "item": i, "timestamp": float(n)}
                                                   for n, i in enumerate(newcomer)]}).status_code == 200
    after = top(reader, "user3")
    assert after != before and fresh in [i for i, _ in after][:3] and fresh not in [i for i, _ in before][:3]
    assert len(reader.app.state.served.growing) == (len(history) - 1) + (len(newcomer) - 1)  # a position after each user's first

    # offline: the checkpoint with the newcomer's positions as entries ranks the same
    model = load_checkpoint(checkpoint).model
    grown = GrowingNeighbours(model)
    grown.update(owner=ds.user_index("user3"), items=[ds.item_index(i) for i in history])
    grown.update(owner=len(ds.user_ids), items=[ds.item_index(i) for i in newcomer])
    expected = offline_with(model, ds, history, ds.user_index("user3"))
    assert [i for i, _ in after] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in expected], atol=2e-6)


def offline_with(model, ds, history: list[str], user: int) -> list[tuple[str, float]]:
    seen = np.array([ds.item_index(i) for i in history], dtype=np.int64)
    items, scores = model.recommend(make_eval_batch(np.array([user]), [seen], np.array([0]), MAX_LEN), k=K)
    return [(ds.item_ids[i], round(s, 6)) for i, s in zip(items[0].tolist(), scores[0].tolist())]


def test_the_page_endpoint_names_the_neighbours_a_ranking_reads(sasrec_with_neighbours, tmp_path):
    """GET /users/{id}/neighbours: the entries mix() reads for this user now, from other users only,
    nearest first, with what they went on to; a user's own new events become entries another user finds."""
    checkpoint, raw, ds = sasrec_with_neighbours
    client = TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    history = raw["user3"][:6]
    client.post("/events", json={"events": [{"user": "user3", "item": i, "timestamp": float(n)} for n, i in enumerate(history)]})
    found = client.get("/users/user3/neighbours", params={"k": 8}).json()
    assert found["in_use"] and found["weight"] == 0.5 and len(found["neighbours"]) == 8
    sims = [n["similarity"] for n in found["neighbours"]]
    assert sims == sorted(sims, reverse=True) and all(n["user"] != "user3" for n in found["neighbours"])
    assert all(set(n["next"]) <= set(ds.item_ids[1:]) and n["next"] for n in found["neighbours"])
    # the same search mix() runs, offline: the similarities of the nearest entries of other users
    ckpt = load_checkpoint(checkpoint)
    index = {item: i for i, item in enumerate(ckpt.item_ids)}
    batch = make_eval_batch(np.array([3]), [np.array([index[i] for i in history])], np.array([0]), MAX_LEN)
    offline_sims = ckpt.model.neighbours.search(ckpt.model.scores_and_states(batch)[1], batch.users, 8)[0][0].tolist()
    assert sims == pytest.approx(offline_sims, abs=1e-5)
    # a newcomer's events become entries: with the same items as user3, user3 finds them first
    client.post("/events", json={"events": [{"user": "twin", "item": i, "timestamp": 10.0 + n} for n, i in enumerate(history + raw["user5"][:3])]})
    again = client.get("/users/user3/neighbours", params={"k": 8}).json()["neighbours"]
    assert again[0]["user"] == "twin" and again[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert client.get("/users/user3/neighbours", params={"k": 0}).status_code == 422

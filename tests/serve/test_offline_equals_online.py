"""Online equals offline: what ``GET /recommend`` answers after a user's events is what the model
ranks offline (``SequentialRecommender.recommend``) for the same history, for every model; RAMRec
also reads the same per-user bank (its training entries, then each logged position, as
``follow_log`` writes it offline) and neighbour memory, and a user the training data did not have
reads a bank of their own events only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from memrec.config import NeighbourConfig, RunConfig
from memrec.data import load_dataset, split_dataset
from memrec.data.batching import make_eval_batch
from memrec.memory.neighbours import build_neighbours
from memrec.models import MODELS, build_model
from memrec.serve.app import ServeConfig, create_app
from memrec.serve.testing import TINY
from memrec.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from .conftest import ITEMS

K = 20
MAX_LEN = 8


def offline(checkpoint, history: list[str], user: int = -1, neighbours: bool = True, logged: bool = False) -> list[tuple[str, float]]:
    """Top K of a freshly loaded checkpoint for ``history`` (raw ids) as user index ``user`` (-1: anonymous);
    ``neighbours=False`` turns a RAMRec's neighbour memory off; ``logged``: the history arrived as events
    of ``user``, whose positions the model folds into its per-user state first (RAMRec's bank)."""
    ckpt = load_checkpoint(checkpoint)
    if not neighbours:
        ckpt.model.neighbours.set(k=0, temperature=1.0, weight=0.0)
    index = {raw: i for i, raw in enumerate(ckpt.item_ids)}
    seen = np.array([index[i] for i in history], dtype=np.int64)
    if logged:
        ckpt.model.follow_log(user, seen.tolist(), start=1)
    items, scores = ckpt.model.recommend(make_eval_batch(np.array([user]), [seen], np.array([0]), ckpt.model.max_len), k=K)
    return [(ckpt.item_ids[i], round(s, 6)) for i, s in zip(items[0].tolist(), scores[0].tolist()) if np.isfinite(s)]


def online(client: TestClient, user: str, history: list[str] | None = None) -> list[tuple[str, float]]:
    if history:
        events = [{"user": user, "item": item, "timestamp": float(n)} for n, item in enumerate(history)]
        assert client.post("/events", json={"events": events}).status_code == 200
    reply = client.get("/recommend", params={"user": user, "k": K})
    assert reply.status_code == 200, reply.text
    return [(r["item"], r["score"]) for r in reply.json()["items"]]


def assert_same_ranking(got, expected) -> None:
    assert [i for i, _ in got] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=2e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_answers_online_what_it_ranks_offline(name, checkpoints, tmp_path):
    client = TestClient(create_app(ServeConfig(checkpoint=str(checkpoints[name]), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    history = [f"i{n}" for n in np.random.default_rng(0).permutation(np.arange(1, 61))[:13]]  # longer than max_len
    assert_same_ranking(online(client, "u", history), offline(checkpoints[name], history))
    assert_same_ranking(online(client, "new"), offline(checkpoints[name], []))


# ----------------------------------------------------------------------------- RAMRec and its banks
USERS = ["alice", "bob", "carol", "dave"]


@pytest.fixture(scope="module")
def ramrec(tmp_path_factory):
    """A RAMRec checkpoint of a small JSON data set whose banks hold each user's first 10 items (the
    bank a user's old history leaves), with a neighbour memory in use, and each user's full sequence of 20 items."""
    folder = tmp_path_factory.mktemp("ramrec")
    rng = np.random.default_rng(1)
    raw = {user: [f"m{i}" for i in rng.permutation(40)[:20]] for user in USERS}
    (folder / "data.json").write_text(json.dumps(raw))
    config = RunConfig.from_dict({"model": "ramrec", "data": {"dataset": str(folder / "data.json"), "max_len": MAX_LEN},
                                  "model_config": TINY["ramrec"]})
    ds = load_dataset(config.data)
    torch.manual_seed(0)
    model = build_model("ramrec", ds.num_items, MAX_LEN, config.model_config).eval()
    model.update_memory(torch.arange(len(USERS)), [ds.sequences[ds.user_index(u)][:10] for u in USERS])
    build_neighbours(model, split_dataset(ds), MAX_LEN, NeighbourConfig(enabled=True), log=lambda *_: None)
    model.neighbours.set(k=8, temperature=0.3, weight=0.5)  # in use, whatever validation chose
    save_checkpoint(folder / "ramrec.pt", model, config, ds)
    return folder / "ramrec.pt", raw, ds


def test_ramrec_serves_a_known_user_from_their_own_bank(ramrec, tmp_path):
    checkpoint, raw, ds = ramrec
    client = TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    bob = ds.user_index("bob")
    before = load_checkpoint(checkpoint).model.bank.state_dict()
    # no events yet: the bank alone (the old history) is what the service knows of bob
    assert_same_ranking(online(client, "bob"), offline(checkpoint, [], bob))
    assert client.get("/recommend", params={"user": "bob"}).json()["known"]
    got = online(client, "bob", raw["bob"])  # 20 events: the first 12 leave the window of 8 for bob's bank
    assert_same_ranking(got, offline(checkpoint, raw["bob"], bob, logged=True))
    assert got != offline(checkpoint, raw["bob"], bob), "the events' bank entries changed nothing"
    assert got != offline(checkpoint, raw["bob"]), "the bank changed nothing: the test would not see a wrong bank"
    assert got != offline(checkpoint, raw["bob"], bob, neighbours=False, logged=True), "the neighbour memory changed nothing"
    after = client.app.state.served.model.bank
    assert len(after) > len(before["keys"]) and (after.owners == bob).sum() > (before["owners"] == bob).sum()
    assert set(after.owners.tolist()) == set(before["owners"].tolist()), "another user's bank changed"
    # a second process on the same store derives the same bank from the same log
    other = TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    assert_same_ranking(online(other, "bob"), got)


@pytest.mark.parametrize("stranger", ["zed", "0", "1", "3"])  # also ids that look like user indices ("1" is bob's)
def test_ramrec_serves_a_user_the_data_set_lacks_from_a_bank_of_their_own_events(stranger, ramrec, tmp_path):
    checkpoint, raw, _ = ramrec
    client = TestClient(create_app(ServeConfig(checkpoint=str(checkpoint), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    cold = online(client, stranger)
    assert_same_ranking(cold, offline(checkpoint, []))
    assert not client.get("/recommend", params={"user": stranger}).json()["known"]
    newcomer = len(USERS)  # the first user beyond the training users: a bank of their own events, never bob's
    assert_same_ranking(online(client, stranger, raw["bob"]), offline(checkpoint, raw["bob"], newcomer, logged=True))


def test_a_ramrec_checkpoint_carries_its_users_and_an_older_one_needs_its_data_set(ramrec, tmp_path):
    checkpoint, raw, ds = ramrec
    moved = tmp_path / "moved.pt"
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["user_ids"] == list(ds.user_ids)
    ckpt["config"]["data"]["dataset"] = str(tmp_path / "gone.json")
    torch.save(ckpt, moved)  # the data set is gone: the checkpoint's own user ids key the banks
    client = TestClient(create_app(ServeConfig(checkpoint=str(moved), store=str(tmp_path / "state.db"))), base_url="http://localhost")
    assert_same_ranking(online(client, "bob"), offline(checkpoint, [], ds.user_index("bob")))
    del ckpt["user_ids"]  # as written before checkpoints carried user ids
    torch.save(ckpt, moved)
    with pytest.raises(CheckpointError, match="keeps per-user memory banks keyed by its training users.*MEMREC_DATA_DIR"):
        create_app(ServeConfig(checkpoint=str(moved), store=str(tmp_path / "state.db2")))

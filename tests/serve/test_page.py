"""The page's side of the service, in process: ``/`` and its files (open, nothing from elsewhere),
and the endpoints it reads besides the API's own: ``/model``, ``/users`` and ``/items``."""
from __future__ import annotations

import re

from memrec.data import SequenceDataset
from memrec.serve.page import MAX_LOOKUP, STATIC, Titles

from .test_app import AUTH, client_for, events
from .test_neighbours_served import sasrec_with_neighbours  # noqa: F401 - the fixture


def test_the_page_and_its_files_are_open_and_load_nothing_from_elsewhere(checkpoints, tmp_path):
    client = client_for(checkpoints["ur4rec-moe"], tmp_path / "state.db")  # with a token
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {"/page/page.js", "/page/page.css"} <= set(assets)
    for asset in assets:
        if not asset.startswith("data:") and asset != "/docs":
            assert client.get(asset).status_code == 200, asset  # no token needed
    for text in [page.text] + [f.read_text() for f in STATIC.iterdir()]:
        assert not re.search(r"(?:https?:)?//[a-z]", text), "a URL points off-host"
    for path in ("/model", "/users", "/items?id=i1"):
        assert client.get(path).status_code == 401, path
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/model", "/users", "/items"} <= set(paths) and "/" not in paths


def test_the_model_says_whether_it_keeps_a_memory_and_what_triggers_an_update(checkpoints, tmp_path):
    about = client_for(checkpoints["ur4rec-moe"], tmp_path / "a.db").get("/model", headers=AUTH).json()
    assert about == {"model": "ur4rec-moe", "items": 60, "has_memory": True, "neighbours": None,
                     "trigger": {"update_trigger": "interaction_count", "interaction_threshold": 3, "drift_threshold": None,
                                 "time_period": None}}
    about = client_for(checkpoints["sasrec"], tmp_path / "b.db").get("/model", headers=AUTH).json()
    assert (about["has_memory"], about["trigger"], about["neighbours"]) == (False, None, None)


def test_the_model_reports_its_neighbour_memory_growing_with_the_logs(sasrec_with_neighbours, tmp_path):  # noqa: F811
    checkpoint, raw, ds = sasrec_with_neighbours
    client = client_for(checkpoint, tmp_path / "state.db")
    before = client.get("/model", headers=AUTH).json()["neighbours"]
    assert before["setting"]["k"] == 8 and before["setting"]["weight"] == 0.5
    assert before["training_entries"] > 0 and before["served_entries"] == 0
    client.post("/events", json=events("newcomer", raw["user1"][:4]), headers=AUTH)
    client.get("/recommend", params={"user": "someone"}, headers=AUTH)  # a ranking follows the logs
    assert client.get("/model", headers=AUTH).json()["neighbours"]["served_entries"] == 3  # positions 1..3
    items = client.get("/items", params={"id": raw["user1"][:2]}, headers=AUTH).json()
    assert items["titles"] is None and items["missing"] == f"the data set {ds.name!r} has no item text"
    assert [(i["known"], i["title"]) for i in items["items"]] == [(True, None), (True, None)]


def test_sample_users_are_those_with_a_log_the_most_recently_active_first(checkpoints, tmp_path):
    client = client_for(checkpoints["gru4rec"], tmp_path / "state.db")
    assert client.get("/users", headers=AUTH).json() == {"users": []}
    for user in ("ann", "bob", "cy"):
        client.post("/events", json={"user": user, "item": "i1"}, headers=AUTH)
    assert sorted(client.get("/users", headers=AUTH).json()["users"]) == ["ann", "bob", "cy"]
    client.post("/events", json={"user": "bob", "item": "i2"}, headers=AUTH)
    assert client.get("/users", params={"limit": 2}, headers=AUTH).json()["users"][0] == "bob"  # seen to change since
    assert len(client.get("/users", params={"limit": 2}, headers=AUTH).json()["users"]) == 2
    assert sorted(client_for(checkpoints["gru4rec"], tmp_path / "state.db").get("/users", headers=AUTH).json()["users"]) == \
        ["ann", "bob", "cy"]  # another process sees the same users
    for limit in (0, 101, "x"):
        assert client.get("/users", params={"limit": limit}, headers=AUTH).status_code == 422, limit


def test_items_name_unknown_ids_and_say_why_there_are_no_titles(checkpoints, tmp_path):
    client = client_for(checkpoints["sasrec"], tmp_path / "state.db")  # a catalogue of no data set that can be read
    reply = client.get("/items", params={"id": ["i2", "nope"]}, headers=AUTH).json()
    assert [(i["item"], i["known"], i["title"]) for i in reply["items"]] == [("i2", True, None), ("nope", False, None)]
    assert reply["titles"] is None and "data set" in reply["missing"]
    for bad in ([], ["x"] * (MAX_LOOKUP + 1), [""]):
        assert client.get("/items", params={"id": bad}, headers=AUTH).status_code == 422, len(bad)


def test_titles_come_from_the_data_set_without_the_category_they_end_with():
    ds = SequenceDataset.from_sequences({"u": ["242", "302"]}, name="movies")
    ds.items.text[1:], ds.items.category[1:] = ["Kolya. 1996. Comedy", "L.A. Confidential. 1997. Crime"], ["Comedy", "Crime"]
    titles = Titles("unused.pt", dataset=ds)
    assert titles.wait(0) and titles.source == "movies" and titles.missing is None
    assert titles.table == {"242": ("Kolya. 1996", "Comedy"), "302": ("L.A. Confidential. 1997", "Crime")}

"""The service's hardening (issue 17, items 9-14), against real ``memrec serve`` processes on loopback:
one rule for user ids, idempotency-key conflicts, the token, the Host check, offline API pages,
deep JSON and the receive time of an event without a timestamp."""
from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import httpx
import pytest

from memrec.serve.schemas import user_id
from memrec.serve.testing import ServiceProcess, fresh_store_url

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def service(checkpoints, tmp_path_factory):
    """UR4Rec-MoE behind a token, on a SQLite state file, also answering to recs.example.com."""
    where = tmp_path_factory.mktemp("hardening") / "state.db"
    with ServiceProcess(checkpoints["ur4rec-moe"], str(where), token=TOKEN, extra=["--allowed-hosts", "recs.example.com"]) as running:
        running.where = where
        yield running


@pytest.fixture
def store(request, tmp_path):
    """A state store of the kind ``request.param`` names: a SQLite file, or a fresh prefix on the Redis or PostgreSQL server."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
    else:
        with fresh_store_url(request.param) as url:
            yield url


def real_user_ids(shared_data) -> list[str]:
    """The users of the real data sets: MovieLens numbers, Amazon reviewer ids, S3-Rec numbers."""
    ids = [line.split("\t")[0] for line in (shared_data / "ml-100k" / "ml-100k.inter").read_text().splitlines()[1:]]
    ids += [line.split()[0] for line in (shared_data / "amazon-scientific" / "Scientific.user2index").read_text().splitlines()]
    for name in ("Beauty", "Sports_and_Outdoors", "LastFM"):
        ids += [line.split()[0] for line in (shared_data / "s3rec" / f"{name}.txt").read_text().splitlines()]
    return sorted(set(ids))


def test_9_every_endpoint_takes_the_user_ids_post_events_takes(service, shared_data):
    users = real_user_ids(shared_data)
    assert len(users) > 40_000 and "A1SWWHE1L3XR3V" in users and all(user_id(u) == u for u in users)  # all valid
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=10.0) as http:
        for user in ["196", "A1SWWHE1L3XR3V", "mail:ann@example.com", "x.y_z-1", "..a"]:
            assert http.post("/events", json={"user": user, "item": "i1", "timestamp": 1.0}).status_code == 200, user
            assert http.get(f"/users/{user}").json()["history_length"] == 1, user
            assert http.get("/recommend", params={"user": user}).json()["history_length"] == 1, user
            assert http.delete(f"/users/{user}/memory").status_code == 200, user
            assert http.post(f"/users/{user}/memory:update").status_code == 200, user
            assert http.get(f"/users/{user}/neighbours").json()["user"] == user, user
        refused = http.post("/events", json={"user": "a/b", "item": "i1", "timestamp": 1.0})
        assert refused.status_code == 422
        assert refused.json()["detail"] == [{"loc": ["body", "event", "user"], "type": "value_error", "msg":
            "Value error, a user id is 1-128 letters, digits and . _ : @ - (not dots only, so that a URL path can name it)"}]
        for bad in ["a/b", "a b", "..", "x" * 129, "é"]:
            assert http.post("/events", json={"events": [{"user": bad, "item": "i1"}]}).status_code == 422, bad
            assert http.get("/recommend", params={"user": bad}).status_code == 422, bad
        for path in ("/users/a%20b", "/users/a%20b/memory"):
            assert http.request("GET" if path.count("/") == 2 else "DELETE", path).status_code == 422, path
        spec = http.get("/openapi.json").json()
    schemas = [spec["components"]["schemas"]["EventIn"]["properties"]["user"]]
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            schemas += [p["schema"] for p in operation.get("parameters", []) if p["name"] in ("user", "user_id")]
    schemas = [{k: v for k, v in s.items() if k != "title"} for s in schemas]
    assert len(schemas) == 6 and all(s == schemas[0] for s in schemas), schemas  # one documented rule
    assert schemas[0]["pattern"] == "^[A-Za-z0-9._:@-]*[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*$" and schemas[0]["maxLength"] == 128


@pytest.mark.parametrize("store", ["sqlite", "redis", "postgres"], indirect=True)
def test_10_an_idempotency_key_reused_for_another_event_is_a_conflict(checkpoints, store):
    with ServiceProcess(checkpoints["ur4rec-moe"], store, token=TOKEN) as service, \
            httpx.Client(base_url=service.url, headers=AUTH, timeout=10.0) as http:
        first = {"user": "ann", "item": "i1", "timestamp": 5.0, "key": "k1"}
        assert http.post("/events", json=first).json()["accepted"] == 1
        assert http.post("/events", json=first).json()["duplicates"] == 1  # a retry: answered, not applied again
        for other in ({**first, "item": "i2"}, {**first, "timestamp": 6.0}):
            conflict = http.post("/events", json=other)
            assert conflict.status_code == 409
            assert conflict.json()["detail"].startswith("user 'ann': idempotency key 'k1' was already used for item 'i1' at 5.0, not for")
            assert conflict.json()["detail"].endswith("; nothing was recorded")
        two_users = {"events": [{"user": "bob", "item": "i3", "timestamp": 1.0, "key": "k1"}, {**first, "item": "i4"}]}
        assert http.post("/events", json=two_users).status_code == 409
        in_one_batch = {"events": [{"user": "cy", "item": "i3", "key": "k"}, {"user": "cy", "item": "i4", "key": "k"}]}
        assert http.post("/events", json=in_one_batch).status_code == 409
        received = {"user": "dee", "item": "i5", "key": "r"}  # no timestamp: a retry has another receive time, still the same event
        assert [http.post("/events", json=received).json()["accepted"] for _ in range(2)] == [1, 0]
        assert [e["item"] for e in http.get("/users/ann").json()["history"]] == ["i1"]
        assert [http.get(f"/users/{u}").json()["history_length"] for u in ("bob", "cy", "dee")] == [0, 0, 1]
        assert http.get("/users/ann").json()["memory"]["interaction_count"] == 1


def test_11_with_a_token_nothing_about_a_user_is_open(service, checkpoints, tmp_path):
    http = httpx.Client(base_url=service.url, timeout=10.0)
    for path in ("/recommend?user=196", "/users/196", "/users/196/memory"):
        method = "DELETE" if path.endswith("memory") else "GET"
        reply = http.request(method, path)
        assert reply.status_code == 401 and "known" not in reply.text and reply.headers["www-authenticate"] == "Bearer", path
    assert http.get("/recommend", params={"user": "196"}, headers=AUTH).status_code == 200
    for path in ("/health", "/docs", "/redoc", "/openapi.json", "/metrics"):
        assert http.get(path).status_code == 200, path
    with ServiceProcess(checkpoints["sasrec"], str(tmp_path / "open.db")) as open_service:
        assert httpx.get(open_service.url + "/recommend", params={"user": "196"}).status_code == 200
        assert "no token: whoever reaches the port can write events" in open_service.output()
    assert "no token" not in service.output()


def test_12_requests_for_another_host_are_refused_and_health_hides_the_store_path(service):
    host = urlsplit(service.url).netloc
    for name in ("evil.example", "evil.example:80", "127.0.0.1.nip.io", "localhost.evil.example"):
        reply = httpx.get(service.url + "/health", headers={"Host": name})
        assert reply.status_code == 400, name
        assert reply.json()["detail"].startswith("this service answers to the hosts 127.0.0.1, localhost, [::1], recs.example.com, not ")
    for name in (host, f"localhost:{service.port}", "LOCALHOST", "recs.example.com:443", f"[::1]:{service.port}"):
        assert httpx.get(service.url + "/health", headers={"Host": name}).status_code == 200, name
    health = httpx.get(service.url + "/health").json()
    assert health["store"] == "SQLiteStateStore" and str(service.where.parent) not in str(health)


def test_13_the_api_pages_and_their_assets_are_served_locally(service):
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        for page, needed in (("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}), ("/redoc", {"redoc.standalone.js"})):
            html = http.get(page).text
            urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
            assert needed <= {u.rsplit("/", 1)[-1] for u in urls}, urls
            assert not re.search(r"(?:https?:)?//", html.replace("<!--", "").replace("-->", "")), "a URL points off-host"
            for url in urls:
                assert not urlsplit(url).netloc, url
                asset = http.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > (100_000 if url.endswith((".js", ".css")) else 1000), url


def test_14_deep_json_is_named_and_an_event_without_timestamp_takes_the_receive_time(service):
    with httpx.Client(base_url=service.url, headers=AUTH, timeout=10.0) as http:
        deep = http.post("/events", content=b"[" * 50_000 + b"]" * 50_000, headers={"content-type": "application/json"})
        assert deep.status_code == 400 and deep.json()["detail"].startswith("the request body is nested too deeply to read;")
        before = time.time()
        assert http.post("/events", json={"user": "eve", "item": "i7"}).json()["accepted"] == 1
        after = time.time()
        [logged] = http.get("/users/eve").json()["history"]
        assert before <= logged["timestamp"] <= after
        field = http.get("/openapi.json").json()["components"]["schemas"]["EventIn"]["properties"]["timestamp"]
        assert "omitted: the time the service received it" in field["description"]
        assert "timestamp" not in http.get("/openapi.json").json()["components"]["schemas"]["EventIn"].get("required", [])

"""Offline equals online: ``memrec stream`` ranks each event as a running ``memrec serve`` (a real
uvicorn process on loopback) does when the same events reach it over HTTP: the events before T
imported as ``train-*`` keys, then for each stream event ``GET /recommend`` over the whole
catalogue (the event's rank: its place in that list) and then ``POST /events``. The service syncs
the neighbour memory before every ranking: the stream policy with ``sync_every=1``."""
from __future__ import annotations

import httpx
import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'memrec[serve]'")

from memrec.serve.testing import ServiceProcess  # noqa: E402
from memrec.stream import replay  # noqa: E402
from memrec.stream.policies import make_policy  # noqa: E402

from .conftest import ITEMS, toy_checkpoint, toy_stream  # noqa: E402

K = len(ITEMS)


def served_ranks(checkpoint, store: str, before, stream) -> list[int]:
    """Each stream event's rank as the service answers it: its place in GET /recommend (history excluded;
    an item of the history is a miss, K), then the event is posted."""
    ranks = []
    with ServiceProcess(checkpoint, store) as service, httpx.Client(base_url=service.url, timeout=30.0) as client:
        for user, events in before.items():
            body = [{"user": user, "item": e.item, "timestamp": e.timestamp, "key": f"train-{n}"} for n, e in enumerate(events)]
            assert client.post("/events", json={"events": body}).status_code == 200
        for e in stream:
            reply = client.get("/recommend", params={"user": e.user, "k": K})
            assert reply.status_code == 200, reply.text
            items = [r["item"] for r in reply.json()["items"]]
            ranks.append(items.index(e.item) if e.item in items else K)
            assert client.post("/events", json={"user": e.user, "item": e.item, "timestamp": e.timestamp}).status_code == 200
    return ranks


@pytest.mark.parametrize("policy,model,neighbours", [("neighbours", "gru4rec", True), ("user-memory", "ur4rec-moe", False)])
def test_stream_ranks_equal_a_running_service(tmp_path, policy, model, neighbours):
    checkpoint = toy_checkpoint(tmp_path, neighbours, model)
    before, stream = toy_stream(n=40, unknown=False)  # the service refuses an item its model does not know
    offline = make_policy(policy, checkpoint, before, stream, sync_every=1)
    try:
        ranks = replay(offline, stream).ranks.tolist()
    finally:
        offline.close()
    assert ranks == served_ranks(checkpoint, str(tmp_path / "state.db"), before, stream)
    assert len(set(ranks)) > 3  # not a constant: the comparison can fail

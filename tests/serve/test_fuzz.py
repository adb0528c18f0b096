"""Bad input, found by a machine: schemathesis fuzzes the real service (``memrec serve`` in its own
process) from its own ``/openapi.json``, every operation and method, valid and invalid data, with a
fixed seed. No answer may be a 5xx or break the spec (status codes, content types, response
schemas, auth), and every 4xx says what was wrong."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("schemathesis", reason="the fuzz tests need schemathesis: pip install -e '.[dev]'")

from memrec.serve.testing import ServiceProcess, fresh_store_url, fuzz, tiny_checkpoint  # noqa: E402

from .conftest import TOKEN  # noqa: E402

CATALOGUE = ["[PAD]"] + [str(n) for n in range(60)]  # short ids, so generated events often name a real item
OPERATIONS = {("POST", "/events"), ("GET", "/recommend"), ("GET", "/users/{user_id}"), ("DELETE", "/users/{user_id}/memory"),
              ("POST", "/users/{user_id}/memory:update"), ("GET", "/health"), ("GET", "/metrics")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """UR4Rec-MoE with its memory: the model with the most code behind the endpoints."""
    return tiny_checkpoint(tmp_path_factory.mktemp("fuzz") / "ur4rec.pt", "ur4rec-moe", CATALOGUE)


@pytest.mark.parametrize("store, token", [("sqlite", None), ("sqlite", TOKEN), ("postgres", TOKEN)])
def test_fuzzing_the_openapi_spec_finds_no_server_error(store, token, checkpoint, tmp_path):
    if store == "sqlite":
        run = fuzz_service(checkpoint, str(tmp_path / "state.db"), token, tmp_path)
    else:  # PostgreSQL refuses NUL in text: ids must be refused before they reach it
        with fresh_store_url(store) as url:
            run = fuzz_service(checkpoint, url, token, tmp_path)
    failures = run.output[run.output.find("FAILURES"):][:6000]
    assert run.returncode == 0, f"schemathesis found failures:\n{failures or run.output[-6000:]}"
    counts = run.counts()
    server_errors = [(m, r, s, body[:300]) for m, r, s, body in run.responses if s >= 500]
    assert not server_errors, server_errors
    assert OPERATIONS <= {(m, r) for m, r, _ in counts}, "an operation of the spec was never called"
    assert counts["POST", "/events", 200] >= 5, f"too few events were accepted to exercise the store: {counts}"
    assert counts["POST", "/events", 422] >= 5 and counts["GET", "/recommend", 422] >= 5, counts
    unclear = [(m, r, s, body[:200]) for m, r, s, body in run.responses if 400 <= s < 500 and not clear(body)]
    assert not unclear, f"4xx answers without a message: {unclear[:5]}"
    assert (counts["GET", "/users/{user_id}", 401] > 0) == (token is not None)


def fuzz_service(checkpoint, store: str, token: str | None, folder):
    with ServiceProcess(checkpoint, store, token=token) as service:
        return fuzz(service.url, folder, token=token, max_examples=15, seed=1)


def clear(body: str) -> bool:
    """A JSON error with a non-empty detail: a sentence, or a list of (field, message, type)."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return False
    if isinstance(detail, str):
        return len(detail) > 5
    return bool(detail) and all(isinstance(d, dict) and d.get("msg") and "loc" in d for d in detail)

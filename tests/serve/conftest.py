"""Fixtures of the service tests: tiny real checkpoints of every model, shared-store servers."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'memrec[serve]'")

from memrec.models import MODELS  # noqa: E402
from memrec.serve.testing import fresh_store_url, tiny_checkpoint  # noqa: E402

ITEMS = ["[PAD]"] + [f"i{n}" for n in range(1, 61)]
TOKEN = "test-token"


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict:
    """One untrained checkpoint per model over a 60-item catalogue (UR4Rec: memory updates every 3 events)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: tiny_checkpoint(folder / f"{name}.pt", name, ITEMS) for name in sorted(MODELS)}


@pytest.fixture
def shared_store(request):
    """A URL with a fresh prefix on the Redis or PostgreSQL test server (``request.param``), removed afterwards."""
    with fresh_store_url(request.param) as url:
        yield url

"""Helpers for tests and benchmarks of the service: shared-store servers, tiny checkpoints, service
processes, and schema-driven fuzzing (:func:`fuzz`, schemathesis against the service's OpenAPI spec).

Redis and PostgreSQL are found at ``$MEMREC_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``)
and ``$MEMREC_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
``.ci/run`` starts both. A server that cannot be reached is an error that says how to start it,
unless ``MEMREC_TEST_NO_SERVERS=1`` declares a machine without them (then the tests that need them skip).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URLS = {"redis": "redis://127.0.0.1:6379/0", "postgres": "postgresql://postgres@127.0.0.1:5432/postgres"}
ENV = {"redis": "MEMREC_TEST_REDIS_URL", "postgres": "MEMREC_TEST_POSTGRES_URL"}


class ServerMissing(RuntimeError):
    """A Redis or PostgreSQL server the tests need cannot be reached."""


def server_url(kind: str) -> str | None:
    """The URL of a reachable ``kind`` server ('redis' or 'postgres'); None if MEMREC_TEST_NO_SERVERS
    is set; ServerMissing, with what to do, if it cannot be reached."""
    if os.environ.get("MEMREC_TEST_NO_SERVERS", "") not in ("", "0"):
        return None
    url = os.environ.get(ENV[kind], DEFAULT_URLS[kind])
    try:
        if kind == "redis":
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        else:
            import psycopg

            psycopg.connect(url, connect_timeout=2).close()
    except Exception as e:  # noqa: BLE001 - any failure means: not usable
        raise ServerMissing(
            f"{kind} is not reachable at {url} ({type(e).__name__}: {str(e).strip()[:200]}). Start it as .ci/run does "
            f"(redis-server with --appendonly yes --appendfsync always; a PostgreSQL cluster made by initdb), point "
            f"{ENV[kind]} at one, or set MEMREC_TEST_NO_SERVERS=1 on a machine that has none"
        ) from None
    return url


@contextmanager
def fresh_store_url(kind: str):
    """For a pytest fixture: a ``kind`` server URL with a fresh prefix, removed afterwards. Fails the
    test (with what to do) if the server cannot be reached; skips it under MEMREC_TEST_NO_SERVERS."""
    import pytest

    try:
        url = server_url(kind)
    except ServerMissing as e:
        pytest.fail(str(e), pytrace=False)
    if url is None:
        pytest.skip(f"MEMREC_TEST_NO_SERVERS is set: no {kind} server on this machine")
    prefix = fresh_prefix()
    try:
        yield with_prefix(url, prefix)
    finally:
        drop_prefix(kind, url, prefix)


def with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def fresh_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


def drop_prefix(kind: str, url: str, prefix: str) -> None:
    """Remove everything a store wrote under ``prefix``."""
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("events", "memories", "meta"):
                conn.execute(f"DROP TABLE IF EXISTS {prefix}_{table}")


# ----------------------------------------------------------------------------- tiny checkpoints
TINY = {
    "sasrec": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "inner_size": 32, "dropout": 0.0},
    "bsarec": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "inner_size": 32, "dropout": 0.0},
    "gru4rec": {"embedding_size": 16, "hidden_size": 16, "dropout": 0.0},
    "ramrec": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "inner_size": 32, "dropout": 0.0, "k_min": 1, "k_max": 4},
    "ur4rec-moe": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "inner_size": 32, "dropout": 0.0, "modalities": ["id"],
                   "memory_dim": 8, "interaction_threshold": 3},
    "memory-moe": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "inner_size": 32, "dropout": 0.0, "num_experts": 2,
                   "short_term_capacity": 16, "long_term_capacity": 32, "episodic_capacity": 16, "semantic_capacity": 8},
}


def tiny_checkpoint(path: str | Path, model: str, item_ids: list[str], max_len: int = 8, seed: int = 0, **overrides) -> Path:
    """An untrained ``model`` over ``item_ids`` (row 0 = padding) saved as a real checkpoint."""
    import torch

    from memrec.config import RunConfig
    from memrec.models import build_model
    from memrec.train.checkpoint import save_checkpoint

    config = RunConfig.from_dict({"model": model, "data": {"max_len": max_len}, "model_config": {**TINY[model], **overrides}})
    torch.manual_seed(seed)
    net = build_model(model, len(item_ids) - 1, max_len, config.model_config)
    catalogue = types.SimpleNamespace(item_ids=list(item_ids), user_ids=[], fingerprint=lambda: f"tiny-{len(item_ids)}")
    save_checkpoint(path, net, config, catalogue)
    return Path(path)


# ----------------------------------------------------------------------------- service processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``memrec serve`` in a subprocess on a free loopback port.

    Example::

        with ServiceProcess("m.pt", "state.db") as service:
            httpx.get(service.url + "/health")
    """

    def __init__(self, checkpoint, store: str, token: str | None = None, port: int | None = None, extra: list[str] | None = None):
        self.checkpoint, self.store, self.token = str(checkpoint), str(store), token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "ServiceProcess":
        import httpx

        cmd = [sys.executable, "-m", "memrec.cli", "serve", self.checkpoint, "--store", self.store, "--port", str(self.port), *self.extra]
        if self.token:
            cmd += ["--token", self.token]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memrec serve exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"memrec serve did not answer on {self.url} within {timeout} s")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ----------------------------------------------------------------------------- fuzzing
# positive_data_acceptance is left out: a schema-valid event that names an item outside the
# checkpoint's catalogue is refused (422), which no JSON schema of a model-sized catalogue expresses.
FUZZ_CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]


@dataclass
class FuzzRun:
    """What one schemathesis run did: its exit code (0: every check passed), its report, and every
    response as (method, route of the spec or 'unmatched', status, body)."""

    returncode: int
    output: str
    responses: list[tuple[str, str, int, str]]

    def counts(self) -> Counter:
        """(method, route, status) -> number of responses."""
        return Counter((m, r, s) for m, r, s, _ in self.responses)


def fuzz(url: str, folder: str | Path, token: str | None = None, max_examples: int = 30, seed: int = 0,
         timeout: float = 600.0) -> FuzzRun:
    """Run schemathesis (``st run``, one worker, every check but positive_data_acceptance) with a fixed
    ``seed`` against the service at ``url``, over every operation of its ``/openapi.json`` and every
    method, positive and negative data, at most ``max_examples`` cases per operation and phase; its
    reports go to ``folder``. Needs schemathesis (the dev extra)."""
    import httpx

    folder = Path(folder).resolve()
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", *FUZZ_CHECKS, "--workers", "1",
           "--max-examples", str(max_examples), "--seed", str(seed), "--generation-database", "none", "--no-color",
           "--report", "har", "--report-har-path", str(folder / "fuzz.har.json")]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=folder,  # its own files go there too
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    routes = [(path, re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$"))
              for path in httpx.get(f"{url}/openapi.json", timeout=10.0).json()["paths"]]
    har = folder / "fuzz.har.json"
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    responses = []
    for e in entries:
        path = urlsplit(e["request"]["url"]).path
        route = next((name for name, pattern in routes if pattern.match(path)), "unmatched")
        responses.append((e["request"]["method"], route, e["response"]["status"], e["response"]["content"].get("text", "")))
    return FuzzRun(done.returncode, done.stdout + done.stderr, responses)

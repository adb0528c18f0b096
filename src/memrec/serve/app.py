"""The online service: ``memrec serve CHECKPOINT --store state.db``.

==============================================  ======================================================
``POST /events``                                 one event or ``{"events": [...]}``: append to each user's log
                                                 and fold into the memory, durable before the reply (token)
``GET /recommend?user=U&k=10``                   top-k over the catalogue, history excluded; unknown user:
                                                 the model's empty-history answer (token)
``GET /users/{id}``                              the user's log and memory statistics (token)
``DELETE /users/{id}/memory``                    reset the memory to the model's initial one (token)
``POST /users/{id}/memory:update``               update the memory now from its pending items (token)
``GET /health``, ``GET /metrics``                liveness with a store check; Prometheus text
``GET /``                                        a page to watch memory at work (:mod:`memrec.serve.page`),
                                                 with ``GET /model``, ``/users`` and ``/items`` (token)
==============================================  ======================================================

Requests only read: every memory update happens on the event path, in the same transaction as the
event it follows. "(token)": with a token configured, these need ``Authorization: Bearer TOKEN``;
without one they are open to whoever reaches the port (the service logs a warning at start).
``/health``, ``/metrics``, ``/openapi.json`` and the API pages ``/docs`` and ``/redoc`` (served
from the fastapi-offline package: they work without internet) are always open. Requests must name
the bound host, a loopback name or one of ``allowed_hosts`` in their ``Host`` header. The page and
its files are open too: it asks for the token when the service has one.

Example::

    app = create_app(ServeConfig(checkpoint="runs/ur4rec/checkpoint.pt", store="state.db"))
    # uvicorn.run(app, port=8000), or: memrec serve runs/ur4rec/checkpoint.pt --store state.db
"""
from __future__ import annotations

import hmac
import sys
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread

from fastapi import Depends, FastAPI, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline

from memrec.errors import ConfigError, MemrecError
from memrec.store.events import Event, KeyConflict, new_events
from memrec.serve.guard import Guard
from memrec.serve.metrics import Metrics
from memrec.serve.model import ServedModel, memory_stats
from memrec.serve.page import add_page
from memrec.serve.training_users import import_training_users, training_dataset
from memrec.serve.schemas import (MAX_BATCH, EventBatch, EventsBody, EventsOut, HealthOut, MemoryOut, RecommendOut, Unavailable,
                                  UserId, UserOut, errors)
from memrec.serve.state import open_state
from memrec.store import StoreError

POST_EVENTS_BODY = (f'expected one event {{"user": ..., "item": ..., "timestamp": optional, "key": optional}} '
                    f'or {{"events": [up to {MAX_BATCH} of them]}}')
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
log = logging.getLogger("memrec.serve")


@dataclass
class ServeConfig:
    """Settings of one service process."""

    checkpoint: str
    store: str = "memrec-state.db"  # a SQLite path, sqlite:///..., redis://... or postgresql://...
    token: str | None = None  # bearer token for every endpoint but /health, /metrics and the API docs; None: open
    host: str = "127.0.0.1"  # the address it is bound to: requests must name it, a LOOPBACK name or one of allowed_hosts
    allowed_hosts: tuple[str, ...] = ()  # more names for the Host header; "*.example.com", or "*" for any
    reset_memories: bool = False  # forget memories written by another model (event logs are kept)
    import_training_users: bool = False  # at start, record the training users' histories as their event logs (memrec.serve.training_users)
    max_body_bytes: int = 1 << 20
    max_k: int = 1000
    # Threads for blocking handlers. An event reply waits for its group's commit on one of them, so
    # this bounds the events per fsync: with anyio's default of 40, disk stalls cut /events to 80-100
    # per second in benchmarks/serve_load.py and queued seconds of requests behind them.
    worker_threads: int = 256

    def __post_init__(self):
        if self.worker_threads < 1:
            raise ConfigError(f"worker_threads must be >= 1, got {self.worker_threads}")

    def hosts(self) -> list[str]:
        """The names the ``Host`` header may carry.

        Example:
            >>> ServeConfig("m.pt", host="::1", allowed_hosts=("recs.example.com",)).hosts()
            ['[::1]', 'localhost', '127.0.0.1', 'recs.example.com']
        """
        bound = [] if self.host in ("", "0.0.0.0", "::") else [f"[{self.host}]" if ":" in self.host else self.host]
        return list(dict.fromkeys([*bound, *LOOPBACK, *self.allowed_hosts]))


def create_app(config: ServeConfig, served: ServedModel | None = None) -> FastAPI:
    """Load the checkpoint and open the store (refusing a memory-version mismatch), then build the app."""
    served = served or ServedModel.load(config.checkpoint)
    store = open_state(config.store, served.version, reset_memories=config.reset_memories)
    dataset = training_dataset(config.checkpoint) if config.import_training_users else None
    if dataset is not None:
        import_training_users(store, served, dataset, log=lambda line: print(line, file=sys.stderr, flush=True))
    metrics = Metrics()
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.worker_threads
        metrics.worker_threads.set(config.worker_threads)
        yield

    app = FastAPIOffline(title="memrec", version="1", description=__doc__.split("Example::")[0], lifespan=lifespan)
    app.state.served, app.state.store, app.state.metrics = served, store, metrics
    app.add_middleware(Guard, allowed_hosts=config.hosts(), max_body_bytes=config.max_body_bytes, metrics=metrics)
    if config.token is None:
        log.warning("memrec serve: no token: whoever reaches the port can write events, read and reset every user's state; "
                    "set --token or $MEMREC_SERVE_TOKEN")

    def openapi() -> dict:  # real item ids as examples: /docs shows them, and fuzzers send some
        if app.openapi_schema is None:
            FastAPI.openapi(app)["components"]["schemas"]["EventIn"]["properties"]["item"]["examples"] = served.item_ids[1:4]
        return app.openapi_schema

    app.openapi = openapi
    bearer = HTTPBearer(auto_error=False)

    async def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), config.token.encode()):
            raise HTTPException(401, "this endpoint needs 'Authorization: Bearer <token>' with the service's token",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)] if config.token is not None else []  # the spec names the token only when one is needed
    denied = (401,) if config.token is not None else ()

    @app.exception_handler(RequestValidationError)
    def invalid(request, exc: RequestValidationError):  # without the offending input: it may not be JSON (NaN)
        issues = [{"loc": e["loc"], "msg": e["msg"] + (f": {e['ctx']['error']}" if e["type"] == "json_invalid" else ""),
                   "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": issues}, status_code=422)

    @app.exception_handler(400)  # FastAPI's answer to a body it cannot decode; memrec raises no 400
    def undecodable(request, exc):
        why = "nested too deeply to read" if isinstance(exc.__cause__, RecursionError) else "not UTF-8 JSON text"
        return JSONResponse({"detail": f"the request body is {why}; {POST_EVENTS_BODY}"}, status_code=400)

    @app.exception_handler(MemrecError)
    def store_unavailable(request, exc: MemrecError):
        return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=503)

    @app.post("/events", dependencies=guarded, response_model=EventsOut, responses=errors(400, *denied, 409, 413, 422, 503))
    def post_events(body: EventsBody) -> dict:
        """Append events to the users' logs and update their memories; replies once it is durable."""
        sent, now = body.events if isinstance(body, EventBatch) else [body], time.time()
        incoming = [Event(e.item, now if e.timestamp is None else e.timestamp, e.key, received=e.timestamp is None) for e in sent]
        unknown = served.unknown_items([e.item for e in incoming])
        if unknown:
            shown = ", ".join(repr(i) for i in sorted(set(unknown))[:10])
            raise HTTPException(422, f"unknown item id(s) {shown}: this model knows the {served.num_items} items of its "
                                     f"checkpoint's catalogue; nothing was recorded")
        by_user: dict[str, list[int]] = {}
        for n, e in enumerate(sent):
            by_user.setdefault(e.user, []).append(n)
        results, recorded = [None] * len(incoming), []
        try:
            for user, rows in by_user.items() if len(by_user) > 1 else ():  # users are written one by one: check all first
                new_events([incoming[n] for n in rows], {e.key: e for e in store.history(user) if e.key is not None})
            for user, rows in by_user.items():
                fired: list[bool] = []

                def apply(memory, new):
                    if not served.has_memory:
                        return None
                    memory, fired[:] = served.observe(memory, new)
                    return memory

                flags = store.record(user, [incoming[n] for n in rows], apply)  # KeyConflict: nothing of this user's
                recorded.append(user)
                updates = iter(fired)
                for n, applied in zip(rows, flags):
                    updated = bool(next(updates, False)) if applied and served.has_memory else False
                    results[n] = {"user": user, "item": incoming[n].item, "applied": applied, "memory_updated": updated}
        except KeyConflict as e:
            done = f"the events of users {recorded} were recorded before it" if recorded else "nothing was recorded"
            raise HTTPException(409, f"user {user!r}: {e}; {done}") from None
        applied = sum(r["applied"] for r in results)
        updated = sum(r["memory_updated"] for r in results)
        metrics.events.labels("applied").inc(applied)
        metrics.events.labels("duplicate").inc(len(results) - applied)
        metrics.memory_updates.labels("trigger").inc(updated)
        return {"accepted": applied, "duplicates": len(results) - applied, "memory_updates": updated, "events": results}

    @app.get("/recommend", dependencies=guarded, response_class=JSONResponse,
             responses={200: {"model": RecommendOut}, **errors(*denied, 422, 503)})
    async def recommend(user: Annotated[UserId, Query()], k: int = Query(10, ge=1, le=config.max_k)) -> JSONResponse:
        """Top-k items for a user over the whole catalogue, the user's history excluded.

        It runs on the event loop (a read and about a millisecond of model time, no thread hop) and
        answers a ready JSON response (no response-model encoding): both matter at 200 requests/s."""
        served.follow(store)  # positions other users (and other processes) logged become neighbour entries
        history, memory = store.snapshot(user)
        rec = served.recommend(history, memory, k, user=user)
        return JSONResponse({
            "user": user, "known": bool(history) or memory is not None or user in served.users, "history_length": len(history),
            "model": served.name,
            "items": [{"item": i, "score": s} for i, s in zip(rec.items, rec.scores)],
            "routing_weights": rec.routing, "memory": rec.memory,
        })

    @app.get("/users/{user_id}", dependencies=guarded, response_model=UserOut, responses=errors(*denied, 422, 503))
    def get_user(user_id: Annotated[UserId, Path()], limit: int = Query(100, ge=0, le=100_000)) -> dict:
        """The user's most recent events (up to ``limit``) and memory statistics."""
        history, memory = store.snapshot(user_id)
        shown = history[len(history) - limit :] if limit else []
        return {
            "user": user_id, "history_length": len(history), "history": [e.to_dict() for e in shown],
            "memory": memory_stats(memory) if memory is not None else None, "model_has_memory": served.has_memory,
        }

    def change_memory(user_id: str, reset: bool) -> dict:
        if not served.has_memory:
            raise HTTPException(409, f"model {served.name!r} keeps no per-user memory; it serves from the history alone")
        memory = store.update(user_id, lambda m: served.step(m, reset=reset))
        metrics.memory_updates.labels("reset" if reset else "explicit").inc()
        return {"user": user_id, "memory": memory_stats(memory)}

    memory_errors = errors(*denied, 409, 422, 503)

    @app.delete("/users/{user_id}/memory", dependencies=guarded, response_model=MemoryOut, responses=memory_errors)
    def reset_memory(user_id: Annotated[UserId, Path()]) -> dict:
        """Start the user's memory over from the model's initial memory (the event log is kept)."""
        return change_memory(user_id, reset=True)

    @app.post("/users/{user_id}/memory:update", dependencies=guarded, response_model=MemoryOut, responses=memory_errors)
    def update_memory(user_id: Annotated[UserId, Path()]) -> dict:
        """Update the user's memory now from the interactions since its last update (the explicit trigger)."""
        return change_memory(user_id, reset=False)

    @app.get("/health", response_class=JSONResponse, responses={200: {"model": HealthOut}, 503: {"model": Unavailable}})
    def health() -> JSONResponse:
        kind = type(store).__name__  # not where it is: no path or address of the store on an open endpoint
        try:
            store.ping()
        except StoreError as e:
            log.error("/health: %s", e)
            return JSONResponse({"status": "unavailable", "detail": f"the {kind} cannot be reached (the service's log says why)"},
                                status_code=503)
        return JSONResponse({"status": "ok", "model": served.name, "items": served.num_items, "memory_version": served.version,
                             "store": kind})

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}})
    def get_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    add_page(app, served, store, config.checkpoint, guarded, denied, dataset)
    return app

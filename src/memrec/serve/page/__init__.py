"""The page at ``/``: watch a user's memory at work (plain HTML, CSS and JS in ``static/``, no build).

The page talks to the service through its public endpoints only (``/recommend``, ``/users/{id}``,
``POST /events``, ``DELETE /users/{id}/memory``) and three small read-only ones added here:

==============================  ===================================================================
``GET /model``                 the model, its memory trigger and its neighbour memory, if any (token)
``GET /users?limit=6``         users with an event log, those last seen active first (token)
``GET /items?id=A&id=B``       titles and categories of items, from the checkpoint's data set (token)
``GET /users/{id}/neighbours``  the other users' entries the neighbour memory mixes in for this user (token)
==============================  ===================================================================

Titles come from the data set the checkpoint was trained on (never downloaded here), read once in
the background the first time the page or ``/items`` is asked for; without it the page shows ids.
"""
from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import FastAPI, Path, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import StringConstraints

from memrec.errors import MemrecError
from memrec.serve.schemas import ID, ItemsOut, ModelOut, NeighboursOut, SampleUsersOut, UserId, errors
from memrec.serve.training_users import training_dataset

STATIC = FilePath(__file__).parent / "static"
MAX_LOOKUP = 200  # item ids per GET /items
ItemId = Annotated[str, StringConstraints(**ID)]
# The page loads nothing from elsewhere: scripts, styles and requests stay on this origin.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
log = logging.getLogger("memrec.serve")


class Titles:
    """Item id -> (title, category) from the checkpoint's data set, read once, in a background thread."""

    def __init__(self, checkpoint: str, dataset=None):
        self.checkpoint, self.table, self.source, self.missing = checkpoint, {}, None, None
        self.done, self.started, self.lock = threading.Event(), False, threading.Lock()
        if dataset is not None:  # already read (--import-training-users)
            self._fill(dataset)

    def start(self) -> None:
        with self.lock:
            if not self.started and not self.done.is_set():
                self.started = True
                threading.Thread(target=self._read, name="memrec-titles", daemon=True).start()

    def wait(self, timeout: float = 60.0) -> bool:
        self.start()
        return self.done.wait(timeout)

    def _read(self) -> None:
        try:
            self._fill(training_dataset(self.checkpoint))
        except MemrecError as e:
            self.missing = str(e)
        except Exception as e:  # noqa: BLE001 - a page without titles, and the reason in the log
            log.exception("reading the item titles")
            self.missing = f"the data set could not be read ({type(e).__name__}: {e})"
        finally:
            self.done.set()

    def _fill(self, ds) -> None:
        named = getattr(ds.items, "title", None) or [""] * len(ds.items.text)  # the title alone, where the data names one
        self.table = {raw: title_and_category(text, category, title) for raw, text, category, title
                      in zip(ds.item_ids[1:], ds.items.text[1:], ds.items.category[1:], named[1:])}
        if not any(title for title, _ in self.table.values()):
            self.missing = f"the data set {ds.name!r} has no item text"
        self.source = ds.name
        self.done.set()


def title_and_category(text: str, category: str, title: str = "") -> tuple[str | None, str | None]:
    """An item's title (``title``, else its text without the category it ends with) and category; None where empty.

    Example:
        >>> title_and_category("Kolya. 1996. Comedy", "Comedy")
        ('Kolya. 1996', 'Comedy')
        >>> title_and_category("Kolya. 1996. Comedy", "Comedy", title="Kolya"), title_and_category("", "")
        (('Kolya', 'Comedy'), (None, None))
    """
    title = title.strip() or text.strip()
    if category and title.endswith(category):
        title = title[: -len(category)]
    return title.strip().rstrip(".").strip() or None, category.strip() or None


class RecentUsers:
    """The users with an event log in the store, those whose logs this process last saw change first (``store.changes``;
    users that change between two calls come in the store's order)."""

    def __init__(self, store):
        self.store, self.cursor, self.order, self.lock = store, None, {}, threading.Lock()

    def latest(self, n: int) -> list[str]:
        with self.lock:
            users, self.cursor = self.store.changes(self.cursor)
            for user in users:
                self.order.pop(user, None)
                self.order[user] = None
            return list(itertools.islice(reversed(self.order), n))


def trigger_of(cell) -> dict | None:
    """The memory's update trigger and the one setting it reads (None without a memory)."""
    if cell is None:
        return None
    c, kind = cell.config, cell.config.update_trigger.value
    return {"update_trigger": kind, "interaction_threshold": c.interaction_threshold if kind == "interaction_count" else None,
            "drift_threshold": c.drift_threshold if kind == "drift_threshold" else None,
            "time_period": c.period if kind == "time_based" else None}


def add_page(app: FastAPI, served, store, checkpoint: str, guarded: list, denied: tuple, dataset=None) -> None:
    """Serve the page at ``/`` (open: it asks for the token when the service has one) and its endpoints;
    ``dataset``: the checkpoint's data set, if already read."""
    titles, recent = Titles(checkpoint, dataset), RecentUsers(store)
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount("/page", StaticFiles(directory=STATIC), name="page")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        titles.start()  # the titles are ready by the time the page asks for them
        return HTMLResponse(html, headers={"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff"})

    @app.get("/model", dependencies=guarded, response_model=ModelOut, responses=errors(*denied))
    async def about_model() -> dict:
        """The served model: its per-user memory and update trigger, and its neighbour memory, where it has them."""
        neighbours = None
        if served.growing is not None:
            memory = served.model.neighbours
            neighbours = {"setting": memory.describe(), "training_entries": len(memory), "served_entries": len(served.growing)}
        return {"model": served.name, "items": served.num_items, "has_memory": served.has_memory,
                "trigger": trigger_of(served.cell), "neighbours": neighbours}

    @app.get("/users", dependencies=guarded, response_model=SampleUsersOut, responses=errors(*denied, 422, 503))
    def sample_users(limit: int = Query(6, ge=1, le=100)) -> dict:
        """A few users to look at: those with an event log in the store, those this process last saw active first."""
        return {"users": recent.latest(limit)}

    @app.get("/users/{user_id}/neighbours", dependencies=guarded, response_model=NeighboursOut, responses=errors(*denied, 422, 503))
    def neighbours(user_id: Annotated[UserId, Path()], k: int = Query(5, ge=1, le=100)) -> dict:
        """The other users' entries the neighbour memory mixes into this user's next ranking (nearest
        first, up to ``k``): who, how similar, and what they went on to. Empty without a neighbour memory in use."""
        served.follow(store)
        history, _ = store.snapshot(user_id)
        found = served.neighbours_of(history, user_id, k)
        weight = served.model.neighbours.weight if served.growing is not None else 0.0
        return {"user": user_id, "in_use": served.growing is not None, "weight": weight, "neighbours": found}

    @app.get("/items", dependencies=guarded, response_model=ItemsOut, responses=errors(*denied, 422))
    def items(id: Annotated[list[ItemId], Query(min_length=1, max_length=MAX_LOOKUP, description="item ids")]) -> dict:  # noqa: A002
        """Titles and categories of items (up to 200 ids), from the checkpoint's data set where it can be read."""
        ready = titles.wait()
        known = served.index
        found = [{"item": i, "known": i in known, **dict(zip(("title", "category"), titles.table.get(i, (None, None))))} for i in id]
        missing = titles.missing if ready else "the data set is still being read; ask again"
        return {"items": found, "titles": titles.source if ready and not titles.missing else None, "missing": missing}

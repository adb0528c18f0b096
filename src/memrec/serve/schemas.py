"""What the service reads and answers, as pydantic models: they are its OpenAPI contract.

Ids (users, items, idempotency keys) are 1-256 characters without NUL, which PostgreSQL cannot
store. ``POST /events`` takes one event or ``{"events": [...]}``; a body with an ``events`` field is
read as a batch, anything else as one event, so a validation error names the fields of the one form
the client meant. Every error answers ``{"detail": ...}``: a sentence, or for a request that does not
fit the schema the list of what is wrong (field, message, error type), without the offending input.

Example:
    >>> EventsIn.validate_python({"user": "u", "item": "i1", "timestamp": 1}).item
    'i1'
    >>> len(EventsIn.validate_python({"events": [{"user": "u", "item": "i1", "timestamp": 1}]}).events)
    1
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

ID = dict(min_length=1, max_length=256, pattern=r"^[^\x00]*$")  # user and item ids
MAX_BATCH = 1000  # events per POST /events


# ----------------------------------------------------------------------------- requests
class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(**ID, description="the user's id")
    item: str = Field(**ID, description="a raw item id of the checkpoint's catalogue")
    timestamp: float = Field(strict=True, allow_inf_nan=False, description="when it happened, in the data's units (e.g. Unix seconds)")
    key: str | None = Field(None, min_length=1, max_length=128, pattern=ID["pattern"], description="idempotency key, unique per user")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


def _form(body) -> str:
    return "batch" if isinstance(body, dict) and "events" in body else "event"


EventsBody = Annotated[Union[Annotated[EventBatch, Tag("batch")], Annotated[EventIn, Tag("event")]], Discriminator(_form)]
EventsIn = TypeAdapter(EventsBody)


# ----------------------------------------------------------------------------- answers
class EventResult(BaseModel):
    user: str
    item: str
    applied: bool = Field(description="False: its idempotency key was already recorded for this user")
    memory_updated: bool = Field(description="the model's memory trigger fired on this event")


class EventsOut(BaseModel):
    accepted: int
    duplicates: int
    memory_updates: int
    events: list[EventResult]


class MemoryStats(BaseModel):
    interaction_count: int
    updates: int
    pending_items: int
    history_size: int
    norm: float
    last_update_time: float | None
    last_event_time: float | None


class Scored(BaseModel):
    item: str
    score: float


class RecommendOut(BaseModel):
    user: str
    known: bool = Field(description="the service has events or a memory for this user, or the model a training bank")
    history_length: int
    model: str
    items: list[Scored]
    routing_weights: dict[str, float] | None = Field(description="expert -> weight, for models with a router")
    memory: MemoryStats | None = Field(description="for models with a per-user memory")


class LoggedEvent(BaseModel):
    item: str
    timestamp: float
    key: str | None


class UserOut(BaseModel):
    user: str
    history_length: int
    history: list[LoggedEvent]
    memory: MemoryStats | None
    model_has_memory: bool


class MemoryOut(BaseModel):
    user: str
    memory: MemoryStats


class HealthOut(BaseModel):
    status: str
    model: str
    items: int
    memory_version: str
    store: str


class Unavailable(BaseModel):
    status: str
    detail: str


class Issue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    detail: str | list[Issue]


WHY = {400: "the request body is not UTF-8 JSON text", 401: "the bearer token is missing or wrong",
       409: "the model keeps no per-user memory", 413: "the request body is too large",
       422: "the request does not fit the schema, or names an unknown item", 503: "the store cannot be reached"}


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for these error status codes, all answering :class:`Problem`."""
    return {code: {"model": Problem, "description": WHY[code]} for code in codes}

"""What the service reads and answers, as pydantic models: they are its OpenAPI contract.

A user id is 1-128 letters, digits and ``. _ : @ -``, not dots only (:data:`UserId`, the one rule of
every endpoint: body, query and path), so whatever ``POST /events`` accepts ``/users/{id}`` can name.
Item ids and idempotency keys are 1-256 characters without NUL, which PostgreSQL cannot store; the
catalogue decides which items exist. ``POST /events`` takes one event or ``{"events": [...]}``; a
body with an ``events`` field is read as a batch, anything else as one event, so a validation error
names the fields of the one form the client meant. Every error answers ``{"detail": ...}``: a sentence, or for a request that does not
fit the schema the list of what is wrong (field, message, error type), without the offending input.

Example:
    >>> EventsIn.validate_python({"user": "u", "item": "i1", "timestamp": 1}).item
    'i1'
    >>> len(EventsIn.validate_python({"events": [{"user": "u", "item": "i1", "timestamp": 1}]}).events)
    1
    >>> EventsIn.validate_python({"user": "A1SWWHE1L3XR3V", "item": "i1"}).timestamp is None  # the service's receive time
    True
    >>> user_id("a/b")
    Traceback (most recent call last):
    ...
    ValueError: a user id is 1-128 letters, digits and . _ : @ - (not dots only, so that a URL path can name it)
"""
from __future__ import annotations

import re
from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, WithJsonSchema

ID = dict(min_length=1, max_length=256, pattern=r"^[^\x00]*$")  # item ids and idempotency keys
USER_PATTERN = r"^[A-Za-z0-9._:@-]*[A-Za-z0-9_:@-][A-Za-z0-9._:@-]*$"  # '.' and '..' are no path segment


def user_id(text: str) -> str:
    """``text`` if it is a valid user id (see the module's docstring), else ValueError saying why."""
    if not 1 <= len(text) <= 128 or not re.fullmatch(USER_PATTERN, text):
        raise ValueError("a user id is 1-128 letters, digits and . _ : @ - (not dots only, so that a URL path can name it)")
    return text


# The user id of every endpoint: body field, query and path parameter (Annotated[UserId, Query()]).
UserId = Annotated[str, AfterValidator(user_id), WithJsonSchema({
    "type": "string", "minLength": 1, "maxLength": 128, "pattern": USER_PATTERN, "examples": ["196", "A1SWWHE1L3XR3V"],
    "description": "a user id: 1-128 letters, digits and . _ : @ -, not dots only"})]
MAX_BATCH = 1000  # events per POST /events


# ----------------------------------------------------------------------------- requests
class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: UserId
    item: str = Field(**ID, description="a raw item id of the checkpoint's catalogue")
    timestamp: float | None = Field(None, strict=True, allow_inf_nan=False,
                                    description="when it happened, in the data's units (e.g. Unix seconds); "
                                                "omitted: the time the service received it, in Unix seconds")
    key: str | None = Field(None, min_length=1, max_length=128, pattern=ID["pattern"], description="idempotency key, unique per user: sent again with the same item and timestamp, the event is "
                                 "not applied again (applied: false); with another item or timestamp, 409")


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
    store: str = Field(description="the kind of store (SQLiteStateStore, RedisStore, PostgresStore), not where it is")


class Unavailable(BaseModel):
    status: str
    detail: str


class MemoryTrigger(BaseModel):
    update_trigger: str = Field(description="interaction_count | drift_threshold | time_based | explicit")
    interaction_threshold: int | None = Field(description="interaction_count: pending interactions per update")
    drift_threshold: float | None = Field(description="drift_threshold: the cosine distance that fires an update")
    time_period: float | None = Field(description="time_based: the period between updates, in the data's time units")


class NeighbourMemoryOut(BaseModel):
    setting: dict[str, float] = Field(description="k, temperature, weight, gate, decay: the setting chosen on validation")
    training_entries: int = Field(description="entries of the checkpoint: the training users' positions")
    served_entries: int = Field(description="entries added while serving, from the store's event logs (as of the last ranking)")


class ModelOut(BaseModel):
    model: str
    items: int
    has_memory: bool = Field(description="the model keeps a per-user memory (updated by events, reset by DELETE)")
    trigger: MemoryTrigger | None = Field(description="when an event updates the memory, for models with a memory")
    neighbours: NeighbourMemoryOut | None = Field(description="other users' positions mixed into rankings, where in use")


class NeighbourOut(BaseModel):
    user: str = Field(description="the user whose entry it is")
    similarity: float = Field(description="cosine similarity of their moment to this user's now")
    next: list[str] = Field(description="the items they went on to (the entry's values), in order")


class NeighboursOut(BaseModel):
    user: str
    in_use: bool = Field(description="the model has a neighbour memory in use")
    weight: float = Field(description="the memory's weight in the mixture (chosen on validation)")
    neighbours: list[NeighbourOut] = Field(description="the entries mixed into this user's next ranking, nearest first")


class SampleUsersOut(BaseModel):
    users: list[str] = Field(description="users with an event log in the store, those this process last saw active first")


class ItemInfoOut(BaseModel):
    item: str
    known: bool = Field(description="the item is in the checkpoint's catalogue")
    title: str | None = Field(description="from the checkpoint's data set, where it can be read")
    category: str | None


class ItemsOut(BaseModel):
    items: list[ItemInfoOut]
    titles: str | None = Field(description="the data set the titles come from, or None (see missing)")
    missing: str | None = Field(description="why there are no titles, when there are none")


class Issue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    detail: str | list[Issue]


WHY = {400: "the request body is not UTF-8 JSON text, or JSON nested too deeply", 401: "the bearer token is missing or wrong",
       409: "events: an idempotency key already recorded for another event; memory: the model keeps no per-user memory",
       413: "the request body is too large", 422: "the request does not fit the schema, or names an unknown item",
       503: "the store cannot be reached"}


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for these error status codes, all answering :class:`Problem`."""
    return {code: {"model": Problem, "description": WHY[code]} for code in codes}

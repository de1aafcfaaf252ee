"""The customer's history through the API: a profile's timeline across channels, its
traits, effort signals and life events, and ``recordEvent`` for events that happen now.

A profile's events are read through its records and identifiers in the published run
(pipelines.history.events.profile_events_sql) on every request, so they follow merges,
splits and undo at once; traits, effort and life events are computed from them by the
same rules the batch uses (pipelines.history)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable
from datetime import UTC, date, datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from pipelines.config import TraitConfig
from pipelines.history.effort import effort as effort_of
from pipelines.history.effort import horizon
from pipelines.history.events import event_source, interactions, record_event, record_facts
from pipelines.history.life_events import life_events as life_events_of
from pipelines.history.traits import traits_python
from profiles.errors import ConfigError
from resolvers.auth import Role
from resolvers.context import Context, context_of, pii
from resolvers.errors import ApiError
from resolvers.permissions import Roles

MAX_FIRST = 100
MAX_DAYS = 3660


class InvalidEvent(ApiError):
    code = "INVALID_EVENT"


@strawberry.type(description="One event of the customer in one of the company's systems.")
class Interaction:
    profile_id: strawberry.Private[str]
    raw_record_key: strawberry.Private[str | None]
    raw_attributes: strawberry.Private[dict[str, Any]]
    id: strawberry.ID = strawberry.field(description='"events:event id", unique.')
    source: str = strawberry.field(description="The event source (an [[events]] name).")
    event_id: str = strawberry.field(description="The event's id in its system.")
    occurred_at: datetime
    type: str
    channel: str | None
    topic: str | None
    department: str | None
    amount: float | None

    @strawberry.field(description="The extra columns kept with the event (null for the personalization role).")
    def attributes(self, info: Info[Context, Any]) -> JSON | None:
        return pii(info, self.profile_id, "event_attributes", cast(JSON, self.raw_attributes) if self.raw_attributes else None)

    @strawberry.field(description="The source record the event is attached to (null for the personalization role).")
    def record_key(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, "record_key", self.raw_record_key)


@strawberry.type
class InteractionConnection:
    nodes: list[Interaction]
    end_cursor: str | None
    has_next_page: bool
    total_count: int


@strawberry.type(description="A value derived from the profile's events, as a [[traits]] block declares it.")
class Trait:
    spec: strawberry.Private[TraitConfig]
    name: str
    value: JSON | None
    as_of: datetime | None = strawberry.field(description="The time of the latest event it used.")
    event_count: int

    @strawberry.field(description="How it is computed, e.g. count of orders (type order) over 90 days.")
    def definition(self) -> str:  # only when asked: a card that shows the values does not
        return _definition(self.spec)


@strawberry.type(description="How hard the customer had to work to be helped, over a window of days.")
class Effort:
    days: int
    contacts: int
    repeat_contacts: int = strawberry.field(description="Contacts on the same topic as an earlier one within [effort] repeat_days.")
    channel_switches: int = strawberry.field(description="Repeat contacts through another channel than the contact they repeat.")
    transfers: int = strawberry.field(description="Contacts handed to another department on the same topic within minutes.")
    first_contact_resolution_rate: float | None
    average_ces: float | None = strawberry.field(description="Mean customer effort score (1-7) answered in the window.")
    open_topics: list[str] = strawberry.field(description="Topics contacted about more than once in the window.")


@strawberry.type(description="A moment that matters, with the records, fields or events that show it.")
class LifeEvent:
    kind: str
    occurred_at: datetime = strawberry.field(description="An estimate.")
    detected_at: datetime
    evidence: list[str]
    expires_at: datetime


def _cursor(row: dict[str, Any]) -> str:
    key = [row["occurred_at"].isoformat(), row["event_source"], row["event_id"]]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _after(cursor: str) -> tuple[datetime, str, str]:
    try:
        at, source, event = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return _naive(datetime.fromisoformat(at)), str(source), str(event)
    except (ValueError, TypeError) as exc:
        raise ApiError("after: not a cursor of this connection") from exc


def _naive(value: datetime) -> datetime:
    """A time as the events hold it: UTC, without a zone."""
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


async def timeline(
    info: Info[Context, Any],
    profile_id: str,
    first: int,
    after: str | None,
    channels: list[str] | None,
    types: list[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> InteractionConnection:
    if not 1 <= first <= MAX_FIRST:
        raise ApiError(f"first must be between 1 and {MAX_FIRST}", limit=MAX_FIRST)
    cursor = _after(after) if after else None
    ctx = context_of(info)
    rows = await ctx.load_events(profile_id)
    low, high = (_naive(since) if since else None), (_naive(until) if until else None)
    selected = [
        r
        for r in rows
        if (channels is None or r["channel"] in channels)
        and (types is None or r["type"] in types)
        and (low is None or r["occurred_at"] >= low)
        and (high is None or r["occurred_at"] <= high)
    ]
    page = [r for r in selected if cursor is None or (r["occurred_at"], r["event_source"], r["event_id"]) < cursor][: first + 1]
    nodes = [
        Interaction(
            profile_id=profile_id,
            raw_record_key=i.record_key,
            raw_attributes=i.attributes,
            id=strawberry.ID(f"{i.event_source}:{i.event_id}"),
            source=i.event_source,
            event_id=i.event_id,
            occurred_at=i.occurred_at,
            type=i.type,
            channel=i.channel,
            topic=i.topic,
            department=i.department,
            amount=i.amount,
        )
        for i in interactions(page[:first])
    ]
    more = len(page) > first
    return InteractionConnection(
        nodes=nodes, end_cursor=_cursor(page[first - 1]) if more else None, has_next_page=more, total_count=len(selected)
    )


def _traits(ctx: Context, events: list[dict[str, Any]]) -> list[Trait]:
    """The batch's trait definitions over a profile's events, by their Python twin
    (pipelines.history.traits.traits_python, held equal to the SQL by its tests)."""
    reference = datetime.now(UTC).replace(tzinfo=None)
    found = {name: (value, as_of, count) for _, name, value, as_of, count in traits_python(ctx.config.traits, events, reference)}
    out = []
    for trait in ctx.config.traits:
        value, as_of, count = found.get(trait.name, (0 if trait.function == "count" else None, None, 0))
        out.append(Trait(spec=trait, name=trait.name, value=cast(JSON, value), as_of=as_of, event_count=count))
    return out


def traits(info: Info[Context, Any], profile_id: str) -> list[Trait] | Awaitable[list[Trait]]:
    ctx = context_of(info)
    if not ctx.config.traits:
        return []
    return ctx.with_events(profile_id, lambda events: _traits(ctx, events))  # the Python twin over the rows read: ~0.1 ms


def _definition(trait: TraitConfig) -> str:
    what = f"{trait.function} of {trait.field} of" if trait.field else f"{trait.function} of"
    filters = "; ".join(f"{k} in {', '.join(v)}" for k, v in trait.where.model_dump().items() if v)
    window = f" over {trait.window_days} days" if trait.window_days else ""
    return f"{what} {', '.join(trait.events)}{f' ({filters})' if filters else ''}{window}"


def effort(info: Info[Context, Any], profile_id: str, days: int) -> Effort | Awaitable[Effort]:
    if not 1 <= days <= MAX_DAYS:
        raise ApiError(f"days must be between 1 and {MAX_DAYS}")
    ctx = context_of(info)
    return ctx.with_events(profile_id, lambda events: _effort(ctx, events, days))


def _effort(ctx: Context, rows: list[dict[str, Any]], days: int) -> Effort:
    now, settings = datetime.now(UTC).replace(tzinfo=None), ctx.config.effort
    since = horizon(days=days, now=now, settings=settings)
    recent = [r for r in rows if not isinstance(at := r["occurred_at"], datetime) or at > since]  # the rest changes nothing
    result = effort_of(interactions(list(reversed(recent))), days=days, now=now, settings=settings)
    return Effort(
        days=days,
        contacts=result.contacts,
        repeat_contacts=result.repeat_contacts,
        channel_switches=result.channel_switches,
        transfers=result.transfers,
        first_contact_resolution_rate=result.first_contact_resolution_rate,
        average_ces=result.average_ces,
        open_topics=result.open_topics,
    )


def _life_events(ctx: Context, profile_id: str, rules: list[Any]) -> list[LifeEvent]:
    events = interactions(list(reversed(ctx.events_of(profile_id))))
    now = datetime.now(UTC).replace(tzinfo=None)
    records = [record_facts(r) for r in ctx.queries.record_facts(profile_id)]
    found = life_events_of(records, events, rules, today=date.today(), now=now)
    return [
        LifeEvent(kind=e.kind, occurred_at=e.occurred_at, detected_at=e.detected_at, evidence=e.evidence, expires_at=e.expires_at)
        for e in found
    ]


async def life_events(info: Info[Context, Any], profile_id: str) -> list[LifeEvent]:
    ctx = context_of(info)
    rules = list(ctx.config.life_events)
    if not ctx.principal.role.sees_contact_pii:
        rules = [r for r in rules if r.shareable]
    if not rules:
        return []
    await ctx.load_events(profile_id)
    return await asyncio.to_thread(_life_events, ctx, profile_id, rules)


@strawberry.type
class RecordEventResult:
    event_id: str | None
    status: str = strawberry.field(
        description="recorded, suppressed (attached to an erased person: not kept), or refused (with the problem)"
    )
    problem: str | None
    profile_id: strawberry.ID | None = strawberry.field(description="The profile that holds its record or identifier now (null: unlinked).")


@strawberry.type
class HistoryMutation:
    @strawberry.mutation(
        description="Record an event that happened now (an object keyed by the event source's own column names); "
        "the same event source and id again replaces it.",
        extensions=[Roles(Role.AGENT, Role.STEWARD, Role.ADMIN)],
    )
    def record_event(self, info: Info[Context, Any], events: str, event: JSON) -> RecordEventResult:
        ctx = context_of(info)
        if not isinstance(event, dict):
            raise InvalidEvent("event must be a JSON object keyed by the event source's column names")
        try:
            spec = event_source(ctx.config, events)
        except ConfigError as exc:
            raise ApiError(str(exc)) from None
        outcome = record_event(ctx.queries.store, ctx.config, spec, event)
        ctx.committed()
        if outcome["problem"] is not None:
            raise InvalidEvent(f"{events}: {outcome['problem']}")
        if outcome.get("suppressed"):
            return RecordEventResult(event_id=outcome["event_id"], status="suppressed", problem=None, profile_id=None)
        if "record_key" in outcome:  # what it is attached to, as it was written
            owner = ctx.queries.link_owner(outcome["record_key"], outcome["link_kind"], outcome["link_value"])
        else:
            owner = ctx.queries.event_owner(events, str(outcome["event_id"]))
        return RecordEventResult(
            event_id=outcome["event_id"], status="recorded", problem=None, profile_id=strawberry.ID(owner) if owner else None
        )


__all__ = ["Effort", "HistoryMutation", "Interaction", "InteractionConnection", "LifeEvent", "Trait"]

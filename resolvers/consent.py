"""Consent where the data leaves (docs/privacy.md).

A field declares the purposes it serves (``Serves``: traits and life events serve
personalization; the timeline and effort serve service and personalization; contact PII
serves service, checked in ``resolvers.context.pii``). A role reads for the purposes
``[api.roles.NAME] purposes`` names. A field is withheld (null) when the caller's role
reads for none of its purposes, or when none of those purposes is allowed for the profile
by its consent state (pipelines.history.consent); the response's ``extensions.withheld``
names each withheld field, its profile, the purpose and why. A role without ``purposes``
reads what its role allows, as before.

``Profile.consents`` shows every purpose's state with its history; ``recordConsent``
records what a customer said, as history attached to the profile's records."""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from pipelines.history.consent import API_CONSENT_SOURCE, ConsentState
from profiles.store import AuditEvent
from resolvers.auth import Role
from resolvers.context import PERSONALIZATION, SERVICE, Context, context_of, pii
from resolvers.errors import ApiError, NotFound
from resolvers.permissions import Roles


class Serves(FieldExtension):
    """The purposes a profile's field serves: withheld (null, and named in the response's
    ``extensions.withheld``) unless the caller's role reads for one of them and the
    profile's consent allows it. The field's object must have a ``profile_id``."""

    def __init__(self, *purposes: str):
        self.purposes = purposes

    @property
    def note(self) -> str:
        return f"Serves: {', '.join(self.purposes)} (null without consent)."

    def apply(self, field: StrawberryField) -> None:
        description = field.description or ""
        if self.note not in description:
            field.description = f"{description} {self.note}".strip()

    def resolve(self, next_: SyncExtensionResolver, source: Any, info: Info, /, **kwargs: Any) -> Any:  # type: ignore[override]
        """A field whose resolver answers at once when it can (``traits``, ``effort``: a
        value when the lookup read the profile's events beside its row, else an
        awaitable): decided here at once too, unless the profile's statements are still
        to be read. A value spares the event loop a task and strawberry's async chain."""
        ctx = context_of(info)
        if ctx.needs_consents(self.purposes) and source.profile_id not in ctx.profile_events:
            return self.resolve_async(_awaited(next_), source, info, **kwargs)
        if ctx.withhold(source.profile_id, self.purposes, info):
            return None
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: AsyncExtensionResolver, source: Any, info: Info, /, **kwargs: Any) -> Any:  # type: ignore[override]
        ctx = context_of(info)
        if ctx.needs_consents(self.purposes):  # the profile's statements: its events, read once per request
            await ctx.load_events(source.profile_id)
            ctx.consents_of(source.profile_id)
        if ctx.withhold(source.profile_id, self.purposes, info):
            return None
        result = next_(source, info, **kwargs)
        return result if inspect.isasyncgen(result) else await result


def _awaited(next_: SyncExtensionResolver) -> AsyncExtensionResolver:
    """A resolver that may answer with a value or an awaitable, as an async one."""

    async def resolve(source: Any, info: Info, /, **kwargs: Any) -> Any:
        result = next_(source, info, **kwargs)
        return await result if inspect.isawaitable(result) else result

    return resolve


@strawberry.enum(description="What a customer said about a purpose.")
class ConsentStatus(enum.Enum):
    GRANTED = "granted"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"


@strawberry.type(description="One statement of the customer about a purpose, as it is kept.")
class ConsentStatement:
    profile_id: strawberry.Private[str]
    raw_record_key: strawberry.Private[str | None]
    raw_reason: strawberry.Private[str | None]
    status: str
    occurred_at: datetime
    source: str = strawberry.field(description="Where it was said (a form, a call, a system).")
    event_source: str = strawberry.field(description="Where it is kept: an [[events]] source, or consent for recordConsent.")
    event_id: str

    @strawberry.field(description="The source record it is attached to (null for the personalization role).")
    def record_key(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, "record_key", self.raw_record_key)

    @strawberry.field(description="Why it was recorded, as the agent wrote it (null for the personalization role).")
    def reason(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, "consent_reason", self.raw_reason)


@strawberry.type(description="A profile's state for one purpose, derived from its statements.")
class Consent:
    purpose: str
    legal_basis: str
    status: str = strawberry.field(description="granted, denied, withdrawn, expired (a grant older than max_age_days) or unknown.")
    allowed: bool = strawberry.field(description="Whether the data may be used for the purpose now.")
    since: datetime | None = strawberry.field(description="The time of the statement the state rests on.")
    source: str | None
    expires_at: datetime | None
    history: list[ConsentStatement] = strawberry.field(description="Every statement about the purpose, newest first.")


def consent_view(profile_id: str, state: ConsentState) -> Consent:
    return Consent(
        purpose=state.purpose,
        legal_basis=state.legal_basis,
        status=state.status,
        allowed=state.allowed,
        since=state.since,
        source=state.source,
        expires_at=state.expires_at,
        history=[
            ConsentStatement(
                profile_id=profile_id,
                raw_record_key=s.record_key,
                raw_reason=s.reason,
                status=s.status,
                occurred_at=s.occurred_at,
                source=s.source,
                event_source=s.event_source,
                event_id=s.event_id,
            )
            for s in state.history
        ],
    )


async def consents(info: Info[Context, Any], profile_id: str) -> list[Consent]:
    ctx = context_of(info)
    if not ctx.config.purposes:
        return []
    await ctx.load_events(profile_id)
    states = ctx.consents_of(profile_id)
    return [consent_view(profile_id, states[p.name]) for p in ctx.config.purposes]


def _statement_rows(records: list[dict[str, Any]], status: str) -> list[str]:
    """The record keys a statement attaches to. A denial or withdrawal binds every record
    of the profile (after a split each part keeps it); a grant only the most recently
    updated one (a part split off does not inherit a grant its person may never have
    given)."""
    keys = sorted(str(r["record_key"]) for r in records)
    if status != "granted" or not keys:
        return keys
    dated = [r for r in records if r.get("updated_at") is not None] or records
    newest = max(dated, key=lambda r: (r.get("updated_at") or 0, str(r["record_key"])))
    return [str(newest["record_key"])]


@strawberry.type
class ConsentMutation:
    @strawberry.mutation(
        description="Record what the customer said about a purpose (kept as history on the profile's records: a grant on its "
        "most recently updated record, a denial or withdrawal on every one). Answers with the purpose's state after it.",
        extensions=[Roles(Role.AGENT, Role.STEWARD)],
    )
    async def record_consent(
        self,
        info: Info[Context, Any],
        profile_id: strawberry.ID,
        purpose: str,
        status: ConsentStatus,
        source: str,
        reason: str | None = None,
    ) -> Consent:
        ctx = context_of(info)
        declared = {p.name for p in ctx.config.purposes}
        if purpose not in declared:
            raise ApiError(f"purpose {purpose!r} is not declared ([[purposes]]: {', '.join(sorted(declared)) or 'none'})")
        if not source.strip() or len(source) > 200 or (reason is not None and len(reason) > 2000):
            raise ApiError("source must be 1-200 characters and reason at most 2000")
        resolved = (await asyncio.to_thread(ctx.queries.resolve, [str(profile_id)])).get(str(profile_id))
        if resolved is None:
            raise NotFound(f"no profile {profile_id}")
        pid = resolved.profile_id
        records = (await asyncio.to_thread(ctx.queries.records, [pid])).get(pid, [])
        keys = _statement_rows(records, status.value)
        if not keys:
            raise NotFound(f"profile {pid} has no records to attach the statement to")
        await asyncio.to_thread(_record, ctx, pid, keys, purpose, status.value, source.strip(), reason)
        ctx.committed()
        ctx.forget_events(pid)
        await ctx.load_events(pid)
        states = ctx.consents_of(pid)
        return consent_view(pid, states[purpose])


def _record(ctx: Context, profile_id: str, keys: list[str], purpose: str, status: str, source: str, reason: str | None) -> None:
    now = datetime.now(UTC)
    statement_id = f"cs_{now:%Y%m%d%H%M%S}_{secrets.token_hex(6)}"
    attributes = {
        "purpose": purpose,
        "status": status,
        "source": source,
        "reason": reason,
        "actor": ctx.principal.actor,
        "statement_id": statement_id,
    }
    rows = [
        (API_CONSENT_SOURCE, statement_id if i == 0 else f"{statement_id}.{i}", now.replace(tzinfo=None), json.dumps(attributes), key)
        for i, key in enumerate(keys)
    ]
    store = ctx.queries.store
    event = AuditEvent(
        actor=ctx.principal.actor,
        role=ctx.principal.role.value,
        action="consent.record",
        subject=statement_id,
        detail={"profiles": [profile_id], "purpose": purpose, "status": status, "records": len(keys)},
    )
    with store.exclusive(), store.transaction():
        store.execute(
            "INSERT INTO events (event_source, event_id, occurred_at, type, channel, topic, attributes, record_key, ingested_at) VALUES "
            + ", ".join("(?, ?, ?, 'consent', NULL, ?, ?, ?, now())" for _ in rows),
            [v for source_, event_id, at, attrs, key in rows for v in (source_, event_id, at, purpose, attrs, key)],
        )
        ctx.queries.append_audit([event])


__all__ = ["PERSONALIZATION", "SERVICE", "Consent", "ConsentMutation", "ConsentStatement", "ConsentStatus", "Serves", "consents"]

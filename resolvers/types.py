"""GraphQL types of a customer profile. Contact PII (email, phone, birth date, address,
raw source rows) goes through ``context.pii`` in each field's own resolver, so no alias,
fragment or nesting can reach it without the check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLField
from strawberry.scalars import JSON
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from profiles.model import CONTACT_PII_FIELDS
from profiles.store import identifiers_of
from resolvers import consent, history
from resolvers.auth import Role
from resolvers.consent import PERSONALIZATION, SERVICE, Serves
from resolvers.context import Context, at_once_or_later, context_of, pii, pii_now
from resolvers.execution import plain_read
from resolvers.explanations import MatchExplanation, explain, spanning_links
from resolvers.permissions import Roles

LEAN = "_unify_lean"
READS = "_unify_reads"


@dataclass(frozen=True)
class Reads:
    """What a field reads of its object's row, so that a lookup can read only the columns
    a query asks for (``resolvers.projection``). ``nested``: "row" when its own selection
    reads the same row (an address), "records" when it reads each of the profile's
    records, "identifiers" when it reads the records' identifiers and sources. ``events``:
    it reads the profile's events (its history); ``consent``: contact PII, which reads
    them too when the caller's role reads for purposes that need consent."""

    columns: tuple[str, ...] = ()
    nested: str | None = None
    events: bool = False
    consent: bool = False


_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


def reads(*columns: str, nested: str | None = None, events: bool = False, consent: bool = False) -> Callable[[_F], _F]:
    """Declare a resolver's :class:`Reads`. A field without one makes a query read whole
    rows, so a field added without a declaration is never served a missing column."""

    def declare(resolver: _F) -> _F:
        setattr(resolver, READS, Reads(columns, nested, events, consent))
        return resolver

    return declare


def lean(resolver: _F) -> _F:
    """Mark a resolver that may be called as ``resolver(root, info, **arguments)``, with
    graphql-core's info and arguments; ``resolvers.schema`` hands it to graphql-core as it
    is, without strawberry's per-call wrapping (an ``Info`` object, argument conversion,
    the extension chain: ~10 us a field, and a card resolves ~30 fields), when its
    arguments are plain scalars named as in GraphQL and its only extension, if any, is
    ``Serves`` (run around it there). It must only read ``info.context`` and ``info.path``,
    which both kinds of info carry, and it keeps its own checks: contact PII still goes
    through ``pii``."""
    setattr(resolver, LEAN, True)
    return resolver


def declared_resolver(gql_field: GraphQLField) -> tuple[StrawberryField | None, Any]:
    """A graphql-core field's strawberry definition and the function its resolver was
    declared with (where ``lean`` and ``reads`` put their marks), whichever function
    graphql-core calls for it."""
    definition = (gql_field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return definition, getattr(getattr(definition, "base_resolver", None), "wrapped_func", None)


def row_field(name: str, *, contact_pii: bool = False, description: str | None = None) -> Any:
    """A field read from the object's row. Its GraphQL type comes from the class attribute
    it is assigned to; contact PII goes through ``pii`` in this, its own resolver, so each
    such field is checked and audited by name."""

    @lean
    @reads(name, consent=contact_pii)
    @plain_read(
        (lambda root, ctx: pii_now(ctx, root.profile_id, name, root.row.get(name))) if contact_pii else (lambda root: root.row.get(name)),
        with_context=contact_pii,
    )
    def resolve(root: Any, info: Info[Context, Any]):  # type: ignore[no-untyped-def]
        value = root.row.get(name)
        return pii(info, root.profile_id, name, value) if contact_pii else value

    return strawberry.field(resolver=resolve, description=description)


@strawberry.type
class Address:
    profile_id: strawberry.Private[str]
    row: strawberry.Private[dict[str, Any]]

    street: str | None = row_field("street", contact_pii=True)
    house_number: str | None = row_field("house_number", contact_pii=True)
    address_line2: str | None = row_field("address_line2", contact_pii=True)
    postcode: str | None = row_field("postcode", contact_pii=True)
    city: str | None = row_field("city", contact_pii=True)
    region: str | None = row_field("region", contact_pii=True)
    country: str | None = row_field("country", contact_pii=True)


def _gated(info: Info[Context, Any], profile_id: str, name: str, value: str | None) -> str | None:
    """A value that is contact PII when its field (or identifier kind) is."""
    return pii(info, profile_id, name, value) if name in CONTACT_PII_FIELDS else value


@strawberry.type
class GoldenField:
    """One golden value and where it came from."""

    profile_id: strawberry.Private[str]
    name: str
    raw_value: strawberry.Private[str | None]
    source: str
    raw_record_id: strawberry.Private[str]
    rule: str
    updated_at: datetime | None

    @strawberry.field(description="The record the value came from (a record key is PII: null for the personalization role).")
    @lean
    def record_id(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, "record_id", self.raw_record_id)

    @strawberry.field
    @lean
    def value(self, info: Info[Context, Any]) -> str | None:
        return _gated(info, self.profile_id, self.name, self.raw_value)


@strawberry.type
class Identifier:
    profile_id: strawberry.Private[str]
    kind: str
    raw_value: strawberry.Private[str]
    sources: list[str]

    @strawberry.field(description="The identifier (PII of every kind: agents, stewards and admins only).")
    @lean
    @plain_read(lambda root, ctx: pii_now(ctx, root.profile_id, root.kind, root.raw_value), with_context=True)
    def value(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, self.kind, self.raw_value)


@strawberry.type
class SourceRecord:
    """A source system's record in this profile: as the source wrote it (raw) and as
    unify standardized it."""

    profile_id: strawberry.Private[str]
    row: strawberry.Private[dict[str, Any]]

    key: str | None = row_field("record_key", contact_pii=True, description='"source:record_id" (PII: null for the personalization role).')
    source: str = row_field("source")
    record_id: str | None = row_field(
        "record_id", contact_pii=True, description="The source's id (PII: null for the personalization role)."
    )
    match_probability: float | None = row_field("match_probability")
    updated_at: datetime | None = row_field("updated_at")
    first_name: str | None = row_field("first_name")
    last_name: str | None = row_field("last_name")
    full_name: str | None = row_field("full_name")
    email: str | None = row_field("email", contact_pii=True)
    phone: str | None = row_field("phone", contact_pii=True)
    date_of_birth: date | None = row_field("date_of_birth", contact_pii=True)

    @strawberry.field(description="The source row as the source system wrote it (contact PII: agents and stewards only).")
    @reads("record_key")
    async def raw(self, info: Info[Context, Any]) -> JSON | None:
        ctx = context_of(info)
        if not ctx.principal.role.sees_contact_pii:
            return None  # not even read
        return pii(info, self.profile_id, "raw", await ctx.loaders.raw_by_record_key.load(self.row["record_key"]))

    @strawberry.field
    @lean
    @reads(nested="row")
    def address(self, info: Info[Context, Any]) -> Address:
        return Address(profile_id=self.profile_id, row=self.row)


@strawberry.type
class Profile:
    """One real person: the golden record over every source record linked to them."""

    row: strawberry.Private[dict[str, Any]]
    asked_id: strawberry.Private[str | None] = None
    # the profile's records as its lookup read them (only the columns the query asks);
    # None: read by the request's loader (whole rows)
    records_read: strawberry.Private[list[dict[str, Any]] | None] = None

    @property
    def profile_id(self) -> str:
        return str(self.row["profile_id"])

    @strawberry.field
    @lean
    @reads("profile_id")
    @plain_read(lambda root: root.row["profile_id"])
    def id(self, info: Info[Context, Any]) -> strawberry.ID:
        return strawberry.ID(self.row["profile_id"])

    @strawberry.field(description="The id that was asked for when it was merged into this profile.")
    @reads("profile_id")
    def redirected_from(self) -> strawberry.ID | None:
        return strawberry.ID(self.asked_id) if self.asked_id and self.asked_id != self.row["profile_id"] else None

    @strawberry.field(description="Stable id without meaning, for systems that must not see the profile id.")
    @reads("profile_id")
    def pseudonymous_id(self, info: Info[Context, Any]) -> str:
        return context_of(info).pseudonymous_id(self.row["profile_id"])

    first_name: str | None = row_field("first_name")
    middle_name: str | None = row_field("middle_name")
    last_name: str | None = row_field("last_name")
    full_name: str | None = row_field("full_name")
    gender: str | None = row_field("gender")
    email: str | None = row_field("email", contact_pii=True)
    phone: str | None = row_field("phone", contact_pii=True)
    date_of_birth: date | None = row_field("date_of_birth", contact_pii=True)

    @strawberry.field
    @lean
    @reads(nested="row")
    def address(self, info: Info[Context, Any]) -> Address:
        return Address(profile_id=self.profile_id, row=self.row)

    record_count: int = row_field("record_count")

    @strawberry.field(description="Source systems the person appears in.")
    @lean
    @reads("sources")
    @plain_read(lambda root: list(root.row["sources"]))
    def sources(self, info: Info[Context, Any]) -> list[str]:
        return list(self.row["sources"])

    @strawberry.field
    @lean
    @reads("updated_at")
    def updated_at(self, info: Info[Context, Any]) -> datetime | None:
        return self.row.get("updated_at")

    @strawberry.field(description="Every golden field with its lineage.")
    @reads("profile_id")
    async def fields(self, info: Info[Context, Any]) -> list[GoldenField]:
        pid = self.row["profile_id"]
        rows = await context_of(info).loaders.golden_fields_by_profile_id.load(pid)
        return [
            GoldenField(
                profile_id=pid,
                name=r["field"],
                raw_value=r["value"],
                source=r["source"],
                raw_record_id=r["record_id"],
                rule=r["rule"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    @strawberry.field
    @lean
    @reads(nested="identifiers")
    def identifiers(self, info: Info[Context, Any]) -> list[Identifier]:
        pid = self.row["profile_id"]
        return self._with_records(  # type: ignore[no-any-return]  # or an awaitable of it, which graphql-core awaits
            info,
            lambda records: [
                Identifier(profile_id=pid, kind=r["kind"], raw_value=r["value"], sources=list(r["sources"]))
                for r in identifiers_of(records)
            ],
        )

    @strawberry.field(
        description="The links that hold this profile together (the strongest model links that connect its "
        "records, then steward SAME decisions), each with the model's evidence.",
        extensions=[Roles(Role.STEWARD)],
    )
    @reads("profile_id")
    async def explanation(self, info: Info[Context, Any]) -> list[MatchExplanation]:
        ctx = context_of(info)
        pid = self.row["profile_id"]
        keys = [r["record_key"] for r in await ctx.loaders.records_by_profile_id.load(pid)]
        model_links = [(a, b) for a, b, _ in ctx.queries.links_within(pid, ctx.config.matching.match_threshold)]
        held = spanning_links(keys, model_links + ctx.queries.same_links(keys))
        return [e for e in explain(ctx, held) if e]

    @strawberry.field(
        description="The customer's events across channels, newest first (events attach to records, so they follow merges and splits).",
        extensions=[Serves(SERVICE, PERSONALIZATION)],
    )
    @reads("profile_id", events=True)
    async def timeline(
        self,
        info: Info[Context, Any],
        first: int = 20,
        after: str | None = None,
        channels: list[str] | None = None,
        types: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> history.InteractionConnection | None:
        return await history.timeline(info, self.profile_id, first, after, channels, types, since, until)

    @strawberry.field(
        description="Values derived from the profile's events ([[traits]]), each with its time and event count.",
        extensions=[Serves(PERSONALIZATION)],
    )
    @lean
    @reads("profile_id", events=True)
    def traits(self, info: Info[Context, Any]) -> list[history.Trait] | None:
        return history.traits(info, self.profile_id)  # type: ignore[return-value]  # or an awaitable of them, which graphql-core awaits

    @strawberry.field(
        description="Effort signals over the last `days` days: repeat contacts, channel switches, transfers.",
        extensions=[Serves(SERVICE, PERSONALIZATION)],
    )
    @lean
    @reads("profile_id", events=True)
    def effort(self, info: Info[Context, Any], days: int = 30) -> history.Effort | None:
        return history.effort(info, self.profile_id, days)  # type: ignore[return-value]  # or an awaitable of it

    @strawberry.field(
        description="Moments that matter ([[life_events]]), with their evidence; the personalization role sees the shareable kinds.",
        extensions=[Serves(PERSONALIZATION)],
    )
    @reads("profile_id", events=True)
    async def life_events(self, info: Info[Context, Any]) -> list[history.LifeEvent] | None:
        return await history.life_events(info, self.profile_id)

    @strawberry.field(description="The state of every declared purpose ([[purposes]]), derived from the customer's statements.")
    @reads("profile_id", events=True)
    async def consents(self, info: Info[Context, Any]) -> list[consent.Consent]:
        return await consent.consents(info, self.profile_id)

    @strawberry.field(description="The source records merged into this profile, most recent first.")
    @lean
    @reads(nested="records")
    def records(self, info: Info[Context, Any]) -> list[SourceRecord]:
        pid = self.row["profile_id"]
        return self._with_records(info, lambda records: [SourceRecord(profile_id=pid, row=r) for r in records])  # type: ignore[no-any-return]

    def _with_records(self, info: Info[Context, Any], answer: Callable[[list[dict[str, Any]]], _T]) -> Any:
        """``answer`` given the profile's records: at once when its lookup read them (a
        card), else an awaitable of it, after the request's loader read them."""
        loader = context_of(info).loaders.records_by_profile_id
        return at_once_or_later(self.records_read, lambda: loader.load(self.row["profile_id"]), answer)

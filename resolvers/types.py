"""GraphQL types of a customer profile. Contact PII (email, phone, birth date, address,
raw source rows) goes through ``context.pii`` in each field's own resolver, so no alias,
fragment or nesting can reach it without the check."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from profiles.model import CONTACT_PII_FIELDS
from resolvers.context import Context, context_of, pii


def _address_part(name: str) -> Any:
    """A PII-checked address part; each has its own resolver, so each is audited by name."""

    def resolve(root: Address, info: Info[Context, Any]) -> str | None:
        return pii(info, root.profile_id, name, root.row.get(name))

    return strawberry.field(resolver=resolve)


@strawberry.type
class Address:
    profile_id: strawberry.Private[str]
    row: strawberry.Private[dict[str, Any]]

    street: str | None = _address_part("street")
    house_number: str | None = _address_part("house_number")
    address_line2: str | None = _address_part("address_line2")
    postcode: str | None = _address_part("postcode")
    city: str | None = _address_part("city")
    region: str | None = _address_part("region")
    country: str | None = _address_part("country")


@strawberry.type
class GoldenField:
    """One golden value and where it came from."""

    profile_id: strawberry.Private[str]
    name: str
    raw_value: strawberry.Private[str | None]
    source: str
    record_id: str
    rule: str
    updated_at: datetime | None

    @strawberry.field
    def value(self, info: Info[Context, Any]) -> str | None:
        if self.name in CONTACT_PII_FIELDS:
            return pii(info, self.profile_id, self.name, self.raw_value)
        return self.raw_value


@strawberry.type
class Identifier:
    profile_id: strawberry.Private[str]
    kind: str
    raw_value: strawberry.Private[str]
    sources: list[str]

    @strawberry.field
    def value(self, info: Info[Context, Any]) -> str | None:
        if self.kind in CONTACT_PII_FIELDS:
            return pii(info, self.profile_id, self.kind, self.raw_value)
        return self.raw_value


@strawberry.type
class SourceRecord:
    """A source system's record in this profile: as the source wrote it (raw) and as
    unify standardized it."""

    profile_id: strawberry.Private[str]
    row: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def key(self) -> str:
        return str(self.row["record_key"])

    @strawberry.field
    def source(self) -> str:
        return str(self.row["source"])

    @strawberry.field
    def record_id(self) -> str:
        return str(self.row["record_id"])

    @strawberry.field
    def match_probability(self) -> float | None:
        return self.row.get("match_probability")

    @strawberry.field
    def updated_at(self) -> datetime | None:
        return self.row.get("updated_at")

    @strawberry.field
    def first_name(self) -> str | None:
        return self.row.get("first_name")

    @strawberry.field
    def last_name(self) -> str | None:
        return self.row.get("last_name")

    @strawberry.field
    def full_name(self) -> str | None:
        return self.row.get("full_name")

    @strawberry.field
    def email(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, "email", self.row.get("email"))

    @strawberry.field
    def phone(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.profile_id, "phone", self.row.get("phone"))

    @strawberry.field
    def date_of_birth(self, info: Info[Context, Any]) -> date | None:
        return pii(info, self.profile_id, "date_of_birth", self.row.get("date_of_birth"))

    @strawberry.field
    def address(self) -> Address:
        return Address(profile_id=self.profile_id, row=self.row)

    @strawberry.field(description="The source row as the source system wrote it (contact PII: agents and stewards only).")
    def raw(self, info: Info[Context, Any]) -> JSON | None:
        return pii(info, self.profile_id, "raw", self.row.get("raw"))


@strawberry.type
class Profile:
    """One real person: the golden record over every source record linked to them."""

    row: strawberry.Private[dict[str, Any]]
    asked_id: strawberry.Private[str | None] = None

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row["profile_id"])

    @strawberry.field(description="The id that was asked for when it was merged into this profile.")
    def redirected_from(self) -> strawberry.ID | None:
        return strawberry.ID(self.asked_id) if self.asked_id and self.asked_id != self.row["profile_id"] else None

    @strawberry.field(description="Stable id without meaning, for systems that must not see the profile id.")
    def pseudonymous_id(self, info: Info[Context, Any]) -> str:
        return context_of(info).pseudonymous_id(self.row["profile_id"])

    @strawberry.field
    def first_name(self) -> str | None:
        return self.row.get("first_name")

    @strawberry.field
    def middle_name(self) -> str | None:
        return self.row.get("middle_name")

    @strawberry.field
    def last_name(self) -> str | None:
        return self.row.get("last_name")

    @strawberry.field
    def full_name(self) -> str | None:
        return self.row.get("full_name")

    @strawberry.field
    def gender(self) -> str | None:
        return self.row.get("gender")

    @strawberry.field
    def email(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.row["profile_id"], "email", self.row.get("email"))

    @strawberry.field
    def phone(self, info: Info[Context, Any]) -> str | None:
        return pii(info, self.row["profile_id"], "phone", self.row.get("phone"))

    @strawberry.field
    def date_of_birth(self, info: Info[Context, Any]) -> date | None:
        return pii(info, self.row["profile_id"], "date_of_birth", self.row.get("date_of_birth"))

    @strawberry.field
    def address(self) -> Address:
        return Address(profile_id=self.row["profile_id"], row=self.row)

    @strawberry.field
    def record_count(self) -> int:
        return int(self.row["record_count"])

    @strawberry.field(description="Source systems the person appears in.")
    def sources(self) -> list[str]:
        return list(self.row["sources"])

    @strawberry.field
    def updated_at(self) -> datetime | None:
        return self.row.get("updated_at")

    @strawberry.field(description="Every golden field with its lineage.")
    async def fields(self, info: Info[Context, Any]) -> list[GoldenField]:
        pid = self.row["profile_id"]
        rows = await context_of(info).loaders.golden_fields_by_profile_id.load(pid)
        return [
            GoldenField(profile_id=pid, name=r["field"], raw_value=r["value"], source=r["source"],
                        record_id=r["record_id"], rule=r["rule"], updated_at=r["updated_at"])
            for r in rows
        ]

    @strawberry.field
    async def identifiers(self, info: Info[Context, Any]) -> list[Identifier]:
        pid = self.row["profile_id"]
        rows = await context_of(info).loaders.identifiers_by_profile_id.load(pid)
        return [Identifier(profile_id=pid, kind=r["kind"], raw_value=r["value"], sources=list(r["sources"])) for r in rows]

    @strawberry.field(description="The source records merged into this profile, most recent first.")
    async def records(self, info: Info[Context, Any]) -> list[SourceRecord]:
        pid = self.row["profile_id"]
        rows = await context_of(info).loaders.records_by_profile_id.load(pid)
        return [SourceRecord(profile_id=pid, row=r) for r in rows]

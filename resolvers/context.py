"""Per-request state: who asks, the store, the DataLoaders, and the PII the response
carries (audited once the request is done)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types import Info

from pipelines.config import Config
from profiles.store import AuditEvent, ProfileQueries, Stewardship
from resolvers.auth import Principal


@dataclass
class Loaders:
    """Named for what they return by what key (one store query per batch)."""

    profile_by_profile_id: DataLoader[str, dict[str, Any] | None]
    records_by_profile_id: DataLoader[str, list[dict[str, Any]]]
    golden_fields_by_profile_id: DataLoader[str, list[dict[str, Any]]]
    record_by_record_key: DataLoader[str, dict[str, Any] | None]
    raw_by_record_key: DataLoader[str, Any]


def make_loaders(queries: ProfileQueries) -> Loaders:
    def batch(fetch: Any, empty: Any) -> DataLoader[str, Any]:
        async def load(keys: list[str]) -> list[Any]:
            found = await asyncio.to_thread(fetch, keys)  # a worker's cursor: the event loop goes on
            return [found.get(k, empty() if callable(empty) else empty) for k in keys]

        return DataLoader(load_fn=load)

    return Loaders(
        profile_by_profile_id=batch(queries.profiles, None),
        records_by_profile_id=batch(queries.records, list),
        golden_fields_by_profile_id=batch(queries.golden_fields, list),
        record_by_record_key=batch(queries.records_by_key, None),
        raw_by_record_key=batch(queries.raw_rows, None),
    )


@dataclass
class Context:
    principal: Principal
    queries: ProfileQueries
    config: Config
    pseudonym_key: bytes
    loaders: Loaders
    pii_read: dict[str, set[str]] = field(default_factory=dict)  # profile id -> fields
    # explanations of a page of candidate pairs, computed in one batch when first asked
    pending_explanations: list[tuple[str, str]] = field(default_factory=list)
    # a profile's events, read once per request for its timeline, effort and life events
    profile_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    explanations: dict[tuple[str, str], Any] = field(default_factory=dict)
    # shared with the HTTP layer (resolvers.app): a request whose write has committed is
    # answered with its outcome even after the time limit, never with TIMEOUT
    request_state: dict[str, Any] = field(default_factory=dict)

    def committed(self) -> None:
        """Say that this request's write is in the store."""
        self.request_state["committed"] = True

    def stewardship(self) -> Stewardship:
        return Stewardship(self.queries.store, **self.config.stewardship_settings())

    def pseudonymous_id(self, profile_id: str) -> str:
        return "u_" + hmac.new(self.pseudonym_key, profile_id.encode(), hashlib.sha256).hexdigest()[:24]

    def audit_event(self, operation: str | None) -> AuditEvent | None:
        if not self.pii_read:
            return None
        return AuditEvent(
            actor=self.principal.actor,
            role=self.principal.role.value,
            action="pii.read",
            subject=None,
            detail={
                "operation": operation,
                "profiles": sorted(self.pii_read),
                "fields": sorted({f for fields in self.pii_read.values() for f in fields}),
            },
        )


def context_of(info: Info[Context, Any]) -> Context:
    """The request's context. Who may call a field is declared on the field itself
    (``resolvers.permissions.Roles``), not checked here."""
    return info.context


_V = TypeVar("_V")


def pii(info: Info[Context, Any], profile_id: str, name: str, value: _V) -> _V | None:
    """A contact-PII value as the caller may see it: None for roles without access;
    otherwise the value, noted for the audit log (names only, never values)."""
    ctx = context_of(info)
    if not ctx.principal.role.sees_contact_pii:
        return None
    if value is not None:
        ctx.pii_read.setdefault(profile_id, set()).add(name)
    return value

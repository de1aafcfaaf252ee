"""Per-request state: who asks, the store, the DataLoaders, and the PII the response
carries (audited once the request is done)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from strawberry.dataloader import DataLoader
from strawberry.types import Info

from pipelines.config import UNCONDITIONAL_BASES, Config
from pipelines.history.consent import ConsentState, consent_states
from pipelines.history.events import read_profile_events
from profiles.store import AuditEvent, ProfileQueries, Stewardship, links_of_records
from resolvers.auth import Principal
from resolvers.execution import ORDINARY, SubSelections

#: The purposes the API's fields serve (docs/privacy.md): contact PII serves service;
#: traits and life events personalization; the timeline and effort both.
SERVICE = "service"
PERSONALIZATION = "personalization"


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
    _event_reads: dict[str, asyncio.Future[list[dict[str, Any]]]] = field(default_factory=dict)
    explanations: dict[tuple[str, str], Any] = field(default_factory=dict)
    # a profile's consent state per purpose, derived once per request when a field needs it
    consent_cache: dict[str, dict[str, ConsentState]] = field(default_factory=dict)
    # fields answered null for want of a purpose or consent, for the response's extensions
    withheld: list[dict[str, Any]] = field(default_factory=list)
    _verdicts: dict[tuple[str, tuple[str, ...]], str | None] = field(default_factory=dict)
    # shared with the HTTP layer (resolvers.app): a request whose write has committed is
    # answered with its outcome even after the time limit, never with TIMEOUT
    request_state: dict[str, Any] = field(default_factory=dict)
    # the request's document's sub-selections, collected once for every request that sends
    # it (resolvers.execution; set by resolvers.schema._Prepared when that is safe)
    sub_selections: SubSelections | None = None

    def committed(self) -> None:
        """Say that this request's write is in the store."""
        self.request_state["committed"] = True

    def stewardship(self) -> Stewardship:
        return Stewardship(self.queries.store, **self.config.stewardship_settings())

    async def load_events(self, profile_id: str) -> list[dict[str, Any]]:
        """The profile's events (the profile's events relation's rows), newest first, read
        once per request however many fields ask at once (a card's timeline, traits,
        effort and consent checks resolve side by side), after which :meth:`events_of`
        has them. What they attach to comes from the records loader when the request
        reads the records anyway (a card's ``records`` and ``identifiers``)."""
        read = self._event_reads.get(profile_id)
        if read is None:
            read = self._event_reads[profile_id] = asyncio.ensure_future(self._read_events(profile_id))
        return await read

    async def _read_events(self, profile_id: str) -> list[dict[str, Any]]:
        records = self.loaders.records_by_profile_id.cache_map.get(profile_id)
        if records is None:  # nothing else asked for the records: their keys and identifiers alone, in the same thread
            return await asyncio.to_thread(self.events_of, profile_id)
        # the card's records (read or on their way): what the events attach to is in them
        keys, identifiers = links_of_records(await records)
        return await asyncio.to_thread(self.read_events, profile_id, keys, identifiers)

    def read_events(self, profile_id: str, record_keys: list[str], identifiers: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """Read the profile's events, given what they attach to (``links_of_records``), for
        the rest of the request; off the event loop."""
        rows = self.profile_events[profile_id] = read_profile_events(self.queries.store.reader(), profile_id, record_keys, identifiers)
        return rows

    def prime_events(self, profile_id: str, rows: list[dict[str, Any]]) -> None:
        """The profile's events as a lookup read them beside its row (:meth:`read_events`):
        :meth:`load_events` has them without a read."""
        done: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        done.set_result(rows)
        self.profile_events[profile_id] = rows
        self._event_reads[profile_id] = done

    def forget_events(self, profile_id: str) -> None:
        """After this request wrote an event of the profile (its records are as they were):
        the next read of its events and consent reads again."""
        self.profile_events.pop(profile_id, None)
        self._event_reads.pop(profile_id, None)
        self.consent_cache.pop(profile_id, None)

    def with_events(self, profile_id: str, answer: Callable[[list[dict[str, Any]]], _V]) -> _V | Awaitable[_V]:
        """``answer`` given the profile's events: at once when they are read (a lookup
        reads them beside its row), else an awaitable of it (:func:`at_once_or_later`)."""
        return at_once_or_later(self.profile_events.get(profile_id), lambda: self.load_events(profile_id), answer)

    def events_of(self, profile_id: str) -> list[dict[str, Any]]:
        """The profile's events as :meth:`load_events` read them (or read here, off the
        event loop, for a caller that did not)."""
        rows = self.profile_events.get(profile_id)
        if rows is None:
            rows = self.read_events(profile_id, *self.queries.links_of(profile_id))
        return rows

    def consents_of(self, profile_id: str) -> dict[str, ConsentState]:
        """Every declared purpose's state for the profile (read once per request)."""
        states = self.consent_cache.get(profile_id)
        if states is None:
            now = datetime.now(UTC).replace(tzinfo=None)
            states = self.consent_cache[profile_id] = consent_states(self.config, self.events_of(profile_id), now)
        return states

    def reads_for(self) -> list[str] | None:
        """The purposes the caller's role reads for (None: not restricted by purpose)."""
        policy = self.config.api.roles.get(self.principal.role.value)
        return None if policy is None else policy.purposes

    def needs_consents(self, purposes: tuple[str, ...]) -> bool:
        """Whether deciding on a field that serves ``purposes`` reads the profile's statements."""
        reads_for = self.reads_for()
        if reads_for is None:
            return False
        declared = {p.name: p for p in self.config.purposes}
        usable = [declared[p] for p in purposes if p in reads_for and p in declared]
        return bool(usable) and not any(p.legal_basis in UNCONDITIONAL_BASES and p.default_allowed for p in usable)

    def withhold(self, profile_id: str, purposes: tuple[str, ...], info: Info[Any, Any]) -> bool:
        """Whether a field of the profile that serves ``purposes`` is withheld from the
        caller; a withheld one is noted (path, purpose, why) for the response."""
        reason = self.verdict(profile_id, purposes)
        if reason is None:
            return False
        self.withheld.append({"path": ".".join(str(p) for p in info.path.as_list()), "purposes": list(purposes), "reason": reason})
        return True

    def verdict(self, profile_id: str, purposes: tuple[str, ...]) -> str | None:
        """Why a field of the profile that serves ``purposes`` is withheld from the caller,
        or None when it is not (decided once per request)."""
        key = (profile_id, purposes)
        if key not in self._verdicts:
            self._verdicts[key] = self._why_withheld(profile_id, purposes)
        return self._verdicts[key]

    def _why_withheld(self, profile_id: str, purposes: tuple[str, ...]) -> str | None:
        reads_for = self.reads_for()
        if reads_for is None:
            return None
        usable = [p for p in purposes if p in reads_for]
        if not usable:
            return f"the {self.principal.role.value} role does not read for {' or '.join(purposes)}"
        declared = {p.name: p for p in self.config.purposes}
        if any(declared[p].legal_basis in UNCONDITIONAL_BASES and declared[p].default_allowed for p in usable if p in declared):
            return None
        if any(p not in declared for p in usable):  # a purpose the config does not declare: nothing to consent to
            return None
        states = self.consents_of(profile_id)
        if any(states[p].allowed for p in usable):
            return None
        return "; ".join(f"{p}: {states[p].status} ({states[p].legal_basis})" for p in usable)

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
_R = TypeVar("_R")


def at_once_or_later(rows: _R | None, read: Callable[[], Awaitable[_R]], answer: Callable[[_R], _V]) -> _V | Awaitable[_V]:
    """A field's ``answer`` from the rows it needs: at once when the request has them
    already (a lookup reads a card's records and events beside its row), else an awaitable
    of it after ``read``. graphql-core takes either; a value spares the event loop a task
    per field."""
    if rows is not None:
        return answer(rows)

    async def later() -> _V:
        return answer(await read())

    return later()


def pii_now(ctx: Context, profile_id: str, name: str, value: _V) -> Any:
    """What :func:`pii` gives, from the context alone (``resolvers.execution``'s plain
    reads); ``ORDINARY`` for a withheld value, so that ``pii`` notes where it was."""
    if not ctx.principal.role.sees_contact_pii:
        return None
    if ctx.config.api.roles and ctx.verdict(profile_id, (SERVICE,)) is not None:
        return ORDINARY
    if value is not None:
        ctx.pii_read.setdefault(profile_id, set()).add(name)
    return value


def pii(info: Info[Context, Any], profile_id: str, name: str, value: _V) -> _V | None:
    """A contact-PII value as the caller may see it: None for roles without access;
    otherwise the value, noted for the audit log (names only, never values)."""
    ctx = context_of(info)
    shown = pii_now(ctx, profile_id, name, value)
    if shown is ORDINARY:  # withheld by consent: noted with the field's path
        ctx.withhold(profile_id, (SERVICE,), info)
        return None
    return cast("_V | None", shown)  # pii_now gives the value itself here

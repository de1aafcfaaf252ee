"""Consent per purpose, derived from history (docs/privacy.md).

Consent is never an edited flag. It is what the customer said, kept as events: the events
of an `[[events]]` source with an `[events.consent]` block (a web form's log, a CRM's
opt-ins) and the statements the API's ``recordConsent`` makes (event source
``consent``). Like every event a statement attaches to a source record or an identifier,
so the state of a profile is derived again after a merge, a split or an undo.

The state of a purpose is its latest statement: a newer statement from any source wins,
and at the same moment a withdrawal beats a denial beats a grant. A grant older than the
purpose's ``max_age_days`` has expired. Whether the state allows the purpose depends on
its legal basis: ``consent`` needs a grant in force; ``legitimate_interest`` holds until
the customer objects (a denial or withdrawal); the other bases (contract, ...) do not
depend on what the customer said. Without any statement the purpose's default applies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipelines.config import UNCONDITIONAL_BASES, Config, PurposeConfig
from pipelines.history.model import Interaction

#: The event source of the statements ``recordConsent`` makes.
API_CONSENT_SOURCE = "consent"
#: At one moment, the more restrictive statement wins.
_PRECEDENCE = {"granted": 0, "denied": 1, "withdrawn": 2}


@dataclass(frozen=True)
class ConsentStatement:
    """One thing the customer said about one purpose, and where it is kept."""

    purpose: str
    status: str  # granted | denied | withdrawn
    occurred_at: datetime
    source: str  # where it was said (a web form, an agent's call, ...)
    event_source: str
    event_id: str
    record_key: str | None
    statement_id: str  # one statement the API attached to several records has one id
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class ConsentState:
    """A profile's state for one purpose."""

    purpose: str
    legal_basis: str
    status: str  # granted | denied | withdrawn | expired | unknown
    allowed: bool
    since: datetime | None  # the time of the statement the state rests on
    source: str | None
    expires_at: datetime | None
    history: list[ConsentStatement]  # newest first


def consent_sources(config: Config) -> frozenset[str]:
    """The event sources whose events are consent statements."""
    return frozenset({API_CONSENT_SOURCE, *(e.name for e in config.events if e.consent is not None)})


def statements(events: Iterable[Interaction | Mapping[str, Any]], sources: frozenset[str]) -> list[ConsentStatement]:
    """The consent statements among a profile's events (rows of the profile's events
    relation, or Interactions), once each, newest first."""
    found: dict[str, ConsentStatement] = {}
    for event in events:
        row = event if isinstance(event, Mapping) else event.__dict__
        if row["event_source"] not in sources:
            continue
        attributes = row.get("attributes") or {}
        purpose, status = attributes.get("purpose"), attributes.get("status")
        if not purpose or status not in _PRECEDENCE:
            continue
        statement_id = str(attributes.get("statement_id") or f"{row['event_source']}:{row['event_id']}")
        if statement_id in found:
            continue
        found[statement_id] = ConsentStatement(
            purpose=str(purpose),
            status=str(status),
            occurred_at=row["occurred_at"],
            source=str(attributes.get("source") or row["event_source"]),
            event_source=str(row["event_source"]),
            event_id=str(row["event_id"]),
            record_key=row.get("record_key"),
            statement_id=statement_id,
            reason=attributes.get("reason"),
            actor=attributes.get("actor"),
        )
    return sorted(found.values(), key=lambda s: (s.occurred_at, _PRECEDENCE[s.status], s.statement_id), reverse=True)


def consent_state(purpose: PurposeConfig, said: Sequence[ConsentStatement], now: datetime) -> ConsentState:
    """The state of one purpose from the statements about it (newest first)."""
    history = [s for s in said if s.purpose == purpose.name]
    latest = history[0] if history else None
    expires_at = None
    if latest is None:
        status = "unknown"
    elif latest.status == "granted" and purpose.max_age_days is not None:
        expires_at = latest.occurred_at + timedelta(days=purpose.max_age_days)
        status = "expired" if expires_at <= now else "granted"
    else:
        status = latest.status
    if status == "unknown":
        allowed = purpose.default_allowed
    elif purpose.legal_basis in UNCONDITIONAL_BASES:
        allowed = True
    elif purpose.legal_basis == "legitimate_interest":
        allowed = status not in ("denied", "withdrawn")
    else:
        allowed = status == "granted"
    return ConsentState(
        purpose=purpose.name,
        legal_basis=purpose.legal_basis,
        status=status,
        allowed=allowed,
        since=latest.occurred_at if latest else None,
        source=latest.source if latest else None,
        expires_at=expires_at,
        history=history,
    )


def consent_states(config: Config, events: Iterable[Interaction | Mapping[str, Any]], now: datetime) -> dict[str, ConsentState]:
    """Every declared purpose's state for a profile with these events."""
    said = statements(events, consent_sources(config))
    return {p.name: consent_state(p, said, now) for p in config.purposes}


__all__ = ["API_CONSENT_SOURCE", "ConsentState", "ConsentStatement", "consent_sources", "consent_state", "consent_states", "statements"]

"""The values the history works with, as plain data (the store's rows made Python)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class Interaction:
    """One event of a profile (a row of the profile's events, docs/customer360.md)."""

    event_source: str
    event_id: str
    occurred_at: datetime
    type: str
    channel: str | None = None
    topic: str | None = None
    department: str | None = None
    amount: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    record_key: str | None = None


@dataclass(frozen=True)
class RecordFacts:
    """What life events read of one of a profile's source records."""

    record_key: str
    source: str
    updated_at: datetime | None
    first_name: str | None
    last_name: str | None
    surname_tokens: tuple[str, ...]
    date_of_birth: date | None
    street: str | None
    house_number: str | None
    postcode: str | None
    city: str | None


@dataclass(frozen=True)
class Effort:
    """Effort signals of a profile over a window (docs/customer360.md, issue 21)."""

    contacts: int
    repeat_contacts: int
    channel_switches: int
    transfers: int
    first_contact_resolution_rate: float | None  # None without contacts
    average_ces: float | None  # None without answers
    open_topics: list[str]  # topics contacted about more than once in the window, sorted


@dataclass(frozen=True)
class LifeEvent:
    """A moment that matters, with what shows it."""

    kind: str  # moved, name_changed, new_dependant, bereavement, age_milestone
    occurred_at: datetime  # an estimate
    detected_at: datetime
    evidence: list[str]  # record keys ("crm:K1"), events ("calls:C7") or fields ("crm:K1 postcode 1234AB -> 3511AA")
    expires_at: datetime

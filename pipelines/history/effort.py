"""Effort signals: how hard a customer had to work to get something done (repeat contacts,
channel switches, transfers, first-contact resolution, effort scores), over one profile's
events, for the agent's view of the profile.

Python, not SQL: it reads one profile's few hundred events at a time, and the definitions
(issue 21) walk each topic's contacts in order. The window is ``(now - days, now]``;
"earlier" and "later" follow (occurred_at, event_source, event_id), so two contacts at one
instant are still ordered. A contact in the window repeats an earlier one that may lie
before the window (up to ``repeat_days`` before its start): the customer called again
either way; only contacts in the window are counted. Events after ``now`` are not read.
A transfer is also a repeat by these definitions (a contact on the topic within
``repeat_days``), and the contact transferred from is not resolved at first contact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pipelines.config import EffortConfig
from pipelines.history.model import Effort, Interaction


def effort(events: Sequence[Interaction], *, days: int, now: datetime, settings: EffortConfig) -> Effort:
    """The effort signals of one profile's ``events`` over the ``days`` days before ``now``."""
    start = now - timedelta(days=days)
    repeat_within = timedelta(days=settings.repeat_days)
    transfer_within = timedelta(minutes=settings.transfer_minutes)
    kinds = set(settings.contact_types)
    contacts = sorted((e for e in events if e.type in kinds and e.occurred_at <= now), key=_order)

    in_window = [c for c in contacts if c.occurred_at > start]
    repeats = switches = transfers = followed = 0
    neighbours = _neighbours(contacts)
    for contact in in_window:
        previous, following = neighbours.get(id(contact), (None, None))
        if previous is not None and contact.occurred_at - previous.occurred_at <= repeat_within:
            repeats += 1
            switches += _differ(previous.channel, contact.channel)
        if previous is not None and contact.occurred_at - previous.occurred_at <= transfer_within:
            transfers += _differ(previous.department, contact.department)
        if following is not None and following.occurred_at - contact.occurred_at <= repeat_within:
            followed += 1

    topics = Counter(c.topic for c in in_window if c.topic is not None)
    scores = [s for e in events if start < e.occurred_at <= now and (s := _score(e.attributes.get(settings.ces_attribute))) is not None]
    return Effort(
        contacts=len(in_window),
        repeat_contacts=repeats,
        channel_switches=switches,
        transfers=transfers,
        first_contact_resolution_rate=(len(in_window) - followed) / len(in_window) if in_window else None,
        average_ces=sum(scores) / len(scores) if scores else None,
        open_topics=sorted(t for t, n in topics.items() if n > 1),
    )


def horizon(*, days: int, now: datetime, settings: EffortConfig) -> datetime:
    """The time at or before which no event changes :func:`effort`'s signals: a contact
    that long before the window can repeat (or be transferred from) none in it, and only
    the window's scores count. A caller may leave such events out (a card's effort reads
    the last weeks of years of history)."""
    return now - timedelta(days=days) - max(timedelta(days=settings.repeat_days), timedelta(minutes=settings.transfer_minutes))


def _order(event: Interaction) -> tuple[datetime, str, str]:
    return event.occurred_at, event.event_source, event.event_id


def _neighbours(contacts: list[Interaction]) -> dict[int, tuple[Interaction | None, Interaction | None]]:
    """The contacts just before and just after each contact on its topic (by ``id()``);
    a contact without a topic has none: it repeats nothing and nothing repeats it."""
    topics: dict[str, list[Interaction]] = {}
    for contact in contacts:
        if contact.topic is not None:
            topics.setdefault(contact.topic, []).append(contact)
    neighbours: dict[int, tuple[Interaction | None, Interaction | None]] = {}
    for same in topics.values():
        for index, contact in enumerate(same):
            neighbours[id(contact)] = (same[index - 1] if index else None, same[index + 1] if index + 1 < len(same) else None)
    return neighbours


def _differ(before: str | None, after: str | None) -> int:
    """1 when both are known and differ: an unknown channel or department proves no change."""
    return int(before is not None and after is not None and before != after)


def _score(value: Any) -> float | None:
    """An effort score as a number: attributes from files hold text ("5")."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None

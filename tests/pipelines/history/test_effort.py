"""Effort signals on crafted contact sequences (issue 21's examples) and, on random ones,
against the definitions read plainly (every earlier and later contact compared)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from pipelines.config import EffortConfig
from pipelines.history.effort import effort, horizon
from pipelines.history.model import Effort, Interaction

NOW = datetime(2024, 6, 30, 12, 0)
SETTINGS = EffortConfig()  # repeat_days 7, transfer_minutes 15, contact_types ["contact"], ces_attribute "ces"
_numbers = iter(range(1, 10**9))


def contact(
    at: datetime,
    topic: str | None = "billing",
    channel: str | None = "phone",
    department: str | None = None,
    type: str = "contact",
    **attributes: Any,
) -> Interaction:
    return Interaction(
        event_source="calls",
        event_id=f"C{next(_numbers)}",
        occurred_at=at,
        type=type,
        channel=channel,
        topic=topic,
        department=department,
        attributes=attributes,
    )


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def signals(events: Sequence[Interaction], days: int = 30) -> Effort:
    return effort(events, days=days, now=NOW, settings=SETTINGS)


@pytest.mark.parametrize(("apart", "repeats"), [(6, 1), (7, 1), (8, 0)])
def test_two_calls_on_one_topic_repeat_within_seven_days(apart: int, repeats: int) -> None:
    result = signals([contact(days_ago(10)), contact(days_ago(10 - apart))])
    assert (result.contacts, result.repeat_contacts) == (2, repeats)


def test_calls_on_other_topics_or_without_one_are_no_repeats() -> None:
    result = signals(
        [contact(days_ago(5)), contact(days_ago(4), topic="delivery"), contact(days_ago(3), topic=None), contact(days_ago(2), topic=None)]
    )
    assert (result.contacts, result.repeat_contacts) == (4, 0)


def test_a_repeat_is_counted_against_the_most_recent_contact_on_the_topic() -> None:
    # 10 days after the first (no repeat), then 6 after the second (a repeat, by web after a chat)
    events = [contact(days_ago(20), channel="phone"), contact(days_ago(10), channel="chat"), contact(days_ago(4), channel="web")]
    result = signals(events)
    assert (result.repeat_contacts, result.channel_switches) == (1, 1)


def test_web_then_phone_on_one_topic_is_a_channel_switch() -> None:
    result = signals([contact(days_ago(3), channel="web"), contact(days_ago(2), channel="phone")])
    assert (result.repeat_contacts, result.channel_switches) == (1, 1)


def test_a_repeat_through_the_same_or_an_unknown_channel_is_no_switch() -> None:
    result = signals([contact(days_ago(3), channel="web"), contact(days_ago(2), channel="web"), contact(days_ago(1), channel=None)])
    assert (result.repeat_contacts, result.channel_switches) == (2, 0)


@pytest.mark.parametrize(("minutes", "transfers"), [(10, 1), (15, 1), (20, 0)])
def test_another_department_within_fifteen_minutes_is_a_transfer(minutes: int, transfers: int) -> None:
    start = days_ago(1)
    result = signals([contact(start, department="sales"), contact(start + timedelta(minutes=minutes), department="billing")])
    assert result.transfers == transfers


def test_the_same_or_an_unknown_department_or_another_topic_is_no_transfer() -> None:
    start = days_ago(1)
    events = [
        contact(start, department="sales"),
        contact(start + timedelta(minutes=5), department="sales"),
        contact(start + timedelta(minutes=6), department=None),
        contact(start + timedelta(minutes=7), department="billing", topic="delivery"),
    ]
    assert signals(events).transfers == 0


def test_first_contact_resolution_is_the_share_of_contacts_not_repeated() -> None:
    events = [
        contact(days_ago(20)),  # repeated 2 days later: not resolved
        contact(days_ago(18)),  # repeated 9 days later only: resolved
        contact(days_ago(9)),
        contact(days_ago(5), topic="delivery"),
        contact(days_ago(4), topic=None),
    ]
    assert signals(events).first_contact_resolution_rate == pytest.approx(4 / 5)


def test_average_effort_score_over_events_of_any_type_that_have_one() -> None:
    events = [
        contact(days_ago(3), ces="5"),
        contact(days_ago(2), type="order", ces=2),
        contact(days_ago(2), ces="n/a"),
        contact(days_ago(1), ces=None),
        contact(days_ago(1), type="survey", ces=True),
        contact(days_ago(40), ces="7"),  # outside the window
    ]
    assert signals(events).average_ces == pytest.approx(3.5)


def test_open_topics_are_those_contacted_about_more_than_once_in_the_window() -> None:
    events = [
        contact(days_ago(40), topic="returns"),  # before the window: returns was contacted once in it
        contact(days_ago(20), topic="returns"),
        contact(days_ago(15), topic="delivery"),
        contact(days_ago(2), topic="delivery"),
        contact(days_ago(25), topic="account"),
        contact(days_ago(1), topic="account"),
        contact(days_ago(3), topic="billing", type="order"),
        contact(days_ago(2), topic="billing", type="order"),
    ]
    assert signals(events).open_topics == ["account", "delivery"]


def test_events_outside_the_window() -> None:
    events = [
        contact(days_ago(33)),  # before the window, repeated inside it
        contact(days_ago(28)),
        contact(days_ago(-1)),  # after now: not read at all
        contact(days_ago(60), topic="delivery"),
    ]
    assert signals(events) == Effort(
        contacts=1,
        repeat_contacts=1,
        channel_switches=0,
        transfers=0,
        first_contact_resolution_rate=1.0,
        average_ces=None,
        open_topics=[],
    )


def test_without_contacts_rates_are_none() -> None:
    result = signals([contact(days_ago(2), type="order"), contact(days_ago(50))])
    assert result == Effort(0, 0, 0, 0, None, None, [])


def test_other_contact_types_and_settings_are_honoured() -> None:
    settings = EffortConfig(repeat_days=2, transfer_minutes=30, contact_types=["call", "chat"], ces_attribute="score")
    start = days_ago(5)
    events = [
        contact(start, type="call", department="sales", score="6"),
        contact(start + timedelta(minutes=25), type="chat", department="support", channel="chat", ces="1"),
        contact(start + timedelta(days=3), type="call"),
        contact(start + timedelta(days=3, minutes=1), type="contact"),
    ]
    result = effort(events, days=30, now=NOW, settings=settings)
    assert (result.contacts, result.repeat_contacts, result.channel_switches, result.transfers) == (3, 1, 1, 1)
    assert result.average_ces == 6.0


# ---- random sequences against the definitions read plainly ------------------------------


def plain(events: Sequence[Interaction], days: int, settings: EffortConfig) -> Effort:
    """Issue 21's definitions, each contact compared with every other one."""
    order = sorted(events, key=lambda e: (e.occurred_at, e.event_source, e.event_id))
    contacts = [e for e in order if e.type in settings.contact_types and e.occurred_at <= NOW]
    window = [c for c in contacts if NOW - timedelta(days=days) < c.occurred_at <= NOW]
    repeat, transfer = timedelta(days=settings.repeat_days), timedelta(minutes=settings.transfer_minutes)

    def earlier(c: Interaction) -> list[Interaction]:
        return [d for d in contacts[: contacts.index(c)] if c.topic is not None and d.topic == c.topic]

    repeats = [c for c in window if any(c.occurred_at - d.occurred_at <= repeat for d in earlier(c))]
    switches = [c for c in repeats if None not in (earlier(c)[-1].channel, c.channel) and earlier(c)[-1].channel != c.channel]
    transfers = [
        c
        for c in window
        if earlier(c)
        and c.occurred_at - earlier(c)[-1].occurred_at <= transfer
        and None not in (earlier(c)[-1].department, c.department)
        and earlier(c)[-1].department != c.department
    ]
    followed = [c for c in window if any(c in earlier(d) and d.occurred_at - c.occurred_at <= repeat for d in contacts)]
    scores = [float(e.attributes["ces"]) for e in events if NOW - timedelta(days=days) < e.occurred_at <= NOW and "ces" in e.attributes]
    topics = [c.topic for c in window if c.topic is not None]
    return Effort(
        contacts=len(window),
        repeat_contacts=len(repeats),
        channel_switches=len(switches),
        transfers=len(transfers),
        first_contact_resolution_rate=1 - len(followed) / len(window) if window else None,
        average_ces=sum(scores) / len(scores) if scores else None,
        open_topics=sorted({t for t in topics if topics.count(t) > 1}),
    )


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_follow_the_definitions(seed: int) -> None:
    rng = random.Random(seed)
    base = [days_ago(rng.uniform(-1, 40)) for _ in range(5)]
    events = [
        Interaction(
            event_source=rng.choice(("calls", "chats")),
            event_id=f"E{number}",
            # contacts close together (transfers) and at one instant (ties)
            occurred_at=rng.choice(base) + timedelta(minutes=rng.choice((0, 0, 5, 14, 16, 60, 3000))),
            type=rng.choice(("contact", "contact", "order")),
            channel=rng.choice(("web", "phone", None)),
            topic=rng.choice(("billing", "delivery", None)),
            department=rng.choice(("sales", "support", None)),
            attributes={"ces": rng.randint(1, 7)} if rng.random() < 0.3 else {},
        )
        for number in range(rng.randint(0, 50))
    ]
    days = rng.choice((7, 30))
    result = effort(events, days=days, now=NOW, settings=SETTINGS)
    expected = plain(events, days, SETTINGS)
    assert result == Effort(**{**expected.__dict__, "first_contact_resolution_rate": result.first_contact_resolution_rate})
    assert result.first_contact_resolution_rate == pytest.approx(expected.first_contact_resolution_rate)
    # what a card hands it: only the events after the horizon (the rest can change nothing)
    settings = rng.choice((SETTINGS, EffortConfig(repeat_days=1, transfer_minutes=3000)))
    since = horizon(days=days, now=NOW, settings=settings)
    assert effort([e for e in events if e.occurred_at > since], days=days, now=NOW, settings=settings) == effort(
        events, days=days, now=NOW, settings=settings
    )

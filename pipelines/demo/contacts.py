"""Contact-center contacts, generated as episodes: one customer, one topic, one or more contacts.

An episode opens with a call, chat or e-mail. When it reaches the wrong department first,
the customer is handed over minutes later (a transfer: the same topic at another
department). When the first contact does not resolve it, the customer comes back within
days (a repeat), a third of the time through another channel (a channel switch). Some
episodes end with a customer-effort survey whose score drops with every repeat and
transfer. Rates follow common contact-center figures: about 75% first-contact resolution,
10% of calls transferred. Everything is drawn level by level (first contacts, first
repeats, ...) as numpy arrays, so a million customers take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS = ("phone", "chat", "email")
FIRST_CHANNEL = np.array([0.55, 0.25, 0.20])
TOPICS = (
    "billing",
    "delivery",
    "returns",
    "technical",
    "account",
    "complaint",
    "product_question",
    # topics life moments bring (pipelines.demo.moments), never drawn at random
    "address_change",
    "name_change",
    "add_dependant",
    "bereavement",
)
TOPIC_WEIGHTS = np.array([0.22, 0.25, 0.15, 0.12, 0.12, 0.08, 0.06])
TOPIC = {name: i for i, name in enumerate(TOPICS)}
DEPARTMENTS = ("billing", "delivery", "technical", "customer_care", "sales")
TOPIC_DEPARTMENT = np.array([0, 1, 1, 2, 3, 3, 4, 3, 3, 3, 3])  # the department that resolves the topic

P_REPEAT = 0.22  # an episode needs a second contact
P_MORE = 0.25  # ... and each further one
MAX_REPEATS = 4
P_SWITCH = 0.35  # a repeat comes through another channel than the contact before it
P_TRANSFER = np.array([0.12, 0.08, 0.0])  # by channel: routed to the wrong department first (e-mails are re-queued, not transferred)
P_SURVEY = 0.3  # an episode's customer answers the effort survey
REPEATS_PER_EPISODE = P_REPEAT / (1 - P_MORE)  # expected, ignoring the cap (for calibration)
CONTACTS_PER_EPISODE = (1 + REPEATS_PER_EPISODE) * (1 + float(FIRST_CHANNEL @ P_TRANSFER))

PHONE, CHAT, EMAIL = 0, 1, 2
FIRST, REPEAT, TRANSFER = 0, 1, 2
ROLES = ("first", "repeat", "transfer")
DAY = 86_400


@dataclass(frozen=True)
class Episodes:
    """Episodes to play out: who, from which day, on what topic."""

    person: np.ndarray  # int64
    day: np.ndarray  # int64: days since 1970 of the first contact
    topic: np.ndarray  # int64 index in TOPICS
    moment: np.ndarray  # int64: the life moment the first contact announces, -1 for none
    planted: np.ndarray  # bool: the demo's featured caller (phone, transfer, repeat by chat, survey)


@dataclass(frozen=True)
class Contacts:
    """One row per contact, in episode-level order (sorted by time when written)."""

    person: np.ndarray
    ts: np.ndarray  # int64 seconds since 1970
    channel: np.ndarray  # index in CHANNELS
    topic: np.ndarray
    department: np.ndarray  # index in DEPARTMENTS
    role: np.ndarray  # index in ROLES
    episode: np.ndarray  # index in the Episodes
    duration: np.ndarray  # seconds; calls and chats
    moment: np.ndarray


@dataclass(frozen=True)
class Surveys:
    """Effort survey answers, one per surveyed episode."""

    person: np.ndarray
    ts: np.ndarray
    topic: np.ndarray
    touchpoint: np.ndarray  # index in CHANNELS: the episode's last contact
    ces: np.ndarray  # 1-7, 7 = very easy
    episode: np.ndarray


def play(rng: np.random.Generator, ep: Episodes) -> tuple[Contacts, Surveys]:
    """Every contact of the episodes, and the survey answers some of them bring."""
    n = len(ep.person)
    repeats = np.where(rng.random(n) < P_REPEAT, np.minimum(rng.geometric(1 - P_MORE, n), MAX_REPEATS), 0)
    repeats[ep.planted] = 1
    channel = np.where(ep.planted, PHONE, rng.choice(3, size=n, p=FIRST_CHANNEL))
    ts = ep.day * DAY + _time_of_day(rng, channel)
    transferred = np.zeros(n, dtype=np.int64)
    levels: list[Contacts] = []
    for k in range(int(repeats.max(initial=0)) + 1):
        live = np.flatnonzero(repeats >= k)
        if k > 0:
            channel[live], ts[live] = _come_back(rng, ts[live], channel[live], ep.planted[live])
        level = _contacts(rng, ep, live, ts[live], channel[live], FIRST if k == 0 else REPEAT)
        levels.append(level)
        handed = level.role == TRANSFER
        transferred[level.episode[handed]] += 1
        ts[level.episode[handed]] = level.ts[handed]  # the episode goes on from the transfer
    contacts = Contacts(*(np.concatenate([getattr(c, f) for c in levels]) for f in Contacts.__dataclass_fields__))
    return contacts, _surveys(rng, ep, ts, channel, repeats, transferred)


def _time_of_day(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Calls and chats in opening hours (8-20h), e-mails from early morning to midnight."""
    office = 8 * 3600 + rng.integers(0, 12 * 3600, size=len(channel))
    anytime = 6 * 3600 + rng.integers(0, 18 * 3600, size=len(channel))
    return np.where(channel == EMAIL, anytime, office)


def _come_back(rng: np.random.Generator, prev: np.ndarray, channel: np.ndarray, planted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The next contact of unresolved episodes: within 6.5 days (a repeat by any 7-day rule),
    mostly soon, sometimes through another channel."""
    n = len(prev)
    switch = (rng.random(n) < P_SWITCH) | planted
    other = (channel + rng.integers(1, 3, size=n)) % 3
    new_channel = np.where(switch, other, channel)
    new_channel[planted] = CHAT
    gap = (0.05 + 5.4 * rng.random(n) ** 2) * DAY
    day = (prev + gap.astype(np.int64)) // DAY
    ts = day * DAY + _time_of_day(rng, new_channel)
    # not before the last contact ended: then the next opening day (at most 6.5 days on)
    ts = np.where(ts <= prev + 1800, ts + DAY, ts)
    return new_channel, ts


def _contacts(rng: np.random.Generator, ep: Episodes, live: np.ndarray, ts: np.ndarray, channel: np.ndarray, role: int) -> Contacts:
    """The contacts of one level: to the right department, or to a wrong one and then transferred."""
    n = len(live)
    topic = ep.topic[live]
    right = TOPIC_DEPARTMENT[topic]
    wrong = rng.random(n) < P_TRANSFER[channel]
    if role == FIRST:
        wrong |= ep.planted[live]
    first_department = np.where(wrong, (right + rng.integers(1, len(DEPARTMENTS), size=n)) % len(DEPARTMENTS), right)
    median = np.where(channel == CHAT, 540.0, 330.0)
    duration = np.clip(median * rng.lognormal(0.0, 0.6, size=n), 30, 3600).astype(np.int64)
    # a misrouted contact is short, but over a minute: files that write minutes keep the order
    duration = np.where(wrong, rng.integers(60, 300, size=n), duration)
    moment = ep.moment[live] if role == FIRST else np.full(n, -1, dtype=np.int64)
    handed = np.flatnonzero(wrong)
    # the transfer starts when the misrouted contact ends, after a short wait: well within minutes
    transfer_ts = ts[handed] + duration[handed] + rng.integers(10, 120, size=len(handed))
    transfer_duration = np.clip(np.where(channel[handed] == CHAT, 540.0, 330.0) * rng.lognormal(0.0, 0.6, size=len(handed)), 30, 3600)
    return Contacts(
        person=np.concatenate([ep.person[live], ep.person[live][handed]]),
        ts=np.concatenate([ts, transfer_ts]),
        channel=np.concatenate([channel, channel[handed]]),
        topic=np.concatenate([topic, topic[handed]]),
        department=np.concatenate([first_department, right[handed]]),
        role=np.concatenate([np.full(n, role, dtype=np.int64), np.full(len(handed), TRANSFER, dtype=np.int64)]),
        episode=np.concatenate([live, live[handed]]),
        duration=np.concatenate([duration, transfer_duration.astype(np.int64)]),
        moment=np.concatenate([moment, np.full(len(handed), -1, dtype=np.int64)]),
    )


def _surveys(
    rng: np.random.Generator, ep: Episodes, last_ts: np.ndarray, last_channel: np.ndarray, repeats: np.ndarray, transferred: np.ndarray
) -> Surveys:
    """A survey a day or two after an episode's last contact; effort shows in the score."""
    n = len(ep.person)
    answered = np.flatnonzero((rng.random(n) < P_SURVEY) | ep.planted)
    mean = 6.1 - 1.2 * repeats[answered] - 0.9 * transferred[answered]
    ces = np.clip(np.rint(mean + rng.normal(0.0, 0.9, size=len(answered))), 1, 7).astype(np.int64)
    return Surveys(
        person=ep.person[answered],
        ts=last_ts[answered] + rng.integers(3600, 48 * 3600, size=len(answered)),
        topic=ep.topic[answered],
        touchpoint=last_channel[answered],
        ces=ces,
        episode=answered,
    )

"""The demo's events: what every demo person did in the three years before DEMO_UNTIL
(or the day given).

Webshop customers order and return (orders.ndjson), contact-center customers call, chat
and e-mail (calls.csv, messages.tsv) and answer effort surveys by the e-mail address they
type (surveys.csv), loyalty members earn and redeem points (loyalty_transactions.parquet).
An event links to one of its person's accepted records in that system (or, for surveys,
to an e-mail address one of them carries), so a person absent from a system has no
events there. About 0.5% of events name an id no system has (unlinked on purpose), and a
few rows per file are malformed; events_truth.parquet says which is which and whose each
event is. Life moments (pipelines.demo.moments) add the events that announce them.

Everything comes from one seed, in numpy arrays, with a random stream of its own: the
sources stay byte-identical whether events are made or not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.demo import moments
from pipelines.demo.contacts import (
    CHANNELS,
    CHAT,
    CONTACTS_PER_EPISODE,
    DEPARTMENTS,
    EMAIL,
    P_SURVEY,
    PHONE,
    TOPIC,
    TOPIC_WEIGHTS,
    TOPICS,
    Contacts,
    Episodes,
    Surveys,
    play,
)
from pipelines.demo.event_files import CALLS, CONSENTS, LOYALTY_TRANSACTIONS, MESSAGES, ORDERS, SURVEYS
from pipelines.demo.event_writer import Col, EventWriter, Stream
from pipelines.demo.noise import Noise
from pipelines.demo.people import EPOCH_DAY_MAX, Population
from pipelines.demo.records import SourceRecords, Targets

DAY = 86_400
DEMO_UNTIL = dt.date(1970, 1, 1) + dt.timedelta(days=EPOCH_DAY_MAX + 1)
"""By default every demo event happened before this day (2025-01-01), the day after the
sources' last update: the reference time of traits and effort for the demo's truth."""
WINDOW_DAYS = 3 * 365

EVENTS_PER_PERSON = 10.0
# Relative rates over the three years, scaled together to EVENTS_PER_PERSON:
ORDERS_PER_CUSTOMER = 5.0  # webshop customers
RETURN_RATE = 0.10  # of orders
EPISODES_PER_CUSTOMER = 2.5  # contact-center customers
TRANSACTIONS_PER_MEMBER = 12.0  # loyalty members
ACTIVITY_SHAPE = 1.2  # gamma shape of a person's activity (mean 1): a few are very active

CATEGORIES = ("fashion", "home", "electronics", "beauty", "toys", "garden", "sports", "books")
CATEGORY_WEIGHTS = np.array([0.28, 0.18, 0.14, 0.12, 0.08, 0.07, 0.08, 0.05])
ORDER_CHANNELS = ("web", "app")
ORDER_KINDS = ("order", "return")
LOYALTY_KINDS = ("earn", "redeem", "child_added")
LOYALTY_CHANNELS = ("store", "app")
STORES = tuple(f"S{i:03d}" for i in range(1, 181))
CONSENT_PURPOSES = ("personalization", "marketing")
CONSENT_CHOICES = ("Granted", "Denied", "Withdrawn")  # as the preference centre writes them
CONSENT_VIA = ("web", "app", "store")
# per purpose: P(grant), P(a grant withdrawn later), P(deny) of those who do not grant
CONSENT_RATES = ((0.55, 0.20, 0.30), (0.35, 0.25, 0.20))
WEBSHOP, CONTACT_CENTER, LOYALTY = 1, 2, 3  # indices in SPECS


@dataclass(frozen=True)
class EventsManifest:
    """What write_events() wrote."""

    paths: dict[str, Path]  # [[events]] name -> file
    rows: dict[str, int]  # rows per file, malformed ones included
    malformed: dict[str, int]
    unknown_links: dict[str, int]
    truth_path: Path  # events_truth.parquet
    life_events_truth_path: Path
    life_event_negatives_path: Path
    moments: dict[str, int]  # life moments in the truth, per kind
    until: dt.datetime  # every event happened before this time (midnight of the events_until day)


@dataclass(frozen=True)
class Window:
    """The days events happen in: [start_day, end_day), days since 1970."""

    end_day: int

    @property
    def start_day(self) -> int:
        return self.end_day - WINDOW_DAYS

    @property
    def end(self) -> int:
        return self.end_day * DAY

    def times(self, rng: np.random.Generator, n: int, first_hour: int, hours: int) -> np.ndarray:
        """Seconds since 1970 in the window, between first_hour and first_hour + hours of a day."""
        day = rng.integers(self.start_day, self.end_day, size=n)
        return day * DAY + first_hour * 3600 + rng.integers(0, hours * 3600, size=n)


def write_events(
    out_dir: Path,
    pop: Population,
    records: SourceRecords,
    seed: int,
    per_person: float,
    featured: int | None,
    until: dt.date = DEMO_UNTIL,
) -> EventsManifest:
    """Every event file, events_truth.parquet and the life-moment truth, for the three years
    before ``until``; ``featured``: the person the demo looks up, given a recent phone call
    transferred and repeated by chat."""
    window = Window((until - dt.date(1970, 1, 1)).days)
    rng = np.random.default_rng([seed, 360])
    web, cc, loyalty = records.targets(WEBSHOP), records.targets(CONTACT_CENTER), records.targets(LOYALTY)
    email = _survey_emails(records, pop.size)
    scale = _scale(per_person, len(np.unique(records.person)), web, cc, loyalty, email)
    activity = rng.gamma(ACTIVITY_SHAPE, 1 / ACTIVITY_SHAPE, size=pop.size)
    life = moments.plan(rng, pop, cc, loyalty, window.start_day, window.end_day)
    planted = featured if featured is not None and bool(np.isin(featured, cc.members())) else None  # needs a contact-center record
    truth_path = out_dir / "events_truth.parquet"
    writer = EventWriter(out_dir, pop, records, rng, planted, truth_path, window.end)
    # one stream at a time, each written before the next is made: ten million records
    # make over forty million events
    writer.write(_orders(rng, window, web, activity * scale))
    contacts, surveys = play(rng, _episodes(rng, window, cc, activity * scale, life.episodes, planted))
    for stream in _contact_streams(rng, cc, contacts):
        writer.write(stream)
    del contacts
    writer.write(_survey_stream(Noise(np.random.default_rng([seed, 360, 1])), surveys, email))
    writer.write(_loyalty_stream(rng, window, loyalty, activity * scale, life))
    # a stream of its own: the other files stay as they were without it
    writer.write(_consent_stream(np.random.default_rng([seed, 360, 2]), window, email, planted))
    writer.close()
    life_truth, negatives = moments.truth(pop, records, life, writer.announced, window.start_day, window.end_day)
    life_path, negatives_path = out_dir / "life_events_truth.parquet", out_dir / "life_event_negatives.parquet"
    pq.write_table(life_truth, life_path, compression="zstd")
    pq.write_table(negatives, negatives_path, compression="zstd")
    kinds = life_truth["kind"].to_pylist()
    return EventsManifest(
        paths=writer.paths,
        rows=writer.rows,
        malformed=writer.malformed,
        unknown_links=writer.unknown,
        truth_path=truth_path,
        life_events_truth_path=life_path,
        life_event_negatives_path=negatives_path,
        moments={k: kinds.count(k) for k in sorted(set(kinds))},
        until=dt.datetime.combine(until, dt.time()),
    )


def _survey_emails(records: SourceRecords, persons: int) -> np.ndarray:
    """Per person the address they type into surveys: that of their newest record carrying
    one no other person's record carries ("" when none); a household's shared address would
    give the answer to every member's profile."""
    has = np.flatnonzero(records.email != "")
    encoded = pa.array(records.email[has], pa.string()).dictionary_encode()
    value = encoded.indices.to_numpy().astype(np.int64)
    pairs = np.unique(value * persons + records.person[has])  # (address, person) once each
    owners = np.bincount(pairs // persons, minlength=len(encoded.dictionary))
    usable = has[owners[value] == 1]
    newest = usable[np.lexsort((records.ts[usable].astype(np.int64), records.person[usable]))]
    out = np.full(persons, "", dtype=object)
    out[records.person[newest]] = records.email[newest]  # later (newer) rows win
    return out


def _scale(per_person: float, persons: int, web: Targets, cc: Targets, loyalty: Targets, email: np.ndarray) -> float:
    """The factor on every base rate that gives ``per_person`` events per person on average."""
    surveyed = int(np.count_nonzero(email[cc.members()] != ""))
    expected = (
        len(web.members()) * ORDERS_PER_CUSTOMER * (1 + RETURN_RATE)
        + len(cc.members()) * EPISODES_PER_CUSTOMER * CONTACTS_PER_EPISODE
        + surveyed * EPISODES_PER_CUSTOMER * P_SURVEY
        + len(loyalty.members()) * TRANSACTIONS_PER_MEMBER
    ) / max(persons, 1)
    return per_person / expected


def _episodes(rng: np.random.Generator, window: Window, cc: Targets, activity: np.ndarray, life: Episodes, planted: int | None) -> Episodes:
    """Everyday episodes (topics by weight, days at random), life's, and the featured caller's."""
    members = cc.members()
    person = np.repeat(members, rng.poisson(EPISODES_PER_CUSTOMER * activity[members]))
    n = len(person)
    extra = [] if planted is None else [planted]
    k = len(extra)
    return Episodes(
        person=np.concatenate([person, life.person, np.array(extra, dtype=np.int64)]),
        day=np.concatenate([rng.integers(window.start_day, window.end_day, size=n), life.day, np.full(k, window.end_day - 12)]),
        topic=np.concatenate(
            [rng.choice(len(TOPIC_WEIGHTS), size=n, p=TOPIC_WEIGHTS / TOPIC_WEIGHTS.sum()), life.topic, np.full(k, TOPIC["delivery"])]
        ),
        moment=np.concatenate([np.full(n, -1), life.moment, np.full(k, -1)]).astype(np.int64),
        planted=np.concatenate([np.zeros(n, dtype=bool), life.planted, np.ones(k, dtype=bool)]),
    )


def _orders(rng: np.random.Generator, window: Window, web: Targets, activity: np.ndarray) -> Stream:
    """Orders at any hour, a tenth of them returned (wholly or partly) 2-30 days later."""
    members = web.members()
    person = np.repeat(members, rng.poisson(ORDERS_PER_CUSTOMER * activity[members]))
    n = len(person)
    ts = window.times(rng, n, 0, 24)
    euros = np.maximum(np.floor(np.exp(rng.normal(3.6, 0.7, size=n))), 4)
    cents = (euros * 100 + rng.choice([95, 99, 0, 50], size=n, p=[0.5, 0.25, 0.15, 0.1])).astype(np.int64)
    items = np.minimum(rng.geometric(0.55, size=n), 8)
    category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_WEIGHTS)
    channel = (rng.random(n) < 0.38).astype(np.int64)
    record = web.pick(person, rng.random(n))
    r = np.flatnonzero(rng.random(n) < RETURN_RATE)
    whole = rng.random(len(r)) < 0.7
    back = np.where(whole, items[r], np.maximum(1, (rng.random(len(r)) * items[r]).astype(np.int64)))
    refund = np.where(whole, cents[r], np.rint(cents[r] * back / items[r]).astype(np.int64))

    def both(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])

    return Stream(
        spec=ORDERS,
        person=both(person, person[r]),
        ts=both(ts, ts[r] + rng.integers(2 * DAY, 30 * DAY, size=len(r))),
        link=both(record, record[r]),
        columns={
            "kind": Col(both(np.zeros(n, dtype=np.int64), np.ones(len(r), dtype=np.int64)), ORDER_KINDS),
            "channel": Col(both(channel, channel[r]), ORDER_CHANNELS),
            "category": Col(both(category, category[r]), CATEGORIES),
            "items": Col(both(items, back)),
            "total": Col(both(cents, refund), money=True),
        },
        parent=both(np.full(n, -1, dtype=np.int64), r),
        parent_column="orderRef",
        kind_prefix=("WO", "WR"),
    )


def _contact_streams(rng: np.random.Generator, cc: Targets, c: Contacts) -> list[Stream]:
    """Calls to calls.csv, chats and e-mails to messages.tsv; each names a contact-center record of its person."""
    record = cc.pick(c.person, rng.random(len(c.person)))
    out = []
    for spec, rows in ((CALLS, c.channel == PHONE), (MESSAGES, (c.channel == CHAT) | (c.channel == EMAIL))):
        i = np.flatnonzero(rows)
        if spec is CALLS:
            columns = {"reason": Col(c.topic[i], TOPICS), "queue": Col(c.department[i], DEPARTMENTS), "duration_sec": Col(c.duration[i])}
        else:
            columns = {"medium": Col(c.channel[i], CHANNELS), "subject": Col(c.topic[i], TOPICS), "team": Col(c.department[i], DEPARTMENTS)}
        out.append(Stream(spec, c.person[i], c.ts[i], record[i], columns, role=c.role[i], episode=c.episode[i], moment=c.moment[i]))
    return out


def _survey_stream(noise: Noise, s: Surveys, email: np.ndarray) -> Stream:
    """Answers of persons with an address of their own, typed as people type (case, stray spaces)."""
    i = np.flatnonzero(email[s.person] != "")
    typed = list(email[s.person[i]])
    noise.apply(typed, 0.05, noise.email_case)
    noise.apply(typed, 0.02, noise.email_space)
    columns = {"topic": Col(s.topic[i], TOPICS), "touchpoint": Col(s.touchpoint[i], CHANNELS), "ces_score": Col(s.ces[i])}
    return Stream(SURVEYS, s.person[i], s.ts[i], np.array(typed, dtype=object), columns, episode=s.episode[i])


def _loyalty_stream(rng: np.random.Generator, window: Window, loyalty: Targets, activity: np.ndarray, life: moments.Plan) -> Stream:
    """Purchases earning points and redeemed vouchers, mostly in the member's home store,
    and the children added to family cards (announcing a birth)."""
    members = loyalty.members()
    person = np.repeat(members, rng.poisson(TRANSACTIONS_PER_MEMBER * activity[members]))
    n = len(person)
    born = np.flatnonzero(life.by_loyalty)
    kind = np.concatenate([(rng.random(n) < 0.08).astype(np.int64), np.full(len(born), 2)])
    euros = np.maximum(np.rint(np.exp(rng.normal(3.2, 0.6, size=n)) * 100), 150).astype(np.int64)
    voucher = rng.choice([500, 1000, 2000], size=n)
    cents = np.where(kind[:n] == 1, voucher, euros)
    points = np.concatenate([np.where(kind[:n] == 1, -cents, cents // 100), np.full(len(born), 250)])
    everyone = np.concatenate([person, life.person[born]])
    channel = (rng.random(len(everyone)) < np.where(kind == 2, 0.6, 0.15)).astype(np.int64)
    home = rng.integers(0, len(STORES), size=int(everyone.max(initial=0)) + 1)
    store = np.where(rng.random(len(everyone)) < 0.8, home[everyone], rng.integers(0, len(STORES), size=len(everyone)))
    announce = life.announce_day[born] * DAY + 9 * 3600 + rng.integers(0, 12 * 3600, size=len(born))
    return Stream(
        spec=LOYALTY_TRANSACTIONS,
        person=everyone,
        ts=np.concatenate([window.times(rng, n, 8, 13), announce]),
        link=loyalty.pick(everyone, rng.random(len(everyone))),
        columns={
            "txn_type": Col(kind, LOYALTY_KINDS),
            "channel": Col(channel, LOYALTY_CHANNELS),
            "store_id": Col(store, STORES, null=channel == 1),  # the app has no store
            "amount": Col(np.concatenate([cents, np.zeros(len(born), dtype=np.int64)]), money=True, null=kind == 2),
            "points": Col(points),
        },
        moment=np.concatenate([np.full(n, -1), born]).astype(np.int64),
    )


def _consent_stream(rng: np.random.Generator, window: Window, email: np.ndarray, planted: int | None) -> Stream:
    """The preference centre's log, by the address people sign in with: grants (some
    withdrawn later, a withdrawal after the window's end not yet written) and denials of
    personalization and marketing. The featured caller granted personalization a month
    before the window's end and said nothing since, so the demo's card shows their traits."""
    people = np.flatnonzero(email != "")
    if planted is not None:
        people = people[people != planted]
    person, ts, purpose, choice = [], [], [], []
    for p, (p_grant, p_withdraw, p_deny) in enumerate(CONSENT_RATES):
        u = rng.random(len(people))
        granted = people[u < p_grant]
        denied = people[(u >= p_grant) & (u < p_grant + (1 - p_grant) * p_deny)]
        t_grant = window.times(rng, len(granted), 7, 16)
        later = rng.random(len(granted)) < p_withdraw
        t_withdraw = t_grant[later] + rng.integers(DAY, 400 * DAY, size=int(later.sum()))
        for who, when, what in ((granted, t_grant, 0), (denied, window.times(rng, len(denied), 7, 16), 1), (granted[later], t_withdraw, 2)):
            person.append(who)
            ts.append(when)
            purpose.append(np.full(len(who), p))
            choice.append(np.full(len(who), what))
    if planted is not None and email[planted] != "":
        person.append(np.array([planted]))
        ts.append(np.array([(window.end_day - 30) * DAY + 10 * 3600]))
        purpose.append(np.array([0]))
        choice.append(np.array([0]))
    who = np.concatenate(person).astype(np.int64)
    return Stream(
        spec=CONSENTS,
        person=who,
        ts=np.concatenate(ts).astype(np.int64),
        link=email[who],
        columns={
            "purpose": Col(np.concatenate(purpose).astype(np.int64), CONSENT_PURPOSES),
            "choice": Col(np.concatenate(choice).astype(np.int64), CONSENT_CHOICES),
            "via": Col(rng.integers(0, len(CONSENT_VIA), size=len(who)), CONSENT_VIA),
        },
    )

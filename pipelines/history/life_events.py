"""Life events: moments that matter (a move, a new name, a child, a loss, a milestone
birthday) read from one profile's source records and events, each with the evidence an
agent can check.

The records tell moves and name changes apart from typos: one source wrote the old value
and a later one (by ``updated_at``) the new one. Rules (issue 21), and the choices where
they leave room:

- Only records with an ``updated_at`` can show a change: without it none is newer.
- A change is shown by the first record (by ``updated_at``) with a new value: one that
  differs from every older record's (an address not seen before, not even as a typo),
  paired with the most recent older record. A source that still writes the old address
  later (it was never told) is not a move back; a real move back is not shown either.
- A typo is a value within one edit of the other (a transposition counts as one): never a
  move or a name change. A slip in the postcode and one in the city together are typos
  too. A field only one of the two records has shows no difference: the other decides.
- ``detected_at`` is ``now``: life events are derived afresh on each read, not stored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta

from rapidfuzz.distance import DamerauLevenshtein

from pipelines.config import LifeEventConfig
from pipelines.history.model import Interaction, LifeEvent, RecordFacts
from pipelines.standardize.fields import postcode_std
from pipelines.standardize.names import fold, parse_given_name

_DUTCH_POSTCODE = re.compile(r"[0-9]{4}[A-Z]{2}")
_PUNCTUATION_AND_SPACES = re.compile(r"[\W_]+")
_ADDRESS_FIELDS = ("street", "house_number", "postcode", "city")
#: A change found in the records or events: when it happened and what shows it.
Found = tuple[datetime, list[str]]


def life_events(
    records: Sequence[RecordFacts],
    events: Sequence[Interaction],
    rules: Sequence[LifeEventConfig],
    *,
    today: date,
    now: datetime,
) -> list[LifeEvent]:
    """The life events of one profile for the kinds ``rules`` configure, not yet expired at
    ``now``; the most recent first (then by kind)."""
    found: list[LifeEvent] = []
    for rule in rules:
        for occurred_at, evidence in _DETECTORS[rule.kind](rule, records, events, today):
            expires_at = occurred_at + timedelta(days=rule.expires_days)
            if expires_at >= now:
                found.append(LifeEvent(rule.kind, occurred_at, now, evidence, expires_at))
    found.sort(key=lambda e: (e.kind, e.evidence))
    found.sort(key=lambda e: e.occurred_at, reverse=True)  # stable: kinds stay in order within one time
    return found


# ---- moved and name_changed: a newer record against the older ones -------------------------


def _moved(rule: LifeEventConfig, records: Sequence[RecordFacts], events: Sequence[Interaction], today: date) -> Iterator[Found]:
    located = [r for r in records if r.postcode or r.city]
    for when, older, newer in _changes(located, _is_move, lambda older, newer: True):
        changed = [
            f"{newer.record_key} {field} {getattr(older, field) or '(none)'} -> {getattr(newer, field) or '(none)'}"
            for field in _ADDRESS_FIELDS
            if _folded(getattr(older, field)) != _folded(getattr(newer, field))
        ]
        yield when, [older.record_key, newer.record_key, *changed]


def _name_changed(rule: LifeEventConfig, records: Sequence[RecordFacts], events: Sequence[Interaction], today: date) -> Iterator[Found]:
    named = [r for r in records if r.surname_tokens]
    for when, older, newer in _changes(named, _other_surname, _same_person):
        change = f"{newer.record_key} last_name {older.last_name} -> {newer.last_name}"
        yield when, [older.record_key, newer.record_key, change]


def _changes(
    records: Sequence[RecordFacts],
    differs: Callable[[RecordFacts, RecordFacts], bool],
    comparable: Callable[[RecordFacts, RecordFacts], bool],
) -> Iterator[tuple[datetime, RecordFacts, RecordFacts]]:
    """(when, older, newer) for each record whose value ``differs`` from that of every
    record updated before it (a value first seen), paired with the most recent of those it
    is ``comparable`` with; ``when`` is the newer record's ``updated_at``."""
    dated = sorted(((r.updated_at, r) for r in records if r.updated_at is not None), key=lambda d: (d[0], d[1].record_key))
    for when, newer in dated:
        older = [r for at, r in dated if at < when]
        if not older or not all(differs(r, newer) for r in older):
            continue
        previous = next((r for r in reversed(older) if comparable(r, newer)), None)
        if previous is not None:
            yield when, previous, newer


def _is_move(older: RecordFacts, newer: RecordFacts) -> bool:
    """Another postcode area or city, and not a typo of the older address. The same full
    postcode, or the same area (or an unknown one) and house number, is the same dwelling
    whatever the city says (a town's other name: Den Haag and 's-Gravenhage)."""
    areas, cities = (_area(older.postcode), _area(newer.postcode)), (_folded(older.city), _folded(newer.city))
    postcodes = (postcode_std(older.postcode), postcode_std(newer.postcode))
    if _same(*areas) and _same(*cities):
        return False
    if None not in postcodes and postcodes[0] == postcodes[1]:
        return False
    numbers = (_folded(older.house_number), _folded(newer.house_number))
    same_number = None not in numbers and numbers[0] == numbers[1]
    if same_number and (None in areas or areas[0] == areas[1]):
        return False  # only the city's name differs at the same number: not evidence enough
    postcode_typo = _close(*postcodes) and _same(*cities)
    city_typo = _close(*cities) and _same(*areas)
    # a slip in each field is two typos, still not a move
    return not (postcode_typo or city_typo or (_close(*postcodes) and _close(*cities)))


#: Letters strip_accents keeps that are read as another letter (Turkish dotless i, ...).
_LETTERS = str.maketrans({"ı": "i", "ø": "o", "ł": "l", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe"})


def _surname_parts(record: RecordFacts) -> list[str]:
    """The surname's words as compared: folded, without particles (words of three letters
    or fewer: van, de, ter, el, and their typos: ban, vsn) unless the name has only those."""
    names = [record.last_name] if record.last_name else list(record.surname_tokens)  # tokens glue a particle typo on
    words = [w for name in names for w in re.split(r"[\s\-]+", (fold(name) or "").translate(_LETTERS)) if w]
    long = [w for w in words if len(w) > 3]
    return long or words


def _other_surname(older: RecordFacts, newer: RecordFacts) -> bool:
    """A surname word one record has and the other does not, not even within one edit: a
    new surname, a partner's name added or dropped. A typo or a particle is none."""
    before, after = _surname_parts(older), _surname_parts(newer)

    def missing(words: list[str], other: list[str]) -> bool:
        return any(all(DamerauLevenshtein.distance(word, o) > 1 for o in other) for word in words)

    return missing(after, before) or missing(before, after)


def _same_person(older: RecordFacts, newer: RecordFacts) -> bool:
    """The same first name (or its initial, or within one edit), and the same date of birth
    where both have one."""
    first = [parse_given_name(r.first_name) if r.first_name else None for r in (older, newer)]
    if first[0] is None or first[1] is None:
        return False
    a, b = (str(first[0].folded or "").translate(_LETTERS), str(first[1].folded or "").translate(_LETTERS))
    initials = len(a) == 1 or len(b) == 1
    if not (a == b or (initials and a[:1] == b[:1]) or (not initials and DamerauLevenshtein.distance(a, b) <= 1)):
        return False
    return older.date_of_birth is None or newer.date_of_birth is None or older.date_of_birth == newer.date_of_birth


def _area(postcode: str | None) -> str | None:
    """The postcode's area: a Dutch postcode's 4 digits, another's all but its last 2
    characters (the whole when it has 4 or fewer)."""
    compact = postcode_std(postcode)
    if compact is None:
        return None
    if _DUTCH_POSTCODE.fullmatch(compact):
        return compact[:4]
    return compact[:-2] if len(compact) > 4 else compact


def _folded(value: str | None) -> str | None:
    """A city or address field as compared: case, accents, punctuation and spaces ignored."""
    return _PUNCTUATION_AND_SPACES.sub("", fold(value)) or None if value else None


def _same(a: str | None, b: str | None) -> bool:
    """Equal, or unknown on either side (nothing shows a difference)."""
    return a is None or b is None or a == b


def _close(a: str | None, b: str | None) -> bool:
    """Within one edit (a transposition is one), or unknown on either side."""
    return a is None or b is None or DamerauLevenshtein.distance(a, b) <= 1


# ---- announcements and birthdays -----------------------------------------------------------


#: Announcements of one kind this close together are one moment told more than once (a
#: call, then the loyalty change; a repeat contact on the topic).
ANNOUNCEMENT_DAYS = 90


def _announced(rule: LifeEventConfig, records: Sequence[RecordFacts], events: Sequence[Interaction], today: date) -> Iterator[Found]:
    """One life event per announcement: the first event that tells it, with every event
    that tells it again within ANNOUNCEMENT_DAYS of the one before as evidence too."""
    telling = sorted(
        (e for e in events if e.type in rule.types or (e.topic is not None and e.topic in rule.topics)),
        key=lambda e: (e.occurred_at, e.event_source, e.event_id),
    )
    moment: tuple[datetime, list[str]] | None = None
    last: datetime | None = None
    for event in telling:
        evidence = f"{event.event_source}:{event.event_id}"
        if moment is not None and last is not None and event.occurred_at - last <= timedelta(days=ANNOUNCEMENT_DAYS):
            moment[1].append(evidence)
        else:
            if moment is not None:
                yield moment
            moment = (event.occurred_at, [evidence])
        last = event.occurred_at
    if moment is not None:
        yield moment


def _age_milestone(rule: LifeEventConfig, records: Sequence[RecordFacts], events: Sequence[Interaction], today: date) -> Iterator[Found]:
    born = _date_of_birth(records)
    if born is None:
        return
    evidence = sorted(r.record_key for r in records if r.date_of_birth == born)
    for age in sorted(set(rule.ages)):
        birthday = _birthday(born, age)
        if birthday <= today:
            yield datetime.combine(birthday, time()), evidence


def _date_of_birth(records: Sequence[RecordFacts]) -> date | None:
    """The most common date of birth; a tie goes to the most recently updated record's."""
    counts = Counter(r.date_of_birth for r in records if r.date_of_birth is not None)
    if not counts:
        return None
    latest = {d: max((r.updated_at or datetime.min) for r in records if r.date_of_birth == d) for d in counts}
    return max(counts, key=lambda d: (counts[d], latest[d], d))


def _birthday(born: date, age: int) -> date:
    """The day ``age`` is reached: someone born on 29 February reaches it on 1 March in a
    year without one."""
    try:
        return born.replace(year=born.year + age)
    except ValueError:
        return date(born.year + age, 3, 1)


_DETECTORS: dict[str, Callable[[LifeEventConfig, Sequence[RecordFacts], Sequence[Interaction], date], Iterator[Found]]] = {
    "moved": _moved,
    "name_changed": _name_changed,
    "new_dependant": _announced,
    "bereavement": _announced,
    "age_milestone": _age_milestone,
}

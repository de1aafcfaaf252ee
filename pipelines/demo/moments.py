"""Life moments behind the demo's records and events, and their ground truth.

Moves and marriages come from the population (people.py): a record updated before the
day shows the old address or the birth name, one updated after shows the new. A moment is
in the truth only when the data can show it: a mover needs an older record with the old
address and a newer one with the new address (postcode area or city both shown), a bride
an older record with the birth name and a newer one with the married name. Births and
bereavements are planned here and announced by an event: a child added to the loyalty
card, or a contact on the topic add_dependant / bereavement. Age milestones follow from
the birth date a record shows. Typo- and spelling-only differences between one person's
records are written as negatives: never a move, never a name change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.demo.contacts import TOPIC, Episodes
from pipelines.demo.noise import street_abbrev, surname_display
from pipelines.demo.people import NO_EVENT, Population, ascii_fold
from pipelines.demo.places import CITIES, FOREIGN_CITIES
from pipelines.demo.records import SourceRecords, Targets
from pipelines.demo.sources import SPECS

NEW_DEPENDANT, BEREAVEMENT = 0, 1
BIRTH_RATE = 0.09  # of customers aged 22-44 over the three years of events
BEREAVEMENT_RATE = 0.02  # of contact-center customers aged 35 and over
ADDRESS_CALL_RATE = 0.4  # movers who tell the contact center
NAME_CALL_RATE = 0.35  # brides who tell the contact center
BY_LOYALTY = 0.7  # births announced on the loyalty card when the parent has one and a contact-center record too
MILESTONE_AGES = (18, 67)
SOURCE_NAMES = tuple(s.name for s in SPECS)
_ALIAS = {c.name: (c.variants[0] if c.variants else "") for c in CITIES + FOREIGN_CITIES}


@dataclass(frozen=True)
class Plan:
    """Births and bereavements (the moments events announce), and the contacts life brings."""

    kind: np.ndarray  # NEW_DEPENDANT or BEREAVEMENT
    person: np.ndarray
    day: np.ndarray  # when it happened, days since 1970
    announce_day: np.ndarray
    by_loyalty: np.ndarray  # bool: a loyalty child_added, else a contact
    episodes: Episodes  # contacts on life topics; moment = index in these arrays or -1


def plan(rng: np.random.Generator, pop: Population, cc: Targets, loyalty: Targets, start_day: int, end_day: int) -> Plan:
    """Who has a child, loses someone, or calls about a move or a new name in [start_day, end_day)."""
    in_cc = np.isin(np.arange(pop.size), cc.members())
    in_loyalty = np.isin(np.arange(pop.size), loyalty.members())
    age = (end_day - pop.dob.astype(np.int64)) / 365.25
    parents = np.flatnonzero((in_cc | in_loyalty) & (age >= 22) & (age < 45) & (rng.random(pop.size) < BIRTH_RATE))
    bereaved = np.flatnonzero(in_cc & (age >= 35) & (rng.random(pop.size) < BEREAVEMENT_RATE))
    birth = rng.integers(start_day, end_day - 95, size=len(parents))
    death = rng.integers(start_day, end_day - 20, size=len(bereaved))
    by_loyalty = in_loyalty[parents] & (~in_cc[parents] | (rng.random(len(parents)) < BY_LOYALTY))
    announce_birth = birth + np.where(by_loyalty, rng.integers(3, 60, size=len(parents)), rng.integers(7, 90, size=len(parents)))
    announce_death = death + rng.integers(1, 14, size=len(bereaved))
    kind = np.concatenate([np.full(len(parents), NEW_DEPENDANT), np.full(len(bereaved), BEREAVEMENT)]).astype(np.int64)
    person = np.concatenate([parents, bereaved]).astype(np.int64)
    by = np.concatenate([by_loyalty, np.zeros(len(bereaved), dtype=bool)])
    announce = np.concatenate([announce_birth, announce_death]).astype(np.int64)
    told = np.flatnonzero(~by)
    movers = _tellers(rng, pop.move_day, in_cc, start_day, end_day - 21, ADDRESS_CALL_RATE)
    brides = _tellers(rng, pop.married_day, in_cc, start_day, end_day - 60, NAME_CALL_RATE)
    episodes = Episodes(
        person=np.concatenate([person[told], movers, brides]),
        day=np.concatenate(
            [
                announce[told],
                pop.move_day[movers] + rng.integers(0, 21, size=len(movers)),
                pop.married_day[brides] + rng.integers(0, 60, size=len(brides)),
            ]
        ),
        topic=np.concatenate(
            [
                np.where(kind[told] == NEW_DEPENDANT, TOPIC["add_dependant"], TOPIC["bereavement"]),
                np.full(len(movers), TOPIC["address_change"]),
                np.full(len(brides), TOPIC["name_change"]),
            ]
        ).astype(np.int64),
        moment=np.concatenate([told, np.full(len(movers) + len(brides), -1)]).astype(np.int64),
        planted=np.zeros(len(told) + len(movers) + len(brides), dtype=bool),
    )
    day = np.concatenate([birth, death]).astype(np.int64)
    return Plan(kind=kind, person=person, day=day, announce_day=announce, by_loyalty=by, episodes=episodes)


def _tellers(rng: np.random.Generator, days: np.ndarray, in_cc: np.ndarray, lo: int, hi: int, rate: float) -> np.ndarray:
    """Persons whose moment falls in [lo, hi) and who tell the contact center about it."""
    hit = (days != NO_EVENT) & (days >= lo) & (days < hi) & in_cc
    return np.flatnonzero(hit & (rng.random(len(days)) < rate)).astype(np.int64)


# ---- the truth ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    """The event that announces a planned moment, as written."""

    event_source: str
    event_id: str
    ts: int  # seconds since 1970
    what: str  # "child_added" or "topic bereavement"


def truth(
    pop: Population, records: SourceRecords, moments: Plan, announced: dict[int, Announcement], start_day: int, end_day: int
) -> tuple[pa.Table, pa.Table]:
    """(life_events_truth, life_event_negatives) as tables, sorted by person and kind."""
    rows: list[tuple[int, str, int, int, str]] = []  # person, kind, occurred (s), evidenced (s), evidence
    groups = _Groups(records)
    rows += _moves(pop, records, groups)
    rows += _name_changes(pop, records, groups)
    for m, a in sorted(announced.items()):
        kind = "new_dependant" if moments.kind[m] == NEW_DEPENDANT else "bereavement"
        rows.append((int(moments.person[m]), kind, int(moments.day[m]) * 86_400, a.ts, f"{a.event_source}:{a.event_id} {a.what}"))
    rows += _milestones(pop, records, start_day, end_day)
    negatives = _address_negatives(pop, records, groups) + _name_negatives(pop, records, groups)
    rows.sort(key=lambda r: (pop.person_id[r[0]], r[1], r[2]))
    negatives.sort(key=lambda r: (pop.person_id[r[0]], r[1], r[3]))
    life = pa.table(
        {
            "person_id": pa.array([pop.person_id[r[0]] for r in rows], pa.string()),
            "kind": pa.array([r[1] for r in rows], pa.string()),
            "occurred_at": pa.array([r[2] for r in rows], pa.int64()).cast(pa.timestamp("s")),
            "evidenced_at": pa.array([r[3] for r in rows], pa.int64()).cast(pa.timestamp("s")),
            "evidence": pa.array([r[4] for r in rows], pa.string()),
        }
    )
    neg = pa.table(
        {
            "person_id": pa.array([pop.person_id[r[0]] for r in negatives], pa.string()),
            "kind": pa.array([r[1] for r in negatives], pa.string()),
            "reason": pa.array([r[2] for r in negatives], pa.string()),
            "evidence": pa.array([r[3] for r in negatives], pa.string()),
        }
    )
    return life, neg


class _Groups:
    """A person's records, oldest first."""

    def __init__(self, records: SourceRecords) -> None:
        self.order = np.lexsort((records.ts.astype(np.int64), records.person))
        self.persons = records.person[self.order]

    def rows(self, person: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.persons, [person, person + 1])
        return self.order[lo:hi]

    def each(self, persons: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for p in persons.tolist():
            rows = self.rows(p)
            if len(rows):
                yield p, rows


def _key(records: SourceRecords, row: int) -> str:
    return records.key(int(row), SOURCE_NAMES)


def _day(records: SourceRecords, row: int) -> str:
    return str(records.ts[row].astype("datetime64[D]"))


def _moves(pop: Population, records: SourceRecords, groups: _Groups) -> list[tuple[int, str, int, int, str]]:
    """Movers with an older record showing the old address and a newer one the new (the
    postcode area shown on both and different, or the city)."""
    book = pop.addresses
    day = records.ts.astype("datetime64[D]").astype(np.int64)
    out = []
    movers = np.flatnonzero((pop.addr_old >= 0) & (pop.move_day != NO_EVENT))
    for p, rows in groups.each(movers):
        old_addr, new_addr, moved = int(pop.addr_old[p]), int(pop.addr[p]), int(pop.move_day[p])
        for field, differs in (
            (records.postcode, book.postcode[old_addr][:4] != book.postcode[new_addr][:4]),
            (records.city, book.city[old_addr] != book.city[new_addr]),
        ):
            before = [r for r in rows if day[r] < moved and field[r]]
            after = [r for r in rows if day[r] >= moved and field[r]]
            if differs and before and after:
                a, b = before[-1], after[0]
                note = f"{_key(records, a)} {_day(records, a)} {_place(records, a)} -> {_key(records, b)} {_day(records, b)} {_place(records, b)}"
                out.append((p, "moved", moved * 86_400, int(records.ts[b].astype(np.int64)), note))
                break
    return out


def _place(records: SourceRecords, row: int) -> str:
    return " ".join(x for x in (records.street[row], records.postcode[row], records.city[row]) if x)


def _name_changes(pop: Population, records: SourceRecords, groups: _Groups) -> list[tuple[int, str, int, int, str]]:
    """Brides a newer record shows with a surname no older record has: the birth name before
    the wedding and the married one after, or (systems differ) the double name
    ("Jansen-de Vries") in one record and the partner's alone in a later one."""
    out = []
    for p, rows in groups.each(np.flatnonzero(pop.married_day != NO_EVENT)):
        names = [(records.particle[r], records.surname[r]) for r in rows]
        new = next((i for i in range(1, len(rows)) if names[i] not in names[:i]), None)
        if new is not None:
            a, b = rows[new - 1], rows[new]
            note = f"{_key(records, a)} {records.name[a]!r} -> {_key(records, b)} {records.name[b]!r}"
            out.append((p, "name_changed", int(pop.married_day[p]) * 86_400, int(records.ts[b].astype(np.int64)), note))
    return out


def _milestones(pop: Population, records: SourceRecords, start_day: int, end_day: int) -> list[tuple[int, str, int, int, str]]:
    """18th and 67th birthdays in [start_day, end_day) of persons some record shows the
    true birth date of (29 February birthdays count on 1 March in other years)."""
    shown = np.flatnonzero(records.dob_shown)
    persons, first = np.unique(records.person[shown], return_index=True)
    dob = pop.dob[persons]
    month = dob.astype("datetime64[M]")
    day_of_month = (dob - month.astype("datetime64[D]")).astype(np.int64)
    out = []
    for age in MILESTONE_AGES:
        birthday = ((month + 12 * age).astype("datetime64[D]").astype(np.int64) + day_of_month).astype(np.int64)
        for i in np.flatnonzero((birthday >= start_day) & (birthday < end_day)).tolist():
            note = f"age {age}: date_of_birth {dob[i]} on {_key(records, shown[first[i]])}"
            at = int(birthday[i]) * 86_400
            out.append((int(persons[i]), "age_milestone", at, at, note))
    return out


def _address_negatives(pop: Population, records: SourceRecords, groups: _Groups) -> list[tuple[int, str, str, str]]:
    """Persons whose records all describe one address, yet spell a street or city differently
    (a typo, an abbreviation, the city's other name): never a move."""
    book = pop.addresses
    street = np.array(book.street, dtype=object)[records.addr]
    city = np.array(book.city, dtype=object)[records.addr]
    odd_street = (records.street != "") & (records.street != street)
    same_city = pc.equal(pc.utf8_upper(pa.array(records.city, pa.string())), pc.utf8_upper(pa.array(city, pa.string())))
    odd_city = (records.city != "") & ~same_city.to_numpy(zero_copy_only=False)
    out = []
    candidates = np.unique(records.person[odd_street | odd_city])
    for p, rows in groups.each(candidates):
        if len(set(records.addr[rows].tolist())) != 1:
            continue
        for field, odd, true, reason in (
            (records.street, odd_street, street, lambda v, t: "abbreviation" if v == street_abbrev(t) else "typo"),
            (records.city, odd_city, city, lambda v, t: "alias" if v == _ALIAS.get(t) else "typo"),
        ):
            found = _odd_one(records, rows, field, odd, true, reason)
            if found:
                out.append((p, "moved", *found))
                break
    return out


def _odd_one(
    records: SourceRecords, rows: np.ndarray, field: np.ndarray, odd: np.ndarray, true: np.ndarray, reason: Callable[[Any, Any], str]
) -> tuple[str, str] | None:
    """(reason, note) for a record that spells the field unlike another record of the person
    (one with the right spelling when there is one)."""
    bad = [r for r in rows if odd[r]]
    for b in bad:
        others = sorted((r for r in rows if r != b and field[r] and field[r].upper() != field[b].upper()), key=lambda r: bool(odd[r]))
        if others:
            a = others[0]
            return reason(field[b], true[b]), f"{_key(records, a)} {field[a]!r} / {_key(records, b)} {field[b]!r}"
    return None


def _name_negatives(pop: Population, records: SourceRecords, groups: _Groups) -> list[tuple[int, str, str, str]]:
    """Persons whose records all name them alike (one true surname) but spell it with a typo
    in one: never a name change."""
    shown = zip(records.name.tolist(), records.particle.tolist(), records.surname.tolist())
    typo = np.array([_typo_in_name(*x) for x in shown], dtype=bool)
    out = []
    for p, rows in groups.each(np.unique(records.person[typo])):
        if len({(records.particle[r], records.surname[r]) for r in rows}) != 1:
            continue  # the name did change between these records
        bad = [r for r in rows if typo[r]]
        fine = [r for r in rows if not typo[r]]
        if bad and fine:
            a, b = fine[0], bad[0]
            out.append((p, "name_changed", "typo", f"{_key(records, a)} {records.name[a]!r} / {_key(records, b)} {records.name[b]!r}"))
    return out


def _typo_in_name(shown: str, particle: str, core: str) -> bool:
    """Whether the name a record shows has a typo in its surname: it shows none of the ways
    systems write the true one (particle first, after, abbreviated, capitalised), not even
    without diacritics (a contact-center full name holds it with the first name)."""
    if not particle and core in shown:  # most surnames: the quick answer
        return False
    written = [surname_display(particle, core, style) for style in range(4)] if particle else [core]
    if any(w in shown for w in written):
        return False
    folded = ascii_fold(shown)
    return not any(ascii_fold(w) in folded for w in written)

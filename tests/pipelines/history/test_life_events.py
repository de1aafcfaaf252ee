"""Life events on crafted records and events: moves are not typos, name changes keep the
person, announcements and milestones are found, and everything expires."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from pipelines.config import LifeEventConfig
from pipelines.history.life_events import life_events
from pipelines.history.model import Interaction, LifeEvent, RecordFacts
from pipelines.standardize.names import parse_surname

NOW = datetime(2024, 6, 30, 12, 0)
TODAY = NOW.date()
MOVED = LifeEventConfig(kind="moved")
NAME = LifeEventConfig(kind="name_changed")
DEPENDANT = LifeEventConfig(kind="new_dependant", types=["birth_announced"], topics=["new_baby"])
LOSS = LifeEventConfig(kind="bereavement", topics=["bereavement"])
MILESTONE = LifeEventConfig(kind="age_milestone", ages=[18, 67])
ALL = [MOVED, NAME, DEPENDANT, LOSS, MILESTONE]


def record(
    key: str,
    updated_at: datetime | None,
    *,
    postcode: str | None = "1234AB",
    city: str | None = "Amsterdam",
    street: str | None = "Kerkstraat",
    house_number: str | None = "12",
    first_name: str | None = "Anna",
    last_name: str = "Jansen",
    date_of_birth: date | None = date(1985, 3, 14),
) -> RecordFacts:
    surname = parse_surname(last_name)
    return RecordFacts(
        record_key=key,
        source=key.split(":")[0],
        updated_at=updated_at,
        first_name=first_name,
        last_name=last_name,
        surname_tokens=surname.tokens if surname else (),
        date_of_birth=date_of_birth,
        street=street,
        house_number=house_number,
        postcode=postcode,
        city=city,
    )


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def kinds(found: list[LifeEvent]) -> list[str]:
    return [e.kind for e in found]


# ---- moved -------------------------------------------------------------------------------


def test_a_real_move_shows_both_records_and_what_changed() -> None:
    records = [
        record("crm:K1", ago(300)),
        record("shop:S1", ago(100), postcode="3511AA", city="Utrecht", street="Oudegracht", house_number="7"),
    ]
    assert life_events(records, [], [MOVED], today=TODAY, now=NOW) == [
        LifeEvent(
            kind="moved",
            occurred_at=ago(100),
            detected_at=NOW,
            evidence=[
                "crm:K1",
                "shop:S1",
                "shop:S1 street Kerkstraat -> Oudegracht",
                "shop:S1 house_number 12 -> 7",
                "shop:S1 postcode 1234AB -> 3511AA",
                "shop:S1 city Amsterdam -> Utrecht",
            ],
            expires_at=ago(100) + timedelta(days=365),
        )
    ]


@pytest.mark.parametrize(
    ("postcode", "city"),
    [
        ("1098XY", "Amsterdam"),  # another area in the same city
        ("3511AA", None),  # the city unknown: the postcode area alone
        ("1243AB", "Utrecht"),  # a postcode one transposition away, but another city
    ],
)
def test_another_postcode_area_or_city_is_a_move(postcode: str, city: str | None) -> None:
    records = [record("crm:K1", ago(300)), record("shop:S1", ago(100), postcode=postcode, city=city)]
    assert kinds(life_events(records, [], [MOVED], today=TODAY, now=NOW)) == ["moved"]


@pytest.mark.parametrize(
    ("postcode", "city"),
    [
        ("1235AB", "Amsterdam"),  # one digit of the postcode: another area, but a typo
        ("1243AB", "Amsterdam"),  # two digits swapped
        ("1234 AB", "Amsterdm"),  # a letter of the city left out
        ("1234AB", "Amstredam"),  # two letters swapped
        ("1234AC", "AMSTERDAM "),  # the same area and city, written otherwise
        ("1235AB", "Amsterdm"),  # a slip in each
        ("1235AB", None),  # one digit, the city unknown
        (None, "Amsterdm"),  # a letter of the city, the postcode unknown
    ],
)
def test_a_typo_is_never_a_move(postcode: str | None, city: str | None) -> None:
    records = [record("crm:K1", ago(300)), record("shop:S1", ago(100), postcode=postcode, city=city)]
    assert life_events(records, [], [MOVED], today=TODAY, now=NOW) == []


@pytest.mark.parametrize(
    ("postcode", "city", "house_number"),
    [
        ("1234AB", "Utrecht", "12"),  # the same full postcode: the same street, whatever the city says
        ("2511BT", "'s-Gravenhage", "3"),  # a town's other name at the same postcode
        ("2511XX", "'s-Gravenhage", "3"),  # the same area and house number
    ],
)
def test_the_same_dwelling_under_another_city_name_is_no_move(postcode: str, city: str, house_number: str) -> None:
    older = "1234AB" if postcode == "1234AB" else "2511BT"
    records = [
        record("crm:K1", ago(300), postcode=older, city="Amsterdam" if postcode == "1234AB" else "Den Haag", house_number=house_number),
        record("shop:S1", ago(100), postcode=postcode, city=city, house_number=house_number),
    ]
    assert life_events(records, [], [MOVED], today=TODAY, now=NOW) == []


def test_an_initial_and_a_first_name_typo_are_the_same_person_for_a_name_change() -> None:
    for first in ("A.", "Anan"):
        records = [record("crm:K1", ago(300)), record("shop:S1", ago(100), first_name=first, last_name="de Vries")]
        assert [e.kind for e in life_events(records, [], [NAME], today=TODAY, now=NOW)] == ["name_changed"], first


@pytest.mark.parametrize("new_last", ["Kılıç", "ban Jansen", "vsn Jansen", "Jansen-"])
def test_dotless_i_and_particle_typos_are_no_name_change(new_last: str) -> None:
    old_last = "Kilic" if new_last == "Kılıç" else "Jansen"
    records = [record("crm:K1", ago(300), last_name=old_last), record("shop:S1", ago(100), last_name=new_last)]
    assert life_events(records, [], [NAME], today=TODAY, now=NOW) == []


def test_city_names_compare_without_case_punctuation_or_spaces() -> None:
    records = [
        record("crm:K1", ago(300), postcode="5211AA", city="'s-Hertogenbosch"),
        record("shop:S1", ago(100), postcode="5211AA", city="S HERTOGENBOSCH"),
    ]
    assert life_events(records, [], [MOVED], today=TODAY, now=NOW) == []


@pytest.mark.parametrize(
    ("old", "new", "moved"),
    [
        ("SW1A 1AA", "EC1A 1BB", True),  # British: the area is all but the last 2 characters
        ("SW1A 1AA", "SW1A 1BB", False),  # the same sector
        ("1000", "2060", True),  # a short postcode is its own area
        ("1000", "1001", False),  # ... and one digit off is a typo
    ],
)
def test_postcode_areas_of_other_countries(old: str, new: str, moved: bool) -> None:
    records = [record("a:1", ago(300), postcode=old, city="X"), record("b:1", ago(100), postcode=new, city="X")]
    assert kinds(life_events(records, [], [MOVED], today=TODAY, now=NOW)) == (["moved"] if moved else [])


def test_a_source_that_still_writes_the_old_address_is_no_move_back() -> None:
    records = [
        record("crm:K1", ago(300)),
        record("shop:S1", ago(200), postcode="3511AA", city="Utrecht"),
        record("loyalty:L1", ago(100)),  # the old address, updated later
        record("post:P1", ago(50), postcode="3511 AA", city="Utrecht"),  # the new one again
        record("web:W1", ago(40), postcode="1234AB", city="Amsterdm"),  # the old one, with a typo
    ]
    found = life_events(records, [], [MOVED], today=TODAY, now=NOW)
    assert [(e.occurred_at, e.evidence[:2]) for e in found] == [(ago(200), ["crm:K1", "shop:S1"])]


def test_two_moves_each_against_the_address_before() -> None:
    records = [
        record("crm:K1", ago(300)),
        record("shop:S1", ago(200), postcode="3511AA", city="Utrecht"),
        record("crm:K2", ago(20), postcode="9711AA", city="Groningen"),
    ]
    found = life_events(records, [], [MOVED], today=TODAY, now=NOW)
    assert [e.evidence[:2] for e in found] == [["shop:S1", "crm:K2"], ["crm:K1", "shop:S1"]]


def test_records_without_an_update_time_or_an_address_show_no_change() -> None:
    records = [
        record("crm:K1", None),
        record("web:W1", ago(250), postcode=None, city=None),
        record("shop:S1", ago(100), postcode="3511AA", city="Utrecht"),
    ]
    assert life_events(records, [], [MOVED], today=TODAY, now=NOW) == []
    records.append(record("post:P1", ago(300)))
    assert [e.evidence[:2] for e in life_events(records, [], [MOVED], today=TODAY, now=NOW)] == [["post:P1", "shop:S1"]]


# ---- name_changed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [("Jansen", "de Vries"), ("Jansen", "de Vries-Jansen"), ("de Vries-Jansen", "Jansen"), ("van den Berg", "Bakker")],
)
def test_a_new_surname_for_the_same_person_is_a_name_change(old: str, new: str) -> None:
    records = [record("crm:K1", ago(300), last_name=old), record("shop:S1", ago(100), last_name=new)]
    assert life_events(records, [], [NAME], today=TODAY, now=NOW) == [
        LifeEvent("name_changed", ago(100), NOW, ["crm:K1", "shop:S1", f"shop:S1 last_name {old} -> {new}"], ago(100) + timedelta(days=365))
    ]


@pytest.mark.parametrize(
    ("new_last", "new_first", "new_birth"),
    [
        ("de Vries", "Piet", date(1985, 3, 14)),  # another first name: another person
        ("de Vries", "P.", date(1985, 3, 14)),  # another initial: another person
        ("de Vries", None, date(1985, 3, 14)),
        ("de Vries", "Anna", date(1986, 3, 14)),  # another date of birth
        ("Janssen", "Anna", date(1985, 3, 14)),  # a typo
        ("JANSEN", "anna", date(1985, 3, 14)),  # the same name, written otherwise
    ],
)
def test_no_name_change(new_last: str, new_first: str | None, new_birth: date) -> None:
    records = [record("crm:K1", ago(300)), record("shop:S1", ago(100), last_name=new_last, first_name=new_first, date_of_birth=new_birth)]
    assert life_events(records, [], [NAME], today=TODAY, now=NOW) == []


def test_names_in_another_order_are_the_same_surname() -> None:
    records = [record("crm:K1", ago(300), last_name="Jansen-de Vries"), record("shop:S1", ago(100), last_name="de Vries-Jansen")]
    assert life_events(records, [], [NAME], today=TODAY, now=NOW) == []


def test_a_missing_date_of_birth_does_not_stop_a_name_change() -> None:
    records = [record("crm:K1", ago(300), date_of_birth=None), record("shop:S1", ago(100), last_name="de Vries")]
    assert kinds(life_events(records, [], [NAME], today=TODAY, now=NOW)) == ["name_changed"]


def test_a_name_change_pairs_with_the_latest_record_of_the_same_person() -> None:
    records = [
        record("crm:K1", ago(300)),
        record("shop:S1", ago(200), first_name="Piet"),  # a partner's record merged in
        record("web:W1", ago(100), last_name="de Vries"),
    ]
    found = life_events(records, [], [NAME], today=TODAY, now=NOW)
    assert [e.evidence[:2] for e in found] == [["crm:K1", "web:W1"]]


# ---- announcements -----------------------------------------------------------------------


def event(number: int, at: datetime, type: str = "contact", topic: str | None = None) -> Interaction:
    return Interaction(event_source="calls", event_id=f"C{number}", occurred_at=at, type=type, topic=topic)


def test_announcements_by_type_and_by_topic() -> None:
    events = [
        event(1, ago(10), type="birth_announced"),
        event(2, ago(20), topic="new_baby"),
        event(3, ago(30), topic="bereavement"),
        event(4, ago(5), topic="billing"),
        event(5, ago(6), type="order", topic=None),
    ]
    found = life_events([], events, [DEPENDANT, LOSS], today=TODAY, now=NOW)
    # two announcements of one kind ten days apart are one moment, told twice
    assert [(e.kind, e.occurred_at, e.evidence) for e in found] == [
        ("new_dependant", ago(20), ["calls:C2", "calls:C1"]),
        ("bereavement", ago(30), ["calls:C3"]),
    ]


def test_announcements_further_apart_are_moments_of_their_own() -> None:
    events = [
        event(1, ago(400), type="birth_announced"),
        event(2, ago(200), type="birth_announced"),
        event(3, ago(150), type="birth_announced"),
    ]
    found = life_events([], events, [DEPENDANT.model_copy(update={"expires_days": 1000})], today=TODAY, now=NOW)
    assert [(e.occurred_at, e.evidence) for e in found] == [(ago(200), ["calls:C2", "calls:C3"]), (ago(400), ["calls:C1"])]


# ---- age_milestone -----------------------------------------------------------------------


def test_an_eighteenth_birthday_from_the_most_common_date_of_birth() -> None:
    born = date(2006, 5, 2)
    records = [
        record("crm:K1", ago(300), date_of_birth=born),
        record("shop:S1", ago(200), date_of_birth=born),
        record("web:W1", ago(10), date_of_birth=date(2006, 2, 5)),  # day and month swapped once
    ]
    assert life_events(records, [], [MILESTONE], today=TODAY, now=NOW) == [
        LifeEvent("age_milestone", datetime(2024, 5, 2), NOW, ["crm:K1", "shop:S1"], datetime(2025, 5, 2))
    ]


@pytest.mark.parametrize(
    ("born", "expected"),
    [
        (date(2006, 6, 30), [datetime(2024, 6, 30)]),  # today
        (date(2006, 7, 1), []),  # tomorrow
        (date(1957, 1, 10), [datetime(2024, 1, 10)]),  # 67
        (date(2005, 6, 30), []),  # 18 a year ago and a day: expired
        (date(2004, 2, 29), []),  # 20 this year
        (date(2005, 2, 28), []),
    ],
)
def test_milestones_reached_within_their_expiry(born: date, expected: list[datetime]) -> None:
    found = life_events([record("crm:K1", ago(1), date_of_birth=born)], [], [MILESTONE], today=TODAY, now=NOW)
    assert [e.occurred_at for e in found] == expected


def test_a_leap_day_birthday_is_reached_on_the_first_of_march_in_other_years() -> None:
    rule = LifeEventConfig(kind="age_milestone", ages=[18, 20], expires_days=900)
    found = life_events([record("crm:K1", ago(1), date_of_birth=date(2004, 2, 29))], [], [rule], today=TODAY, now=NOW)
    assert [e.occurred_at for e in found] == [datetime(2024, 2, 29), datetime(2022, 3, 1)]


# ---- expiry, kinds and order -------------------------------------------------------------


def test_life_events_expire_after_their_days() -> None:
    records = [record("crm:K1", ago(800)), record("shop:S1", ago(400), postcode="3511AA", city="Utrecht")]
    assert life_events(records, [], [MOVED], today=TODAY, now=NOW) == []
    longer = LifeEventConfig(kind="moved", expires_days=400)  # expires exactly now: still shown
    assert [e.expires_at for e in life_events(records, [], [longer], today=TODAY, now=NOW)] == [NOW]
    shorter = LifeEventConfig(kind="new_dependant", types=["birth_announced"], expires_days=30)
    events = [event(1, ago(131), type="birth_announced"), event(2, ago(29), type="birth_announced")]
    assert [e.evidence for e in life_events([], events, [shorter], today=TODAY, now=NOW)] == [["calls:C2"]]


def test_only_configured_kinds_newest_first_then_by_kind() -> None:
    records = [
        record("crm:K1", ago(300), date_of_birth=date(2006, 6, 20)),
        record("shop:S1", ago(10), postcode="3511AA", city="Utrecht", last_name="de Vries", date_of_birth=date(2006, 6, 20)),
    ]
    events = [event(1, ago(10), topic="bereavement"), event(2, ago(2), type="birth_announced")]
    found = life_events(records, events, ALL, today=TODAY, now=NOW)
    assert [(e.kind, e.occurred_at) for e in found] == [
        ("new_dependant", ago(2)),
        ("bereavement", ago(10)),
        ("moved", ago(10)),
        ("name_changed", ago(10)),
        ("age_milestone", datetime(2024, 6, 20)),
    ]
    assert {e.detected_at for e in found} == {NOW}
    assert kinds(life_events(records, events, [NAME, LOSS], today=TODAY, now=NOW)) == ["bereavement", "name_changed"]

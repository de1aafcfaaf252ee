"""traits_sql against a plain Python reading of the trait definitions (issue 21), on random
events in DuckDB: every function, with and without windows and filters, text, numeric and
attribute fields, ties in time and in frequency."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from pipelines.config import TRAIT_FIELD_FUNCTIONS, TRAIT_FUNCTIONS, TraitConfig, TraitFilter
from pipelines.history.traits import traits_python, traits_sql

REFERENCE = datetime(2024, 6, 30, 12, 0)
SOURCES = ("orders", "calls", "web")
TEXT_FIELDS = ("type", "channel", "topic", "department", "event_id")
Row = tuple[str, str, Any, datetime, int]

# small value sets, so that frequencies tie and filters both keep and drop events
TYPES = ("order", "contact", "refund")
CHANNELS = ("web", "phone", "chat", None)
TOPICS = ("billing", "delivery", "zürich", "it's", None)
DEPARTMENTS = ("sales", "support", None)
CES = ("1", "4", "7", 5, 2, "n/a", None)  # text and JSON numbers, a non-number, JSON null


def random_events(seed: int, profiles: int = 30, events: int = 700) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    times = [REFERENCE - timedelta(days=rng.uniform(-20, 200)) for _ in range(events // 20)]
    for number in range(events):
        # most events share their time with others: ties for first, last and most_frequent
        occurred_at = rng.choice(times) if rng.random() < 0.7 else REFERENCE - timedelta(seconds=rng.randint(-20 * 86400, 200 * 86400))
        attributes: dict[str, Any] = {}
        if rng.random() < 0.6:
            attributes["ces"] = rng.choice(CES)
        if rng.random() < 0.3:
            attributes["plan"] = rng.choice(("gold", "basic"))
        rows.append(
            {
                "profile_id": f"P{rng.randrange(profiles):02d}",
                "event_source": rng.choice(SOURCES),
                "event_id": f"E{rng.randrange(10**6)}-{number}",
                "occurred_at": occurred_at,
                "type": rng.choice(TYPES),
                "channel": rng.choice(CHANNELS),
                "topic": rng.choice(TOPICS),
                "department": rng.choice(DEPARTMENTS),
                "amount": rng.choice((None, 10.0, 19.99, 0.1, 0.2, 250.5, -5.25)),
                "attributes": attributes or None,
                "record_key": "crm:K1",
            }
        )
    # one event exactly at the reference time and one exactly at a window's start
    rows[0] = {**rows[0], "occurred_at": REFERENCE}
    rows[1] = {**rows[1], "occurred_at": REFERENCE - timedelta(days=30)}
    return rows


def all_traits() -> list[TraitConfig]:
    """Every function over every kind of field, alone and with a window, filters or both."""
    scopes: list[tuple[int | None, TraitFilter]] = [
        (None, TraitFilter()),
        (30, TraitFilter()),
        (None, TraitFilter(type=["contact", "refund"], topic=["billing", "it's", "zürich"])),
        (90, TraitFilter(channel=["phone", "chat"], department=["support"])),
    ]
    traits: list[TraitConfig] = []
    for function in TRAIT_FUNCTIONS:
        fields: Sequence[str | None] = (None,)
        if function in ("sum", "avg"):
            fields = ("amount", "ces")
        elif function in ("min", "max"):
            fields = (*TEXT_FIELDS, "amount", "ces")
        elif function in TRAIT_FIELD_FUNCTIONS:
            fields = (*TEXT_FIELDS, "amount", "ces", "plan")
        for field in fields:
            for number, (window, where) in enumerate(scopes):
                sources = ["calls", "web"] if number % 2 else list(SOURCES)
                name = f"{function}_{field or 'events'}_{number}"
                traits.append(TraitConfig(name=name, function=function, events=sources, field=field, window_days=window, where=where))
    return traits


# ---- the definitions, read plainly ------------------------------------------------------


def in_scope(trait: TraitConfig, event: dict[str, Any]) -> bool:
    if event["event_source"] not in trait.events or event["occurred_at"] > REFERENCE:
        return False
    if trait.window_days is not None and event["occurred_at"] <= REFERENCE - timedelta(days=trait.window_days):
        return False
    return all(event[field] in allowed for field, allowed in trait.where.model_dump(exclude_none=True).items())


def field_value(trait: TraitConfig, event: dict[str, Any]) -> Any:
    """The field's value, None when the event has none the function can use."""
    field = trait.field
    assert field is not None
    if field in TEXT_FIELDS or field == "amount":
        value = event[field]
    else:
        raw = (event["attributes"] or {}).get(field)
        value = None if raw is None else str(raw)  # ->> gives a JSON number's text
    numeric = field == "amount" or (field not in TEXT_FIELDS and trait.function in ("min", "max")) or trait.function in ("sum", "avg")
    if value is None or not numeric:
        return value
    try:
        return float(value)
    except ValueError:
        return None


def expected_value(trait: TraitConfig, used: list[dict[str, Any]], values: list[Any]) -> Any:
    order = sorted(range(len(used)), key=lambda i: (used[i]["occurred_at"], used[i]["event_source"], used[i]["event_id"]))
    function = trait.function
    if function == "count":
        return len(used)
    if function == "days_since_last":
        return (REFERENCE - max(e["occurred_at"] for e in used)) // timedelta(days=1)
    if function in ("sum", "avg"):
        total = sum(Decimal(repr(v)).quantize(Decimal("1e-9")) for v in values)
        return float(total) if function == "sum" else float(total) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "first":
        return values[order[0]]
    if function == "last":
        return values[order[-1]]
    if function == "count_distinct":
        return len(set(values))
    assert function == "most_frequent"
    counts = Counter(values)
    latest = {v: max(e["occurred_at"] for e, w in zip(used, values) if w == v) for v in counts}
    return min(counts, key=lambda v: (-counts[v], -latest[v].timestamp(), v))


def expected_rows(traits: Sequence[TraitConfig], events: Sequence[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for trait in traits:
        for profile in sorted({e["profile_id"] for e in events}):
            used = [e for e in events if e["profile_id"] == profile and in_scope(trait, e)]
            values: list[Any] = []
            if trait.field is not None:
                used = [e for e in used if field_value(trait, e) is not None]
                values = [field_value(trait, e) for e in used]
            if used:
                value = expected_value(trait, used, values)
                rows.append((profile, trait.name, value, max(e["occurred_at"] for e in used), len(used)))
    return sorted(rows, key=lambda r: (r[0], r[1]))


# ---- DuckDB -----------------------------------------------------------------------------


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


def load(con: duckdb.DuckDBPyConnection, events: Sequence[dict[str, Any]]) -> None:
    text = ("profile_id", "event_source", "event_id", "type", "channel", "topic", "department", "record_key")
    columns = {c: pa.array([e[c] for e in events], pa.string()) for c in text}
    columns["occurred_at"] = pa.array([e["occurred_at"] for e in events], pa.timestamp("us"))
    columns["amount"] = pa.array([e["amount"] for e in events], pa.float64())
    columns["attributes"] = pa.array([None if e["attributes"] is None else json.dumps(e["attributes"]) for e in events], pa.string())
    con.register("arrow_events", pa.table(columns))
    con.execute(
        """CREATE OR REPLACE TABLE events AS SELECT profile_id, event_source, event_id, occurred_at, type, channel, topic,
           department, amount, CAST(attributes AS JSON) AS attributes, record_key FROM arrow_events"""
    )
    con.unregister("arrow_events")


def run(con: duckdb.DuckDBPyConnection, traits: Sequence[TraitConfig], relation: str = "events", extra: Sequence[Any] = ()) -> list[Row]:
    sql, params = traits_sql(traits, relation, REFERENCE)
    rows = con.execute(f"SELECT * FROM ({sql}) ORDER BY profile_id, name", [*extra, *params]).fetchall()
    return [(p, n, json.loads(v), a, c) for p, n, v, a, c in rows]


def assert_same(actual: list[Row], expected: list[Row]) -> None:
    assert [r[:2] for r in actual] == [r[:2] for r in expected]
    for got, want in zip(actual, expected):
        assert got[3:] == want[3:], (got, want)
        if isinstance(want[2], float):
            assert isinstance(got[2], float)
            assert got[2] == pytest.approx(want[2], rel=1e-12, abs=1e-9), (got, want)
        else:
            assert got[2] == want[2] and type(got[2]) is type(want[2]), (got, want)


# ---- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("function", TRAIT_FUNCTIONS)
def test_the_python_twin_gives_the_sql_s_rows(con: duckdb.DuckDBPyConnection, seed: int, function: str) -> None:
    """The API computes one profile's traits in Python (pipelines.history.traits.traits_python)."""
    events = random_events(seed)
    load(con, events)
    traits = [t for t in all_traits() if t.function == function]
    assert_same(run(con, traits), traits_python(traits, events, REFERENCE))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("function", TRAIT_FUNCTIONS)
def test_traits_sql_computes_what_the_definitions_say(con: duckdb.DuckDBPyConnection, seed: int, function: str) -> None:
    events = random_events(seed)
    load(con, events)
    traits = [t for t in all_traits() if t.function == function]
    expected = expected_rows(traits, events)
    assert_same(run(con, traits), expected)
    # the scopes and the data are varied enough to mean something: each trait has rows,
    # and most traits have fewer rows than there are profiles
    assert {r[1] for r in expected} == {t.name for t in traits}


def test_all_traits_in_one_statement_equal_each_alone(con: duckdb.DuckDBPyConnection) -> None:
    events = random_events(4)
    load(con, events)
    traits = all_traits()
    together = run(con, traits)
    assert_same(together, expected_rows(traits, events))
    alone = sorted((row for trait in traits[::7] for row in run(con, [trait])), key=lambda r: (r[0], r[1]))
    assert alone == [r for r in together if r[1] in {t.name for t in traits[::7]}]


def test_one_profile_through_a_parameterized_query_gets_its_batch_rows(con: duckdb.DuckDBPyConnection) -> None:
    load(con, random_events(5))
    traits = all_traits()
    batch = run(con, traits)
    one = run(con, traits, "(SELECT * FROM events WHERE profile_id = ?)", ["P07"])
    assert one and one == [r for r in batch if r[0] == "P07"]
    # the caller's own CTE in front of the statement, as the API and the export write it
    sql, params = traits_sql(traits, "profile_events", REFERENCE)
    rows = con.execute(
        f"WITH profile_events AS MATERIALIZED (SELECT * FROM events WHERE profile_id = ?) {sql} ORDER BY profile_id, name", ["P07", *params]
    ).fetchall()
    assert [(p, n, json.loads(v), a, c) for p, n, v, a, c in rows] == one


def test_filter_values_are_bound_not_written_into_the_sql() -> None:
    trait = TraitConfig(name="quoted", function="count", events=["calls"], where=TraitFilter(topic=["it's", "x') OR (1=1"]))
    sql, params = traits_sql([trait], "events", REFERENCE)
    assert "it's" not in sql and "1=1" not in sql
    assert params == [REFERENCE, "it's", "x') OR (1=1"]


def test_no_events_in_scope_gives_no_row_not_a_zero(con: duckdb.DuckDBPyConnection) -> None:
    events = random_events(6)
    load(con, [*events, {**events[2], "profile_id": "LATE", "occurred_at": REFERENCE + timedelta(seconds=1)}])
    rows = run(con, [TraitConfig(name="n", function="count", events=list(SOURCES))])
    assert "LATE" not in {r[0] for r in rows}
    assert {r[0] for r in rows} == {e["profile_id"] for e in events}


def test_the_rows_have_the_documented_types(con: duckdb.DuckDBPyConnection) -> None:
    load(con, random_events(7))
    for traits in (all_traits()[:3], []):
        sql, params = traits_sql(traits, "events", REFERENCE)
        con.execute(f"CREATE OR REPLACE TEMP TABLE t AS {sql}", params)
        columns = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't'").fetchall()
        assert columns == [
            ("profile_id", "VARCHAR"),
            ("name", "VARCHAR"),
            ("value", "JSON"),
            ("as_of", "TIMESTAMP"),
            ("event_count", "BIGINT"),
        ]


def test_rerunning_gives_byte_identical_rows(con: duckdb.DuckDBPyConnection) -> None:
    load(con, random_events(8, profiles=5, events=3000))
    traits = [t for t in all_traits() if t.function in ("sum", "avg")]
    sql, params = traits_sql(traits, "events", REFERENCE)
    first = con.execute(f"{sql} ORDER BY ALL", params).fetchall()
    # the same events in another physical order: threads see other partial sums
    con.execute("CREATE OR REPLACE TABLE events AS SELECT * FROM events ORDER BY hash(event_id)")
    assert con.execute(f"{sql} ORDER BY ALL", params).fetchall() == first

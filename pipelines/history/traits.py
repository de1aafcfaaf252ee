"""Traits: values derived from a profile's events ("orders in the last 90 days", "last
channel used"), as one DuckDB SELECT for every configured trait.

SQL rather than Python because the batch derives them for every profile at once (millions
of events); the API runs the same statement over one profile's events, so both agree by
construction. Semantics (docs/customer360.md, issue 21):

- Every trait reads the events at or before the reference time; ``window_days`` keeps
  those after ``reference - window_days`` days. An event from after the reference time
  does not exist yet for the traits, so a rerun at the same reference gives the same rows.
- A field function uses the events whose field has a value (and, for the numeric ones, a
  number): ``as_of`` and ``event_count`` describe those events, and a profile without
  any gets no row, as a profile without events in scope gets none.
- ``sum``, ``avg``, ``min`` and ``max`` are numeric on ``amount`` and on attributes (cast
  to DOUBLE; a value that is not a number is left out); ``min`` and ``max`` of a text field
  (type, channel, topic, department, event_id) compare the text, by code point.
- ``sum`` and ``avg`` add exactly, as DECIMAL(38, 9): a sum of DOUBLEs depends on the order
  DuckDB's threads combine partial sums in, and traits must be byte-identical when the
  same events are read again (an undo). A value beyond 1e29 does not fit and is left out.
- ``first``/``last``: the value of the first/last event in (occurred_at, event_source,
  event_id) order. ``most_frequent``: ties go to the value seen most recently, then to the
  smallest value. ``amount`` keeps its number in ``first``, ``last``, ``most_frequent``;
  other fields give text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pipelines.config import EVENT_FIELDS, TraitConfig

#: Event fields holding text; ``amount`` is the one numeric field.
_TEXT_FIELDS = frozenset(EVENT_FIELDS) - {"amount"}
_NUMERIC_FUNCTIONS = frozenset({"sum", "avg", "min", "max"})
_NANO = Decimal("1e-9")  # DECIMAL(38, 9)'s step
_NAME = re.compile(r"^[a-z0-9_]+$")
_EXACT = "DECIMAL(38, 9)"
_DAY_US = 86_400_000_000
_EMPTY = "SELECT NULL::VARCHAR AS profile_id, NULL::VARCHAR AS name, NULL::JSON AS value, NULL::TIMESTAMP AS as_of, NULL::BIGINT AS event_count WHERE false"


def traits_sql(traits: Sequence[TraitConfig], events: str, reference: datetime) -> tuple[str, list[Any]]:
    """One SELECT of every trait of every profile in ``events`` as of ``reference``, and
    its bound parameters: rows ``(profile_id, name, value JSON, as_of, event_count)``.

    ``events`` names a table, a view or a CTE of the caller (or is a parenthesized query)
    with the columns of the profile's events (docs/customer360.md), from our own code. It
    appears once, before any parameter of ours, and the statement starts with SELECT: a
    caller may put ``WITH profile_events AS (... ? ...)`` in front and bind
    ``[*its_params, *params]``. The text does not depend on ``reference``: one statement
    serves every run and every profile."""
    params: list[Any] = [reference]
    selects = [_trait_select(trait, params) for trait in traits]
    body = "\nUNION ALL\n".join(selects) if selects else _EMPTY
    # the shared relation is a CTE inside a subquery, so that the caller's WITH can precede
    # it; NOT MATERIALIZED lets each trait push its own filters into the scan of the events
    sql = (
        "SELECT * FROM (\nWITH __trait_events AS NOT MATERIALIZED (\n"
        "    SELECT e.profile_id, e.event_source, e.event_id, e.occurred_at, e.type, e.channel, e.topic, e.department,"
        " e.amount, e.attributes, r.reference\n"
        f"    FROM {events} AS e CROSS JOIN (SELECT CAST(? AS TIMESTAMP) AS reference) AS r\n"
        "    WHERE e.occurred_at <= r.reference\n"
        ")\n"
        f"{body}\n)"
    )
    return sql, params


def _trait_select(trait: TraitConfig, params: list[Any]) -> str:
    """The rows of one trait; appends its filter values to ``params``."""
    value = _value_sql(trait)
    scope = _scope_sql(trait, params)
    used = f"{scope} AND {value} IS NOT NULL" if value is not None else scope
    name = _literal(trait.name)
    if trait.function == "most_frequent":
        return _most_frequent_sql(name, value or "NULL", used)
    aggregate = _aggregate_sql(trait.function, value or "NULL")
    return (
        f"SELECT profile_id, {name} AS name, to_json({aggregate}) AS value, max(occurred_at) AS as_of, count(*) AS event_count\n"
        f"FROM __trait_events WHERE {used} GROUP BY profile_id"
    )


def _aggregate_sql(function: str, value: str) -> str:
    order = "(occurred_at, event_source, event_id)"
    return {
        "count": "count(*)",
        "sum": f"CAST(sum({value}) AS DOUBLE)",
        "avg": f"CAST(sum({value}) AS DOUBLE) / count(*)",
        "min": f"min({value})",
        "max": f"max({value})",
        "first": f"arg_min({value}, {order})",
        "last": f"arg_max({value}, {order})",
        "count_distinct": f"count(DISTINCT {value})",
        "days_since_last": f"min(epoch_us(reference) - epoch_us(occurred_at)) // {_DAY_US}",
    }[function]


def _most_frequent_sql(name: str, value: str, used: str) -> str:
    """The value most events have; ties: the one seen last, then the smallest."""
    return (
        f"SELECT profile_id, {name} AS name, to_json(arg_min(value, (-n, -epoch_us(latest), value))) AS value,"
        " max(latest) AS as_of, CAST(sum(n) AS BIGINT) AS event_count\n"
        f"FROM (SELECT profile_id, {value} AS value, count(*) AS n, max(occurred_at) AS latest"
        f" FROM __trait_events WHERE {used} GROUP BY profile_id, value) GROUP BY profile_id"
    )


def _value_sql(trait: TraitConfig) -> str | None:
    """The SQL of the value the trait's function reads; None for count and days_since_last."""
    field = trait.field
    if field is None:
        return None
    if field in _TEXT_FIELDS:
        value = f'"{field}"'
        if trait.function in ("sum", "avg"):
            value = f"TRY_CAST({value} AS DOUBLE)"
    elif field == "amount":
        value = '"amount"'
    else:
        value = f'("attributes" ->> {_literal(field)})'
        if trait.function in _NUMERIC_FUNCTIONS:
            value = f"TRY_CAST({value} AS DOUBLE)"
    return f"TRY_CAST({value} AS {_EXACT})" if trait.function in ("sum", "avg") else value


def _scope_sql(trait: TraitConfig, params: list[Any]) -> str:
    """The condition of the events the trait reads: its sources, filters and window."""
    conditions = [f"event_source IN ({', '.join(_literal(source) for source in trait.events)})"]
    for field, allowed in trait.where.model_dump(exclude_none=True).items():
        if field not in _TEXT_FIELDS:
            raise ValueError(f"trait {trait.name!r}: cannot filter on {field!r}")
        conditions.append(f'"{field}" IN ({", ".join("?" * len(allowed))})')
        params.extend(allowed)
    if trait.window_days is not None:
        conditions.append(f"occurred_at > reference - to_days({int(trait.window_days)})")
    return " AND ".join(conditions)


def _literal(name: str) -> str:
    """A name from validated config ([a-z0-9_]+: no quote can occur) as an SQL string literal."""
    if not _NAME.match(name):
        raise ValueError(f"refusing to use {name!r} as a trait, event source or attribute name in SQL")
    return f"'{name}'"


# ---- the same definitions in Python, for one profile's few events (the API's card) -----------

#: A trait's row: (profile id, name, value, as of, event count), the value as the SQL's JSON reads.
TraitRow = tuple[str, str, Any, datetime, int]


def traits_python(traits: Sequence[TraitConfig], events: Sequence[Mapping[str, Any]], reference: datetime) -> list[TraitRow]:
    """:func:`traits_sql`'s rows computed in Python, for the few events of one profile: the
    statement costs more to plan than a card's other reads together, this a fraction of a
    millisecond. ``events``: rows of the profile's events relation with ``attributes`` a
    dict. tests/pipelines/history/test_traits.py holds the two equal on random events, for
    every function, window and filter."""
    rows: list[TraitRow] = []
    profiles = sorted({str(e["profile_id"]) for e in events})
    by_profile = {profiles[0]: events} if len(profiles) == 1 else {p: [e for e in events if e["profile_id"] == p] for p in profiles}
    for trait in traits:
        plan = _plan(trait)
        in_scope = plan.scope(reference)
        for profile in profiles:
            used = [e for e in by_profile[profile] if in_scope(e)]
            values: list[Any] = []
            if plan.read is not None:
                read = [(e, value) for e in used if (value := plan.read(e)) is not None]
                used, values = [e for e, _ in read], [value for _, value in read]
            if used:
                rows.append((profile, trait.name, _value(trait, used, values, reference), max(e["occurred_at"] for e in used), len(used)))
    return sorted(rows, key=lambda r: (r[0], r[1]))


class _Plan:
    """What a definition reads, worked out once rather than on every card: its sources,
    window and filters, and how its field's value is read from an event."""

    def __init__(self, trait: TraitConfig):
        self.trait = trait
        self.sources = frozenset(trait.events)
        self.window = timedelta(days=trait.window_days) if trait.window_days is not None else None
        self.where = tuple((field, frozenset(allowed)) for field, allowed in trait.where.model_dump(exclude_none=True).items())
        self.read: Callable[[Mapping[str, Any]], Any] | None = None if trait.field is None else self._reader(trait)

    def scope(self, reference: datetime) -> Callable[[Mapping[str, Any]], bool]:
        """Whether an event counts for the trait at ``reference``."""
        sources, where = self.sources, self.where
        since = reference - self.window if self.window is not None else None

        def in_scope(event: Mapping[str, Any]) -> bool:
            at = event["occurred_at"]
            if event["event_source"] not in sources or at > reference or (since is not None and at <= since):
                return False
            return all(event[field] in allowed for field, allowed in where)

        return in_scope

    @staticmethod
    def _reader(trait: TraitConfig) -> Callable[[Mapping[str, Any]], Any]:
        """The field's value as the SQL reads it, None when the function cannot use it."""
        field = str(trait.field)
        attribute = field not in _TEXT_FIELDS and field != "amount"
        numeric = field == "amount" or (attribute and trait.function in ("min", "max")) or trait.function in ("sum", "avg")
        finite = trait.function in ("sum", "avg")  # they add as DECIMAL, which has no NaN or infinity: such a value is left out

        def read(event: Mapping[str, Any]) -> Any:
            if attribute:
                raw = (event["attributes"] or {}).get(field)
                value = None if raw is None else str(raw)  # ->> gives a JSON number's text
            else:
                value = event[field]
            if value is None or not numeric:
                return value
            try:
                number = float(value)
            except ValueError:
                return None
            return None if finite and (math.isnan(number) or math.isinf(number)) else number

        return read


_PLANS: dict[int, _Plan] = {}


def _plan(trait: TraitConfig) -> _Plan:
    """The definition's plan, made once per definition (a config's are read for its life)."""
    plan = _PLANS.get(id(trait))
    if plan is None or plan.trait is not trait:
        if len(_PLANS) >= 4096:  # configs loaded again and again (tests): start over
            _PLANS.clear()
        plan = _PLANS[id(trait)] = _Plan(trait)
    return plan


def _value(trait: TraitConfig, used: list[Mapping[str, Any]], values: list[Any], reference: datetime) -> Any:
    function = trait.function
    if function == "count":
        return len(used)
    if function == "days_since_last":
        return (reference - max(e["occurred_at"] for e in used)) // timedelta(days=1)
    if function in ("sum", "avg"):
        total = sum(Decimal(repr(v)).quantize(_NANO) for v in values)
        return float(total) if function == "sum" else float(total) / len(values)
    if function in ("min", "max"):
        return min(values) if function == "min" else max(values)
    if function == "count_distinct":
        return len(set(values))
    order = sorted(range(len(used)), key=lambda i: (used[i]["occurred_at"], used[i]["event_source"], used[i]["event_id"]))
    if function in ("first", "last"):
        return values[order[0] if function == "first" else order[-1]]
    counts = Counter(values)
    latest = {v: max(e["occurred_at"] for e, w in zip(used, values) if w == v) for v in counts}
    return min(counts, key=lambda v: (-counts[v], -latest[v].timestamp(), v))

"""The scoring statement and the veto condition evaluated row by row in Python
(pipelines.matching.rowwise, a live record's few pairs) give what DuckDB gives for the same SQL:
the same level of every comparison, weights within 1e-12 and probabilities within 1e-9,
on every pair the demo's run stored and on pairs it never considered."""

from __future__ import annotations

import random
from typing import Any

import duckdb
import pytest

from pipelines.config import load_config
from pipelines.matching import rowwise
from pipelines.matching.blocking import identifier_column
from pipelines.matching.scoring import pairs_sql, score_sql
from pipelines.matching.vetoes import VETO_RULES, identifier_overrides, veto_sql
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.store import Store, ident
from tests.conftest import DemoRun

WEIGHT_TOLERANCE = 1e-12
PROBABILITY_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def identifiers(small_demo: DemoRun) -> list[str]:
    return load_config(small_demo.manifest.config_path).shared_identifiers()


@pytest.fixture(scope="module")
def linkable(identifiers: list[str]) -> str:
    """The published records as the model reads them (identifiers pivoted as max(value))."""
    pivots = "".join(
        f", list_max([i.value FOR i IN identifiers IF i.kind = '{name}']) AS {ident(identifier_column(name))}" for name in identifiers
    )
    return f"SELECT record_key, {', '.join(MATCH_COLUMNS)}{pivots} FROM records"


def _candidates(store: Store) -> str:
    """Every stored pair, the pairs with first and last name swapped, and 3,000 pairs of
    records picked at random (most never a candidate: the levels of disagreement)."""
    keys = [k for (k,) in store.rows("SELECT record_key FROM records ORDER BY record_key")]
    rng = random.Random(7)
    extra = sorted({tuple(sorted(rng.sample(keys, 2))) for _ in range(3000)})
    values = ", ".join(f"('{a}', '{b}')" for a, b in extra)  # keys from our own demo: source:digits
    swapped = """SELECT l.record_key, r.record_key FROM records l JOIN records r
                 ON l.first_name_std = r.last_name_std AND l.last_name_std = r.first_name_std AND l.record_key < r.record_key"""
    return f"""SELECT record_key_l, record_key_r FROM pairs UNION {swapped}
               UNION SELECT * FROM (VALUES {values}) v(record_key_l, record_key_r)"""


#: Records whose names are swapped or missing (rare in the demo), so that every level is reached.
SWAPPED = """SELECT * FROM (VALUES
                 ('x:1', 'pieter', 'p', 'jansen', DATE '1970-01-02', NULL, NULL, NULL, NULL),
                 ('x:2', 'jansen', 'j', 'pieter', DATE '1970-01-02', NULL, NULL, NULL, NULL),
                 ('x:3', 'pieter', 'p', NULL, NULL, NULL, NULL, NULL, NULL),
                 ('x:4', 'anna', 'a', 'bos', NULL, '1234AB', '1', 'amsterdam', 'dorpsstraat'),
                 ('x:5', 'anna', 'a', 'bos', NULL, '1234AB', '2', 'rotterdam', 'kerkweg'))
             t(record_key, first_name_std, first_initial, last_name_std, dob, postcode_std, house_number_std, city_std, street_std)"""


#: Addresses with a second line and a region (the demo has neither) and near misses, so
#: that every level of the address and locality comparisons is reached.
ADDRESSES = """SELECT * FROM (VALUES
                 ('x:6', '1234AB', '7', 'dorpsstraat', 'villa rosa', 'amsterdam', 'nh'),
                 ('x:7', '1234AC', '7', 'dorpsstraat', NULL, 'amsterdam', 'nh'),
                 ('x:8', '5555XX', '7', 'other', 'villa rosa', 'utrecht', 'nh'),
                 ('x:9', '5555XY', '9', 'dorpsstraat', NULL, 'amsterdan', NULL),
                 ('x:10', '1234AD', '3', 'markt', NULL, 'amsterdam', NULL))
             t(record_key, postcode_std, house_number_std, street_std, address_line2_std, city_std, region_std)"""


def test_every_pair_scores_as_duckdb_scores_it(store: Store, model: dict[str, Any], linkable: str) -> None:
    records = f"{linkable} UNION ALL BY NAME {SWAPPED} UNION ALL BY NAME {ADDRESSES}"
    candidates = (
        f"{_candidates(store)} UNION VALUES ('x:1', 'x:2'), ('x:1', 'x:3'), ('x:4', 'x:5'), ('x:6', 'x:7'), "
        "('x:6', 'x:8'), ('x:6', 'x:9'), ('x:10', 'x:7'), ('x:10', 'x:6')"
    )
    relation = pairs_sql(model, records, records, candidates=candidates)
    inputs = store.dicts(f"SELECT * FROM {relation}")
    by_duckdb = {(r["record_key_l"], r["record_key_r"]): r for r in store.dicts(score_sql(model, relation))}
    scorer = rowwise.scorer(score_sql(model, relation))
    assert scorer is not None, "the demo's model uses SQL the row-wise evaluator does not know"
    by_python = scorer.score(inputs)
    assert len(by_python) == len(by_duckdb) > store.scalar("SELECT count(*) FROM pairs") + 2000
    assert scorer.columns == list(next(iter(by_duckdb.values())))
    levels_seen: set[tuple[str, Any]] = set()
    for row in by_python:
        expected = by_duckdb[(row["record_key_l"], row["record_key_r"])]
        for column, value in row.items():
            if column.startswith("gamma_") or column.startswith("record_key"):
                assert value == expected[column], (column, row, expected)
                levels_seen.add((column, value))
            elif column == "match_probability":
                assert value == pytest.approx(expected[column], abs=PROBABILITY_TOLERANCE, rel=0)
            else:
                assert value == pytest.approx(expected[column], abs=WEIGHT_TOLERANCE, rel=0), (column, row, expected)
    # every level of every comparison was reached by some pair: none went untested
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        reached = {v for c, v in levels_seen if c == f"gamma_{name}"}
        assert len(reached) == len(comparison["comparison_levels"]), (name, sorted(reached))


CRAFTED = """SELECT * FROM (VALUES
        ('a', DATE '1980-03-04', 'jan', 'j', 'vries'),
        ('b', DATE '1980-04-03', 'jan', 'j', 'vries'),
        ('c', DATE '1980-03-05', 'johan', 'j', 'vries'),
        ('d', DATE '1981-03-04', 'piet', 'p', 'vries'),
        ('e', DATE '1908-03-04', 'j', 'j', 'vries'),
        ('f', DATE '1975-11-30', 'vries', 'v', 'jan'),
        ('g', NULL, NULL, NULL, 'vries'),
        ('h', DATE '0999-01-02', 'zoë', 'z', 'müller'),
        ('i', DATE '0999-01-20', 'zoe', 'z', 'muller'),
        ('k', DATE '2001-12-31', '', '', '')
    ) t(record_key, dob, first_name_std, first_initial, last_name_std)"""


def test_the_veto_condition_holds_for_the_pairs_duckdb_vetoes(
    store: Store, model: dict[str, Any], identifiers: list[str], linkable: str
) -> None:
    sql = veto_sql(sorted(VETO_RULES), identifier_overrides(model, identifiers))
    vetoes = rowwise.condition(sql)
    assert vetoes is not None
    columns = ["record_key", *MATCH_COLUMNS, *(identifier_column(n) for n in identifiers)]
    records = store.dicts(f"{linkable} UNION ALL BY NAME {CRAFTED}")
    by_key = {r["record_key"]: {c: r.get(c) for c in columns} for r in records}
    # pairs sharing a birth date or a surname (where conflicts and near misses are), and the crafted rows
    pairs = store.rows(
        f"""WITH recs AS ({linkable} UNION ALL BY NAME {CRAFTED})
            SELECT l.record_key, r.record_key, coalesce({sql}, false) FROM recs l JOIN recs r
            ON l.record_key < r.record_key AND (l.dob = r.dob OR l.last_name_std = r.last_name_std OR length(l.record_key) = 1)"""
    )
    assert len(pairs) > 10_000 and sum(v for _, _, v in pairs) > 100
    for a, b, expected in pairs:
        row = {**{f"{c}_l": v for c, v in by_key[a].items()}, **{f"{c}_r": v for c, v in by_key[b].items()}}
        assert (vetoes(row) is True) == expected, (a, b)


def test_string_functions_work_on_characters_as_duckdb_s() -> None:
    rng = random.Random(3)
    alphabet = "abcdeéüijklmnzoë-' "
    pairs = [
        ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))), "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        for _ in range(5000)
    ]
    pairs += [("", ""), ("", "a"), ("martha", "marhta"), ("zoë", "zoe")]
    expression = rowwise.condition("jaro_winkler_similarity(l.s, r.s) + damerau_levenshtein(l.s, r.s) + length(l.s) + length(left(l.s, 3))")
    assert expression is not None
    with duckdb.connect() as con:
        expected = con.execute(
            """SELECT jaro_winkler_similarity(a, b) + damerau_levenshtein(a, b) + length(a) + length(left(a, 3))
               FROM (SELECT unnest(?) AS a, unnest(?) AS b)""",
            [[a for a, _ in pairs], [b for _, b in pairs]],
        ).fetchall()
    for (a, b), (value,) in zip(pairs, expected):
        assert expression({"s_l": a, "s_r": b}) == value, (a, b)


def test_sql_it_does_not_know_is_left_to_duckdb() -> None:
    assert rowwise.condition("regexp_matches(l.name, 'a+')") is None
    assert rowwise.condition("CAST(l.x AS VARCHAR) = r.x") is None
    assert rowwise.scorer("SELECT a FROM t WHERE a > 1") is None
    assert rowwise.condition("l.x = r.x AND l.y IS NULL") is not None

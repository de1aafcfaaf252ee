"""Scoring pairs outside splink (for real-time ingest): every pair the batch run stored
scores the same from the published records, the saved model and the run's term
frequencies, within 1e-9."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import load_config
from pipelines.matching.blocking import identifier_column
from pipelines.matching.comparisons import level_sql
from pipelines.matching.scoring import _cheap_part, bound_sql, pairs_sql, score_sql, term_frequencies_relation, tf_columns
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.store import Store, ident
from tests.conftest import DemoRun

TOLERANCE = 1e-9
STORED_PAIRS = "SELECT record_key_l, record_key_r FROM pairs"


@pytest.fixture(scope="module")
def records_sql(small_demo: DemoRun) -> str:
    """The published records as the run linked them: identifiers pivoted into columns as
    max(value) per kind (see pipelines.batch.link.prepare_linkable)."""
    identifiers = load_config(small_demo.manifest.config_path).shared_identifiers()
    pivots = "".join(
        f", list_max([i.value FOR i IN identifiers IF i.kind = '{name}']) AS {ident(identifier_column(name))}" for name in identifiers
    )
    return f"SELECT record_key, {', '.join(MATCH_COLUMNS)}{pivots} FROM records"


def _scored_against_stored(store: Store, model: dict[str, Any], pairs: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Score ``pairs`` and join the stored pair (keys in the stored order) as ``stored_*``.
    Returns (compared columns, rows)."""
    stored = [c for c in store.columns("pairs") if c.startswith("mw_")] + ["match_weight", "match_probability"]
    columns = ", ".join(f"p.{ident(c)} AS {ident('stored_' + c)}" for c in stored)
    sql = f"""SELECT s.*, {columns}
              FROM ({score_sql(model, pairs)}) s
              JOIN pairs p ON p.record_key_l = least(s.record_key_l, s.record_key_r)
                          AND p.record_key_r = greatest(s.record_key_l, s.record_key_r)"""
    return stored, store.dicts(sql)


def _assert_same(columns: list[str], rows: list[dict[str, Any]]) -> None:
    for row in rows:
        for column in columns:
            assert row[column] == pytest.approx(row["stored_" + column], abs=TOLERANCE, rel=0), (column, row)


def test_every_stored_pair_scores_as_the_run_scored_it(store: Store, model: dict[str, Any], records_sql: str) -> None:
    pairs = pairs_sql(model, records_sql, records_sql, candidates=STORED_PAIRS)
    columns, rows = _scored_against_stored(store, model, pairs)
    assert len(rows) == store.scalar("SELECT count(*) FROM pairs") > 1000
    names = [c["output_column_name"] for c in model["comparisons"]]
    tf_names = [n for n in names if f"mw_tf_adj_{n}" in columns]
    assert set(columns) == {"match_weight", "match_probability", *(f"mw_{n}" for n in names), *(f"mw_tf_adj_{n}" for n in tf_names)}
    assert set(rows[0]) - {f"stored_{c}" for c in columns} == {"record_key_l", "record_key_r", *columns, *(f"gamma_{n}" for n in names)}
    assert tf_names and all(any(r[f"mw_tf_adj_{n}"] != 0 for r in rows) for n in tf_names), "tf adjustments are exercised"
    _assert_same(columns, rows)


def test_the_comparison_vector_is_the_model_s_levels(store: Store, model: dict[str, Any], records_sql: str) -> None:
    names = [c["output_column_name"] for c in model["comparisons"]]
    pairs = pairs_sql(model, records_sql, records_sql, candidates=STORED_PAIRS)
    levels = ", ".join(f"{sql} AS level_{i}" for i, sql in enumerate(level_sql(model)))
    rows = store.dicts(f"SELECT s.*, {levels} FROM {pairs} p JOIN ({score_sql(model, pairs)}) s USING (record_key_l, record_key_r)")
    assert rows and all(r[f"gamma_{n}"] == r[f"level_{i}"] for r in rows for i, n in enumerate(names))


def test_swapping_left_and_right_gives_the_same_score(store: Store, model: dict[str, Any], records_sql: str) -> None:
    swapped = "SELECT record_key_r AS record_key_l, record_key_l AS record_key_r FROM pairs"
    columns, rows = _scored_against_stored(store, model, pairs_sql(model, records_sql, records_sql, candidates=swapped))
    assert rows and all(r["record_key_l"] > r["record_key_r"] for r in rows)
    _assert_same(columns, rows)


def test_a_pair_never_a_candidate_gets_a_finite_score(store: Store, model: dict[str, Any], records_sql: str) -> None:
    first = store.scalar("SELECT min(record_key) FROM records")
    left = f"{records_sql} WHERE record_key = '{first}'"
    right = f"{records_sql} WHERE record_key NOT IN (SELECT record_key_r FROM pairs WHERE record_key_l = '{first}')"
    rows = store.dicts(f"SELECT * FROM ({score_sql(model, pairs_sql(model, left, right))}) ORDER BY record_key_r LIMIT 500")
    assert len(rows) == 500 and all(r["record_key_l"] == first != r["record_key_r"] for r in rows)
    for row in rows:
        assert math.isfinite(row["match_weight"]) and 0.0 <= row["match_probability"] <= 1.0


def test_term_frequencies_hold_each_distinct_value_of_each_tf_column(store: Store, model: dict[str, Any]) -> None:
    columns = tf_columns(model)
    in_model = {lv["tf_adjustment_column"] for c in model["comparisons"] for lv in c["comparison_levels"] if lv.get("tf_adjustment_column")}
    assert columns and set(columns) == in_model
    stats = {name: (n, total) for name, n, total in store.rows("SELECT column_name, count(*), sum(tf) FROM term_frequencies GROUP BY ALL")}
    assert set(stats) == set(columns)
    for column in columns:
        distinct = store.scalar(f"SELECT count(DISTINCT {ident(column)}) FROM records")
        assert stats[column][0] == distinct
        assert stats[column][1] == pytest.approx(1.0, abs=TOLERANCE)
    assert store.scalar("SELECT count(*) FROM (SELECT DISTINCT column_name, value FROM term_frequencies)") == sum(
        n for n, _ in stats.values()
    )


def test_a_store_without_term_frequencies_scores_without_tf_adjustments(
    store: Store, model: dict[str, Any], records_sql: str, tmp_path: Path
) -> None:
    assert term_frequencies_relation(store) == "term_frequencies"
    with Store.open(tmp_path / "old.duckdb") as old:  # a store whose run predates the table
        none = term_frequencies_relation(old)
        assert old.scalar(f"SELECT count(*) FROM {none}") == 0
    pairs = pairs_sql(model, records_sql, records_sql, candidates=STORED_PAIRS, term_frequencies=none)
    columns, rows = _scored_against_stored(store, model, pairs)
    tf = [c for c in columns if c.startswith("mw_tf_adj_")]
    assert tf and all(r[c] == 0.0 for r in rows for c in tf)
    _assert_same([c for c in columns if c.startswith("mw_") and c not in tf], rows)


def test_the_bound_is_never_below_the_score_and_leaves_out_most_candidates(
    store: Store, model: dict[str, Any], records_sql: str, small_demo: DemoRun
) -> None:
    """A bulk file's pairs are scored only when their bound (bound_sql: string similarities
    left out, the best level they could still reach taken instead) reaches the review
    band. On every stored pair, every pair sharing a birth date or a postcode (what the
    blocking rules hand a bulk file) and 3,000 random pairs: the bound's weight is at
    least the score's, so no pair at or above the threshold is dropped; and it drops
    most of the others, or it would not be worth its statement."""
    keys = [k for (k,) in store.rows("SELECT record_key FROM records ORDER BY record_key")]
    rng = random.Random(11)
    randoms = ", ".join(f"('{a}', '{b}')" for a, b in sorted({tuple(sorted(rng.sample(keys, 2))) for _ in range(3000)}))
    candidates = f"""SELECT record_key_l, record_key_r FROM pairs
        UNION SELECT l.record_key, r.record_key FROM records l JOIN records r
              ON (l.dob = r.dob OR l.postcode_std = r.postcode_std) AND l.record_key < r.record_key
        UNION SELECT * FROM (VALUES {randoms}) v(record_key_l, record_key_r)"""
    pairs = pairs_sql(model, records_sql, records_sql, candidates=candidates)
    bound = bound_sql(model, pairs)
    assert bound is not None, "the demo's model has string similarities to leave out"
    rows = store.rows(
        f"""SELECT s.match_weight, s.match_probability, b.match_weight, b.match_probability
            FROM ({score_sql(model, pairs)}) s JOIN ({bound}) b USING (record_key_l, record_key_r)"""
    )
    assert len(rows) > store.scalar("SELECT count(*) FROM pairs") + 2500
    assert all(bound_weight >= weight - TOLERANCE for weight, _, bound_weight, _ in rows)
    threshold = load_config(small_demo.manifest.config_path).matching.review_threshold
    kept = [r for r in rows if r[1] >= threshold]
    assert kept and all(r[3] >= threshold for r in kept)
    dropped = sum(1 for r in rows if r[3] < threshold)
    assert dropped > 0.5 * (len(rows) - len(kept)), (dropped, len(rows), len(kept))


@pytest.mark.parametrize(
    ("condition", "cheap"),
    [
        ('"a_l" = "a_r" AND jaro_winkler_similarity("b_l", "b_r") >= 0.9', '"a_l" = "a_r" AND TRUE'),
        ('("a_l" = "a_r" OR damerau_levenshtein("b_l", "b_r") <= 1) AND "c_l" = "c_r"', '("a_l" = "a_r" OR TRUE) AND "c_l" = "c_r"'),
        ('jaro_winkler_similarity("b_l", "b_r") >= 0.9', "TRUE"),
        ('NOT (jaro_winkler_similarity("b_l", "b_r") >= 0.9) AND "a_l" = "a_r"', "TRUE"),
        ('"a_l" = "a_r"', None),
    ],
)
def test_the_cheap_part_of_a_condition_holds_whenever_it_does(condition: str, cheap: str | None) -> None:
    assert _cheap_part(condition) == cheap

"""Explaining a pair: the level each comparison reached and the exact weights the run
used (stored pairs), or splink's own weights for the model (pairs never scored)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from splink import DuckDBAPI, Linker

from pipelines.config import load_config
from pipelines.matching.comparisons import identifier
from pipelines.matching.explain import Explanation, explain_pairs
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.store import Store
from tests.conftest import DemoRun

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def identifiers(small_demo: DemoRun) -> list[str]:
    return load_config(small_demo.manifest.config_path).shared_identifiers()


def _level_weights(model: dict[str, Any], comparison: str) -> dict[str, float]:
    """log2(m/u) per trained level label of one comparison (null level: 0)."""
    levels = next(c for c in model["comparisons"] if c["output_column_name"] == comparison)["comparison_levels"]
    return {
        level["label_for_charts"]: 0.0 if level.get("is_null_level") else math.log2(level["m_probability"] / level["u_probability"])
        for level in levels
        if level.get("is_null_level") or ("m_probability" in level and "u_probability" in level)
    }


def _assert_adds_up(e: Explanation) -> None:
    total = e.prior_weight + sum(c.match_weight + c.tf_adjustment for c in e.comparisons)
    assert total == pytest.approx(e.match_weight, abs=TOLERANCE)


def test_every_stored_pair_is_explained_with_the_run_s_numbers(store: Store, model: dict[str, Any], identifiers: list[str]) -> None:
    stored = store.dicts("SELECT * FROM pairs ORDER BY pair_id")
    assert len(stored) > 1000
    explanations = explain_pairs(store, model, identifiers, [(p["record_key_l"], p["record_key_r"]) for p in stored])
    names = [c["output_column_name"] for c in model["comparisons"]]
    weights = {name: _level_weights(model, name) for name in names}
    for levels in weights.values():  # a level's weight identifies it (untrained levels weigh 0, as the null level)
        observed = [w for label, w in levels.items() if w != 0.0]
        assert len({round(w, 9) for w in observed}) == len(observed)
    reached: set[tuple[str, str]] = set()
    for pair, e in zip(stored, explanations):
        assert e is not None and e.scored_in_run
        assert (e.record_key_l, e.record_key_r) == (pair["record_key_l"], pair["record_key_r"])
        assert e.match_weight == pair["match_weight"] and e.match_probability == pair["match_probability"]
        _assert_adds_up(e)
        assert [c.comparison for c in e.comparisons] == names
        for c in e.comparisons:
            # the stored weight is the model weight of the level our SQL says was reached
            assert c.match_weight == pytest.approx(weights[c.comparison][c.level], abs=TOLERANCE), (pair["pair_id"], c)
            assert c.tf_adjustment == (pair.get(f"mw_tf_adj_{c.comparison}") or 0.0)
            assert (c.level_value == -1) == (c.level == "missing on either side")
            reached.add((c.comparison, c.level))
    # enough variety that the weights tell the levels apart, not only exact agreement
    assert len(reached) >= 20


def test_a_pair_never_scored_gets_splink_s_weights(store: Store, model: dict[str, Any], identifiers: list[str]) -> None:
    """Unscored pairs, among them same postcode with another house number: a level whose
    m-probability training never estimated (splink scores it with its default m)."""
    unscored = "NOT EXISTS (SELECT 1 FROM pairs p WHERE p.record_key_l = a.record_key AND p.record_key_r = b.record_key)"
    shares = [
        "a.last_name_std = b.last_name_std",
        "a.dob = b.dob",
        "left(a.postcode_std, 4) = left(b.postcode_std, 4)",
        "a.postcode_std = b.postcode_std AND a.house_number_std <> b.house_number_std",
    ]
    candidates = [
        (str(a), str(b))
        for a, b in store.rows(
            " UNION ".join(
                f"""(SELECT a.record_key, b.record_key FROM records a JOIN records b
                     ON a.record_key < b.record_key AND {condition} WHERE {unscored}
                     ORDER BY hash(a.record_key || b.record_key) LIMIT 20)"""
                for condition in shares
            )
        )
    ]
    explanations = explain_pairs(store, model, identifiers, candidates)
    by_splink = _splink_scores(store, model, candidates)
    reached = {(c.comparison, c.level) for e in explanations if e for c in e.comparisons}
    assert ("address", "postcode, other house number") in reached
    for pair, e in zip(candidates, explanations):
        assert e is not None and not e.scored_in_run
        _assert_adds_up(e)
        assert all(c.tf_adjustment == 0.0 for c in e.comparisons)
        assert e.match_probability == pytest.approx(1 / (1 + 2**-e.match_weight), rel=1e-12)
        row = by_splink[pair]
        tf = sum(v for k, v in row.items() if k.startswith("mw_tf_adj_"))
        assert e.match_weight == pytest.approx(row["match_weight"] - tf, abs=TOLERANCE)
        for c in e.comparisons:
            assert c.level_value == row[f"gamma_{c.comparison}"]
            assert c.match_weight == pytest.approx(row[f"mw_{c.comparison}"], abs=TOLERANCE)


def _splink_scores(store: Store, model: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """splink's own scoring of ``pairs`` with ``model`` (score_pairs on the records)."""
    columns = ", ".join(["record_key", *MATCH_COLUMNS])
    db = DuckDBAPI()
    linker = Linker(db.register(store.arrow(f"SELECT {columns} FROM records")), model)

    def side(keys: set[str]) -> Any:
        return db.register(store.arrow(f"SELECT {columns} FROM records WHERE list_contains(?, record_key)", [sorted(keys)]))

    scored = linker.inference.score_pairs(side({a for a, _ in pairs}), side({b for _, b in pairs})).as_record_list()
    return {(r["record_key_l"], r["record_key_r"]): r for r in scored}


def test_key_order_and_unknown_keys(store: Store, model: dict[str, Any], identifiers: list[str]) -> None:
    (a, b), (c, d) = store.rows("SELECT record_key_l, record_key_r FROM pairs ORDER BY pair_id LIMIT 2")
    forward, backward, unknown, missing, again = explain_pairs(
        store, model, identifiers, [(a, b), (b, a), (a, "nobody:0"), ("nobody:1", "nobody:2"), (c, d)]
    )
    assert forward is not None and forward.scored_in_run and forward == backward
    assert (forward.record_key_l, forward.record_key_r) == (a, b)
    assert unknown is None and missing is None
    assert again is not None and (again.record_key_l, again.record_key_r) == (c, d)
    assert explain_pairs(store, model, identifiers, []) == []


def test_one_query_however_many_pairs(store: Store, model: dict[str, Any], identifiers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(method.__name__)
            return method(*args, **kwargs)

        return wrapper

    keys = [(str(a), str(b)) for a, b in store.rows("SELECT record_key_l, record_key_r FROM pairs ORDER BY pair_id LIMIT 300")]
    for name in ("dicts", "rows", "scalar", "arrow", "execute", "columns"):
        monkeypatch.setattr(store, name, counted(getattr(store, name)))
    counts = []
    for n in (1, 10, 300):
        calls.clear()
        assert all(e is not None for e in explain_pairs(store, model, identifiers, keys[:n]))
        counts.append(len(calls))
    assert counts == [1, 1, 1]


def test_identifiers_are_compared_as_the_run_compared_them() -> None:
    """A shared identifier is the record's highest value of that kind (as
    prepare_linkable pivots it); the model's own levels decide exact or one typo."""
    comparison = identifier("customer_number")
    for level, (m, u) in zip(comparison["comparison_levels"][1:], [(0.9, 0.001), (0.05, 0.0001), (0.05, 0.9989)]):
        level["m_probability"], level["u_probability"] = m, u
    model = {"probability_two_random_records_match": 0.001, "comparisons": [comparison]}
    types = {"dob": "DATE", "surname_tokens": "VARCHAR[]"}
    nulls = ", ".join(f"NULL::{types.get(c, 'VARCHAR')} AS {c}" for c in MATCH_COLUMNS)
    with Store.scratch() as store:
        store.execute(
            f"""CREATE TABLE records AS SELECT key AS record_key, {nulls},
                    ids::STRUCT(kind VARCHAR, value VARCHAR)[] AS identifiers
                FROM (VALUES ('a', [{{'kind': 'customer_number', 'value': 'K001'}}]),
                             ('b', [{{'kind': 'customer_number', 'value': 'K000'}}, {{'kind': 'customer_number', 'value': 'K001'}},
                                    {{'kind': 'loyalty_card', 'value': 'L9'}}]),
                             ('c', [{{'kind': 'customer_number', 'value': 'K011'}}]),
                             ('d', [{{'kind': 'loyalty_card', 'value': 'K001'}}])) t(key, ids)"""
        )
        store.execute(
            """CREATE TABLE pairs AS SELECT 'a' AS record_key_l, 'b' AS record_key_r,
                    3.5::DOUBLE AS match_weight, 0.9::DOUBLE AS match_probability, 13.5::DOUBLE AS mw_customer_number"""
        )
        ab, ac, ad = explain_pairs(store, model, ["customer_number"], [("b", "a"), ("a", "c"), ("d", "a")])
    assert ab is not None and ab.scored_in_run and ab.match_weight == 3.5
    assert [(c.level, c.level_value, c.match_weight) for c in ab.comparisons] == [("exact", 2, 13.5)]
    assert ac is not None and not ac.scored_in_run
    assert [(c.level, c.level_value) for c in ac.comparisons] == [("one character differs or two adjacent swapped", 1)]
    assert ac.comparisons[0].match_weight == pytest.approx(math.log2(0.05 / 0.0001))
    assert ac.match_weight == pytest.approx(math.log2(0.001 / 0.999) + math.log2(0.05 / 0.0001))
    assert ad is not None and [(c.level_value, c.match_weight) for c in ad.comparisons] == [(-1, 0.0)]

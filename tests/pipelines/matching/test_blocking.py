"""Blocking rules are data: the SQL splink gets and the live path's lookups come from the
same terms, and pair the same records."""

from __future__ import annotations

import random
from datetime import date

import duckdb
import pytest

from pipelines.live.match_index import plans_of
from pipelines.matching.blocking import PREDICTION_RULES, BlockingRule, prediction_rules

_COLUMNS = {
    "first_name_std": ["jan", "piet", "vries", "anna"],
    "last_name_std": ["vries", "jan", "bakker", "smit"],
    "first_initial": ["j", "p", "a"],
    "dob": [date(1980, 1, 2), date(1980, 5, 6), date(1991, 1, 2)],
    "postcode_std": ["1234AB", "2345BC"],
    "house_number_std": ["1", "2", "12a"],
    "street_std": ["kerkstraat", "dorpsweg"],
    "city_std": ["utrecht", "gouda"],
    "region_std": ["ut", "zh"],
    "address_line2_std": ["flat 2", "unit 1"],
    "email_std": ["a@x.nl", "b@x.nl"],
    "phone_std": ["+31612345678", "+31687654321"],
}


@pytest.fixture(scope="module")
def records() -> duckdb.DuckDBPyConnection:
    rng = random.Random(5)
    db = duckdb.connect()
    db.execute("CREATE TABLE t (record_key VARCHAR, " + ", ".join(f"{c} {'DATE' if c == 'dob' else 'VARCHAR'}" for c in _COLUMNS) + ")")
    rows = [[f"k{i}", *(rng.choice([*values, None]) for values in _COLUMNS.values())] for i in range(120)]
    db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})", rows)
    return db


@pytest.mark.parametrize("rule", PREDICTION_RULES, ids=lambda r: r.sql())
def test_the_live_lookups_pair_what_the_rules_sql_pairs(rule: BlockingRule, records: duckdb.DuckDBPyConnection) -> None:
    by_sql = set(
        records.execute(
            f"SELECT l.record_key, r.record_key FROM t l JOIN t r ON {rule.sql()} WHERE l.record_key <> r.record_key"
        ).fetchall()
    )
    by_plans: set[tuple[str, str]] = set()
    for plan in plans_of([rule]):  # the new record n on either side of the rule
        condition = " AND ".join(f"{n} = {o}" for n, o in zip(plan.news, plan.stored))
        found = records.execute(
            f"SELECT n.record_key, o.record_key FROM t n JOIN t o ON {condition} WHERE n.record_key <> o.record_key"
        ).fetchall()
        by_plans |= {pair for n_key, o_key in found for pair in ((n_key, o_key), (o_key, n_key))}
    symmetric = by_sql | {(b, a) for a, b in by_sql}
    assert by_sql, "the fixture must give every rule some pairs"
    assert by_plans == symmetric


def test_a_symmetric_rule_is_one_lookup_and_the_swapped_names_rule_two() -> None:
    roles = {rule.sql(): len(rule.roles()) for rule in PREDICTION_RULES}
    assert roles["l.first_name_std = r.last_name_std AND l.last_name_std = r.first_name_std"] == 2
    assert all(n == 1 for sql, n in roles.items() if "first_name_std = r.last_name_std" not in sql)


def test_rules_follow_the_mapped_fields_and_each_shared_identifier_is_a_rule() -> None:
    assert [r.sql() for r in prediction_rules({"phone"}, [])] == ["l.phone_std = r.phone_std"]
    assert [r.sql() for r in prediction_rules(set(), ["customer_no"])] == ["l.id_customer_no = r.id_customer_no"]
    everything = prediction_rules({"name", "date_of_birth", "email", "phone", "address", "locality"}, [])
    assert len(everything) == len(PREDICTION_RULES)

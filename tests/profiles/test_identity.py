from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from profiles.identity import inherit_profile_ids, inherited_sql, mint_profile_ids


def test_profile_ids_are_opaque_base32_and_unique() -> None:
    ids = mint_profile_ids(50_000)
    assert len(set(ids)) == 50_000
    assert all(re.fullmatch(r"p_[a-z2-7]{16}", i) for i in ids)
    assert mint_profile_ids(0) == []


def _random_regrouping(seed: int) -> tuple[dict[str, list[str]], dict[str, str], dict[str, datetime]]:
    """Records of a few old profiles (and some new records) regrouped at random."""
    rng = random.Random(seed)
    keys = [f"r{i:03d}" for i in range(rng.randint(1, 40))]
    old = [f"p_{i}" for i in range(rng.randint(1, 6))]
    was = {k: rng.choice(old) for k in keys if rng.random() < 0.8}
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(f"c{rng.randint(0, 5)}", []).append(key)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    created = {p: start + timedelta(days=rng.randint(0, 3)) for p in old if rng.random() < 0.8}  # ties and unknowns too
    return groups, was, created


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


@pytest.mark.parametrize("seed", range(150))
def test_the_batch_sql_and_the_python_rule_keep_the_same_ids(seed: int, db: duckdb.DuckDBPyConnection) -> None:
    groups, was, created = _random_regrouping(seed)
    names, merged = inherit_profile_ids(groups, was, lambda n: [f"new{i}" for i in range(n)], created)
    db.execute("CREATE OR REPLACE TABLE clusters (record_key VARCHAR, cluster_id VARCHAR)")
    db.executemany("INSERT INTO clusters VALUES (?, ?)", [(k, g) for g, ks in groups.items() for k in ks])
    db.execute("CREATE OR REPLACE TABLE previous (record_key VARCHAR, profile_id VARCHAR)")
    for k, p in was.items():
        db.execute("INSERT INTO previous VALUES (?, ?)", [k, p])
    db.execute("CREATE OR REPLACE TABLE created (profile_id VARCHAR, created_at TIMESTAMPTZ)")
    for p, at in created.items():
        db.execute("INSERT INTO created VALUES (?, ?)", [p, at])
    sql = inherited_sql("SELECT * FROM clusters", "SELECT * FROM previous", "SELECT * FROM created")
    inherited = dict(db.execute(sql).fetchall())
    assert inherited == {g: p for g, p in names.items() if not p.startswith("new")}
    # every old profile is kept by one group or redirects to a kept one
    kept = set(inherited.values())
    assert set(was.values()) == kept | {m for ms in merged.values() for m in ms}
    assert set(merged) <= kept


def test_a_group_keeps_the_profile_it_shares_most_records_with_then_the_oldest() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    groups = {"a": ["1", "2", "3"], "b": ["4", "5"], "c": ["6"]}
    was = {"1": "p_old", "2": "p_old", "3": "p_young", "4": "p_young", "5": "p_young", "6": "p_old"}
    names, merged = inherit_profile_ids(groups, was, lambda n: [f"new{i}" for i in range(n)], {"p_old": day, "p_young": day + timedelta(1)})
    assert names == {"a": "p_old", "b": "p_young", "c": "new0"}
    assert merged == {}
    # both profiles at home in one group: the one with most records there, then the older
    names, merged = inherit_profile_ids(
        {"a": ["1", "2", "3", "4"]},
        {"1": "p_young", "2": "p_young", "3": "p_old", "4": "p_old"},
        created={"p_old": day, "p_young": day + timedelta(1)},
    )
    assert names == {"a": "p_old"} and merged == {"p_old": ["p_young"]}

"""The veto rules are written for speed (cheap tests first, in a chain of ANDs); they
must keep the meaning they are documented with, which this test states plainly."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.matching.vetoes import VETO_RULES
from tests.conftest import DemoRun

#: The rules as documented: the dates differ by more than a typo or a day/month swap; the
#: given names clearly differ (another initial, or two full names far apart), unless they
#: are first and last name swapped.
PLAIN: dict[str, str] = {
    "date_of_birth": """l.dob IS NOT NULL AND r.dob IS NOT NULL AND NOT (
        l.dob = r.dob
        OR (year(l.dob) = year(r.dob) AND month(l.dob) = day(r.dob) AND day(l.dob) = month(r.dob))
        OR damerau_levenshtein(strftime(l.dob, '%Y%m%d'), strftime(r.dob, '%Y%m%d')) <= 1)""",
    "first_name": """l.first_name_std IS NOT NULL AND r.first_name_std IS NOT NULL
        AND (l.first_initial <> r.first_initial
             OR (length(l.first_name_std) > 1 AND length(r.first_name_std) > 1
                 AND jaro_winkler_similarity(l.first_name_std, r.first_name_std) < 0.80))
        AND NOT coalesce(jaro_winkler_similarity(l.first_name_std, r.last_name_std) >= 0.92
                         AND jaro_winkler_similarity(l.last_name_std, r.first_name_std) >= 0.92, false)""",
}

CRAFTED = """
    SELECT * FROM (VALUES
        ('a', DATE '1980-03-04', 'jan', 'j', 'vries'),
        ('b', DATE '1980-04-03', 'jan', 'j', 'vries'),      -- day and month swapped
        ('c', DATE '1980-03-05', 'johan', 'j', 'vries'),    -- one digit off; a similar name
        ('d', DATE '1981-03-04', 'piet', 'p', 'vries'),     -- year one off; another initial
        ('e', DATE '1908-03-04', 'j', 'j', 'vries'),        -- two digits swapped; an initial
        ('f', DATE '1975-11-30', 'vries', 'v', 'jan'),      -- first and last name swapped
        ('g', NULL, NULL, NULL, 'vries'),
        ('k', NULL, 'jan', 'j', 'vries'),
        ('h', DATE '1980-03-04', 'jannes', 'j', 'berg'),
        ('i', DATE '1980-03-04', 'jozef', 'j', 'berg')
    ) t(record_key, dob, first_name_std, first_initial, last_name_std)"""


@pytest.mark.parametrize("rule", sorted(VETO_RULES))
def test_veto_rules_mean_what_they_are_documented_to(small_demo: DemoRun, rule: str) -> None:
    assert PLAIN.keys() == VETO_RULES.keys()
    with duckdb.connect(str(small_demo.store_path), read_only=True) as con:
        # the demo's records paired within shared birth dates and surnames, where the
        # conflicts and the near misses are, and every pair of the crafted rows
        con.execute(
            f"""CREATE TEMP TABLE recs AS
                SELECT record_key, dob, first_name_std, first_initial, last_name_std FROM records UNION ALL {CRAFTED}"""
        )
        total, differ, vetoed = con.execute(
            f"""WITH pairs AS (
                    SELECT l.record_key AS kl, r.record_key AS kr FROM recs l JOIN recs r
                    ON l.record_key < r.record_key AND (l.dob = r.dob OR l.last_name_std = r.last_name_std))
                SELECT count(*),
                       count(*) FILTER (WHERE coalesce(({VETO_RULES[rule]}), false) <> coalesce(({PLAIN[rule]}), false)),
                       count(*) FILTER (WHERE coalesce(({PLAIN[rule]}), false))
                FROM pairs JOIN recs l ON l.record_key = pairs.kl JOIN recs r ON r.record_key = pairs.kr"""
        ).fetchall()[0]
    assert total > 10_000 and vetoed > 100  # the comparison saw conflicts, not only agreements
    assert differ == 0

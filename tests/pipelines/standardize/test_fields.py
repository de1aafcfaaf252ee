"""Each plain field's rule in its two engines (pipelines.standardize.fields): the SQL the
batch runs and the Python the live path runs give the same value for every input the
Python takes (an input it leaves to DuckDB raises SqlOnly)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import duckdb
import pytest

from pipelines.standardize.fields import (
    SqlOnly,
    country,
    country_sql,
    dwelling_key,
    dwelling_key_sql,
    gender,
    gender_sql,
    postcode,
    postcode_sql,
    postcode_std,
    postcode_std_sql,
    street_parts,
    street_sql,
    words,
    words_sql,
)

#: (name, SQL writer, Python function, values): the rules of one column.
RULES: list[tuple[str, Callable[[str], str], Callable[[str | None], Any], list[str | None]]] = [
    ("words", words_sql, words, [None, "", "  ", "Den Haag", "'s-Hertogenbosch", "Zürich", "Flat 2/B", "ÅLESUND", "a--b", "Straße"]),
    ("country", country_sql, country, [None, "nl", " NL ", "Nederland", "the netherlands", "Belgium", "UK", "Atlantis", "", "B"]),
    ("gender", gender_sql, gender, [None, "M", "man", "Vrouw", "mevr", "x", "", "Female", "dhr"]),
    ("postcode", postcode_sql, postcode, [None, "1234ab", "1234 AB", " 1234AB ", "SW1A 1AA", "3000", "12345", "", "ab 12"]),
    ("postcode_std", postcode_std_sql, postcode_std, [None, "1234 ab", "SW1A-1AA", "", " - ", "3000"]),
]

STREETS = [
    ("12 oak street", None),
    ("12a Oak Street", None),
    ("Kerkstraat 12", None),
    ("Kerkstraat 12a", "12a"),
    ("Kerkstraat 12", "14"),
    ("2e Helmersstraat", None),
    ("2e Helmersstraat 7", None),
    ("Villa 2", "8"),
    ("12", None),
    (None, "5"),
    ("Straße 3", None),
    ("12 oak street 5", None),
    ("  ", "1"),
    ("12-14 Main Rd", None),
]


@pytest.mark.parametrize(("street", "house_number"), STREETS)
def test_house_numbers_in_street_lines_read_alike_in_sql_and_python(street: str | None, house_number: str | None) -> None:
    street_std, house_number_std = street_sql("s", "h")
    with duckdb.connect() as con:
        sql = f"SELECT {street_std}, {house_number_std} FROM (SELECT ?::VARCHAR AS s, ?::VARCHAR AS h)"
        expected = con.execute(sql, [street, house_number]).fetchall()[0]
    assert street_parts(street, house_number) == expected


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


@pytest.mark.parametrize(
    ("name", "sql", "python", "value"), [pytest.param(n, s, p, v, id=f"{n}-{v!r}") for n, s, p, values in RULES for v in values]
)
def test_each_field_rule_gives_the_same_value_in_sql_and_python(
    name: str, sql: Callable[[str], str], python: Callable[[str | None], Any], value: str | None, db: duckdb.DuckDBPyConnection
) -> None:
    (expected,) = db.execute(f"SELECT {sql('v')} FROM (SELECT ?::VARCHAR AS v)", [value]).fetchone() or (None,)
    try:
        assert python(value) == expected, name
    except SqlOnly:
        assert value is not None and not value.isascii(), f"{name}: only non-ASCII text is left to DuckDB"


@pytest.mark.parametrize(
    ("postcode_key", "house_number"), [("1234AB", "12"), ("SW1A1AA", "3"), ("3000", "12"), (None, "1"), ("1234AB", None), ("1234A", "1")]
)
def test_the_dwelling_key_in_sql_and_python(postcode_key: str | None, house_number: str | None, db: duckdb.DuckDBPyConnection) -> None:
    sql = f"SELECT {dwelling_key_sql('p', 'h')} FROM (SELECT ?::VARCHAR AS p, ?::VARCHAR AS h)"
    assert dwelling_key(postcode_key, house_number) == db.execute(sql, [postcode_key, house_number]).fetchall()[0][0]

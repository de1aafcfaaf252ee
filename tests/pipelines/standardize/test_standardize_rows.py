"""A live record standardized in Python is the record the batch's SQL makes of it:
every column of ``records``, ``identifiers`` and ``field_issues``, for every record of
every demo source (the impossible dates and invalid emails and phones included)."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest

from pipelines.batch.ingest import stage_live
from pipelines.config import Config, SourceConfig, load_config
from pipelines.standardize.batch import standardize
from pipelines.standardize.fields import WORD_CHARACTERS, words
from pipelines.standardize.rows import RECORD_TYPES, standardize_rows
from profiles.store import Store
from tests.conftest import DemoRun
from tests.pipelines.live.test_live import _as_dict, _rows

TABLES = ("records", "identifiers", "field_issues")


@pytest.fixture(scope="module")
def config(small_demo: DemoRun) -> Config:
    return load_config(small_demo.manifest.config_path)


def _source_rows(config: Config, source: SourceConfig) -> list[dict[str, Any]]:
    path = config.base_dir / source.path
    header, lines = _rows(path)
    return [row for row in (_as_dict(path, header, line) for line in lines) if row is not None]


def _by_sql(
    config: Config, source: SourceConfig, rows: list[dict[str, Any]], formats: Any
) -> dict[str, tuple[pa.Table, list[tuple[Any, ...]]]]:
    """Each table as the batch's SQL builds it: (rows, its column names and types)."""
    with Store.scratch() as store, store.workspace(name="sql_path"):
        stage_live(store, source, rows=rows)
        standardize(store, config, formats)
        return {t: (store.arrow(f"SELECT * FROM {t}"), store.rows(f"SELECT column_name, column_type FROM (DESCRIBE {t})")) for t in TABLES}


@pytest.mark.parametrize("source_name", ["crm", "webshop", "contact_center", "loyalty"])
def test_python_standardization_equals_the_batch_sql(small_demo: DemoRun, config: Config, source_name: str) -> None:
    source = next(s for s in config.sources if s.name == source_name)
    formats = small_demo.summary.date_formats
    rows = _source_rows(config, source)
    fast = [row for row in rows if standardize_rows(source, [row], formats, config) is not None]
    # the fallback is for what only DuckDB reads alike (no id, non-ASCII addresses, odd shapes)
    assert len(fast) >= 0.9 * len(rows), f"{len(rows) - len(fast)} of {len(rows)} rows fell back to the SQL"
    python = standardize_rows(source, fast, formats, config)
    assert python is not None, "rows that pass one by one pass together"
    sql = _by_sql(config, source, fast, formats)
    assert python.issues.num_rows > 0 or source_name == "webshop", "the demo's impossible values are among them"
    with Store.scratch() as store:
        for table, ours in (("records", python.records), ("identifiers", python.identifiers), ("field_issues", python.issues)):
            theirs, types = sql[table]
            store.register("ours", ours)
            store.register("theirs", theirs)
            cast = "REPLACE (raw::JSON AS raw)" if table == "records" else ""  # Arrow has no JSON type
            store.execute(f"CREATE TABLE py AS SELECT * {cast} FROM ours")
            store.execute(f"CREATE TABLE db AS SELECT * {cast} FROM theirs")
            assert store.rows("SELECT column_name, column_type FROM (DESCRIBE py)") == types, table
            assert (
                store.scalar("SELECT count(*) FROM py")
                == store.scalar("SELECT count(*) FROM db")
                == (len(fast) if table == "records" else store.scalar("SELECT count(*) FROM db"))
            )
            differ = store.rows(
                "(SELECT * FROM py EXCEPT ALL SELECT * FROM db) UNION ALL (SELECT * FROM db EXCEPT ALL SELECT * FROM py) LIMIT 5"
            )
            assert differ == [], f"{table}: {differ}"
            for name in ("py", "db"):
                store.execute(f"DROP TABLE {name}")
            store.unregister("ours")
            store.unregister("theirs")


def test_the_columns_are_those_of_the_batch(small_demo: DemoRun) -> None:
    with Store.open(small_demo.store_path, read_only=True) as store:
        published = [r[0] for r in store.rows("SELECT column_name FROM (DESCRIBE records)")]
    assert [c for c in published if c not in ("profile_id", "match_probability")] == [c for c, _ in RECORD_TYPES]


def test_addresses_in_latin_letters_are_standardized_as_duckdb_does(small_demo: DemoRun, config: Config) -> None:
    """Each character Python standardizes in an address itself ('ä', 'ß', 'ł') comes out as
    DuckDB's lower(strip_accents(...)) makes it, alone and inside a word."""
    characters = sorted(WORD_CHARACTERS)
    shapes = ["{c}", "Stra{c}e 1", "{c}{c}x"]  # {c}: each character in turn
    with duckdb.connect() as con:
        expected = con.execute(
            """SELECT nullif(trim(regexp_replace(lower(strip_accents(w)), '[^a-z0-9]+', ' ', 'g')), '')
               FROM unnest(?) WITH ORDINALITY t(w, i) ORDER BY i""",
            [[w.replace("{c}", c) for c in characters for w in shapes]],
        ).fetchall()
    assert [words(w.replace("{c}", c)) for c in characters for w in shapes] == [e for (e,) in expected]
    crm = next(s for s in config.sources if s.name == "crm")
    column = {field: column for field, column in crm.fields.items() if isinstance(column, str)}
    row = {**_source_rows(config, crm)[0], column["street"]: "Kirchstraße", column["city"]: "Düsseldorf"}
    fast = standardize_rows(crm, [row], small_demo.summary.date_formats, config)
    assert fast is not None and fast.records.column("street_std").to_pylist() == ["kirchstra e"]
    assert fast.records.column("city_std").to_pylist() == ["dusseldorf"]


def test_what_only_duckdb_reads_alike_falls_back(small_demo: DemoRun, config: Config) -> None:
    crm = next(s for s in config.sources if s.name == "crm")
    formats = small_demo.summary.date_formats
    row = _source_rows(config, crm)[0]
    assert standardize_rows(crm, [row], formats, config) is not None
    column = {field: column for field, column in crm.fields.items() if isinstance(column, str)}
    for changed in (
        {crm.id: ""},  # quarantined: no record id
        {column["date_of_birth"]: "3-3-1966"},  # a shape DuckDB reads and the strict pattern does not
        {column["city"]: "Αθήνα"},  # Greek: DuckDB's own accents and casing
        {column["email"]: 1.5},  # DuckDB's rendering of a JSON float
        {column["date_of_birth"]: "01-01-0000"},  # a year DuckDB has and Python has not
        {crm.updated_at: "31-02-2020 10:00"},  # an impossible time: DuckDB's strptime decides
    ):
        assert standardize_rows(crm, [{**row, **changed}], formats, config) is None, changed
    assert standardize_rows(crm, [row, dict(row)], formats, config) is None, "a duplicate id is quarantined"
    detected = next(s for s in config.sources if not (s.date_format and s.updated_at_format))
    assert standardize_rows(detected, _source_rows(config, detected)[:1], {}, config) is None, (
        "without the run's formats the SQL detects them"
    )


def test_an_update_time_with_an_offset_is_read_in_utc(small_demo: DemoRun, config: Config) -> None:
    """A source that writes its update times with their offset: the record's updated_at
    (which survivorship's "most recent" compares across sources) is in UTC, by the batch
    and, through the SQL it falls back to, by the live path."""
    crm = next(s for s in config.sources if s.name == "crm")
    row = {**_source_rows(config, crm)[0], crm.updated_at: "2020-02-03T10:00:00+01:00"}
    assert standardize_rows(crm, [row], small_demo.summary.date_formats, config) is None  # only the SQL reads offsets
    records, _ = _by_sql(config, crm, [row], small_demo.summary.date_formats)["records"]
    assert str(records["updated_at"][0].as_py()) == "2020-02-03 09:00:00"

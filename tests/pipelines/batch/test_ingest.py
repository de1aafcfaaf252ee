"""Ingest and standardize: bad rows quarantined with source, line and reason; bad values
nulled and counted per source and field; schema problems stop the run before any write."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import load_config
from profiles.errors import SourceSchemaError
from tests.conftest import DemoRun

CONFIG = """
[[sources]]
name = "shop"
path = "shop.csv"
id = "nr"
date_format = "%d-%m-%Y"
[sources.fields]
first_name = "voornaam"
last_name = "achternaam"
date_of_birth = "geboren"
email = "mail"
phone = "tel"
postcode = "pc"
"""

CSV = """nr,voornaam,achternaam,geboren,mail,tel,pc
1,Jan,de Vries,01-02-1985,Jan.de.Vries@Example.com ,06-12345678,3511 ab
2,Piet,Jansen,31-02-1985,piet@example.com,+31 6 1234 5679,3512AB
,Klaas,Bakker,01-01-1990,klaas@example.com,0612345670,1011AA
3,Anna,"Berg, van der",05-05-1970,anna@@example,0031612345671,1012 BB,extra
4,Anna,"Berg, van der",05-05-1970,anna@@example,0031612345671,1012 BB
5,Eva,Smit,12-12-2012,eva@example.com,12,9999ZZ
5,Eva,Smit,12-12-2012,eva@example.com,12,9999ZZ
"""


@pytest.fixture
def trained_model(small_demo: DemoRun, tmp_path: Path) -> Path:
    """Seven rows cannot train a model; reuse the demo's (same comparisons)."""
    target = tmp_path / "unify-model.json"
    shutil.copy(small_demo.manifest.out_dir / "unify-model.json", target)
    return target


def _run(tmp_path: Path, csv_text: str = CSV, config_text: str = CONFIG) -> duckdb.DuckDBPyConnection:
    (tmp_path / "shop.csv").write_text(csv_text, encoding="utf-8")
    (tmp_path / "unify.toml").write_text(config_text, encoding="utf-8")
    run_pipeline(load_config(tmp_path / "unify.toml"))
    return duckdb.connect(str(tmp_path / "unify.duckdb"), read_only=True)


def test_row_problems_are_quarantined_with_line_and_reason(tmp_path: Path, trained_model: Path) -> None:
    con = _run(tmp_path)
    rows = con.execute("SELECT source, line, record_id, reason FROM quarantine ORDER BY line").fetchall()
    assert [(s, line) for s, line, _, _ in rows] == [("shop", 4), ("shop", 5), ("shop", 8)]
    assert "no record id" in rows[0][3]
    assert "TOO MANY COLUMNS" in rows[1][3]
    assert rows[2][2] == "5" and "duplicate record id (first seen at line 7)" in rows[2][3]
    # every good record is kept, with its own line
    assert con.execute("SELECT record_id, line FROM records ORDER BY line").fetchall() == [("1", 2), ("2", 3), ("4", 6), ("5", 7)]


def test_field_problems_null_the_field_and_are_counted(tmp_path: Path, trained_model: Path) -> None:
    con = _run(tmp_path)
    issues = con.execute("SELECT record_id, line, field, reason FROM field_issues ORDER BY line, field").fetchall()
    assert [(r, f) for r, _, f, _ in issues] == [("2", "date_of_birth"), ("4", "email"), ("5", "phone")]
    assert "31-02-1985" in issues[0][3] and "%d-%m-%Y" in issues[0][3]
    rec = dict(con.execute("SELECT record_id, date_of_birth FROM records").fetchall())
    assert rec["2"] is None and str(rec["1"]) == "1985-02-01"
    assert con.execute("SELECT email FROM records WHERE record_id = '4'").fetchall() == [(None,)]


def test_values_are_standardized(tmp_path: Path, trained_model: Path) -> None:
    con = _run(tmp_path)
    row = con.execute(
        "SELECT email, phone, postcode, last_name, last_name_std, first_name_std FROM records WHERE record_id = '1'"
    ).fetchall()[0]
    assert row == ("jan.de.vries@example.com", "+31612345678", "3511 AB", "de Vries", "vries", "jan")
    assert con.execute("SELECT last_name, phone FROM records WHERE record_id = '4'").fetchall() == [("van der Berg", "+31612345671")]
    kinds = con.execute("SELECT kind, value FROM identifiers WHERE record_key = 'shop:1' ORDER BY kind").fetchall()
    assert kinds == [("email", "jan.de.vries@example.com"), ("phone", "+31612345678")]


def test_raw_row_is_kept_as_the_source_wrote_it(tmp_path: Path, trained_model: Path) -> None:
    con = _run(tmp_path)
    raw = con.execute("SELECT raw->>'mail', raw->>'achternaam' FROM records WHERE record_id = '1'").fetchall()
    assert raw == [("Jan.de.Vries@Example.com ", "de Vries")]


def test_missing_mapped_column_stops_before_anything_is_written(tmp_path: Path) -> None:
    broken = CONFIG.replace('email = "mail"', 'email = "e_mail"')
    (tmp_path / "shop.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "unify.toml").write_text(broken, encoding="utf-8")
    with pytest.raises(SourceSchemaError, match=r"source shop: column 'e_mail' \(email\) is missing from .*shop.csv"):
        run_pipeline(load_config(tmp_path / "unify.toml"))
    assert not (tmp_path / "unify.duckdb").exists()


def test_a_missing_or_directory_source_file_is_one_line_naming_it(tmp_path: Path) -> None:
    """A source path that is not there, or names a directory (a traceback of
    IsADirectoryError before): one error naming the source and the path, nothing written."""
    (tmp_path / "unify.toml").write_text(CONFIG, encoding="utf-8")
    with pytest.raises(SourceSchemaError, match=r"source shop: file .*shop.csv not found"):
        run_pipeline(load_config(tmp_path / "unify.toml"))
    (tmp_path / "shop.csv").mkdir()
    with pytest.raises(SourceSchemaError, match=r"source shop: .*shop.csv is not a file"):
        run_pipeline(load_config(tmp_path / "unify.toml"))
    assert not (tmp_path / "unify.duckdb").exists()


def test_demo_counts_match_what_the_generator_injected(small_demo: DemoRun) -> None:
    m = small_demo.manifest
    for name, counts in small_demo.summary.sources.items():
        assert counts.rows == m.records_per_source[name]
        assert counts.quarantined == m.injected_row_errors[name], name
        assert counts.accepted == counts.rows - counts.quarantined
        for field, injected in m.injected_field_errors[name].items():
            assert counts.field_issues.get(field, 0) == injected, (name, field)


def test_ndjson_bad_lines_are_quarantined_with_their_line(small_demo: DemoRun) -> None:
    with duckdb.connect(str(small_demo.store_path), read_only=True) as con:
        rows = con.execute("SELECT line, reason FROM quarantine WHERE source = 'webshop' ORDER BY line").fetchall()
    lines = small_demo.manifest.source_paths["webshop"].read_text(encoding="utf-8").splitlines()
    for line, reason in rows:
        text = lines[line - 1]
        if reason == "not valid JSON":
            assert not text.rstrip().endswith("}")
        else:
            assert '"customerId": null' in text

"""One input contract for batch and live: values of the wrong JSON type are refused
naming the field, control and invisible characters are removed and counted, over-long
values left out and counted, and a broken CSV row is quarantined with its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.batch.ingest import FIELD_MAX_CHARS, SPACE_CHARS, UNCLEAN_TEXT, UNWANTED_CHARS
from pipelines.batch.run import run_pipeline
from pipelines.config import Config, load_config
from pipelines.live.ingest import LiveIngest
from profiles.store import Steward, Store

BY = Steward("test", "admin")
DIRTY = "Ja\x00n\u202e\u200b"  # NUL, a right-to-left override, a zero-width space


def test_python_and_sql_agree_on_every_unwanted_character() -> None:
    con = duckdb.connect()
    chars = [chr(c) for c in range(0x3100) if not 0xD800 <= c <= 0xDFFF] + ["\ufeff", "\ufffd", "\uff21", "😀"]
    sql = con.execute(
        "SELECT list_transform(?::VARCHAR[], lambda c: regexp_matches(c, ?) OR regexp_matches(c, ?))", [chars, UNWANTED_CHARS, SPACE_CHARS]
    ).fetchone()[0]
    assert sum(sql) > 60  # C0, C1, DEL, zero-width, bidi controls, BOM, U+FFFD
    different = [hex(ord(c)) for c, s in zip(chars, sql) if bool(UNCLEAN_TEXT.search(c)) != s]
    assert not different


@pytest.fixture
def config(demo_copy: Path) -> Config:
    return load_config(demo_copy)


def _crm(config: Config) -> tuple[str, dict[str, Any]]:
    crm = next(s for s in config.sources if s.name == "crm")
    return crm.id, dict(crm.fields)


def test_live_records_follow_the_contract(config: Config) -> None:
    rid, f = _crm(config)
    refused = {
        "an object": {rid: "C1", f["first_name"]: {"a": 1}, f["last_name"]: "Jansen"},
        "a number": {rid: "C2", f["first_name"]: 12345, f["last_name"]: "Jansen"},
        "true or false": {rid: "C3", f["first_name"]: True, f["last_name"]: "Jansen"},
        "an array": {rid: "C4", f["first_name"]: "Jan", f["last_name"]: ["Jan", "sen"]},
    }
    with Store.open(config.store_path) as store:
        for in_memory in (True, False):  # the few-record Python path and the SQL path
            live = LiveIngest(store, config, in_memory=in_memory)
            for what, record in refused.items():
                (outcome,) = live.ingest("crm", BY, rows=[record]).records
                assert outcome.status == "quarantined"
                field = "first_name" if "Jan" not in str(record.get(f["first_name"])) else "last_name"
                assert outcome.problem == f"field {field} (column {f[field]}): {what} where text was expected", outcome.problem
            for bad_id in ({"x": 1}, "K\x00001", "K" * (FIELD_MAX_CHARS + 1), False):
                (outcome,) = live.ingest("crm", BY, rows=[{rid: bad_id, f["first_name"]: "Jan"}]).records
                assert outcome.status == "quarantined" and "id" in (outcome.problem or ""), outcome
            # numbers where a number can stand for the text
            (outcome,) = live.ingest("crm", BY, rows=[{rid: 4242 + in_memory, f["first_name"]: "Jan", f["house_number"]: 12}]).records
            assert outcome.status != "quarantined"
            cleaned = {rid: f"C5{in_memory}", f["first_name"]: DIRTY, f["last_name"]: "Jan\ud800sen", f["street"]: "x" * 1_000_000}
            (outcome,) = live.ingest("crm", BY, rows=[cleaned]).records
            assert sorted(outcome.field_issues) == [
                "first_name: control or invisible characters removed",
                "last_name: control or invisible characters removed",
                f"street: longer than {FIELD_MAX_CHARS} characters: left out",
            ]
            row = store.dicts("SELECT first_name, last_name, street FROM records WHERE record_key = ?", [outcome.record_key])[0]
            assert row == {"first_name": "Jan", "last_name": "Jansen", "street": None}


def test_batch_files_follow_the_same_contract(config: Config) -> None:
    rid, f = _crm(config)
    crm_file = config.base_dir / next(s for s in config.sources if s.name == "crm").path
    lines = crm_file.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")

    def csv_row(values: dict[str, str]) -> str:
        return ",".join(values.get(column, "") for column in header)

    lines += [
        csv_row({rid: "B1", f["first_name"]: DIRTY, f["last_name"]: "Bakker"}),
        csv_row({rid: "B2", f["first_name"]: "J" * 1_000_000, f["last_name"]: "Bakker"}),
        csv_row({rid: "B3", f["first_name"]: "Piet", f["last_name"]: '"Bakker'}),  # a quote that never closes
        csv_row({rid: "B4", f["first_name"]: "Kees", f["last_name"]: "Bakker"}),
    ]
    crm_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    webshop = next(s for s in config.sources if s.name == "webshop")
    shop_file = config.base_dir / webshop.path
    w = dict(webshop.fields)
    bad = [
        {webshop.id: "W1", w["first_name"]: {"nested": True}, w["last_name"]: "Smit"},
        {webshop.id: "W2", w["first_name"]: "Anna", w["last_name"]: 7},
    ]
    with shop_file.open("a", encoding="utf-8") as out:
        for record in bad:
            out.write(json.dumps(record) + "\n")
    shop_lines = len(shop_file.read_text(encoding="utf-8").splitlines())

    summary = run_pipeline(config)
    assert summary.sources["crm"].field_issues["first_name"] >= 2
    with Store.open(config.store_path, read_only=True) as store:
        quarantine = {(s, int(line)): reason for s, line, reason in store.rows("SELECT source, line, reason FROM quarantine")}
        assert "a quote opened on this line never closes" in quarantine[("crm", len(lines) - 1)]
        assert quarantine[("webshop", shop_lines - 1)] == f"field first_name (column {w['first_name']}): an object where text was expected"
        assert quarantine[("webshop", shop_lines)] == f"field last_name (column {w['last_name']}): a number where text was expected"
        names = dict(store.rows("SELECT record_key, first_name FROM records WHERE record_key IN ('crm:B1', 'crm:B2')"))
        assert names == {"crm:B1": "Jan", "crm:B2": None}
        issues = dict(store.rows("SELECT record_id, reason FROM field_issues WHERE source = 'crm' AND record_id IN ('B1', 'B2')"))
        assert issues == {"B1": "control or invisible characters removed", "B2": f"longer than {FIELD_MAX_CHARS} characters: left out"}
        golden = store.scalar("SELECT count(*) FROM golden_fields WHERE regexp_matches(value::VARCHAR, ?)", [UNWANTED_CHARS])
        assert golden == 0

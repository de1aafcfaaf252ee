"""recordEvent's Python path (pipelines.history.events.map_event and record_event) is the
SQL path's twin: every event of a hostile corpus is stored, refused (with the same words)
or handed to the SQL path, and what lands in ``events`` is the same row either way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Config, load_config
from pipelines.history.events import EVENT_COLUMNS, map_event, record_event, record_events
from profiles.store import Store

CONFIG = """
[[sources]]
name = "crm"
path = "crm.csv"
id = "nr"
[sources.fields]
email = "mail"
phone = "tel"

[[purposes]]
name = "marketing"
legal_basis = "consent"

[[events]]
name = "calls"
path = "calls.ndjson"
id = "call_id"
timestamp = "at"
type = { value = "contact" }
channel = "channel"
topic = "topic"
department = "queue"
amount = "cost"
[events.link]
source = "crm"
record_id = "customer"
[events.attributes]
duration = "duration"
note = "note"

[[events]]
name = "mails"
path = "mails.ndjson"
id = "id"
timestamp = "at"
date_format = "%d-%m-%Y %H:%M"
type = "kind"
[events.link]
identifier = "email"
column = "from"

[[events]]
name = "prefs"
path = "prefs.ndjson"
id = "id"
timestamp = "at"
type = { value = "consent" }
[events.link]
identifier = "phone"
column = "tel"
[events.consent]
purpose = "purpose"
status = "choice"
source = "via"
"""

CALL = {"call_id": "C1", "at": "2026-11-01 10:00:00", "channel": "phone", "topic": "billing", "queue": "front", "cost": "1.25",
        "customer": "K1", "duration": 120, "note": "  called back  "}  # fmt: skip
CALLS: list[dict[str, Any]] = [
    CALL,
    {**CALL, "at": "2026-11-01T10:00"},
    {**CALL, "at": "2026-11-01"},
    {**CALL, "at": "2026-11-01 10:00:00.5"},
    {**CALL, "at": "2026-11-01 10:00:00.1234567"},
    {**CALL, "at": "2026-02-31 10:00:00"},
    {**CALL, "at": "2026-11-01 24:00:00"},
    {**CALL, "at": "01-11-2026 10:00"},
    {**CALL, "at": "yesterday"},
    {**CALL, "at": "   "},
    {**CALL, "at": None},
    {**CALL, "at": 1730455200},
    {**CALL, "call_id": None},
    {**CALL, "call_id": "   "},
    {**CALL, "call_id": 12345},
    {**CALL, "call_id": "x" * 201},
    {**CALL, "call_id": "é" * 150},
    {**CALL, "call_id": True},
    {**CALL, "cost": "a lot"},
    {**CALL, "cost": "1_000"},
    {**CALL, "cost": 59.5},
    {**CALL, "cost": -0.0},
    {**CALL, "cost": 1e20},
    {**CALL, "cost": 3},
    {**CALL, "cost": " .5 "},
    {**CALL, "cost": "1e3"},
    {**CALL, "cost": None},
    {**CALL, "customer": ""},
    {**CALL, "customer": " K 2 "},
    {**CALL, "duration": {"nested": 1}},
    {**CALL, "duration": [1, 2]},
    {**CALL, "note": "\ttabbed\n"},
    {**CALL, "note": "naïve <script>"},
    {**CALL, "channel": None, "topic": "", "queue": "  "},
    {k: v for k, v in CALL.items() if k != "topic"},
]
MAILS: list[dict[str, Any]] = [
    {"id": "M1", "at": "2026-11-01 10:00", "kind": "email", "from": "  Jan.Jansen@Example.COM "},
    {"id": "M2", "at": "01-11-2026 10:00", "kind": "email", "from": "jan@example.com"},
    {"id": "M3", "at": "2026-11-01 10:00", "kind": None, "from": "jan@example.com"},
    {"id": "M4", "at": "2026-11-01 10:00", "kind": "email", "from": "not an address"},
]
PREFS: list[dict[str, Any]] = [
    {"id": "P1", "at": "2026-11-01 10:00:00", "tel": "06-12345678", "purpose": "Marketing", "choice": "GRANTED", "via": "app"},
    {"id": "P2", "at": "2026-11-01 10:00:00", "tel": "+31 6 12345678", "purpose": "telepathy", "choice": "granted", "via": "app"},
    {"id": "P3", "at": "2026-11-01 10:00:00", "tel": "0612345678", "purpose": "marketing", "choice": "maybe"},
    {"id": "P4", "at": "2026-11-01 10:00:00", "tel": "0612345678", "purpose": "marketing", "choice": None},
    {"id": "P5", "at": "2026-11-01 10:00:00", "tel": "0612345678", "purpose": None, "choice": "denied"},
    {"id": "P6", "at": "2026-11-01 10:00:00", "tel": "0612345678", "purpose": "MARKETİNG", "choice": "denied"},
]
CORPUS = [("calls", e) for e in CALLS] + [("mails", e) for e in MAILS] + [("prefs", e) for e in PREFS]
IDS = [f"calls-{i}" for i in range(len(CALLS))] + [f"mails-{i}" for i in range(len(MAILS))] + [f"prefs-{i}" for i in range(len(PREFS))]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("record_event")
    (root / "unify.toml").write_text(CONFIG, encoding="utf-8")
    return load_config(root / "unify.toml")


def _stored(store: Store, source: str, event_id: str | None) -> list[dict[str, Any]]:
    rows = store.dicts(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE event_source = ? AND event_id IS NOT DISTINCT FROM ?", [source, event_id]
    )
    for row in rows:
        row["attributes"] = json.loads(row["attributes"]) if row["attributes"] is not None else None
    return rows


@pytest.mark.parametrize(("source", "event"), CORPUS, ids=IDS)
def test_the_python_path_stores_or_refuses_as_the_sql_path_does(config: Config, tmp_path: Path, source: str, event: dict[str, Any]) -> None:
    spec = next(e for e in config.events if e.name == source)
    with Store.open(tmp_path / "sql.duckdb") as by_sql, Store.open(tmp_path / "python.duckdb") as by_python:
        (expected,) = record_events(by_sql, config, spec, [event])
        got = record_event(by_python, config, spec, event)
        links = {k: got.pop(k) for k in ("record_key", "link_kind", "link_value") if k in got}  # the Python path says more
        assert got == expected
        stored = _stored(by_python, source, got["event_id"])
        assert stored == _stored(by_sql, source, expected["event_id"])
        if links:  # what the event is attached to, as written
            assert len(stored) == 1 and links == {k: stored[0][k] for k in links}


def test_the_python_path_takes_the_plain_events_and_leaves_the_rest_to_sql(config: Config) -> None:
    spec = {e.name: e for e in config.events}
    taken = {name for name, (source, event) in zip(IDS, CORPUS) if map_event(config, spec[source], event) is not None}
    # what a client of recordEvent sends (ISO times, plain text and numbers) goes the quick way
    assert {"calls-0", "calls-1", "calls-2", "calls-3", "calls-20", "calls-23", "mails-0", "prefs-0"} <= taken
    # what the two could read differently goes the SQL way
    assert not {"calls-4", "calls-7", "calls-11", "calls-16", "calls-17", "calls-19", "calls-22", "calls-29", "prefs-5"} & taken

"""Event files read again: an unchanged file is not read again, a changed one writes only
the events that are new or differ (pipelines.history.events.ingest_event_file)."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import Config, load_config
from pipelines.history.events import event_source, ingest_event_file, record_event
from profiles.store import Store

CONFIG = """
[[sources]]
name = "crm"
path = "crm.csv"
id = "nr"
[sources.fields]
email = "mail"

[[events]]
name = "calls"
path = "calls.csv"
id = "id"
timestamp = "at"
type = { value = "contact" }
channel = { value = "phone" }
topic = "reason"
[events.link]
source = "crm"
record_id = "nr"
"""

ROWS = [
    "c1,2026-11-01 10:00:00,1,delivery",
    "c2,2026-11-02 10:00:00,1,invoice",
    "c3,2026-11-03 10:00:00,2,delivery",
    "c4,not a time,2,delivery",
]


def _setup(tmp_path: Path, rows: list[str], config_text: str = CONFIG) -> Config:
    (tmp_path / "unify.toml").write_text(config_text, encoding="utf-8")
    (tmp_path / "crm.csv").write_text("nr,mail\n1,a@example.com\n2,b@example.com\n", encoding="utf-8")
    (tmp_path / "calls.csv").write_text("id,at,nr,reason\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return load_config(tmp_path / "unify.toml")


def _events(store: Store) -> dict[str, tuple[str, int, str]]:
    rows = store.rows("SELECT event_id, topic, line, ingested_at::VARCHAR FROM events ORDER BY event_id")
    return {event_id: (topic, line, at) for event_id, topic, line, at in rows}


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    config = _setup(tmp_path, ROWS)
    calls = event_source(config, "calls")
    with Store.open(tmp_path / "unify.duckdb") as store:
        first = ingest_event_file(store, config, calls, tmp_path / "calls.csv")
        assert (first.rows, first.accepted, first.quarantined, first.written, first.unchanged) == (4, 3, 1, 3, False)
        before = _events(store)
        quarantine = store.rows("SELECT line, reason FROM event_quarantine")
        # an agent corrects one event live; the file, unchanged, does not undo it
        record_event(store, config, calls, {"id": "c2", "at": "2026-11-02 10:00:00", "nr": "1", "reason": "refund"})
        again = ingest_event_file(store, config, calls, tmp_path / "calls.csv")
        assert (again.rows, again.accepted, again.quarantined, again.written, again.unchanged) == (4, 3, 1, 0, True)
        assert _events(store)["c2"][0] == "refund"
        assert {k: v for k, v in _events(store).items() if k != "c2"} == {k: v for k, v in before.items() if k != "c2"}
        assert store.rows("SELECT line, reason FROM event_quarantine") == quarantine


def test_a_changed_file_writes_only_what_is_new_or_differs(tmp_path: Path) -> None:
    config = _setup(tmp_path, ROWS)
    calls = event_source(config, "calls")
    with Store.open(tmp_path / "unify.duckdb") as store:
        ingest_event_file(store, config, calls, tmp_path / "calls.csv")
        before = _events(store)
        # the log grew by a call and one call's topic was corrected at its source
        rows = [*ROWS[:2], "c3,2026-11-03 10:00:00,2,complaint", ROWS[3], "c5,2026-11-04 09:00:00,2,delivery"]
        (tmp_path / "calls.csv").write_text("id,at,nr,reason\n" + "\n".join(rows) + "\n", encoding="utf-8")
        counts = ingest_event_file(store, config, calls, tmp_path / "calls.csv")
        assert (counts.rows, counts.accepted, counts.quarantined, counts.written, counts.unchanged) == (5, 4, 1, 2, False)
        after = _events(store)
        assert set(after) == {"c1", "c2", "c3", "c5"}
        assert after["c1"] == before["c1"] and after["c2"] == before["c2"]  # untouched: the same ingested_at
        assert after["c3"][0] == "complaint" and after["c5"][:2] == ("delivery", 6)
        # a row that moved to another line is rewritten (its line is where it came from)
        moved = [ROWS[1], ROWS[0], *rows[2:]]
        (tmp_path / "calls.csv").write_text("id,at,nr,reason\n" + "\n".join(moved) + "\n", encoding="utf-8")
        counts = ingest_event_file(store, config, calls, tmp_path / "calls.csv")
        assert counts.written == 2
        assert (_events(store)["c1"][1], _events(store)["c2"][1]) == (3, 2)


def test_a_changed_mapping_reads_the_same_file_again(tmp_path: Path) -> None:
    config = _setup(tmp_path, ROWS)
    with Store.open(tmp_path / "unify.duckdb") as store:
        ingest_event_file(store, config, event_source(config, "calls"), tmp_path / "calls.csv")
        changed = _setup(tmp_path, ROWS, CONFIG.replace('channel = { value = "phone" }', 'channel = { value = "chat" }'))
        counts = ingest_event_file(store, changed, event_source(changed, "calls"), tmp_path / "calls.csv")
        assert (counts.unchanged, counts.written) == (False, 3)
        assert {channel for (channel,) in store.rows("SELECT DISTINCT channel FROM events")} == {"chat"}


def test_unify_ingest_events_says_what_the_file_brought(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from unify.cli import app

    _setup(tmp_path, ROWS)
    args = ["ingest", str(tmp_path / "calls.csv"), "--events", "calls", "--config", str(tmp_path / "unify.toml")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    text = " ".join(first.output.split())
    assert "4 rows from" in text and "calls 3 events (3 new or changed), 1 quarantined" in text
    assert "quarantined calls:line 5:" in text  # the row, by its line in the file
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "calls unchanged since its last read (3 events)" in " ".join(again.output.split())


def test_an_id_again_on_a_later_line_keeps_the_later_row(tmp_path: Path) -> None:
    rows = [*ROWS[:3], "c1,2026-11-05 10:00:00,2,returns", "c3,2026-11-06 10:00:00,2,billing", "c1,2026-11-07 10:00:00,1,repair"]
    config = _setup(tmp_path, rows)
    with Store.open(tmp_path / "unify.duckdb") as store:
        counts = ingest_event_file(store, config, event_source(config, "calls"), tmp_path / "calls.csv")
        assert (counts.rows, counts.accepted, counts.quarantined) == (6, 3, 3)
        assert store.rows("SELECT line, event_id, reason FROM event_quarantine ORDER BY line") == [
            (2, "c1", "the same event id appears again on line 7"),
            (4, "c3", "the same event id appears again on line 6"),
            (5, "c1", "the same event id appears again on line 7"),
        ]
        assert {k: v[:2] for k, v in _events(store).items()} == {"c1": ("repair", 7), "c2": ("invoice", 3), "c3": ("billing", 6)}


def test_times_with_an_offset_are_read_in_utc_by_the_file_and_by_record_event(tmp_path: Path) -> None:
    """Systems write ISO times with their offset. DuckDB's TIMESTAMP cast drops it
    ("10:00+01:00" read as 10:00), which put a call at 09:00 UTC after a chat at 09:30 UTC
    on the timeline. Both paths now read such a time in UTC; one without an offset keeps
    its wall time."""
    rows = ["c1,2026-11-01T10:00:00+01:00,1,delivery", "c2,2026-11-01T09:30:00Z,1,invoice", "c3,2026-11-01 10:00:00,2,delivery"]
    config = _setup(tmp_path, rows)
    calls = event_source(config, "calls")
    with Store.open(tmp_path / "unify.duckdb") as store:
        ingest_event_file(store, config, calls, tmp_path / "calls.csv")
        read = dict(store.rows("SELECT event_id, occurred_at::VARCHAR FROM events"))
        assert read == {"c1": "2026-11-01 09:00:00", "c2": "2026-11-01 09:30:00", "c3": "2026-11-01 10:00:00"}, read
        record_event(store, config, calls, {"id": "c4", "at": "2026-11-01T12:00:00-05:00", "nr": "2", "reason": "delivery"})
        assert store.scalar("SELECT occurred_at::VARCHAR FROM events WHERE event_id = 'c4'") == "2026-11-01 17:00:00"

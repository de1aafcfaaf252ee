"""The audit log's hash chain: rows changed, removed, inserted or reordered in the store
file are named by verify_audit (and `unify audit verify`); redaction verifies only when a
later profile.erase entry names it; appends from many threads never fork the chain."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.config import load_config
from profiles.store import AuditEvent, Store, append_audit, redact_audit, verify_audit
from profiles.store.audit import ERASE_ACTION
from unify.cli import app


def _event(i: int, action: str = "pii.read", **detail: object) -> AuditEvent:
    return AuditEvent(actor=f"test:{i}", role="agent", action=action, subject=f"s{i}", detail={"profiles": [f"p{i}"], **detail})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "audit.duckdb")
    for i in range(1, 7):
        append_audit(store, [_event(i)])
    return store


def _concurrently(work: list[tuple[Callable[[int], None], int]]) -> None:
    """Run each ``(function, n)`` on a thread of its own, all starting together; fails
    with the errors they raised."""
    start = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(function: Callable[[int], None], n: int) -> None:
        start.wait()
        try:
            function(n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def _ids(store: Store) -> dict[int, str]:
    return {int(seq): str(event_id) for seq, event_id in store.rows("SELECT seq, event_id FROM audit_log")}


def test_an_untouched_chain_verifies_with_its_head(store: Store) -> None:
    verdict = verify_audit(store)
    assert verdict.ok and verdict.entries == 6 and verdict.head_seq == 6
    assert verdict.head_hash == store.scalar("SELECT entry_hash FROM audit_log WHERE seq = 6")
    assert str(verdict) == "audit chain intact: 6 entries"


@pytest.mark.parametrize(
    "tamper",
    ["UPDATE audit_log SET actor = 'someone else' WHERE seq = 4", """UPDATE audit_log SET detail = '{"profiles": ["p9"]}' WHERE seq = 4"""],
)
def test_a_changed_entry_is_named(store: Store, tamper: str) -> None:
    store.execute(tamper)
    verdict = verify_audit(store)
    assert not verdict.ok and verdict.seq == 4 and verdict.event_id == _ids(store)[4] and verdict.problem == "changed"
    assert verdict.entries == 3


def test_a_removed_entry_is_named_even_when_the_seqs_are_closed_up(store: Store) -> None:
    ids = _ids(store)
    store.execute("DELETE FROM audit_log WHERE seq = 3")
    verdict = verify_audit(store)
    assert (verdict.ok, verdict.seq, verdict.event_id, verdict.problem) == (False, 4, ids[4], "removed")
    assert "seq 3" in str(verdict)
    store.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")  # hide the gap
    verdict = verify_audit(store)
    assert (verdict.seq, verdict.event_id, verdict.problem) == (3, ids[4], "removed")


def test_swapped_entries_are_named_as_reordered(store: Store) -> None:
    ids = _ids(store)
    store.execute("UPDATE audit_log SET seq = CASE seq WHEN 2 THEN 5 ELSE 2 END WHERE seq IN (2, 5)")
    verdict = verify_audit(store)
    assert (verdict.ok, verdict.seq, verdict.event_id, verdict.problem) == (False, 2, ids[5], "reordered")


def test_an_inserted_entry_is_named(store: Store) -> None:
    row = store.dicts("SELECT * FROM audit_log WHERE seq = 3")[0]
    # a forged copy of entry 3 chained properly onto 2, with the later entries moved up one
    store.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq >= 3")
    columns = ", ".join(row)
    store.execute(f"INSERT INTO audit_log ({columns}) VALUES ({', '.join('?' for _ in row)})", [*row.values()])
    store.execute("UPDATE audit_log SET event_id = 'ev_forged' WHERE seq = 3 AND event_id = ?", [row["event_id"]])
    verdict = verify_audit(store)
    assert not verdict.ok and verdict.seq == 3 and verdict.problem in ("inserted", "changed")
    assert verdict.event_id == "ev_forged"


def test_a_repeated_seq_is_an_insertion(store: Store) -> None:
    row = store.dicts("SELECT * FROM audit_log WHERE seq = 5")[0]
    row["event_id"] = "ev_extra"
    store.execute(f"INSERT INTO audit_log ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", [*row.values()])
    verdict = verify_audit(store)
    assert not verdict.ok and verdict.seq == 5 and verdict.problem in ("inserted", "changed")


def _scrub(detail: dict[str, object]) -> dict[str, object]:
    return {**detail, "profiles": ["[erased]"]}


def test_a_redaction_verifies_only_with_a_later_erase_entry_naming_it(store: Store) -> None:
    ids = _ids(store)
    assert redact_audit(store, [ids[2], ids[4], "ev_unknown"], _scrub) == [ids[2], ids[4]]
    assert store.scalar("SELECT detail::VARCHAR FROM audit_log WHERE seq = 2") == '{"profiles": ["[erased]"]}'
    verdict = verify_audit(store)
    assert (verdict.ok, verdict.seq, verdict.problem) == (False, 2, "changed") and "redacted" in str(verdict)
    append_audit(store, [AuditEvent("admin:x", "admin", ERASE_ACTION, "p2", {"redacted_events": [ids[2]]})])
    verdict = verify_audit(store)  # entry 4 is still unnamed
    assert (verdict.ok, verdict.seq, verdict.event_id) == (False, 4, ids[4])
    with store.transaction():  # erasure's own order: redact, then its entry, in one transaction
        redact_audit(store, [ids[4]], _scrub)
        append_audit(store, [AuditEvent("admin:x", "admin", ERASE_ACTION, "p4", {"redacted_events": [ids[4]]})])
    assert verify_audit(store).ok and verify_audit(store).entries == 8


def test_an_erase_entry_cannot_vouch_for_a_later_redaction_or_for_itself_changed(store: Store) -> None:
    ids = _ids(store)
    append_audit(store, [AuditEvent("admin:x", "admin", ERASE_ACTION, "p2", {"redacted_events": []})])
    # a redaction marked on a row but named by no erase entry after it
    store.execute("UPDATE audit_log SET detail = '{}', redacted = true WHERE seq = 2")
    assert verify_audit(store).seq == 2
    # naming it by changing the erase entry's detail breaks the erase entry instead
    store.execute(f"""UPDATE audit_log SET detail = '{{"redacted_events": ["{ids[2]}"]}}' WHERE seq = 7""")
    verdict = verify_audit(store)
    assert not verdict.ok and verdict.seq == 2


def test_concurrent_appends_from_threads_never_fork_the_chain(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "audit.duckdb")

    def reader_appends(n: int) -> None:  # the API's audit writer: a worker thread's cursor
        for i in range(25):
            append_audit(store.reader(), [_event(n * 100 + i), _event(n * 100 + i + 50)])

    def guest_transactions(n: int) -> None:  # a steward's action: its entry inside its transaction
        with store.cursor() as own:
            for i in range(10):
                with own.transaction():
                    append_audit(own, [_event(n * 100 + i, "steward.same")])
                    own.execute("SELECT count(*) FROM audit_log")
                    append_audit(own, [_event(n * 100 + i, "steward.note")])

    _concurrently([(reader_appends, n) for n in range(5)] + [(guest_transactions, n) for n in range(5, 8)])
    expected = 5 * 25 * 2 + 3 * 10 * 2
    assert store.scalar("SELECT count(DISTINCT seq) FROM audit_log") == expected
    assert store.scalar("SELECT count(DISTINCT prev_hash) FROM audit_log") == expected
    verdict = verify_audit(store)
    assert verdict.ok and verdict.entries == expected, verdict


def test_a_served_store_and_the_commands_it_runs_for_the_cli_share_one_chain(tmp_path: Path) -> None:
    """`unify serve` hosts the store; a batch run or ingest it runs for the CLI opens a
    guest (its own connection, in transactions that hold the server's store)."""
    path = tmp_path / "audit.duckdb"
    with Store.open(path) as served:
        served.host()

        def requests(n: int) -> None:
            for i in range(30):
                append_audit(served.reader(), [_event(n * 100 + i)])

        def command(n: int) -> None:
            with Store.open(path) as guest:
                assert guest is not served
                for i in range(15):
                    with guest.exclusive(), guest.transaction():
                        append_audit(guest, [_event(n * 100 + i, "ingest"), _event(n * 100 + i, "ingest")])

        _concurrently([(requests, n) for n in range(2)] + [(command, n) for n in range(2, 4)])
        verdict = verify_audit(served)
        assert verdict.ok and verdict.entries == 2 * 30 + 2 * 15 * 2, verdict


def test_a_rolled_back_transaction_leaves_the_chain_whole(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        append_audit(store, [_event(7)])
        append_audit(store, [_event(8)])  # onto the one before it, uncommitted
        raise RuntimeError("the steward action failed")
    assert "audit_head" not in store.shared  # the rolled back head is forgotten before the chain is free
    append_audit(store, [_event(9)])
    with store.transaction():
        append_audit(store, [_event(10)])
        append_audit(store, [_event(11)])
    assert store.shared["audit_head"][0] == 9  # a committed transaction's head is the head
    append_audit(store, [_event(12)])
    verdict = verify_audit(store)
    assert verdict.ok and verdict.entries == 10, verdict


def test_the_head_an_append_remembers_dies_with_the_open_store(tmp_path: Path) -> None:
    """An append outside a transaction chains onto the head this process appended last,
    without reading it; once the store is closed another process may append, so the
    store opened again reads the head, and a cursor of the store shares what it knows."""
    path = tmp_path / "audit.duckdb"
    with Store.open(path) as store:
        append_audit(store, [_event(1)])
        assert store.shared["audit_head"][0] == 1
        with store.cursor() as cursor:
            append_audit(cursor, [_event(2)])
        assert store.shared["audit_head"][0] == 2
    with Store.open(path) as other:  # another process, for the chain: it cannot know this one's head
        append_audit(other, [_event(3), _event(4)])
    with Store.open(path) as store:
        append_audit(store, [_event(5)])
        verdict = verify_audit(store)
        assert verdict.ok and verdict.entries == 5, verdict


def test_a_store_from_before_the_chain_is_chained_once(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """CREATE TABLE audit_log (event_id VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, actor VARCHAR NOT NULL,
           role VARCHAR NOT NULL, action VARCHAR NOT NULL, subject VARCHAR, detail JSON)"""
    )
    con.execute(
        """INSERT INTO audit_log VALUES ('ev_b', TIMESTAMPTZ '2026-01-02 10:00:00+00', 'a', 'agent', 'pii.read', NULL, '{"profiles": ["p1"]}'),
                                       ('ev_a', TIMESTAMPTZ '2026-01-02 10:00:00+00', 'a', 'agent', 'pii.read', 'x', NULL),
                                       ('ev_c', TIMESTAMPTZ '2026-01-01 09:00:00+00', 'b', 'steward', 'steward.same', 'act', '{}')"""
    )
    con.close()
    with Store.open(path) as store:
        assert store.rows("SELECT event_id FROM audit_log ORDER BY seq") == [("ev_c",), ("ev_a",), ("ev_b",)]
        append_audit(store, [_event(1)])
        head = verify_audit(store)
        assert head.ok and head.entries == 4
    with Store.open(path) as store:  # opened again: not chained a second time
        assert verify_audit(store) == head


def test_unify_audit_verify_names_the_changed_entry(demo_copy: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "verify", "--config", str(demo_copy)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit chain intact: ")
    store_path = load_config(demo_copy).store_path
    with Store.open(store_path) as store:
        append_audit(store, [_event(i) for i in range(5)])
        event_id = store.scalar("SELECT event_id FROM audit_log ORDER BY seq DESC LIMIT 1 OFFSET 2")
        store.execute("UPDATE audit_log SET actor = 'nobody' WHERE event_id = ?", [event_id])
    result = runner.invoke(app, ["audit", "verify", "--config", str(demo_copy)])
    assert result.exit_code == 1
    assert event_id in result.output and "changed" in result.output

"""Whole-store copies: a backup holds every schema, view, index and sequence; a restore
keeps the store it replaces; compaction leaves no bytes of deleted rows in the file;
restore and compaction refuse while another process holds the store."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from profiles.errors import StoreError
from profiles.store import AuditEvent, Store, append_audit, verify_audit
from profiles.store.backup import backup_store, compact_store, restore_store

SECRET = "ZEBRA-QUOKKA-7731"


def _build(path: Path) -> None:
    """A store like a published one: a run's schema, views in main, a sequence used, indexes, audit entries."""
    with Store.open(path, compress=False) as store:
        store.execute("CREATE SCHEMA run_1")
        store.execute(
            f"""CREATE TABLE run_1.records AS SELECT 'k' || range AS record_key, 'p' || (range // 3) AS profile_id,
                CASE WHEN range = 40000 THEN '{SECRET}' ELSE 'name ' || range END AS full_name FROM range(80000)"""
        )
        store.execute("CREATE VIEW main.records AS SELECT * FROM run_1.records")
        store.execute("CREATE INDEX ix_records_record_key ON run_1.records (record_key)")
        store.execute("SELECT nextval('ingest_seq') FROM range(5)")
        append_audit(store, [AuditEvent("a", "steward", "steward.same", "x", {"profiles": ["p1"]}) for _ in range(3)])


def _facts(path: Path) -> dict[str, object]:
    with Store.open(path, read_only=True) as store:
        return {
            "records": store.rows("SELECT count(*), count(DISTINCT profile_id) FROM records"),
            "views": store.rows("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal ORDER BY ALL"),
            "indexes": store.rows("SELECT schema_name, index_name FROM duckdb_indexes() ORDER BY ALL"),
            "next_seq": store.scalar(
                "SELECT coalesce(last_value + increment_by, start_value) FROM duckdb_sequences() WHERE sequence_name = 'ingest_seq'"
            ),
            "audit": verify_audit(store),
        }


def test_a_backup_restored_elsewhere_is_the_same_store_and_the_replaced_one_is_kept(tmp_path: Path) -> None:
    _build(tmp_path / "unify.duckdb")
    with Store.open(tmp_path / "unify.duckdb", read_only=True) as store:
        written = backup_store(store, tmp_path / "backups" / "b1.duckdb")
    assert written.exists() and not list(written.parent.glob("*.tmp"))
    assert restore_store(tmp_path / "elsewhere" / "unify.duckdb", written) is None
    original, restored = _facts(tmp_path / "unify.duckdb"), _facts(tmp_path / "elsewhere" / "unify.duckdb")
    assert restored == original and restored["next_seq"] == 6
    assert restored["audit"].ok and restored["audit"].entries == 3  # type: ignore[attr-defined]
    # over an existing store: that one is kept aside
    with Store.open(tmp_path / "unify.duckdb") as store:
        store.execute("DELETE FROM run_1.records")
    aside = restore_store(tmp_path / "unify.duckdb", written)
    assert aside is not None and aside.name.startswith("unify.duckdb.before-restore-")
    assert _facts(tmp_path / "unify.duckdb")["records"] == original["records"]
    assert _facts(aside)["records"] == [(0, 0)]


def test_restore_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "x.duckdb").write_bytes(b"not a database")
    (tmp_path / "crm.csv").write_text("klantnummer,voornaam\nK1,Ruud\n", encoding="utf-8")
    for other in ("x.duckdb", "crm.csv"):  # DuckDB's own error for these was "Cannot launch in-memory database ..."
        with pytest.raises(StoreError, match=r"is not a unify store \(not a DuckDB database file\)"):
            restore_store(tmp_path / "unify.duckdb", tmp_path / other)
    with pytest.raises(StoreError, match="no backup"):
        restore_store(tmp_path / "unify.duckdb", tmp_path / "missing.duckdb")
    assert not (tmp_path / "unify.duckdb").exists()


def test_compaction_leaves_no_bytes_of_deleted_rows(tmp_path: Path) -> None:
    path = tmp_path / "unify.duckdb"
    _build(path)
    with Store.open(path, compress=False) as store:
        store.execute("DELETE FROM run_1.records WHERE full_name = ?", [SECRET])
        store.execute("CHECKPOINT")
    # DuckDB keeps a deleted row's bytes until its blocks are rewritten (no vacuum: Store.open)
    assert SECRET.encode() in path.read_bytes()
    before = _facts(path)
    done = compact_store(path)
    assert SECRET.encode() not in path.read_bytes()
    assert done.bytes_after <= done.bytes_before and done.path == path
    assert not path.with_name(path.name + ".wal").exists() and not list(tmp_path.glob("*.tmp"))
    after = _facts(path)
    assert after == before and after["records"] == [(79999, 26667)]


def test_restore_and_compaction_refuse_while_another_process_holds_the_store(tmp_path: Path) -> None:
    path = tmp_path / "unify.duckdb"
    _build(path)
    with Store.open(path, read_only=True) as store:
        backup = backup_store(store, tmp_path / "b.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; con = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="in use by another process"):
            compact_store(path)
        with pytest.raises(StoreError, match="stop it, then run `unify restore` again"):
            restore_store(path, backup)
    finally:
        holder.communicate("", timeout=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.duckdb", "unify.duckdb"]
    assert _facts(path)["audit"].ok  # type: ignore[attr-defined]


def test_compaction_and_restore_refuse_while_this_process_has_the_store_open(tmp_path: Path) -> None:
    path = tmp_path / "unify.duckdb"
    _build(path)
    with Store.open(path, read_only=True) as store:
        backup = backup_store(store, tmp_path / "b.duckdb")
    with Store.open(path) as store:  # a second connect here would share this database, file and all
        with pytest.raises(StoreError, match="open in this process"):
            compact_store(path)
        with pytest.raises(StoreError, match="open in this process"):
            restore_store(path, backup)
        assert verify_audit(store).ok
    assert compact_store(path).path == path  # closed: it goes ahead


def test_a_served_store_compacts_while_its_readers_and_writers_go_on(tmp_path: Path) -> None:
    path = tmp_path / "unify.duckdb"
    _build(path)
    stop, errors, appended = threading.Event(), list[BaseException](), [0]
    with Store.open(path, compress=False) as served:
        served.host()  # as `unify serve` does: compaction in this process is the server's own
        served.execute("DELETE FROM run_1.records WHERE full_name = ?", [SECRET])
        served.execute("CHECKPOINT")
        assert SECRET.encode() in path.read_bytes()

        def requests() -> None:
            while not stop.is_set():
                try:
                    reader = served.reader()
                    assert reader.scalar("SELECT count(*) FROM records") == 79999
                    append_audit(reader, [AuditEvent("r", "agent", "pii.read", None, {"profiles": ["p1"]})])
                    appended[0] += 1
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    return

        workers = [threading.Thread(target=requests) for _ in range(3)]
        for w in workers:
            w.start()
        inode = path.stat().st_ino
        with Store.open(path) as guest:  # a command the server runs: not under it
            with pytest.raises(StoreError, match="under way"):
                compact_store(path)
            assert guest.scalar("SELECT count(*) FROM records") == 79999
        done = compact_store(path)
        stop.set()
        for w in workers:
            w.join(timeout=30)
        assert not errors, errors
        assert path.stat().st_ino != inode and done.bytes_after <= done.bytes_before
        assert SECRET.encode() not in path.read_bytes()
        assert served.scalar("SELECT current_setting('max_vacuum_tasks')") == 0  # opened as before
        served.execute("INSERT INTO run_1.records VALUES ('k-after', 'p-after', 'after the swap')")
        head = verify_audit(served)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unify.duckdb"]
    with Store.open(path, read_only=True) as store:  # what the server wrote after the swap is in the file
        assert store.scalar("SELECT count(*) FROM records WHERE record_key = 'k-after'") == 1
        assert verify_audit(store) == head and head.ok and head.entries == 3 + appended[0]

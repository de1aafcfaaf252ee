"""Publishing is atomic: readers see the previous run or the new one, never half of one,
and a failed or killed run leaves the previous run serving."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from profiles.errors import StoreError
from profiles.store import (
    RUN_TABLES,
    Cancellation,
    Store,
    begin_run,
    cancellable,
    current_run,
    ensure_serving_indexes,
    publish_run,
    write_run_table,
)


def _fill(store: Store, run_id: str, profile: str) -> None:
    for table in RUN_TABLES:
        select = "SELECT 1 AS x"
        if table == "profiles":
            select = f"SELECT '{profile}' AS profile_id"
        if table == "membership":
            select = f"SELECT 'crm:1' AS record_key, '{profile}' AS profile_id, NULL::VARCHAR AS previous_profile_id"
        write_run_table(store, run_id, table, select)


def test_publish_swaps_every_view_and_registers_ids(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        first = begin_run(store, "cfg", "model")
        _fill(store, first, "p_a")
        publish_run(store, first, {"n": 1})
        assert current_run(store) == first
        assert store.rows("SELECT profile_id FROM profiles") == [("p_a",)]
        second = begin_run(store, "cfg", "model")
        _fill(store, second, "p_b")
        assert store.rows("SELECT profile_id FROM profiles") == [("p_a",)], "unpublished run must not be visible"
        store.execute(f"UPDATE \"{second}\".membership SET previous_profile_id = 'p_a'")
        publish_run(store, second, {"n": 2})
        assert store.rows("SELECT profile_id FROM profiles") == [("p_b",)]
        registry = dict(store.rows("SELECT profile_id, redirect_to FROM profile_registry"))
        assert registry == {"p_a": "p_b", "p_b": None}


def test_a_killed_run_leaves_the_previous_run_serving(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        good = begin_run(store, "cfg", "model")
        _fill(store, good, "p_good")
        publish_run(store, good, {})
        killed = begin_run(store, "cfg", "model")
        write_run_table(store, killed, "profiles", "SELECT 'p_half' AS profile_id")
    # the process died here: no publish. A reader opening the file sees the good run.
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT profile_id FROM profiles").fetchall() == [("p_good",)]
    with Store.open(path) as store:
        assert current_run(store) == good
        begin_run(store, "cfg", "model")  # cleans up what the killed run left
        schemas = {r[0] for r in store.rows("SELECT schema_name FROM duckdb_schemas()")}
        assert killed not in schemas and good in schemas
        assert store.scalar("SELECT status FROM runs WHERE run_id = ?", [killed]) == "failed"


def test_an_incomplete_run_cannot_be_published(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        run = begin_run(store, "cfg", "model")
        write_run_table(store, run, "profiles", "SELECT 'p_x' AS profile_id")
        with pytest.raises(StoreError, match="tables missing"):
            publish_run(store, run, {})
        assert not store.table_exists("profiles")


def test_failing_sql_names_what_it_was_building(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(StoreError, match="while building golden_fields") as info:
            store.execute("CREATE TABLE t AS SELECT nope FROM runs", building="golden_fields")
        assert "SELECT nope FROM runs" in str(info.value)


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path):
        import subprocess
        import sys

        code = (
            "from profiles.store import Store\n"
            "from profiles.errors import StoreError\n"
            f"try:\n    Store.open({str(path)!r})\nexcept StoreError as e:\n    print('refused:', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused:" in out and "Only one process may own the store" in out


def test_commits_below_the_wal_limit_leave_the_checkpoint_to_the_owner(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb", checkpoint_wal="1GB") as store:
        store.execute("CREATE TABLE t (k VARCHAR, v VARCHAR)")
        for i in range(300):  # small commits, as live ingests make them: each goes to the WAL
            store.execute("INSERT INTO t VALUES (?, ?)", [f"k{i}", "x" * 1000])
        logged = store.wal_bytes()
        assert logged > 300 * 1000
        assert not store.checkpoint_if_due(logged + 1)
        assert store.checkpoint_if_due(1)
        assert store.wal_bytes() < logged
        assert store.scalar("SELECT count(*) FROM t") == 300


def test_a_store_opened_for_one_file_leaves_its_commit_to_the_next_checkpoint(tmp_path: Path) -> None:
    """`unify ingest` opens the store with ``checkpoint_on_close=False``: its commit stays in
    the WAL when it exits (every reader sees it, the next owner replays it), until a commit
    takes the WAL past ``checkpoint_wal``; a store opened as usual checkpoints on close."""
    path = tmp_path / "s.duckdb"
    wal = path.with_name(path.name + ".wal")
    with Store.open(path) as store:
        store.execute("CREATE TABLE t (k VARCHAR, v VARCHAR)")
    assert not wal.exists()
    for n in (1, 2):
        with Store.open(path, checkpoint_wal="64MB", checkpoint_on_close=False) as store, store.transaction():
            store.execute("INSERT INTO t SELECT 'k' || i, repeat('x', 100) FROM range(20000) r(i)")
        assert wal.stat().st_size > n * 20000 * 100
        with Store.open(path, read_only=True) as store:
            assert store.scalar("SELECT count(*) FROM t") == n * 20000
    with Store.open(path, checkpoint_wal="1MB", checkpoint_on_close=False) as store, store.transaction():
        store.execute("INSERT INTO t SELECT 'k' || i, repeat('x', 100) FROM range(20000) r(i)")
    assert not wal.exists() or wal.stat().st_size == 0  # this commit crossed the limit: it checkpointed
    with Store.open(path) as store:
        assert store.scalar("SELECT count(*) FROM t") == 60000


def test_keyed_inserts_after_writes_in_one_transaction_do_not_invalidate_the_store(tmp_path: Path) -> None:
    """What a steward action's "after" snapshot and a live ingest do: write rows, then
    copy rows read by key (an index scan) in the same transaction. DuckDB 1.5.6's
    order-keeping insert fails on that now and then ("batch index ... is present in
    multiple collections") and invalidates the database; inside ``Store.unordered`` it
    does not. Without ``unordered`` this failed within 40 rounds when it was written."""
    with Store.open(tmp_path / "s.duckdb", compress=False) as store:
        store.execute("CREATE TABLE t AS SELECT 'k' || i AS k, 'p' || (i // 3) AS pid, repeat('x', 50) AS v FROM range(200000) r(i)")
        store.execute("CREATE INDEX ix_k ON t (k)")
        store.execute("CREATE INDEX ix_pid ON t (pid)")
        store.execute("CHECKPOINT")
        store.execute("CREATE TABLE copied (k VARCHAR, pid VARCHAR, v VARCHAR)")
        for round_ in range(60):
            new = [f"n{round_}_{j}" for j in range(1 + round_ % 5)]
            keys = new + [f"k{(round_ * 7919 + j * 104729) % 200000}" for j in range(1 + round_ % 4)]
            with store.transaction():
                store.execute("INSERT INTO t SELECT unnest(?::VARCHAR[]), 'new', 'y'", [new])
                with store.unordered():
                    store.execute(f"INSERT INTO copied SELECT * FROM t WHERE k IN ({', '.join('?' * len(keys))})", keys)
        assert store.scalar("SELECT count(*) FROM copied") == sum((1 + r % 5) + (1 + r % 4) for r in range(60))
        assert store.scalar("SELECT current_setting('preserve_insertion_order')") is True


def test_queries_follow_a_publish_made_through_another_store_object(tmp_path: Path) -> None:
    """The API reads the published run's tables directly (not through the views): a
    publish in this process, by whichever store object, is what it reads next."""
    import threading

    from profiles.store import ProfileQueries

    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        first = begin_run(store, "cfg", "model")
        _fill(store, first, "p_a")
        publish_run(store, first, {})
        queries = ProfileQueries(store)
        assert list(queries.profiles(["p_a"])) == ["p_a"]
        with Store.open(str(path)) as other:  # e.g. a run started through the server, with a store of its own
            second = begin_run(other, "cfg", "model")
            _fill(other, second, "p_b")
            publish_run(other, second, {})
        assert list(queries.profiles(["p_a", "p_b"])) == ["p_b"]
        seen: list[list[str]] = []
        reader = threading.Thread(target=lambda: seen.append(list(queries.profiles(["p_a", "p_b"]))))
        reader.start()
        reader.join()
        assert seen == [["p_b"]], "a worker thread's cursor reads the new run too"


def test_serving_indexes_are_made_once_and_ones_no_longer_served_are_dropped(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        run = begin_run(store, "cfg", "model")
        _fill(store, run, "p_a")
        write_run_table(store, run, "records", "SELECT 'crm:1' AS record_key, 'p_a' AS profile_id, DATE '1980-01-02' AS dob")
        publish_run(store, run, {})
        # an older version indexed the birth date for live candidate lookups; an owner's own index stays
        store.execute(f'CREATE INDEX ix_records_dob ON "{run}".records (dob)')
        store.execute(f'CREATE INDEX owners_dob ON "{run}".records (dob)')
        made = ensure_serving_indexes(store)
        names = {str(n) for (n,) in store.rows("SELECT index_name FROM duckdb_indexes() WHERE schema_name = ?", [run])}
        assert {"ix_records_record_key", "ix_records_profile_id", "ix_profiles_profile_id", "ix_membership_record_key"} <= names
        assert "ix_records_dob" not in names and "owners_dob" in names
        assert made >= 4 and ensure_serving_indexes(store) == 0


def test_a_cancelled_command_stops_at_its_next_statement_but_not_while_it_holds_the_store(tmp_path: Path) -> None:
    """A command the server runs for a CLI that went away (unify.control): the stores it
    opened fail from their next statement, except inside ``exclusive()`` (a run's publish
    and catch-up finish); the server's own statements and other commands go on."""
    path = tmp_path / "s.duckdb"
    host = Store.open(path)
    host.host()
    try:
        host.execute("CREATE TABLE t (x INTEGER)")
        cancel, other = Cancellation(), Cancellation()
        with cancellable(cancel):
            mine = Store.open(path)
        with cancellable(other):
            theirs = Store.open(path)
        with mine.exclusive():
            assert host.cancel_guests(cancel) == 0  # it holds the store: nothing is interrupted
            mine.execute("INSERT INTO t VALUES (1)")  # and it finishes what it holds the store for
        with mine.cursor() as cursor, pytest.raises(StoreError, match="cancelled"):
            cursor.scalar("SELECT count(*) FROM t")  # a cursor of a cancelled command's store is cancelled too
        with pytest.raises(StoreError, match="cancelled"):
            mine.scalar("SELECT count(*) FROM t")
        with pytest.raises(StoreError, match="cancelled"), mine.exclusive():
            pass  # a cancelled command does not start to hold the store
        assert theirs.scalar("SELECT count(*) FROM t") == 1
        assert host.scalar("SELECT count(*) FROM t") == 1
        mine.close()
        theirs.close()
    finally:
        host.close()

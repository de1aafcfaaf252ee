"""Whole-store copies: a backup taken while the store is served, a restore, and compaction.

All three copy with DuckDB's ``COPY FROM DATABASE`` into a new file: every schema (``main``
and the runs' schemas), table, view, index and sequence (at its current value), read in
one transaction, so the copy is one consistent state of the store even while requests
and a batch run write to it. The new file is written beside its target and renamed over
it: the target is never half written. A copy holds only the live rows: the bytes of
deleted ones (an erasure's) stay in a DuckDB file until its blocks are rewritten, and are
gone from a compacted one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from profiles.errors import StoreError
from profiles.store.connection import _HOSTED, Store, ident, opened_in_process, sql_literal_path


@dataclass(frozen=True)
class Compacted:
    """The store file's size before and after :func:`compact_store`."""

    path: Path
    bytes_before: int
    bytes_after: int


def _temp_beside(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")


def _discard(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_database(con: duckdb.DuckDBPyConnection, catalog: str, target: Path) -> None:
    """Copy the attached database ``catalog`` into the new file ``target`` (one read transaction)."""
    alias = ident(f"copy_{secrets.token_hex(4)}")  # attached names are shared by a database's connections
    con.execute(f"ATTACH {sql_literal_path(target)} AS {alias} (READ_WRITE)")  # also from a read-only store
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"COPY FROM DATABASE {ident(catalog)} TO {alias}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    finally:
        con.execute(f"DETACH {alias}")  # writes the copy out: no WAL is left beside it
    _fsync(target)


def _copy_compacted(con: duckdb.DuckDBPyConnection, catalog: str, target: Path) -> None:
    """:func:`_copy_database`, then the copy no longer owes a compaction (``compaction_due``,
    which an erasure writes and a batch run reads)."""
    _copy_database(con, catalog, target)
    alias = ident(f"compacted_{secrets.token_hex(4)}")
    con.execute(f"ATTACH {sql_literal_path(target)} AS {alias} (READ_WRITE)")
    try:
        con.execute(f"DELETE FROM {alias}.main.compaction_due")
    finally:
        con.execute(f"DETACH {alias}")
    _fsync(target)


def compaction_due(store: Store) -> list[str]:
    """Why the store file should be compacted (the erasures since its last compaction):
    empty when it need not be."""
    return [str(r[0]) for r in store.rows(f"SELECT reason FROM {ident(store.catalog)}.main.compaction_due ORDER BY since")]


def backup_store(store: Store, out: Path | str) -> Path:
    """Write a consistent copy of the whole store to ``out`` (replacing it atomically) on a
    connection of its own, beside whatever else runs on the store (a server's requests)."""
    out = Path(out)
    if os.path.abspath(out) == store.abs_path:
        raise StoreError(f"the backup {out} would replace the store itself")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(out)
    try:
        with store.cursor() as cursor:
            _copy_database(cursor.connection, store.catalog, tmp)
        os.replace(tmp, out)
    except duckdb.Error as exc:
        raise StoreError(f"backup of {store.path} to {out} failed: {exc}") from exc
    finally:
        _discard(tmp)
    _fsync(out.parent)
    return out


def _refuse_if_served(store_path: Path, doing: str) -> None:
    if os.path.abspath(store_path) in _HOSTED:
        raise StoreError(f"`unify serve` is serving {store_path}: stop the server, then {doing}")


def _owned(store_path: Path, doing: str) -> duckdb.DuckDBPyConnection:
    """The store opened by this process alone (DuckDB's file lock), or a clear refusal."""
    _refuse_if_served(store_path, doing)
    if opened_in_process(store_path):  # DuckDB would share that database: its file must not be replaced under it
        raise StoreError(f"{store_path} is open in this process: close it, then {doing}")
    try:
        return duckdb.connect(str(store_path))
    except duckdb.IOException as exc:
        raise StoreError(f"{store_path} is in use by another process (is `unify serve` running?): stop it, then {doing}") from exc


#: Bytes 8-11 of a DuckDB database file.
DUCKDB_MAGIC = b"DUCK"


def restore_store(store_path: Path | str, backup: Path | str) -> Path | None:
    """Make the backup ``backup`` the store at ``store_path`` (not while anything holds the
    store). The replaced store is kept as ``<store>.before-restore-<time>``, whose path is
    returned (None when there was no store)."""
    store_path, backup = Path(store_path), Path(backup)
    if not backup.is_file():
        raise StoreError(f"no backup at {backup}")
    with backup.open("rb") as head:
        if head.read(12)[8:] != DUCKDB_MAGIC:  # DuckDB's ATTACH of another file says "Cannot launch in-memory database ..."
            raise StoreError(f"{backup} is not a unify store (not a DuckDB database file)")
    tmp = _temp_beside(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    held = _owned(store_path, f"run `unify restore` again to restore {backup}") if store_path.exists() else None
    aside: Path | None = None
    try:
        if held is not None:
            held.execute("CHECKPOINT")  # nothing of the replaced store stays in a WAL beside it
        reader = duckdb.connect(":memory:")  # the backup read-only: restoring never changes it
        try:
            reader.execute(f"ATTACH {sql_literal_path(backup)} AS backup (READ_ONLY)")
            found = reader.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'backup' AND schema_name = 'main' AND table_name = 'audit_log'"
            ).fetchall()
            if not found[0][0]:
                raise StoreError(f"{backup} is not a unify store (it has no audit_log)")
            _copy_database(reader, "backup", tmp)
        finally:
            reader.close()
        # swapped while this process holds the store's lock: no other writes to it meanwhile
        if held is not None:
            aside = store_path.with_name(f"{store_path.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%S}")
            os.replace(store_path, aside)
        os.replace(tmp, store_path)
    except duckdb.Error as exc:
        raise StoreError(f"restoring {backup} as {store_path} failed: {exc}") from exc
    finally:
        if held is not None:
            held.close()
        _discard(tmp)
    _fsync(store_path.parent)
    return aside


def compact_store(store_path: Path | str) -> Compacted:
    """Rewrite the store into a fresh file holding only its live rows and swap it in, so
    that deleted rows (an erasure's) are gone from the file's bytes. In the server's
    process the server's store swaps its file while its requests wait
    (:meth:`Store.replace_file`); it refuses while another process, or a store this process
    opened otherwise, holds the file."""
    store_path = Path(store_path)
    if not store_path.exists():
        raise StoreError(f"store {store_path} does not exist")
    served = _HOSTED.get(os.path.abspath(store_path))
    if served is not None:  # the server's requests wait while the copy is made and swapped in
        before = store_path.stat().st_size
        try:
            served.replace_file(_copy_compacted)
        except duckdb.Error as exc:
            raise StoreError(f"compacting {store_path} failed: {exc}") from exc
        _fsync(store_path.parent)
        return Compacted(store_path, before, store_path.stat().st_size)
    con = _owned(store_path, "run `unify compact`")
    before = store_path.stat().st_size
    tmp = _temp_beside(store_path)
    try:
        catalog = str(con.execute("SELECT current_database()").fetchall()[0][0])
        con.execute("CHECKPOINT")  # the WAL is empty: the swapped-out file leaves nothing behind
        _copy_compacted(con, catalog, tmp)
        # renamed while this process still holds the store's lock: no other can write between
        os.replace(tmp, store_path)
    except duckdb.Error as exc:
        raise StoreError(f"compacting {store_path} failed: {exc}") from exc
    finally:
        con.close()
        _discard(tmp)
    _fsync(store_path.parent)
    return Compacted(store_path, before, store_path.stat().st_size)


__all__ = ["Compacted", "backup_store", "compact_store", "compaction_due", "restore_store"]

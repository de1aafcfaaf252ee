"""The one place unify talks to DuckDB: a store file owned by one process, shared by
threads through cursors, with failing statements re-raised with their context."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Literal, overload

import duckdb
import pyarrow as pa

from profiles.errors import StoreError
from profiles.store.sql import ident, in_list, marks, name_literal, quote_column, sql_literal_path
from profiles.tuning import TUNING

# Store.arrow asks an executed statement for its Arrow table only when it has parameters,
# mostly a few records' rows (see Store._run): the copy DuckDB 2 warns about is negligible.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result makes an extra copy", category=UserWarning)

WORK_CATALOG = "work"

#: Stores this process serves (``unify serve``), by absolute path: DuckDB lets one process
#: own a store file, so work on a served store (a batch run, an export) runs inside the
#: server, and :meth:`Store.open` of such a path gives a guest on the server's database.
_HOSTED: dict[str, Store] = {}
#: How many times this process has each store file open (:meth:`Store.open`, not its
#: guests or cursors): a second open in one process shares DuckDB's database, so whatever
#: replaces the file (profiles.store.backup) must know that nothing here has it open.
_OPENED: dict[str, int] = {}


#: The error of a statement of a command whose CLI went away (:class:`Cancellation`).
CANCELLED = "cancelled: the command line that asked for this went away (Ctrl+C); nothing of it was published"

#: The :class:`Cancellation` of the command the current thread runs for the CLI, if any.
_COMMAND = threading.local()


class Cancellation:
    """A command the server runs for the CLI (unify.control), cancelled when that CLI goes
    away: from then on the statements of the stores the command opened fail with
    :data:`CANCELLED`, except while one of them holds the store. A batch run's publish and
    catch-up are never cut in half: a run cancelled before them publishes nothing, one
    cancelled inside them finishes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requested = False
        self._holding = 0

    @contextmanager
    def holding(self) -> Iterator[None]:
        with self._lock:
            if self.requested:
                raise StoreError(CANCELLED)
            self._holding += 1
        try:
            yield
        finally:
            with self._lock:
                self._holding -= 1

    def check(self) -> None:
        with self._lock:
            if self.requested and not self._holding:
                raise StoreError(CANCELLED)

    def request(self, guests: Sequence[Store]) -> int:
        """Cancel: interrupt the statement each of ``guests`` that this command opened is
        running, unless the command holds the store. Returns how many were interrupted."""
        with self._lock:
            self.requested = True
            if self._holding:
                return 0
            mine = [g for g in guests if g._cancellation is self]
            for guest in mine:
                guest._con.interrupt()
            return len(mine)


@contextmanager
def cancellable(cancellation: Cancellation) -> Iterator[None]:
    """The stores this thread opens as guests of a served store follow ``cancellation``."""
    _COMMAND.cancellation = cancellation
    try:
        yield
    finally:
        _COMMAND.cancellation = None


def opened_in_process(path: Path | str) -> bool:
    """Whether this process has the store file at ``path`` open (or serves it)."""
    key = os.path.abspath(path)
    return key in _HOSTED or _OPENED.get(key, 0) > 0


class Store:
    """A DuckDB store file. Open it with :func:`Store.open` (or as a context manager)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self._con = connection
        self.path = path
        self.abs_path = os.path.abspath(path)  # names the store file process-wide (runs.publish_count)
        self.read_only = read_only
        self.catalog: str = str(connection.sql("SELECT current_database()").fetchall()[0][0])
        self._lock = threading.RLock()
        self._owner = threading.get_ident()
        self._readers = threading.local()
        self._cursors: list[Store] = []
        self._host: Store | None = None  # a guest's (Store.open of a hosted path) serving store
        self._guests: set[Store] = set()
        self._stopping = False  # a host that interrupted its guests: they run no more statements
        self._cancellation: Cancellation | None = None  # a guest's: the command for the CLI that opened it
        self._on_transaction_end: list[Callable[[], None]] | None = None  # set inside transaction()
        self.committed = False  # whether the last transaction() on this store committed
        self._opened = False  # made by open(): counted in _OPENED
        # what this process knows of the open database, shared by the store that opened it
        # and its cursors, readers and guests (and gone when it closes: another process
        # may write the file before it is opened again), e.g. the audit chain's head
        self.shared: dict[str, Any] = {}
        self._settings: list[tuple[str, list[Any]]] = []  # open()'s settings, made again by replace_file()

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        read_only: bool = False,
        threads: int | None = None,
        compress: bool = True,
        checkpoint_wal: str | None = None,
        checkpoint_on_close: bool = True,
    ) -> Store:
        """Open (or create) the store file. ``compress=False`` writes new table data
        uncompressed: about 3x the disk, but faster to write and to read by key.
        ``checkpoint_wal`` ("256MB") is the WAL size at which a commit also checkpoints
        (DuckDB's default: 16MB); see :meth:`checkpoint_if_due`. ``checkpoint_on_close=False``
        leaves what the WAL holds below that size to the next owner of the store (the
        server's idle checkpoint, a run, or a later commit that crosses the size), for a
        process that commits one change and exits (`unify ingest`): a DuckDB checkpoint
        rewrites the whole ART index of each changed table (~1.3 GB and 3.5-4 s at 1M
        records, whether 500 or 20,000 records changed), so the ingests of several files
        share one checkpoint instead of paying one each. Opening the store replays the WAL
        (0.2 s after 20,000 records at 1M)."""
        path = Path(path)
        host = _HOSTED.get(os.path.abspath(path))
        if host is not None:
            return host.guest()
        if read_only and not path.exists():
            raise StoreError(f"store {path} does not exist: run `unify run` first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(path), read_only=read_only)
            _configure(con)
        except duckdb.IOException as exc:
            raise StoreError(
                f"cannot open store {path}: {exc}. Only one process may own the store; is `unify serve` or another run using it?"
            ) from exc
        settings: list[tuple[str, list[Any]]] = []
        if threads:
            settings.append((f"SET threads = {int(threads)}", []))
        if not compress:
            settings.append(("SET force_compression = 'uncompressed'", []))
        if checkpoint_wal and not read_only:
            settings.append(("SET checkpoint_threshold = ?", [checkpoint_wal]))
        if not checkpoint_on_close and not read_only:
            settings.append(("PRAGMA disable_checkpoint_on_shutdown", []))
        if not read_only:
            # No vacuum at checkpoints: DuckDB 2 rewrites each row group that lost rows. A
            # live file or steward action deletes the old golden rows of profiles spread
            # over every row group, so that rewrote whole tables and made checkpoints several
            # times as long (docs/benchmarks.md, "Figures behind the code's choices").
            # The deleted rows stay marked as such until the next run writes its tables anew
            # (or `unify compact` copies the store: profiles.store.backup).
            settings.append(("SET max_vacuum_tasks = 0", []))
        for sql, params in settings:
            con.execute(sql, params)
        store = cls(con, path, read_only)
        store._opened = True
        store._settings = settings
        _OPENED[store.abs_path] = _OPENED.get(store.abs_path, 0) + 1
        if not read_only:
            from profiles.store.schema import ensure_schema

            try:
                ensure_schema(store)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def scratch(cls) -> Store:
        """An in-memory store, for work that must not touch any file (pre-flight checks)."""
        con = duckdb.connect(":memory:")
        _configure(con)
        return cls(con, Path(":memory:"), read_only=False)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self._con.close()
        if self._opened:
            self._opened = False
            if _OPENED.get(self.abs_path, 0) <= 1:
                _OPENED.pop(self.abs_path, None)
            else:
                _OPENED[self.abs_path] -= 1
        if self._host is not None:
            self._host._guests.discard(self)
        elif _HOSTED.get(self.abs_path) is self:
            del _HOSTED[self.abs_path]

    # ---- hosting: a server and the work it runs on its store ------------------------

    def host(self) -> None:
        """Serve this store to the process: from now on :meth:`open` of its path (a batch
        run, an export, an ingest the server runs for the CLI) gets a :meth:`guest`."""
        _HOSTED[self.abs_path] = self

    def guest(self) -> Store:
        """A connection of its own on this store's database (its statements run beside
        the server's), whose :meth:`exclusive` holds the server's store: a multi-statement
        change (a publish, a live ingest) never interleaves with the server's own."""
        with self._lock:
            guest = self._derived()
            guest._host = self
            guest._cancellation = getattr(_COMMAND, "cancellation", None)
            self._guests.add(guest)
        return guest

    def cancel_guests(self, cancellation: Cancellation) -> int:
        """Cancel the command ``cancellation`` belongs to (its CLI went away): see
        :class:`Cancellation`. Returns how many statements were interrupted."""
        return cancellation.request(list(self._guests))

    def interrupt_guests(self) -> int:
        """Interrupt the statement each guest is running (a server shutting down: a batch
        run fails, the previous run stays published). Returns how many were interrupted."""
        self._stopping = True
        guests = list(self._guests)
        for guest in guests:
            guest._con.interrupt()
        return len(guests)

    def replace_file(self, write_copy: Callable[[duckdb.DuckDBPyConnection, str, Path], None]) -> None:
        """Make a copy of this served store its file while it serves (`unify compact`):
        every statement on it waits meanwhile; ``write_copy(connection, catalog, target)``
        writes the copy, which replaces the file; then the store and its readers go on,
        on the new file. Refused while a guest (a command the server runs) is open."""
        if self._host is not None or _HOSTED.get(self.abs_path) is not self:
            raise StoreError("only the server's own store replaces its file")
        token = os.urandom(4).hex()
        tmp, aside = (self.path.with_name(f".{self.path.name}.{token}.{kind}") for kind in ("tmp", "old"))
        marker = f"_replaced_{token}"
        with self._lock, ExitStack() as paused:
            if self._guests:
                raise StoreError("a command the server runs on the store (a batch run, an ingest, a backup) is under way: try again later")
            for reader in list(self._cursors):
                paused.enter_context(reader._lock)
            closed = attached = False
            try:
                self._run("CHECKPOINT", None, None)  # the WAL is empty: the old file leaves nothing behind
                write_copy(self._con, self.catalog, tmp)
                self._con.execute(f"ATTACH {sql_literal_path(tmp)} AS {ident(marker)}")
                self._con.execute(f"CREATE TABLE {ident(marker)}.main.{ident(marker)} (replaced BOOLEAN)")
                self._con.execute(f"DETACH {ident(marker)}")
                os.link(self.path, aside)
                for reader in self._cursors:
                    reader._con.close()
                self._con.close()
                closed = True
                os.replace(tmp, self.path)
                con = self._connect_again()
                if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [marker]).fetchall()[0][0]:
                    # a connection outside this store's knowledge kept DuckDB's database of the old
                    # file alive and the new connection joined it: the old file goes back
                    os.replace(aside, self.path)
                    self._reattach(con)
                    attached = True
                    raise StoreError("a connection to the store was still open; nothing was replaced: stop the server, then compact")
                con.execute(f"DROP TABLE main.{ident(marker)}")
                self._reattach(con)
                attached = True
            except BaseException:
                if closed and not attached:  # serve on from the old file (its content is the same)
                    if aside.exists():
                        os.replace(aside, self.path)
                    self._reattach(self._connect_again())
                raise
            finally:
                for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), aside):
                    with suppress(FileNotFoundError):
                        leftover.unlink()

    def _connect_again(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path))
        _configure(con)
        for sql, params in self._settings:
            con.execute(sql, params)
        return con

    def _reattach(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        for reader in self._cursors:
            reader._con = con.cursor()
        _PARSED.clear()  # parsed on the database before

    def wal_bytes(self) -> int:
        """Size of the write-ahead log: what the next checkpoint writes into the store file."""
        try:  # a checkpoint removes the file at any moment
            return self.path.with_name(self.path.name + ".wal").stat().st_size
        except FileNotFoundError:
            return 0

    def checkpoint_if_due(self, min_wal_bytes: int) -> bool:
        """Checkpoint when the WAL holds at least ``min_wal_bytes``. DuckDB checkpoints
        stop the world and rewrite the ART indexes of every changed table (seconds at 1M
        records), so a server calls this when it is idle rather than let a commit do it."""
        if self.read_only or self.wal_bytes() < min_wal_bytes:
            return False
        with self._lock:
            self._run("CHECKPOINT", None, None)
        return True

    def reader(self) -> Store:
        """This store for reads by the calling thread: itself on the thread that opened it,
        a cursor of the thread's own on any other. DuckDB runs the cursors' queries in
        parallel with each other and with the owner's (a cursor sees committed data
        only), so a server can read on worker threads while its event loop goes on."""
        if threading.get_ident() == self._owner:
            return self
        reader: Store | None = getattr(self._readers, "store", None)
        if reader is None:
            with self._lock:
                reader = self._derived()
                self._cursors.append(reader)
            self._readers.store = reader
        return reader

    def _derived(self) -> Store:
        """A store on a cursor of this one's connection (the same database)."""
        derived = Store(self._con.cursor(), self.path, self.read_only)
        derived.shared = self.shared
        derived._cancellation = self._cancellation  # a guest's cursors are its command's
        return derived

    @contextmanager
    def cursor(self) -> Iterator[Store]:
        """This store on a connection of its own, for statements that another thread runs
        while this one goes on: DuckDB runs them side by side (the cursor sees committed
        data only, the workspace included). Closed on leaving."""
        with self._lock:
            cursor = self._derived()
        try:
            yield cursor
        finally:
            cursor.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The raw connection, for libraries (splink) that drive DuckDB themselves."""
        return self._con

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None, *, building: str | None = None) -> None:
        with self._lock:
            self._run(sql, params, building)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._run(sql, params, None).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def arrow(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        with self._lock:
            return self._run(sql, params, None, arrow=True)

    def dicts(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self._run(sql, params, None)
            names = [d[0] for d in result.description or []]
            return [dict(zip(names, row)) for row in result.fetchall()]

    def append(self, table: str, rows: pa.Table) -> None:
        """Insert ``rows`` into ``table`` (a name from our code) by column name. A few rows
        go in as bound VALUES: registering an Arrow table and scanning it costs ~1 ms more
        than the insert itself, a tenth of a live record's time in all its tables."""
        if not rows.num_rows:
            return
        columns = ", ".join(quote_column(c) for c in rows.column_names)
        if rows.num_rows * rows.num_columns > TUNING.values_max:
            with self._lock:
                self._con.register("_append_rows", rows)
                try:
                    self._run(f"INSERT INTO {table} ({columns}) SELECT * FROM _append_rows", None, table)
                finally:
                    self._con.unregister("_append_rows")
            return
        row = "(" + ", ".join("?" for _ in rows.column_names) + ")"
        values = [value for record in rows.to_pylist() for value in record.values()]
        self.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join(row for _ in range(rows.num_rows))}", values, building=table)

    def register(self, name: str, table: pa.Table) -> None:
        """Expose an Arrow table to SQL under ``name`` (a view on the Python object)."""
        with self._lock:
            self._con.register(name, table)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._con.unregister(name)

    def table_exists(self, name: str, schema: str = "main", catalog: str | None = None) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?"
                " UNION ALL SELECT count(*) FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND view_name = ?"
                " ORDER BY 1 DESC LIMIT 1",
                [catalog or self.catalog, schema, name] * 2,
            )
        )

    def columns(self, relation_sql: str) -> list[str]:
        """Column names of a relation (a table function call, a table name, a query)."""
        with self._lock:
            result = self._run(f"DESCRIBE SELECT * FROM {relation_sql}", None, None)
            return [row[0] for row in result.fetchall()]

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store for a multi-statement operation (other threads wait; a guest
        holds its host, so the server's own changes wait too)."""
        if self._host is not None:
            with self._cancellation.holding() if self._cancellation else nullcontext(), self._host._lock, self._lock:
                yield
            return
        with self._lock:
            yield

    @contextmanager
    def unordered(self) -> Iterator[None]:
        """Statements inside store rows in whatever order they come (``SELECT``s with an
        ``ORDER BY`` still sort). For ``INSERT ... SELECT`` and ``CREATE TABLE AS`` that
        read a store table by key inside a transaction that has written to it: DuckDB
        1.5.6 runs those as an order-keeping "batch insert", which can fail with "batch
        index ... is present in multiple collections" and invalidate the database
        (tests/profiles/test_store_runs.py reproduces it). The unordered insert does not."""
        with self._lock:
            self._con.execute("SET preserve_insertion_order = false")
            try:
                yield
            finally:
                self._con.execute("RESET preserve_insertion_order")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            self._on_transaction_end = []
            self.committed = False
            try:
                try:
                    yield
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
                self.committed = True
            finally:
                callbacks, self._on_transaction_end = self._on_transaction_end, None
                for callback in reversed(callbacks):
                    callback()

    @property
    def in_transaction(self) -> bool:
        return self._on_transaction_end is not None

    def after_transaction(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once the transaction under way on this store ends (committed or
        rolled back: :attr:`committed` says which), e.g. to release a lock held for it; the
        callbacks run in the reverse of the order they were given. False when none is
        under way."""
        if self._on_transaction_end is None:
            return False
        self._on_transaction_end.append(callback)
        return True

    @contextmanager
    def workspace(self, spill_dir: Path | None = None, memory_limit: str | None = None, name: str = WORK_CATALOG) -> Iterator[str]:
        """Attach an in-memory database for a run's intermediate tables and make it the
        default catalog, so scratch work (splink's included) never touches the store file.
        Connections to one store file share attached names: a live ingest beside a batch
        run uses a ``name`` of its own. Yields the workspace's catalog name."""
        catalog = ident(name)
        with self._lock:
            if spill_dir is not None:
                spill_dir.mkdir(parents=True, exist_ok=True)
                self._con.execute(f"SET temp_directory = {sql_literal_path(spill_dir)}")
            if memory_limit:
                self._con.execute("SET memory_limit = ?", [memory_limit])
            self._con.execute(f"ATTACH ':memory:' AS {catalog}")
            self._con.execute(f"USE {catalog}")
        try:
            yield name
        finally:
            with self._lock:
                self._con.execute(f"USE {ident(self.catalog)}")
                self._con.execute(f"DETACH {catalog}")

    @contextmanager
    def using_catalog(self, catalog: str) -> Iterator[None]:
        """Temporarily make ``catalog`` the default (views created inside bind to it)."""
        with self._lock:
            previous = str(self._con.sql("SELECT current_database()").fetchall()[0][0])
            self._con.execute(f"USE {ident(catalog)}")
            try:
                yield
            finally:
                self._con.execute(f"USE {ident(previous)}")

    @overload
    def _run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None, building: str | None) -> duckdb.DuckDBPyConnection: ...
    @overload
    def _run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None, building: str | None, *, arrow: Literal[True]) -> pa.Table: ...

    def _run(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None, building: str | None, *, arrow: bool = False
    ) -> duckdb.DuckDBPyConnection | pa.Table:
        """Run ``sql``: the connection with its result, or with ``arrow`` the result as an
        Arrow table. Without parameters (a file's or a scan's rows, many) through a
        relation: DuckDB 2 copies the rows of an executed statement once more to give its
        Arrow table. With parameters (mostly a few records' rows, again and again) as a
        parsed statement: a relation parses its text each time, 3.8 instead of 2.0 ms for
        the statement that hashes a live record's blocking values."""
        if self._host is not None and self._host._stopping:
            raise StoreError("the server serving this store is stopping")
        if self._cancellation is not None:
            self._cancellation.check()
        try:
            if arrow and params is None:
                return self._con.sql(sql).to_arrow_table()
            if arrow:
                return self._con.execute(_parsed(self._con, sql), params).to_arrow_table()
            if params is None:
                return self._con.execute(sql)
            return self._con.execute(_parsed(self._con, sql), params)
        except duckdb.Error as exc:
            what = f" while building {building}" if building else ""
            raise StoreError(f"SQL failed{what}: {exc}\n--- statement ---\n{sql.strip()}") from exc


#: Parsed statements by their text, for those run with parameters (the ones a server or
#: a live ingest runs again and again): parsing is a quarter of a point lookup's time
#: (docs/benchmarks.md, "Figures behind the code's choices"). A statement object is copied by each execution,
#: so cursors on any thread share it; a statement's names are bound when it runs. Only
#: short texts: an IN list or a VALUES insert of hundreds of parameters has a parse tree
#: many times its text, and each length of the list is a text of its own.
_PARSED: dict[str, Any] = {}


def _parsed(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    if len(sql) > TUNING.parsed_text_max:
        return sql
    statement = _PARSED.get(sql)
    if statement is None:
        statements = con.extract_statements(sql)
        if len(statements) != 1:
            return sql
        if len(_PARSED) >= TUNING.parsed_max:
            _PARSED.clear()
        statement = _PARSED[sql] = statements[0]
    return statement


def _configure(con: duckdb.DuckDBPyConnection) -> None:
    """Settings of every connection (its cursors included: GLOBAL)."""
    con.execute("SET enable_progress_bar = false")  # long statements must not draw on the terminal
    # splink's SQL and ours write lambdas as ``x -> ...``, which DuckDB 2 refuses by default
    con.execute("SET GLOBAL lambda_syntax = 'ENABLE_SINGLE_ARROW'")


# the SQL text helpers are also importable from here, as before profiles.store.sql
__all__ = ["WORK_CATALOG", "Store", "ident", "in_list", "marks", "name_literal", "quote_column", "sql_literal_path"]

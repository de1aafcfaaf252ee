"""Reading a source's or an event source's file as text, row by row, without losing a
row: CSV and TSV with the columns of their header and nothing sniffed (a row the reader
rejects is quarantined with its line), Parquet, JSON arrays, and NDJSON read as lines
(a broken line is quarantined, not dropped)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Protocol

from profiles.errors import SourceSchemaError
from profiles.store import Store, ident, quote_column, sql_literal_path


class FileSpec(Protocol):
    """What reading a file needs of its config: a [[sources]] or an [[events]] block."""

    @property
    def name(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def delimiter(self) -> str | None: ...
    def columns(self) -> dict[str, str]: ...


def check_file_columns(store: Store, spec: FileSpec, path: Path, what: str = "source") -> None:
    """Fail, naming the file and the column, when the file or a mapped column is missing."""
    if not path.exists():
        raise SourceSchemaError(f"{what} {spec.name}: file {path} not found")
    if not path.is_file():  # a directory (or a device): reading it failed with a traceback
        raise SourceSchemaError(f"{what} {spec.name}: {path} is not a file")
    available = set(_file_columns(store, spec, path))
    for role, column in spec.columns().items():
        if column not in available:
            raise SourceSchemaError(
                f"{what} {spec.name}: column {column!r} ({role}) is missing from {path}; the file has: {', '.join(sorted(available))}"
            )


def _file_columns(store: Store, source: FileSpec, path: Any) -> list[str]:
    if source.format == "ndjson":
        lines = _ndjson_lines_sql(path)
        rows = store.rows(
            f"SELECT DISTINCT unnest(json_keys(line::JSON)) FROM (SELECT line FROM {lines} WHERE json_valid(line) LIMIT 10000)"
        )
        return [str(r[0]) for r in rows]
    return store.columns(_reader_sql(source, path, rejects=False))


def _reader_sql(source: FileSpec, path: Any, *, rejects: bool) -> str:
    p = sql_literal_path(path)
    if source.format in ("csv", "tsv"):
        delim = source.delimiter or ("\t" if source.format == "tsv" else ",")
        # The columns come from the header, every one as text, and nothing is sniffed: a
        # sniffer that meets an unbalanced quote fails the whole file without naming a
        # line, while the reader rejects that row (quarantined with its line) and goes on.
        columns = ", ".join(f"{_string_literal(c)}: 'VARCHAR'" for c in _csv_header(source, path, delim))
        options = (
            f"columns = {{{columns}}}, header = true, delim = '{_char(delim)}', quote = '\"', escape = '\"',"
            " auto_detect = false, ignore_errors = true"
        )
        if rejects:
            options += f", store_rejects = true, rejects_table = 'rejects_{source.name}', rejects_scan = 'rejscan_{source.name}'"
        return f"read_csv({p}, {options})"
    if source.format == "parquet":
        return f"read_parquet({p})"
    if source.format == "json":
        return f"read_json({p}, format = 'array')"
    raise AssertionError(source.format)


def _csv_header(source: FileSpec, path: Any, delim: str) -> list[str]:
    """The column names in the first line of a CSV/TSV file."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=delim, quotechar='"'), None)
    except UnicodeDecodeError as exc:
        raise SourceSchemaError(f"source {source.name}: {path} line 1: the header is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise SourceSchemaError(f"source {source.name}: {path} line 1: the header row cannot be read: {exc}") from None
    names = [name.strip() for name in header or []]
    if not any(names):
        raise SourceSchemaError(f"source {source.name}: {path} is empty: it has no header row")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SourceSchemaError(f"source {source.name}: {path} line 1: column {name!r} appears twice in the header")
        seen.add(name)
    return names


def _char(ch: str) -> str:
    if ch in ("'", "\\") or len(ch) != 1:
        raise SourceSchemaError(f"unsupported delimiter {ch!r}")
    return ch


def _ndjson_lines_sql(path: Any) -> str:
    # Read NDJSON as one text column so that a broken line is kept (and quarantined
    # with its line number) instead of failing or vanishing inside the JSON reader.
    return (
        f"read_csv({sql_literal_path(path)}, columns = {{'line': 'VARCHAR'}}, header = false, delim = '\x1e',"
        " quote = '', escape = '', auto_detect = false, new_line = '\\n')"
    )


def _load_raw(store: Store, source: FileSpec, path: Any, raw_table: str) -> None:
    """``raw_<source>``: ``_line`` (line in the file, or row number for Parquet/JSON)
    plus every source column as text, and ``_raw`` (the row as JSON)."""
    t = ident(raw_table)
    if source.format == "ndjson":
        store.execute(
            f"""CREATE OR REPLACE TABLE {t} AS
                SELECT row_number() OVER () AS _line, line AS _raw FROM {_ndjson_lines_sql(path)}""",
            building=raw_table,
        )
        store.execute(
            f"""INSERT INTO quarantine SELECT ?, _line, NULL, 'not valid JSON', left(_raw, 500)
                FROM {t} WHERE NOT json_valid(_raw) OR json_type(_raw::JSON) <> 'OBJECT'""",
            [source.name],
        )
        store.execute(f"DELETE FROM {t} WHERE NOT json_valid(_raw) OR json_type(_raw::JSON) <> 'OBJECT'")
        return
    reader = _reader_sql(source, path, rejects=True)
    columns = store.columns(_reader_sql(source, path, rejects=False))
    as_text = ", ".join(f"CAST({quote_column(c)} AS VARCHAR) AS {quote_column(c)}" for c in columns)
    raw_json = "to_json(struct_pack(" + ", ".join(f"{quote_column(c)} := {quote_column(c)}" for c in columns) + "))"
    store.execute(
        f"""CREATE OR REPLACE TABLE {t} AS
            SELECT row_number() OVER () AS _line, {as_text}, {raw_json}::VARCHAR AS _raw FROM {reader}""",
        building=raw_table,
    )
    if source.format not in ("csv", "tsv"):
        return
    # Rows DuckDB rejected (wrong column count, broken quoting) are quarantined with
    # their line; the row numbers of the good rows are shifted to file lines likewise
    # (one record per line assumed; header is line 1).
    rej = ident(f"rejects_{source.name}")
    store.execute(
        f"""INSERT INTO quarantine
            SELECT ?, line, NULL,
                   CASE WHEN bool_or(error_type = 'UNQUOTED VALUE') AND max(length(csv_line) - length(replace(csv_line, chr(10), ''))) > 0
                        THEN 'a quote opened on this line never closes: lines ' || line || '-'
                             || (line + max(length(csv_line) - length(replace(csv_line, chr(10), '')))) || ' were read as one row'
                        ELSE string_agg(DISTINCT error_type || ': ' || error_message, '; ' ORDER BY error_type || ': ' || error_message) END,
                   any_value(csv_line)
            FROM {rej} GROUP BY line""",
        [source.name],
    )
    store.execute(
        f"""CREATE OR REPLACE TEMP TABLE rejected_lines AS
            SELECT line - row_number() OVER (ORDER BY line) AS good_before FROM (SELECT DISTINCT line FROM {rej})"""
    )
    store.execute(f"""UPDATE {t} SET _line = _line + 1 + (SELECT count(*) FROM rejected_lines WHERE good_before <= {t}._line)""")
    store.execute(f"DROP TABLE {rej}; DROP TABLE {ident(f'rejscan_{source.name}')}; DROP TABLE rejected_lines")


def create_quarantine(store: Store) -> None:
    """The workspace's ``quarantine``: the rows of a file (or of handed-over rows) that could
    not be read, with their line and reason (``load_raw_file`` writes those of the reader)."""
    store.execute("CREATE OR REPLACE TABLE quarantine (source VARCHAR, line BIGINT, record_id VARCHAR, reason VARCHAR, content VARCHAR)")


def load_raw_file(store: Store, spec: FileSpec, path: Path, raw_table: str) -> None:
    """The file read as a batch reads a source's (``_line``, a text column per file column,
    ``_raw``), bad rows into the workspace's ``quarantine``."""
    _load_raw(store, spec, path, raw_table)


def _string_literal(text: str) -> str:
    """A configured column name as an SQL string literal (for messages)."""
    return "'" + text.replace("'", "''") + "'"

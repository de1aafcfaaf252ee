"""Ingest: read every source file with DuckDB and map it onto the canonical schema.

Row-level problems (unparseable row, wrong column count, no record id, a duplicate id)
quarantine the row with source, line and reason; schema problems (a mapped column
missing from the file) stop the run before anything is written."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.batch.files import FileSpec, _load_raw, _string_literal, check_file_columns, create_quarantine
from pipelines.config import Config, Constant, SourceConfig
from profiles.errors import UnifyError
from profiles.model import CANONICAL_FIELDS
from profiles.store import Store, ident, name_literal, quote_column


@dataclass
class SourceCounts:
    """What ingest saw of one source, for the run summary."""

    rows: int = 0
    quarantined: int = 0
    accepted: int = 0
    live: int = 0  # records from live ingests that the source file does not have (yet)
    suppressed: int = 0  # rows of erased people (profiles.store.erasure), left out
    field_issues: dict[str, int] = field(default_factory=dict)
    previous: int | None = None  # accepted records of the source in the published run (None: none before)


class SourceShrunkError(UnifyError):
    """A source arrived empty or much smaller than in the published run."""


def guard_shrink(counts: Mapping[str, SourceCounts], previous: Mapping[str, int], max_shrink: float, accept: Sequence[str]) -> None:
    """Refuse (before anything is published) a run in which a source has no accepted
    records or ``max_shrink`` fewer than the published run had, unless it is named in
    ``accept``; sets each source's ``previous`` count for the summary."""
    refused: dict[str, str] = {}  # source -> why
    for name, c in counts.items():
        c.previous = previous.get(name)
        if name in accept:
            continue
        if c.accepted == 0:
            was = f"; the published run has {c.previous:,}" if c.previous else ""
            refused[name] = f"source {name} has no records ({c.rows:,} rows read, {c.quarantined:,} quarantined{was})"
        elif c.previous and c.accepted < c.previous * (1 - max_shrink):
            refused[name] = (
                f"source {name} has {c.accepted:,} records against {c.previous:,} in the published run "
                f"({(c.accepted - c.previous) / c.previous:+.0%}; at most -{max_shrink:.0%} is accepted, run.max_shrink)"
            )
    unknown = sorted(set(accept) - set(counts))
    if unknown:
        raise SourceShrunkError(f"--accept-shrink names no configured source: {', '.join(unknown)}")
    if refused:
        names = " ".join(f"--accept-shrink {n}" for n in refused)
        raise SourceShrunkError(
            "refusing to publish: " + "; ".join(refused.values()) + f". Nothing was changed. If that is right, run again with {names}"
        )


#: Characters no value keeps (RE2 syntax): C0 and C1 controls (NUL included) and DEL,
#: zero-width characters, bidirectional marks, embeddings, overrides and isolates, the
#: byte-order mark and U+FFFD (what an unreadable byte or a lone surrogate became).
#: Tabs and line breaks become spaces. Removing them is a field issue of the record.
UNWANTED_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}\x{2066}-\x{2069}\x{FEFF}\x{FFFD}]"
SPACE_CHARS = r"[\t\n\r]"
#: Both in Python (the live path's few records, pipelines.standardize.rows), with the lone
#: surrogates a JSON text can carry; tests hold the two equal character by character.
UNCLEAN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff\ufffd\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Longest value a field or a record id keeps; a longer field is left out (a field issue),
#: a longer record id quarantines its row. No name, address or identifier comes near it.
FIELD_MAX_CHARS = 200
#: Fields whose values may come as JSON numbers (written as text: 12 -> "12").
NUMBER_ROLES = frozenset({"id", "updated_at", "date_of_birth", "phone", "house_number", "postcode"})


def check_sources(store: Store, config: Config) -> None:
    """Fail fast, before anything is written, when a file or a mapped column is missing."""
    for source in config.sources:
        _check_source(store, source, config.resolve(source.path))


def _check_source(store: Store, source: FileSpec, path: Path) -> None:
    check_file_columns(store, source, path)


def stage_live(
    store: Store, source: SourceConfig, *, rows: Sequence[Mapping[str, Any]] | None = None, path: Path | None = None
) -> SourceCounts:
    """Build ``ingested`` and ``quarantine`` in the workspace from records handed to a
    live ingest: JSON objects keyed by the source's column names (the API), or a file of
    any supported format (``unify ingest``; it replaces the configured file). The rows
    then go through the very mapping and standardization of a batch run."""
    create_quarantine(store)
    raw_table = f"raw_{source.name}"
    if path is not None:
        source = source.model_copy(update={"path": path})
        _check_source(store, source, path)
        _load_raw(store, source, path, raw_table)
        as_json = source.format == "ndjson"
    else:
        lines = [json.dumps(_json_safe(dict(row)), default=str) for row in rows or []]
        store.register("_live_rows", pa.table({"_line": list(range(1, len(lines) + 1)), "_raw": lines}))
        store.execute(f"CREATE OR REPLACE TABLE {ident(raw_table)} AS SELECT _line::BIGINT AS _line, _raw FROM _live_rows")
        store.unregister("_live_rows")
        as_json = True
    _quarantine_rows(store, source, raw_table, as_json)
    sql, params = _mapped_select(source, raw_table, as_json)
    store.execute("CREATE OR REPLACE TABLE ingested AS " + sql, params, building="ingested")
    accepted = int(store.scalar(f"SELECT count(*) FROM {ident(raw_table)}"))
    rejected = int(store.scalar("SELECT count(*) FROM quarantine"))
    store.execute(f"DROP TABLE {ident(raw_table)}")
    return SourceCounts(rows=accepted + rejected, quarantined=rejected, accepted=accepted)


def ingest_sources(store: Store, config: Config, live_until: int = 0) -> dict[str, SourceCounts]:
    """Build ``ingested`` (mapped raw values, one row per good record) and
    ``quarantine`` (rejected rows) in the workspace. Records that live ingests accepted
    (``ingest_log`` up to sequence number ``live_until``) are included when the source
    file does not have them: the file, the source's full export, wins for the others."""
    create_quarantine(store)
    selects: list[str] = []
    params: list[Any] = []
    counts: dict[str, SourceCounts] = {}
    for source in config.sources:
        raw_table = f"raw_{source.name}"
        _load_raw(store, source, config.resolve(source.path), raw_table)
        _quarantine_rows(store, source, raw_table, source.format == "ndjson")
        sql, sql_params = _mapped_select(source, raw_table, source.format == "ndjson")
        selects.append(sql)
        params.extend(sql_params)
        accepted = int(store.scalar(f"SELECT count(*) FROM {ident(raw_table)}"))
        rejected = int(store.scalar("SELECT count(*) FROM quarantine WHERE source = ?", [source.name]))
        live = _load_live(store, source, raw_table, live_until)
        if live:
            sql, sql_params = _mapped_select(source, f"live_{source.name}", True)
            selects.append(sql)
            params.extend(sql_params)
        counts[source.name] = SourceCounts(rows=accepted + rejected, quarantined=rejected, accepted=accepted + live, live=live)
    store.execute("CREATE OR REPLACE TABLE ingested AS " + "\nUNION ALL BY NAME\n".join(selects), params, building="ingested")
    for source in config.sources:
        store.execute(f"DROP TABLE IF EXISTS {ident('raw_' + source.name)}")
        store.execute(f"DROP TABLE IF EXISTS {ident('live_' + source.name)}")
    return counts


def _load_live(store: Store, source: SourceConfig, raw_table: str, until: int) -> int:
    """``live_<source>``: the latest live-ingested row of every record id the file lacks."""
    if until == 0:  # nothing was ingested live: no scan of the file's ids
        return 0
    file_ids = _value_sql(source.id, source.format == "ndjson")
    store.execute(
        f"""CREATE OR REPLACE TABLE {ident("live_" + source.name)} AS
            SELECT NULL::BIGINT AS _line, raw::VARCHAR AS _raw FROM {ident(store.catalog)}.main.ingest_log
            WHERE source = ? AND seq <= ? AND record_id NOT IN (SELECT {file_ids} FROM {ident(raw_table)} WHERE {file_ids} IS NOT NULL)
            QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY seq DESC) = 1
            ORDER BY record_id""",
        [source.name, until],
        building=f"live_{source.name}",
    )
    return int(store.scalar(f"SELECT count(*) FROM {ident('live_' + source.name)}"))


def value_sql(column: str, as_json: bool) -> str:
    """A file column as trimmed text, NULL when empty (as a source's columns are read)."""
    return _value_sql(column, as_json)


def _value_sql(column: str, as_json: bool) -> str:
    """A source column as trimmed text (NULL when empty), from a file column or, for rows
    kept as JSON text in ``_raw``, from the JSON object."""
    if as_json:
        return f"nullif(trim(json_extract_string(_raw, {_json_path(column)})), '')"
    return f"nullif(trim({quote_column(column)}), '')"


def _json_safe(value: Any) -> Any:
    """``value`` with every lone surrogate (valid in a JSON text, not in UTF-8) made
    U+FFFD, which the standardization then removes as an unwanted character."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_path(column: str) -> str:
    """A JSON path literal for a top-level key (quotes escaped for the path and for SQL)."""
    path = '$."' + column.replace('"', '\\"') + '"'
    return "'" + path.replace("'", "''") + "'"


def _quarantine_rows(store: Store, source: SourceConfig, raw_table: str, as_json: bool) -> None:
    t = ident(raw_table)
    rid = _value_sql(source.id, as_json)
    problems = []  # CASE branches, the first that holds names the row's problem
    if as_json:  # values of JSON rows must be text (or numbers where a number can stand for it)
        for role, column in source.columns().items():
            kind = f"json_type(_raw, {_json_path(column)})"
            allowed = (
                ("'VARCHAR'", "'NULL'", "'BIGINT'", "'UBIGINT'", "'DOUBLE'")
                if role.startswith("identifier ") or role in NUMBER_ROLES
                else ("'VARCHAR'", "'NULL'")
            )
            expected = "text or a number" if len(allowed) > 2 else "text"
            problems.append(
                f"WHEN {kind} NOT IN ({', '.join(allowed)}) THEN 'field ' || {name_literal(role.replace(' ', '_'))} || ' (column ' || "
                f"{_string_literal(column)} || '): ' || CASE {kind} WHEN 'OBJECT' THEN 'an object' WHEN 'ARRAY' THEN 'an array' "
                f"WHEN 'BOOLEAN' THEN 'true or false' ELSE 'a number' END || ' where {expected} was expected'"
            )
    problems.append(f"WHEN length({rid}) > {FIELD_MAX_CHARS} THEN 'record id longer than {FIELD_MAX_CHARS} characters'")
    problems.append(
        f"WHEN regexp_matches({rid}, $unwanted) OR regexp_matches({rid}, $spaces) THEN 'record id contains control or invisible characters'"
    )
    store.execute(
        f"""INSERT INTO quarantine SELECT $source, _line, NULL, problem, left(_raw, 500)
            FROM (SELECT _line, _raw, CASE {" ".join(problems)} END AS problem FROM {t}) WHERE problem IS NOT NULL""",
        {"source": source.name, "unwanted": UNWANTED_CHARS, "spaces": SPACE_CHARS},
    )
    store.execute(f"DELETE FROM {t} WHERE _line IN (SELECT line FROM quarantine WHERE source = ? AND record_id IS NULL)", [source.name])
    store.execute(
        f"""INSERT INTO quarantine SELECT ?, _line, NULL, 'no record id (column ' || ? || ' is empty)', left(_raw, 500)
            FROM {t} WHERE {rid} IS NULL""",
        [source.name, source.id],
    )
    store.execute(  # ids seen twice found by a hash aggregation, not a window over every row
        f"""INSERT INTO quarantine
            SELECT ?, r._line, r.rid, 'duplicate record id (first seen at line ' || d.first_line || ')', left(r._raw, 500)
            FROM (SELECT _line, _raw, {rid} AS rid FROM {t}) r
            JOIN (SELECT {rid} AS rid, min(_line) AS first_line FROM {t} WHERE {rid} IS NOT NULL GROUP BY ALL HAVING count(*) > 1) d
              USING (rid)
            WHERE r._line > d.first_line""",
        [source.name],
    )
    store.execute(
        f"""DELETE FROM {t} WHERE {rid} IS NULL
            OR _line IN (SELECT line FROM quarantine WHERE source = ? AND record_id IS NOT NULL)""",
        [source.name],
    )


def _mapped_select(source: SourceConfig, raw_table: str, as_json: bool) -> tuple[str, list[Any]]:
    params: list[Any] = [source.name, source.trust]
    # JSON rows are parsed once for all the mapped columns (one list of paths), not once per column
    paths: dict[str, int] = {}

    def value(column: str) -> str:
        if not as_json:
            return _value_sql(column, False)
        index = paths.setdefault(column, len(paths) + 1)
        return f"nullif(trim(_v[{index}]), '')"

    cols = [
        "? AS source",
        f"{value(source.id)} AS record_id",
        "_line AS line",
        "? AS trust",
        "_raw AS raw",
        (f"{value(source.updated_at)} AS updated_at_raw" if source.updated_at else "NULL::VARCHAR AS updated_at_raw"),
    ]
    for name in CANONICAL_FIELDS:
        mapping = source.fields.get(name)  # type: ignore[call-overload]
        if mapping is None:
            cols.append(f"NULL::VARCHAR AS {ident(name)}")
        elif isinstance(mapping, Constant):
            cols.append(f"?::VARCHAR AS {ident(name)}")
            params.append(mapping.value)
        else:
            cols.append(f"{value(mapping)} AS {ident(name)}")
    identifiers = ", ".join(f"{{'kind': ?, 'value': {value(column)}}}" for column in source.identifiers.values())
    params.extend(source.identifiers.keys())
    cols.append(f"[{identifiers}]::STRUCT(kind VARCHAR, value VARCHAR)[] AS source_identifiers")
    rows = ident(raw_table)
    if paths:
        json_paths = ", ".join(_json_path(column) for column in paths)
        rows = f"(SELECT *, json_extract_string(_raw, [{json_paths}]) AS _v FROM {rows})"
    return f"SELECT {', '.join(cols)} FROM {rows}", params

"""Events in: event files read by a batch run (`unify run`), a file by `unify ingest
--events NAME FILE`, single events by the API's ``recordEvent``; and a profile's events
out (the timeline, and the input of traits, effort and life events).

An event attaches to a source record (``record_key``) or to an identifier (``link_kind``,
``link_value``, standardized as the records' identifiers are), never to a profile id:
whichever profile holds that record or identifier now owns the event, so merges, splits,
undo, reruns and live ingests move a customer's history with their records. An event
whose record or identifier no profile holds is kept and counted as unlinked; it attaches
when the record arrives. The same (event source, event id) again replaces the event.

A row that cannot be read (no id, no time, a time or an amount that does not parse, an
empty link column, the same id twice in one file) is quarantined with its line and the
reason, in ``event_quarantine``; the other rows go on. The rows of one file go in in one
transaction."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.batch.files import check_file_columns, create_quarantine, load_raw_file
from pipelines.batch.ingest import value_sql
from pipelines.config import CONSENT_STATUSES, Config, Constant, EventSourceConfig
from pipelines.history.model import Interaction, RecordFacts
from pipelines.standardize.contacts import standardized_identifier
from pipelines.standardize.dates import TIMESTAMP_FORMATS, best_format, timestamp_sql
from profiles.errors import ConfigError
from profiles.store import Store, ident, in_list, name_literal
from profiles.store.erasure import suppressed_sql

#: The columns of a mapped event, as ``events`` holds them (but ingested_at).
EVENT_COLUMNS = (
    "event_source",
    "event_id",
    "occurred_at",
    "type",
    "channel",
    "topic",
    "department",
    "amount",
    "attributes",
    "record_key",
    "link_kind",
    "link_value",
    "line",
)


@dataclass(frozen=True)
class EventCounts:
    rows: int
    accepted: int
    quarantined: int
    written: int  # events inserted or replaced: the accepted ones that were new or differed
    unchanged: bool = False  # the file and its mapping as at the last read: not read again (counts of that read)

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "written": self.written,
            "unchanged": self.unchanged,
        }


def event_source(config: Config, name: str) -> EventSourceConfig:
    for events in config.events:
        if events.name == name:
            return events
    raise ConfigError(f"unknown event source {name!r}; configured: {', '.join(e.name for e in config.events) or 'none'}")


def ingest_event_files(store: Store, config: Config) -> dict[str, EventCounts]:
    """Read every configured event file into ``events`` (a batch run, after it published)."""
    return {events.name: ingest_event_file(store, config, events, config.resolve(events.path)) for events in config.events}


def ingest_event_file(store: Store, config: Config, events: EventSourceConfig, path: Path) -> EventCounts:
    """One event file into ``events``: its good rows replace the events with their ids, its
    bad rows replace the event source's quarantine.

    Every batch run reads every event file again, and an event log mostly grows: so a file
    whose fingerprint (its bytes and its event source's mapping) is the one of its last read
    is not read again (its counts are that read's, ``unchanged``), and of a file that
    changed only the events that are new or differ from the stored ones are written (a
    replaced event costs a delete in three indexes)."""
    check_file_columns(store, events, path, what="events")
    cat = ident(store.catalog)
    fingerprint = _fingerprint(config, events, path)
    where = str(path.resolve())
    last = store.rows(
        f"SELECT rows, accepted FROM {cat}.main.event_reads WHERE event_source = ? AND path = ? AND fingerprint = ?",
        [events.name, where, fingerprint],
    )
    if last:
        rows, accepted = int(last[0][0]), int(last[0][1])
        return EventCounts(rows=rows, accepted=accepted, quarantined=rows - accepted, written=0, unchanged=True)
    with store.exclusive(), store.workspace(name=f"events_{secrets.token_hex(4)}"):
        create_quarantine(store)
        load_raw_file(store, events, path, "raw_events")
        rows = int(store.scalar("SELECT count(*) FROM raw_events")) + int(store.scalar("SELECT count(*) FROM quarantine"))
        as_json = events.format == "ndjson"
        _map(store, config, events, "raw_events", as_json, _timestamp_format(store, events, as_json))
        _without_suppressed(store, "mapped")
        accepted = int(store.scalar("SELECT count(*) FROM mapped"))
        # nothing of this event source stored yet: nothing to compare or replace
        first = not store.rows(f"SELECT 1 FROM {cat}.main.events WHERE event_source = ? LIMIT 1", [events.name])
        changed = "mapped" if first else _differing(store, cat, events.name, "mapped")
        written = int(store.scalar(f"SELECT count(*) FROM {changed}"))
        with store.transaction():
            store.execute(f"DELETE FROM {cat}.main.event_quarantine WHERE event_source = ?", [events.name])
            store.execute(
                f"""INSERT INTO {cat}.main.event_quarantine SELECT ?, line, record_id, reason, content, now()
                    FROM quarantine ORDER BY line""",
                [events.name],
            )
            (_insert if first else _upsert)(store, cat, changed)
            store.execute(f"DELETE FROM {cat}.main.event_reads WHERE event_source = ? AND path = ?", [events.name, where])
            store.execute(
                f"INSERT INTO {cat}.main.event_reads VALUES (?, ?, ?, ?, ?, ?, now())",
                [events.name, where, fingerprint, rows, accepted, written],
            )
    return EventCounts(rows=rows, accepted=accepted, quarantined=rows - accepted, written=written)


#: Part of every event file's fingerprint: raise it when a change to this module reads the
#: same file differently (mapping, problems, links), so that the next run reads files again.
READ_VERSION = 1


def _fingerprint(config: Config, events: EventSourceConfig, path: Path) -> str:
    """The file's bytes and everything that decides how they become events: the event
    source's config, the country phone numbers are read in, :data:`READ_VERSION`."""
    mapping = json.dumps(
        {"events": events.model_dump(mode="json"), "country": config.matching.default_country, "version": READ_VERSION},
        sort_keys=True,
    )
    with path.open("rb") as f:
        content = hashlib.file_digest(f, "sha256").hexdigest()
    return hashlib.sha256(f"{mapping}\n{content}".encode()).hexdigest()


def _differing(store: Store, cat: str, name: str, mapped: str, out: str = "written") -> str:
    """``out`` (returned): the rows of ``mapped`` that are not in ``events`` as they are
    (new events, and events whose any column, the line included, differs)."""
    columns = ", ".join(f"{c}::VARCHAR" if c == "attributes" else c for c in EVENT_COLUMNS)
    store.execute(
        f"""CREATE TABLE {out} AS SELECT * FROM {mapped} WHERE event_id IN (
                SELECT event_id FROM (SELECT {columns} FROM {mapped}
                                            EXCEPT SELECT {columns} FROM {cat}.main.events WHERE event_source = ?))""",
        [name],
    )
    return out


def record_events(store: Store, config: Config, events: EventSourceConfig, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Events handed over as JSON objects keyed by the event source's columns (the API):
    the good ones go in, in one transaction. Returns per row ``{"event_id", "problem",
    "suppressed"}`` (problem None for an accepted row; suppressed: an erased person's, left out)."""
    cat = ident(store.catalog)
    with store.exclusive(), store.workspace(name=f"events_{secrets.token_hex(4)}"):
        create_quarantine(store)
        lines = [json.dumps(dict(row), default=str) for row in rows]
        store.register("_event_rows", pa.table({"_line": list(range(1, len(lines) + 1)), "_raw": lines}))
        store.execute("CREATE TABLE raw_events AS SELECT _line::BIGINT AS _line, _raw FROM _event_rows")
        store.unregister("_event_rows")
        _map(store, config, events, "raw_events", True, events.date_format)
        ids = dict(store.rows("SELECT line, event_id FROM mapped"))
        _without_suppressed(store, "mapped")
        with store.transaction():
            _upsert(store, cat, "mapped")
        problems = {int(line): str(reason) for line, reason in store.rows("SELECT line, reason FROM quarantine")}
        kept = {line for (line,) in store.rows("SELECT line FROM mapped")}
    return [{"event_id": ids.get(i), "problem": problems.get(i), "suppressed": i in ids and i not in kept} for i in range(1, len(rows) + 1)]


def _timestamp_format(store: Store, events: EventSourceConfig, as_json: bool) -> str | None:
    """The configured format, or the one that reads most of a sample when ISO does not
    (as a batch run detects a source's)."""
    if events.date_format:
        return events.date_format
    column = value_sql(events.timestamp, as_json)
    sample = f"(SELECT {column} AS v FROM raw_events WHERE {column} IS NOT NULL LIMIT 20000)"
    return best_format(store, sample, [], TIMESTAMP_FORMATS, iso_first=True)


def _role_sql(value: str | Constant | None, as_json: bool) -> tuple[str, list[Any]]:
    """A column's trimmed text, a constant (bound), or NULL."""
    if value is None:
        return "NULL::VARCHAR", []
    if isinstance(value, Constant):
        return "?::VARCHAR", [value.value]
    return value_sql(value, as_json), []


def _map(store: Store, config: Config, events: EventSourceConfig, raw: str, as_json: bool, fmt: str | None) -> None:
    """``mapped`` (the good rows as ``events`` columns) and the bad rows into ``quarantine``."""
    params: list[Any] = []
    selects: list[str] = []
    for name, value in (
        ("event_id", events.id),
        ("ts_raw", events.timestamp),
        ("type", events.type),
        ("channel", events.channel),
        ("topic", events.topic),
        ("department", events.department),
        ("amount_raw", events.amount),
        ("link_raw", events.link.record_id or events.link.column),
    ):
        sql, bound = _role_sql(value, as_json)
        selects.append(f"{sql} AS {name}")
        params.extend(bound)
    attributes = [f"{name_literal(n)}, {value_sql(c, as_json)}" for n, c in events.attributes.items()]
    consent = events.consent
    if consent is not None:  # a consent statement's purpose and status, as the consent rules read them
        selects.append(f"lower({value_sql(consent.purpose, as_json)}) AS consent_purpose")
        selects.append(f"lower({value_sql(consent.status, as_json)}) AS consent_status")
        attributes += [
            "'purpose', lower(" + value_sql(consent.purpose, as_json) + ")",
            "'status', lower(" + value_sql(consent.status, as_json) + ")",
        ]
        if consent.source is not None:
            attributes.append(f"'source', {value_sql(consent.source, as_json)}")
    selects.append(f"json_object({', '.join(attributes)}) AS attributes" if attributes else "NULL::JSON AS attributes")
    parsed = f"coalesce({timestamp_sql('ts_raw')}" + (", try_strptime(ts_raw, ?))" if fmt else ")")
    store.execute(
        f"""CREATE TABLE staged AS
            SELECT *, {parsed} AS occurred_at, try_cast(amount_raw AS DOUBLE) AS amount
            FROM (SELECT _line AS line, _raw, {", ".join(selects)} FROM {ident(raw)})""",
        [*([fmt] if fmt else []), *params],  # in the order the placeholders appear
    )
    problems = _problems(config, events, fmt)
    store.execute(
        f"""INSERT INTO quarantine
            SELECT ?, line, event_id, reason, left(_raw, 500)
            FROM (SELECT *, CASE {" ".join(f"WHEN {p.sql} THEN {p.reason_sql}" for p in problems)} END AS reason FROM staged)
            WHERE reason IS NOT NULL""",
        [events.name],
    )
    store.execute(f"DELETE FROM staged WHERE {' OR '.join(f'({p.sql})' for p in problems)}")
    # an id again on a later line: the later row is the event as it stands
    # (a hash aggregate of the ids alone: a window over the staged rows cost seconds at 4M rows)
    store.execute(
        """CREATE TABLE repeated AS
           SELECT s.line, r.last_line FROM staged s
           JOIN (SELECT event_id, max(line) AS last_line FROM staged GROUP BY event_id HAVING count(*) > 1) r USING (event_id)
           WHERE s.line < r.last_line"""
    )
    if store.rows("SELECT 1 FROM repeated LIMIT 1"):
        store.execute(
            """INSERT INTO quarantine
               SELECT ?, line, event_id, 'the same event id appears again on line ' || last_line, left(_raw, 500)
               FROM staged JOIN repeated USING (line)""",
            [events.name],
        )
        store.execute("DELETE FROM staged WHERE line IN (SELECT line FROM repeated)")
    link_kind, link_value, record_key = _link_sql(store, config, events)
    store.execute(
        f"""CREATE TABLE mapped AS
            SELECT ?::VARCHAR AS event_source, event_id, occurred_at, type, channel, topic, department, amount, attributes,
                   {record_key} AS record_key, {link_kind} AS link_kind, {link_value} AS link_value, line
            FROM staged""",
        [events.name],
    )


@dataclass(frozen=True)
class _Problem:
    """Why a staged row cannot be an event, in the SQL over ``staged`` and in Python over a
    row mapped by :func:`map_event` (the same words either way)."""

    sql: str  # the condition
    reason_sql: str  # the reason, an SQL text expression
    reason: Callable[[Mapping[str, Any]], str | None]  # the reason for a mapped row, or None


def _problems(config: Config, events: EventSourceConfig, fmt: str | None) -> list[_Problem]:
    """What makes a row unreadable, in the order a row's first problem is reported."""

    def plain(sql: str, message: str, holds: Callable[[Mapping[str, Any]], bool]) -> _Problem:
        return _Problem(sql, _text(message), lambda row: message if holds(row) else None)

    def quoting(sql: str, prefix: str, column: str, holds: Callable[[Mapping[str, Any]], bool], empty: str | None = None) -> _Problem:
        shown = f"coalesce({column}, {_text(empty)})" if empty is not None else column
        return _Problem(
            sql,
            f"{_text(prefix)} || {shown} || ')'",
            lambda row: f"{prefix}{row[column] if row[column] is not None else empty})" if holds(row) else None,
        )

    link = events.link.record_id or events.link.column
    problems = [
        plain("event_id IS NULL", f"no event id (column {events.id!r})", lambda r: r["event_id"] is None),
        plain("length(event_id) > 200", "event id longer than 200 characters", lambda r: len(r["event_id"]) > 200),
        plain("ts_raw IS NULL", f"no time (column {events.timestamp!r})", lambda r: r["ts_raw"] is None),
        quoting(
            "occurred_at IS NULL",
            "not a valid time" + (f" in format {fmt}" if fmt else "") + " (value ",
            "ts_raw",
            lambda r: r["occurred_at"] is None,
        ),
        plain("type IS NULL", "no event type", lambda r: r["type"] is None),
        quoting(
            "amount_raw IS NOT NULL AND amount IS NULL",
            "amount is not a number (value ",
            "amount_raw",
            lambda r: r["amount_raw"] is not None and r["amount"] is None,
        ),
        plain("link_raw IS NULL", f"no customer reference (column {link!r})", lambda r: r["link_raw"] is None),
    ]
    consent = events.consent
    if consent is not None:
        names = [p.name for p in config.purposes]
        problems += [
            plain("consent_purpose IS NULL", f"no purpose (column {consent.purpose!r})", lambda r: r["consent_purpose"] is None),
            quoting(
                f"consent_purpose NOT IN ({', '.join(_text(n) for n in names)})",
                f"not a declared purpose ({', '.join(names)}; value ",
                "consent_purpose",
                lambda r: r["consent_purpose"] not in names,
            ),
            quoting(
                f"consent_status IS NULL OR consent_status NOT IN ({', '.join(_text(s) for s in CONSENT_STATUSES)})",
                f"status is not one of {', '.join(CONSENT_STATUSES)} (column {consent.status!r}, value ",
                "consent_status",
                lambda r: r["consent_status"] not in CONSENT_STATUSES,
                empty="empty",
            ),
        ]
    return problems


# ---- one event in Python: recordEvent's path ----------------------------------------------

#: Times the Python twin reads as DuckDB's TIMESTAMP cast does (others go the SQL way).
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?)?$")
#: Numbers both read alike (DuckDB also takes ``1_000``: those go the SQL way).
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


class _NotPlain(Exception):
    """A value the Python twin might read otherwise than the SQL: use the SQL."""


def _plain_text(row: Mapping[str, Any], column: str) -> str | None:
    """``value_sql`` of a JSON object's key in Python: trimmed of spaces, None when empty."""
    value = row.get(column)
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value) and "e" not in repr(value):
        text = json.dumps(value)
    else:  # booleans, objects, lists, exponents: as DuckDB's JSON writes them
        raise _NotPlain(column)
    return text.strip(" ") or None


def map_event(config: Config, events: EventSourceConfig, row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None] | None:
    """One event keyed by the event source's column names, mapped as :func:`_map` maps a
    row (the Python twin, held equal to it by tests/pipelines/history/test_record_event.py):
    (the ``events`` row, None) or (None, the reason it is refused). None when the row holds
    a value this twin does not read exactly as the SQL does (then the SQL path maps it)."""
    try:
        text = {column: _plain_text(row, column) for column in {*events.columns().values()} - {""}}
    except _NotPlain:
        return None

    def role(value: str | Constant | None) -> str | None:
        return value.value if isinstance(value, Constant) else text[value] if value is not None else None

    staged: dict[str, Any] = {
        "event_id": role(events.id),
        "ts_raw": role(events.timestamp),
        "type": role(events.type),
        "channel": role(events.channel),
        "topic": role(events.topic),
        "department": role(events.department),
        "amount_raw": role(events.amount),
        "link_raw": role(events.link.record_id or events.link.column),
    }
    ts = staged["ts_raw"]
    if ts is not None and not _ISO_TIME.match(ts):
        return None
    try:
        staged["occurred_at"] = datetime.fromisoformat(ts) if ts is not None else None
    except ValueError:
        if events.date_format:
            return None  # a format of its own may read it
        staged["occurred_at"] = None
    amount = staged["amount_raw"]
    if amount is not None and not _PLAIN_NUMBER.match(amount):
        return None
    staged["amount"] = float(amount) if amount is not None else None
    attributes: dict[str, Any] = {name: text[column] for name, column in events.attributes.items()}
    consent = events.consent
    if consent is not None:
        purpose, status = text[consent.purpose], text[consent.status]
        if not all(v is None or v.isascii() for v in (purpose, status)):
            return None  # lower() of other letters: as DuckDB does it
        staged["consent_purpose"], staged["consent_status"] = (v.lower() if v is not None else None for v in (purpose, status))
        attributes.update(purpose=staged["consent_purpose"], status=staged["consent_status"])
        if consent.source is not None:
            attributes["source"] = text[consent.source]
    if staged["event_id"] is not None and not staged["event_id"].isascii():
        return None  # length in characters: as DuckDB counts them
    for problem in _problems(config, events, events.date_format):
        reason = problem.reason(staged)
        if reason is not None:
            return None, reason
    link_kind, link_value, record_key = _link_python(config, events, staged["link_raw"])
    return {
        "event_source": events.name,
        "event_id": staged["event_id"],
        "occurred_at": staged["occurred_at"],
        "type": staged["type"],
        "channel": staged["channel"],
        "topic": staged["topic"],
        "department": staged["department"],
        "amount": staged["amount"],
        "attributes": attributes or None,
        "record_key": record_key,
        "link_kind": link_kind,
        "link_value": link_value,
        "line": 1,
    }, None


def _link_python(config: Config, events: EventSourceConfig, raw: str) -> tuple[str | None, str | None, str | None]:
    """:func:`_link_sql` for one value: (link_kind, link_value, record_key)."""
    link = events.link
    if link.source is not None:
        return None, None, f"{link.source}:{raw}"
    kind = str(link.identifier)
    if kind in ("email", "phone"):
        return kind, standardized_identifier(kind, raw, config.matching.default_country), None
    return kind, raw, None


def record_event(store: Store, config: Config, events: EventSourceConfig, row: Mapping[str, Any]) -> dict[str, Any]:
    """One event (recordEvent): mapped in Python and written with two statements when its
    values are plain (:func:`map_event`), else through :func:`record_events`. Returns
    ``{"event_id", "problem", "suppressed"}`` as that does, and for an event written here
    also what it is attached to (``record_key``, ``link_kind``, ``link_value``)."""
    mapped = map_event(config, events, row)
    if mapped is None:
        return record_events(store, config, events, [row])[0]
    event, problem = mapped
    if event is None:
        return {"event_id": None, "problem": problem, "suppressed": False}
    token = event["record_key"] or (f"{event['link_kind']}:{event['link_value']}" if event["link_value"] is not None else None)
    if token is not None and _suppressed(store, token):
        return {"event_id": event["event_id"], "problem": None, "suppressed": True}
    cat = ident(store.catalog)
    attributes = json.dumps(event["attributes"]) if event["attributes"] is not None else None
    values = [attributes if c == "attributes" else event[c] for c in EVENT_COLUMNS]
    with store.exclusive(), store.transaction():
        store.execute(f"DELETE FROM {cat}.main.events WHERE event_source = ? AND event_id = ?", [event["event_source"], event["event_id"]])
        store.execute(
            f"INSERT INTO {cat}.main.events ({', '.join(EVENT_COLUMNS)}, ingested_at) VALUES ({', '.join('?' for _ in EVENT_COLUMNS)}, now())",
            values,
        )
    links = {k: event[k] for k in ("record_key", "link_kind", "link_value")}
    return {"event_id": event["event_id"], "problem": None, "suppressed": False, **links}


def _suppressed(store: Store, token: str) -> bool:
    found = suppressed_sql(store, "?::VARCHAR")
    if found is None:
        return False
    condition, params = found
    return bool(store.scalar(f"SELECT {condition}", [*params, token]))


def _text(text: str) -> str:
    """Our own message text as an SQL string literal (a row's value is appended by column)."""
    return "'" + text.replace("'", "''") + "'"


def _link_sql(store: Store, config: Config, events: EventSourceConfig) -> tuple[str, str, str]:
    """(link_kind, link_value, record_key) expressions over ``staged``: a record's key, or
    an identifier standardized as the records' identifiers are (emails and phones through
    the same functions; the distinct values once)."""
    link = events.link
    if link.source is not None:
        return "NULL::VARCHAR", "NULL::VARCHAR", f"{name_literal(link.source)} || ':' || link_raw"
    kind = name_literal(str(link.identifier))
    if link.identifier not in ("email", "phone"):
        return kind, "link_raw", "NULL::VARCHAR"
    values = [str(v) for (v,) in store.rows("SELECT DISTINCT link_raw FROM staged")]
    mapped = [standardized_identifier(str(link.identifier), v, config.matching.default_country) for v in values]
    store.register("_link_map", pa.table({"raw": pa.array(values, pa.string()), "value": pa.array(mapped, pa.string())}))
    store.execute("CREATE TABLE link_map AS SELECT * FROM _link_map")
    store.unregister("_link_map")
    return kind, "(SELECT m.value FROM link_map m WHERE m.raw = staged.link_raw)", "NULL::VARCHAR"


def _without_suppressed(store: Store, mapped: str) -> None:
    """Leave out of ``mapped`` the events attached to an erased person's record or
    identifier (the suppression list, profiles.store.erasure). Before the transaction
    that writes the store: a transaction writes one database."""
    by_key = suppressed_sql(store, "record_key")
    if by_key is not None:
        condition, params = by_key
        by_identifier, _ = suppressed_sql(store, "link_kind || ':' || link_value") or ("false", [])
        store.execute(
            f"DELETE FROM {mapped} WHERE (record_key IS NOT NULL AND {condition}) OR (link_value IS NOT NULL AND {by_identifier})",
            [*params, *params],
        )


def _upsert(store: Store, cat: str, mapped: str) -> None:
    """``mapped`` into ``events``: an event already there (same source and id) is replaced."""
    store.execute(
        f"""DELETE FROM {cat}.main.events e WHERE EXISTS
            (SELECT 1 FROM {mapped} m WHERE m.event_source = e.event_source AND m.event_id = e.event_id)"""
    )
    _insert(store, cat, mapped)


def _insert(store: Store, cat: str, mapped: str) -> None:
    store.execute(
        f"INSERT INTO {cat}.main.events ({', '.join(EVENT_COLUMNS)}, ingested_at) SELECT {', '.join(EVENT_COLUMNS)}, now() FROM {mapped}"
    )


# ---- out: a profile's events ---------------------------------------------------------------


def profile_events_sql(run_schema: str, profiles: str | None = None) -> str:
    """The profile's events relation (docs/customer360.md): every event with the profile
    that holds its record or identifier in the run ``run_schema`` (a quoted
    ``catalog.schema``); an event linked by identifier names the smallest record key that
    holds it, as :func:`read_profile_events` does. ``profiles``: a SQL condition on ``profile_id`` (with bound
    parameters of the caller) to read only some."""
    where = f"WHERE {profiles}" if profiles else ""
    columns = "e.event_source, e.event_id, e.occurred_at, e.type, e.channel, e.topic, e.department, e.amount, e.attributes"
    return f"""
        SELECT r.profile_id, {columns}, e.record_key
        FROM (SELECT record_key, profile_id FROM {run_schema}.records {where}) r
        JOIN events e ON e.record_key = r.record_key
        UNION ALL
        SELECT i.profile_id, {columns}, i.record_key
        FROM (SELECT profile_id, kind, value, min(record_key) AS record_key FROM {run_schema}.identifiers {where} GROUP BY ALL) i
        JOIN events e ON e.link_value = i.value AND e.link_kind = i.kind"""


#: The profile's events relation's columns, in order (docs/customer360.md).
PROFILE_EVENT_COLUMNS = (
    "profile_id",
    "event_source",
    "event_id",
    "occurred_at",
    "type",
    "channel",
    "topic",
    "department",
    "amount",
    "attributes",
    "record_key",
)


def read_profile_events(
    store: Store, profile_id: str, record_keys: Sequence[str], identifiers: Sequence[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """One profile's events (the profile's events relation's rows, ``attributes`` a dict),
    newest first, given what its events attach to (``ProfileQueries.links_of``: record keys, and (kind, value,
    record key) of identifiers). One statement of two indexed reads, by record key and by
    identifier value (a join made the second a scan of every identifier-linked event; two
    statements cost a fifth more)."""
    columns = "event_source, event_id, occurred_at, type, channel, topic, department, amount, attributes::VARCHAR AS attributes"
    reads: list[str] = []
    params: list[Any] = []
    if record_keys:
        in_keys, by_key = in_list("record_key", record_keys)
        reads.append(f"SELECT {columns}, record_key, NULL AS link_kind, NULL AS link_value FROM events WHERE {in_keys}")
        params += by_key
    if identifiers:
        in_values, by_value = in_list("link_value", sorted({value for _, value, _ in identifiers}))
        reads.append(f"SELECT {columns}, NULL AS record_key, link_kind, link_value FROM events WHERE {in_values}")
        params += by_value
    if not reads:
        return []
    held = {(kind, value): key for kind, value, key in identifiers}
    rows: list[dict[str, Any]] = []
    # each row made once, from the fetched tuple (a card reads ~10-20 of them on every request)
    for source, event_id, at, type_, channel, topic, department, amount, attributes, key, kind, value in store.rows(
        " UNION ALL ".join(reads), params
    ):
        if key is None:  # attached to an identifier: the record of the profile that holds it
            key = held.get((kind, value))
            if key is None:  # that value under another kind: not this profile's
                continue
        rows.append(
            {
                "profile_id": profile_id,
                "event_source": source,
                "event_id": event_id,
                "occurred_at": at,
                "type": type_,
                "channel": channel,
                "topic": topic,
                "department": department,
                "amount": amount,
                "attributes": json.loads(attributes) if attributes else {},
                "record_key": key,
            }
        )
    rows.sort(key=lambda r: (r["occurred_at"], r["event_source"], r["event_id"]), reverse=True)
    return rows


def interactions(rows: Sequence[Mapping[str, Any]]) -> list[Interaction]:
    """Rows of the profile's events relation as Interactions."""
    out = []
    for row in rows:
        attributes = row.get("attributes")
        out.append(
            Interaction(
                event_source=str(row["event_source"]),
                event_id=str(row["event_id"]),
                occurred_at=row["occurred_at"]
                if isinstance(row["occurred_at"], datetime)
                else datetime.fromisoformat(str(row["occurred_at"])),
                type=str(row["type"]),
                channel=row.get("channel"),
                topic=row.get("topic"),
                department=row.get("department"),
                amount=row.get("amount"),
                attributes=json.loads(attributes) if isinstance(attributes, str) else dict(attributes or {}),
                record_key=row.get("record_key"),
            )
        )
    return out


def record_facts(row: Mapping[str, Any]) -> RecordFacts:
    """A record row (records' columns) as what life events read of it."""
    return RecordFacts(
        record_key=str(row["record_key"]),
        source=str(row["source"]),
        updated_at=row.get("updated_at"),
        first_name=row.get("first_name"),
        last_name=row.get("last_name"),
        surname_tokens=tuple(row.get("surname_tokens") or ()),
        date_of_birth=row.get("date_of_birth"),
        street=row.get("street"),
        house_number=row.get("house_number"),
        postcode=row.get("postcode"),
        city=row.get("city"),
    )


def unlinked_count(store: Store, run_schema: str) -> int:
    """Events no profile of the run holds a record or identifier of."""
    return int(
        store.scalar(
            f"""SELECT count(*) FROM events e
                WHERE NOT EXISTS (SELECT 1 FROM {run_schema}.records r WHERE r.record_key = e.record_key)
                  AND NOT EXISTS (SELECT 1 FROM {run_schema}.identifiers i WHERE i.kind = e.link_kind AND i.value = e.link_value)"""
        )
    )


__all__ = [
    "EVENT_COLUMNS",
    "EventCounts",
    "event_source",
    "ingest_event_file",
    "ingest_event_files",
    "interactions",
    "map_event",
    "profile_events_sql",
    "read_profile_events",
    "record_event",
    "record_events",
    "record_facts",
    "unlinked_count",
]

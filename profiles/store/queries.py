"""The read side of the store: what the API asks of the published run, in batches
(one query per kind of data per request, whatever the number of profiles)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from profiles.errors import NoPublishedRun
from profiles.model import CANONICAL_FIELDS
from profiles.store.audit import AuditEvent, append_audit
from profiles.store.connection import Store, marks
from profiles.store.runs import current_run, published_tables


@dataclass(frozen=True)
class Resolved:
    """A profile id as asked, and the profile that answers for it now."""

    asked: str
    profile_id: str
    redirected: bool


class ProfileQueries:
    """Batched reads of the published run, plus the append-only audit log."""

    def __init__(self, store: Store):
        self.store = store
        self.query_count = 0  # store round trips, for tests that bound them
        self._model_cache: dict[str, Any] = {}
        self._known: dict[str, set[str]] = {}
        self._run: list[Any] = []  # published_tables' cache

    def _t(self, table: str) -> str:
        """The published run's ``table`` named directly: the ``main`` view costs 0.1-0.2 ms
        a query to bind (a third of reading a profile's records at 1M)."""
        run = published_tables(self.store.reader(), self._run)
        if run is None:  # before the first `unify run`: no table to read (it was a DuckDB catalog error)
            raise NoPublishedRun()
        return f"{run}.{table}"

    def run_schema(self) -> str | None:
        """``catalog.run`` of the published run (quoted), for reads that join its tables."""
        return published_tables(self.store.reader(), self._run)

    def links_of(self, profile_id: str) -> tuple[list[str], list[tuple[str, str, str]]]:
        """What a profile's events attach to (:func:`links_of_records`), read from its
        records by the indexed profile id."""
        return links_of_records(self._dicts(f"SELECT record_key, identifiers FROM {self._t('records')} WHERE profile_id = ?", [profile_id]))

    def record_facts(self, profile_id: str) -> list[dict[str, Any]]:
        """What life events read of a profile's records (pipelines.history.model.RecordFacts)."""
        columns = (
            "record_key, source, updated_at, first_name, last_name, surname_tokens, date_of_birth, street, house_number, postcode, city"
        )
        return self._dicts(f"SELECT {columns} FROM {self._t('records')} WHERE profile_id = ? ORDER BY record_key", [profile_id])

    def link_owner(self, record_key: str | None, kind: str | None, value: str | None) -> str | None:
        """The profile that holds a record, or (the smallest of those that hold) an
        identifier, now: an event's owner, from what it is attached to (as
        :meth:`event_owner` reads it from the stored event)."""
        if record_key is not None:
            rows = self.store.reader().rows(f"SELECT profile_id FROM {self._t('records')} WHERE record_key = ?", [record_key])
        elif value is not None:
            rows = self.store.reader().rows(
                f"SELECT min(profile_id) FROM {self._t('identifiers')} WHERE value = ? AND kind = ? HAVING count(*) > 0", [value, kind]
            )
        else:
            return None
        return str(rows[0][0]) if rows else None

    def event_owner(self, event_source: str, event_id: str) -> str | None:
        """The profile that holds the record or identifier an event is attached to now."""
        records, identifiers = self._t("records"), self._t("identifiers")
        rows = self.store.reader().rows(
            f"""SELECT r.profile_id FROM events e JOIN {records} r ON r.record_key = e.record_key
                WHERE e.event_source = ? AND e.event_id = ?
                UNION ALL
                SELECT i.profile_id FROM events e JOIN {identifiers} i ON i.value = e.link_value AND i.kind = e.link_kind
                WHERE e.event_source = ? AND e.event_id = ?
                ORDER BY 1 LIMIT 1""",
            [event_source, event_id, event_source, event_id],
        )
        return str(rows[0][0]) if rows else None

    def _dicts(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        self.query_count += 1
        return self.store.reader().dicts(sql, params)

    def resolve(self, profile_ids: Sequence[str]) -> dict[str, Resolved]:
        """Current profile for each asked id, following merge redirects."""
        ids = list(profile_ids)
        rows = self._dicts(
            f"""SELECT profile_id AS asked, profile_id, false AS redirected FROM {self._t("profiles")} WHERE profile_id IN ({marks(ids)})
                UNION ALL
                SELECT profile_id, redirect_to, true FROM profile_registry
                WHERE profile_id IN ({marks(ids)}) AND redirect_to IS NOT NULL""",
            ids + ids,
        )
        return {r["asked"]: Resolved(r["asked"], r["profile_id"], bool(r["redirected"])) for r in rows}

    def current_id(self, profile_id: str) -> str | None:
        """The profile that holds what ``profile_id`` held now (itself, or the profile it
        was merged into), or None for an unknown id."""
        resolved = self.resolve([profile_id]).get(profile_id)
        return resolved.profile_id if resolved else None

    def registered_ids(self, since: Any = None) -> tuple[list[str], Any]:
        """Every profile id ever registered (retired ones too), or those registered at or
        after ``since``; with the latest registration time, to ask from next time."""
        rows = self.store.reader().rows(
            "SELECT profile_id, created_at FROM profile_registry WHERE ? IS NULL OR created_at >= ?", [since, since]
        )
        return [str(p) for p, _ in rows], max((t for _, t in rows), default=since)

    def profiles_with_identifier(self, kind: str, value: str) -> list[str]:
        # by value alone, which the serving index answers (0.3 ms at 1M); kind and order here
        rows = self._dicts(f"SELECT kind, profile_id FROM {self._t('identifiers')} WHERE value = ?", [value])
        return sorted({r["profile_id"] for r in rows if r["kind"] == kind})

    def profile_of_record(self, source: str, record_id: str) -> str | None:
        rows = self._dicts(f"SELECT profile_id FROM {self._t('membership')} WHERE source = ? AND record_id = ?", [source, record_id])
        return rows[0]["profile_id"] if rows else None

    def profiles(self, profile_ids: Sequence[str], columns: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Profile rows by id: every column, or ``columns`` (and the id) only: a row's
        columns are most of the cost of reading it by key (at 1M, 0.42 ms for the 19 of a
        profile, 0.31 for the 10 a contact card shows)."""
        ids = list(profile_ids)
        selected = _projection(columns, PROFILE_COLUMNS, ("profile_id",)) if columns is not None else "*"
        rows = self._dicts(f"SELECT {selected} FROM {self._t('profiles')} WHERE profile_id IN ({marks(ids)})", ids)
        return {r["profile_id"]: r for r in rows}

    def records(self, profile_ids: Sequence[str], columns: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Each profile's records, most recent first, with their identifiers (a list of
        {kind, value}), so that a card's identifiers need no query of their own; or only
        ``columns`` of them (with the keys they are grouped and ordered by: 0.59 -> 0.32 ms
        at 1M for what a card shows). The source rows are read by :meth:`raw_rows`, for
        those who ask and may see them."""
        ids = list(profile_ids)
        selected = _SERVED_RECORD if columns is None else _projection(columns, SERVED_RECORD_COLUMNS, _RECORD_KEYS, "r.")
        rows = self._dicts(  # sorted here: an ORDER BY costs more than the indexed read (0.6 of 1.8 ms)
            f"SELECT {selected} FROM {self._t('records')} r WHERE r.profile_id IN ({marks(ids)})", ids
        )
        rows.sort(key=lambda r: r["record_key"])  # then (stable) most recent first, no date last
        rows.sort(key=lambda r: (r["updated_at"] is not None, r["updated_at"] or datetime.min), reverse=True)
        return _group(rows)

    def golden_fields(self, profile_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        ids = list(profile_ids)
        rows = self._dicts(f"SELECT * FROM {self._t('golden_fields')} WHERE profile_id IN ({marks(ids)}) ORDER BY field", ids)
        return _group(rows)

    def records_by_key(self, record_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        keys = list(record_keys)
        rows = self._dicts(f"SELECT {_SERVED_RECORD} FROM {self._t('records')} r WHERE r.record_key IN ({marks(keys)})", keys)
        return {r["record_key"]: r for r in rows}

    def raw_rows(self, record_keys: Sequence[str]) -> dict[str, Any]:
        """Each record's source row as the source wrote it (parsed from its JSON)."""
        keys = list(record_keys)
        rows = self._dicts(f"SELECT record_key, raw::VARCHAR AS raw FROM {self._t('records')} WHERE record_key IN ({marks(keys)})", keys)
        return {r["record_key"]: json.loads(r["raw"]) if r["raw"] else None for r in rows}

    def review_queue(self, first: int, after: tuple[float, str] | None) -> tuple[list[dict[str, Any]], int]:
        """Open candidate pairs, closest to the decision boundary first: not decided by a
        steward and still in two profiles (a merge may have joined them since the run).
        Keyset-paginated on (distance to the boundary, pair id). Returns (page, total)."""
        open_pairs = f"""
            FROM {self._t("review_queue")} q
            JOIN {self._t("records")} rl ON rl.record_key = q.record_key_l
            JOIN {self._t("records")} rr ON rr.record_key = q.record_key_r
            WHERE rl.profile_id <> rr.profile_id
              AND NOT EXISTS (SELECT 1 FROM link_constraints c WHERE c.active
                              AND c.record_key_l = least(q.record_key_l, q.record_key_r)
                              AND c.record_key_r = greatest(q.record_key_l, q.record_key_r))"""
        total = int(self.store.scalar(f"SELECT count(*) {open_pairs}"))
        distance, pair_id = after if after else (-1.0, "")
        rows = self._dicts(
            f"""SELECT q.pair_id, q.record_key_l, q.record_key_r, q.match_probability, q.match_weight,
                       q.distance_to_boundary, rl.profile_id AS profile_id_l, rr.profile_id AS profile_id_r
                {open_pairs} AND (q.distance_to_boundary, q.pair_id) > (?, ?)
                ORDER BY q.distance_to_boundary, q.pair_id LIMIT ?""",
            [distance, pair_id, first],
        )
        return rows, total

    def links_within(self, profile_id: str, threshold: float) -> list[tuple[str, str, float]]:
        """Model links at or above ``threshold`` between records of one profile, strongest first."""
        rows = self.store.rows(
            f"""SELECT p.record_key_l, p.record_key_r, p.match_probability FROM {self._t("pairs")} p
               JOIN {self._t("records")} a ON a.record_key = p.record_key_l JOIN {self._t("records")} b ON b.record_key = p.record_key_r
               WHERE a.profile_id = ? AND b.profile_id = ? AND p.match_probability >= ?
               ORDER BY p.match_probability DESC, p.record_key_l, p.record_key_r""",
            [profile_id, profile_id, threshold],
        )
        return [(str(a), str(b), float(p)) for a, b, p in rows]

    def pairs_between(self, left: Sequence[str], right: Sequence[str]) -> list[tuple[str, str, float]]:
        """Scored pairs with one record in ``left`` and one in ``right``, strongest first."""
        rows = self.store.rows(
            f"""SELECT record_key_l, record_key_r, match_probability FROM {self._t("pairs")}
                WHERE (record_key_l IN ({marks(left)}) AND record_key_r IN ({marks(right)}))
                   OR (record_key_l IN ({marks(right)}) AND record_key_r IN ({marks(left)}))
                ORDER BY match_probability DESC, record_key_l, record_key_r""",
            [*left, *right, *right, *left],
        )
        return [(str(a), str(b), float(p)) for a, b, p in rows]

    def decisions(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Active steward decisions ('same' | 'different') on these record pairs (keys ordered)."""
        ordered = [(min(a, b), max(a, b)) for a, b in pairs]
        if not ordered:
            return {}
        rows = self.store.rows(
            f"""SELECT record_key_l, record_key_r, kind FROM link_constraints WHERE active
                AND (record_key_l, record_key_r) IN ({", ".join("(?, ?)" for _ in ordered)})""",
            [k for pair in ordered for k in pair],
        )
        return {(str(a), str(b)): str(kind) for a, b, kind in rows}

    def same_links(self, record_keys: Sequence[str]) -> list[tuple[str, str]]:
        """Active SAME decisions between the given records."""
        keys = list(record_keys)
        rows = self.store.rows(
            f"""SELECT record_key_l, record_key_r FROM link_constraints WHERE active AND kind = 'same'
                AND record_key_l IN ({marks(keys)}) AND record_key_r IN ({marks(keys)})""",
            keys * 2,
        )
        return [(str(a), str(b)) for a, b in rows]

    def audit_log(self, profile_id: str | None, first: int, after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
        """Audit events, newest first, optionally only those about one profile;
        keyset-paginated on (time, event id)."""
        conditions: list[str] = []
        params: list[Any] = []
        if profile_id is not None:
            conditions.append("list_contains(json_extract_string(detail, '$.profiles[*]'), ?)")
            params.append(profile_id)
        if after is not None:
            conditions.append("(occurred_at, event_id) < (?, ?)")
            params += list(after)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._dicts(
            f"""SELECT event_id, occurred_at, actor, role, action, subject, detail::VARCHAR AS detail FROM audit_log {where}
                ORDER BY occurred_at DESC, event_id DESC LIMIT ?""",
            [*params, first],
        )

    def published_model(self) -> dict[str, Any]:
        """The exact model the published run scored with (kept with the run)."""
        run_id = current_run(self.store)
        if run_id is None:
            return {}
        if self._model_cache.get("run") != run_id:  # the model text is read once per run
            text = self.store.scalar("SELECT model::VARCHAR FROM runs WHERE run_id = ?", [run_id])
            self._model_cache = {"run": run_id, "model": json.loads(text) if text is not None else {}}
        model: dict[str, Any] = self._model_cache["model"]
        return model

    def known_values(self, column: str) -> set[str]:
        """Distinct values of a matching column (cities, surnames), cached per process."""
        if column not in ("city_std", "last_name_std"):
            raise ValueError(column)
        if column not in self._known:
            rows = self.store.rows(f"SELECT DISTINCT {column} FROM {self._t('records')} WHERE {column} IS NOT NULL")
            self._known[column] = {str(r[0]) for r in rows}
        return self._known[column]

    def secret(self, name: str) -> str:
        """A random secret kept in the store, made on first use."""
        rows = self.store.rows("SELECT value FROM secrets WHERE name = ?", [name])
        if rows:
            return str(rows[0][0])
        value = secrets.token_hex(32)
        self.store.execute("INSERT INTO secrets (name, value) VALUES (?, ?)", [name, value])
        return value

    def append_audit(self, events: Sequence[AuditEvent]) -> list[str]:
        """Append-only: entries go onto the chain (profiles.store.audit); returns their ids."""
        # inside a steward's or ingest's transaction: the store itself
        return append_audit(self.store.reader(), events)


#: What the API reads of a record: the columns it shows (the matching columns stay in the
#: store) and its identifiers; the source row only when asked (:meth:`ProfileQueries.raw_rows`):
#: each column read costs a lookup time (docs/benchmarks.md, "Figures behind the code's choices").
SERVED_RECORD_COLUMNS = (
    "profile_id",
    "record_key",
    "source",
    "record_id",
    "match_probability",
    "updated_at",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "date_of_birth",
    "street",
    "house_number",
    "address_line2",
    "postcode",
    "city",
    "region",
    "country",
    "identifiers",
)
_SERVED_RECORD = ", ".join(f"r.{c}" for c in SERVED_RECORD_COLUMNS)
_RECORD_KEYS = ("profile_id", "record_key", "updated_at")  # grouped and ordered by these
#: The published profiles table's columns, in its order (survivorship.profiles_sql).
PROFILE_COLUMNS: tuple[str, ...] = (
    "profile_id",
    *(f for f in CANONICAL_FIELDS if f != "full_name"),
    "full_name",
    "record_count",
    "sources",
    "updated_at",
)


def _projection(columns: Sequence[str], known: Sequence[str], always: Sequence[str], prefix: str = "") -> str:
    """A select list of ``always`` and ``columns``, in ``known``'s order; names from the
    API's field declarations, checked against ``known`` (never a caller's string)."""
    return _select_list(tuple(columns), tuple(known), tuple(always), prefix)


@lru_cache(maxsize=256)
def _select_list(columns: tuple[str, ...], known: tuple[str, ...], always: tuple[str, ...], prefix: str) -> str:
    """:func:`_projection`'s, once per query shape: a card asks for the same columns each time."""
    unknown = set(columns) - set(known)
    if unknown:
        raise ValueError(f"not a served column: {', '.join(sorted(unknown))}")
    wanted = set(columns) | set(always)
    return ", ".join(f"{prefix}{c}" for c in known if c in wanted)


def links_of_records(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """What a profile's events attach to, from its records (rows with ``record_key`` and
    ``identifiers``, as :meth:`ProfileQueries.records` serves them): its record keys, in
    order, and (kind, value, record key) of its records' identifiers, each with the
    smallest record key that holds it."""
    keys: list[str] = []
    identifiers: dict[tuple[str, str], str] = {}
    for record in sorted(records, key=lambda r: str(r["record_key"])):
        key = str(record["record_key"])
        keys.append(key)
        for x in record.get("identifiers") or ():
            identifiers.setdefault((str(x["kind"]), str(x["value"])), key)
    return keys, [(kind, value, key) for (kind, value), key in identifiers.items()]


def identifiers_of(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A profile's identifiers from its records (as ``records`` returns them): each
    (kind, value) once, with the sources that hold it, ordered by kind and value."""
    sources: dict[tuple[str, str], set[str]] = {}
    for record in records:
        for identifier in record.get("identifiers") or ():
            sources.setdefault((identifier["kind"], identifier["value"]), set()).add(record["source"])
    return [{"kind": k, "value": v, "sources": sorted(s)} for (k, v), s in sorted(sources.items())]


def _group(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row.pop("profile_id"), []).append(row)
    return grouped

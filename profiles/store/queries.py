"""The read side of the store: what the API asks of the published run, in batches
(one query per kind of data per request, whatever the number of profiles)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from profiles.store.connection import Store


@dataclass(frozen=True)
class Resolved:
    """A profile id as asked, and the profile that answers for it now."""

    asked: str
    profile_id: str
    redirected: bool


@dataclass(frozen=True)
class AuditEvent:
    """One audited act: who (actor, role), what (action), on what (subject), and details
    without PII values or keys."""

    actor: str
    role: str
    action: str
    subject: str | None
    detail: dict[str, Any]


class ProfileQueries:
    """Batched reads of the published run, plus the append-only audit log."""

    def __init__(self, store: Store):
        self.store = store
        self.query_count = 0  # store round trips, for tests that bound them
        self._model_cache: dict[str, Any] = {}
        self._known: dict[str, set[str]] = {}

    def _dicts(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        self.query_count += 1
        return self.store.dicts(sql, params)

    def resolve(self, profile_ids: Sequence[str]) -> dict[str, Resolved]:
        """Current profile for each asked id, following merge redirects."""
        ids = list(profile_ids)
        rows = self._dicts(
            f"""SELECT profile_id AS asked, profile_id, false AS redirected FROM profiles WHERE profile_id IN ({_marks(ids)})
                UNION ALL
                SELECT profile_id, redirect_to, true FROM profile_registry
                WHERE profile_id IN ({_marks(ids)}) AND redirect_to IS NOT NULL""",
            ids + ids,
        )
        return {r["asked"]: Resolved(r["asked"], r["profile_id"], bool(r["redirected"])) for r in rows}

    def profiles_with_identifier(self, kind: str, value: str) -> list[str]:
        rows = self._dicts(
            "SELECT DISTINCT profile_id FROM identifiers WHERE kind = ? AND value = ? ORDER BY 1",
            [kind, value],
        )
        return [r["profile_id"] for r in rows]

    def profile_of_record(self, source: str, record_id: str) -> str | None:
        rows = self._dicts("SELECT profile_id FROM membership WHERE source = ? AND record_id = ?", [source, record_id])
        return rows[0]["profile_id"] if rows else None

    def profiles(self, profile_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        ids = list(profile_ids)
        rows = self._dicts(f"SELECT * FROM profiles WHERE profile_id IN ({_marks(ids)})", ids)
        return {r["profile_id"]: r for r in rows}

    def records(self, profile_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        ids = list(profile_ids)
        rows = self._dicts(
            f"""SELECT r.* EXCLUDE (raw, identifiers), r.raw::VARCHAR AS raw
                FROM records r WHERE r.profile_id IN ({_marks(ids)})
                ORDER BY r.updated_at DESC NULLS LAST, r.record_key""",
            ids,
        )
        grouped = _group(rows)
        for records in grouped.values():
            for record in records:
                record["raw"] = json.loads(record["raw"]) if record["raw"] else None
        return grouped

    def identifiers(self, profile_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        ids = list(profile_ids)
        rows = self._dicts(
            f"""SELECT profile_id, i.kind, i.value, list(DISTINCT source ORDER BY source) AS sources
                FROM (SELECT profile_id, source, unnest(identifiers) AS i FROM records WHERE profile_id IN ({_marks(ids)}))
                GROUP BY ALL ORDER BY i.kind, i.value""",
            ids,
        )
        return _group(rows)

    def golden_fields(self, profile_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        ids = list(profile_ids)
        rows = self._dicts(f"SELECT * FROM golden_fields WHERE profile_id IN ({_marks(ids)}) ORDER BY field", ids)
        return _group(rows)

    def published_model(self) -> dict[str, Any]:
        """The exact model the published run scored with (kept with the run)."""
        run = self.store.rows("SELECT run_id, model::VARCHAR FROM runs WHERE status = 'published' ORDER BY finished_at DESC LIMIT 1")
        if not run or run[0][1] is None:
            return {}
        run_id, text = run[0]
        if self._model_cache.get("run") != run_id:
            self._model_cache = {"run": run_id, "model": json.loads(text)}
        model: dict[str, Any] = self._model_cache["model"]
        return model

    def known_values(self, column: str) -> set[str]:
        """Distinct values of a matching column (cities, surnames), cached per process."""
        if column not in ("city_std", "last_name_std"):
            raise ValueError(column)
        if column not in self._known:
            rows = self.store.rows(f"SELECT DISTINCT {column} FROM records WHERE {column} IS NOT NULL")
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

    def append_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append-only: rows are only ever inserted."""
        if not events:
            return
        now = datetime.now(timezone.utc)
        for event in events:
            self.store.execute(
                "INSERT INTO audit_log (event_id, occurred_at, actor, role, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [f"ev_{secrets.token_hex(8)}", now, event.actor, event.role, event.action, event.subject, json.dumps(event.detail)],
            )


def _marks(values: Sequence[object]) -> str:
    """Placeholders for an IN list: a literal list lets DuckDB skip row groups by their
    min/max (the tables are sorted by these keys); values stay bound parameters."""
    return ", ".join("?" * len(values)) or "NULL"


def _group(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row.pop("profile_id"), []).append(row)
    return grouped

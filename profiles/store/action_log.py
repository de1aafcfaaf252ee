"""Steward actions as they are kept: who acts (:class:`Steward`), what an action did
(:class:`Action`, a row of ``steward_actions``), and the writing and reading of those rows.

An action's row names the profiles and records it touched and the constraints it added
and lifted; its audit event says the same with the records it moved (ids and record keys
only, no PII values). profiles.store.stewardship carries the actions out; this module is
apart so that the API and the CLI can name the types without the machinery."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from profiles.store.audit import AuditEvent
from profiles.store.connection import Store
from profiles.store.queries import ProfileQueries
from profiles.store.snapshots import moved_records

Decision = Literal["same", "different"]
ActionKind = Literal["same", "different", "merge", "split", "undo"]


@dataclass(frozen=True)
class Steward:
    """Who acts (never a key: the key's name) and in which role."""

    actor: str
    role: str


@dataclass(frozen=True)
class Action:
    action_id: str
    run_id: str
    kind: str
    actor: str
    role: str
    reason: str
    created_at: datetime
    subject: dict[str, Any]
    profiles_before: list[str]
    profiles_after: list[str]
    records: list[str]
    constraints_added: list[str]
    constraints_removed: list[str]
    undoes: str | None
    undone_by: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Action:
        values = dict(row)
        values["subject"] = json.loads(values["subject"]) if values.get("subject") else {}
        for name in ("profiles_before", "profiles_after", "records", "constraints_added", "constraints_removed"):
            values[name] = list(values[name] or [])
        return cls(**values)


@dataclass(frozen=True)
class Changes:
    """What an action changed, as its row and audit event name it."""

    before: Sequence[str]  # profiles before
    after: Sequence[str]  # profiles after
    records: Sequence[str]  # record keys whose profile it may change
    added: Sequence[str]  # constraint ids
    removed: Sequence[str]  # constraint ids
    undoes: str | None = None


def new_action_id() -> str:
    return f"act_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


def find_action(store: Store, action_id: str) -> Action | None:
    rows = store.dicts("SELECT * FROM steward_actions WHERE action_id = ?", [action_id])
    return Action.from_row(rows[0]) if rows else None


def recent_actions(store: Store, limit: int) -> list[Action]:
    rows = store.dicts("SELECT * FROM steward_actions ORDER BY created_at DESC, action_id DESC LIMIT ?", [limit])
    return [Action.from_row(r) for r in rows]


def record_action(
    store: Store, run: str, action_id: str, kind: ActionKind, by: Steward, reason: str, subject: dict[str, Any], changes: Changes
) -> Action:
    """The action row and its audit event (ids and record keys only, no PII values), once
    the action's "after" snapshot is taken."""
    moved = moved_records(store, run, action_id)
    store.execute(
        """INSERT INTO steward_actions VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, NULL)""",
        [
            action_id,
            run,
            kind,
            by.actor,
            by.role,
            reason,
            json.dumps(subject),
            list(changes.before),
            list(changes.after),
            list(changes.records),
            list(changes.added),
            list(changes.removed),
            changes.undoes,
        ],
    )
    event = AuditEvent(
        actor=by.actor, role=by.role, action=f"steward.{kind}", subject=action_id, detail=_audit_detail(reason, subject, changes, moved)
    )
    ProfileQueries(store).append_audit([event])
    found = find_action(store, action_id)
    assert found is not None
    return found


def _audit_detail(reason: str, subject: dict[str, Any], changes: Changes, moved: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "reason": reason,
        "subject": subject,
        "profiles": sorted(set(changes.before) | set(changes.after)),
        "profiles_before": list(changes.before),
        "profiles_after": list(changes.after),
        "moved": moved,
        "constraints_added": list(changes.added),
        "constraints_removed": list(changes.removed),
        "undoes": changes.undoes,
    }


__all__ = ["Action", "ActionKind", "Changes", "Decision", "Steward", "find_action", "new_action_id", "recent_actions", "record_action"]

"""The audit log as a hash chain: each entry names the hash of the one before it, so an
entry changed, removed, inserted or moved in the store file shows in :func:`verify_audit`.

An entry's hash covers its fields and a SHA-256 digest of its detail, not the detail
itself: an erasure may rewrite (redact) an old entry's detail without breaking the chain,
and says so in a later ``profile.erase`` entry (itself chained) that names the entries it
redacted. Appends are serialized per store file in this process (the only process that
may own the file), and an append inside a transaction holds the chain until it ends.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pyarrow as pa

from profiles.store.connection import Store, ident, marks

#: The "previous hash" of the first entry.
GENESIS: Final = "0" * 64
#: The action of an erasure's entry; its detail's ``redacted_events`` lists the entries it redacted.
ERASE_ACTION: Final = "profile.erase"
#: Columns the chain adds to audit_log (migrate_audit_log adds them to older stores).
CHAIN_COLUMNS: Final[dict[str, str]] = {
    "seq": "BIGINT",
    "prev_hash": "VARCHAR",
    "entry_hash": "VARCHAR",
    "detail_digest": "VARCHAR",
    "redacted": "BOOLEAN DEFAULT false",
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_locks_guard = threading.Lock()
_chain_locks: dict[str, threading.RLock] = {}
#: Key of the chain's committed head, (seq, hash), in ``Store.shared``: what this process
#: appended last, so that an append outside a transaction reads nothing first (one of a
#: card's four statements; no other process writes the file while it is open here).
_HEAD: Final = "audit_head"


@dataclass(frozen=True)
class AuditEvent:
    """One audited act: who (actor, role), what (action), on what (subject), and details
    without PII values or keys."""

    actor: str
    role: str
    action: str
    subject: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class AuditVerdict:
    """What :func:`verify_audit` found: ``ok``, the entries it checked, the chain's head
    (record it elsewhere to notice entries removed from the end), and the first entry
    that is wrong with what is wrong (``problem``: changed, removed, inserted, reordered)."""

    ok: bool
    entries: int
    head_seq: int | None = None
    head_hash: str | None = None
    seq: int | None = None
    event_id: str | None = None
    problem: str | None = None
    message: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries:,} entries"
        return f"audit chain broken at entry seq {self.seq} ({self.event_id}): {self.problem}: {self.message}"


def _table(store: Store) -> str:
    return f"{ident(store.catalog)}.main.audit_log"


def detail_digest(detail_text: str | None) -> str:
    return hashlib.sha256((detail_text or "").encode("utf-8")).hexdigest()


def entry_hash(
    seq: int, event_id: str, occurred_us: int, actor: str, role: str, action: str, subject: str | None, digest: str, prev_hash: str
) -> str:
    """The hash of one entry (``occurred_us``: its time as microseconds since the epoch)."""
    fields = [seq, event_id, occurred_us, actor, role, action, subject, digest, prev_hash]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def _chain_lock(store: Store) -> threading.RLock:
    with _locks_guard:
        return _chain_locks.setdefault(store.abs_path, threading.RLock())


def _head(store: Store) -> tuple[int, str]:
    """The last entry's (seq, hash) as committed. Inside a transaction the store sees the
    data as of its start, so a connection of its own reads it: every append commits (or
    rolls back) before the chain lock is free, so the committed head is the head. The
    head this process appended last, when it knows it (in a transaction: with what the
    transaction appended; forgotten when it rolls back)."""
    known: tuple[int, str] | None = store.shared.get(_HEAD)
    if known is not None:
        return known
    table = _table(store)

    def read(on: Store) -> list[tuple[Any, ...]]:  # once per open store, and after a rollback
        return on.rows(f"SELECT seq, entry_hash FROM {table} WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")

    rows = read(store)  # in a transaction: with what it appended itself
    if store.in_transaction:
        with store.cursor() as fresh:
            rows = max(rows, read(fresh), key=lambda r: r[0][0] if r else 0)
    return (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS)


def append_audit(store: Store, events: Sequence[AuditEvent]) -> list[str]:
    """Append ``events`` to the chain (one statement); returns their event ids. Inside a
    transaction the chain stays held until the transaction ends, so no other append can
    chain onto the head this one read."""
    if not events:
        return []
    lock = _chain_lock(store)
    with store.exclusive():  # the store's lock first, then the chain's (a transaction holds both)
        lock.acquire()
        try:
            seq, prev = _head(store)
            now = datetime.now(UTC)
            occurred_us = (now - _EPOCH) // timedelta(microseconds=1)
            values: list[Any] = []
            ids: list[str] = []
            for event in events:
                seq += 1
                event_id = f"ev_{secrets.token_hex(8)}"
                text = json.dumps(event.detail)
                digest = detail_digest(text)
                this = entry_hash(seq, event_id, occurred_us, event.actor, event.role, event.action, event.subject, digest, prev)
                values += [seq, event_id, now, event.actor, event.role, event.action, event.subject, text, digest, prev, this]
                ids.append(event_id)
                prev = this
            store.execute(
                f"INSERT INTO {_table(store)} (seq, event_id, occurred_at, actor, role, action, subject, detail, detail_digest,"
                " prev_hash, entry_hash, redacted) VALUES " + ", ".join("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false)" for _ in events),
                values,
            )
            store.shared[_HEAD] = (seq, prev)
        except BaseException:
            store.shared.pop(_HEAD, None)
            lock.release()
            raise
        if store.after_transaction(lock.release):

            def unless_committed() -> None:  # a rolled back transaction's entries are no head to chain onto
                if not store.committed:
                    store.shared.pop(_HEAD, None)

            store.after_transaction(unless_committed)  # runs before the release: callbacks run last given, first
        else:
            lock.release()
    return ids


def redact_audit(store: Store, event_ids: Sequence[str], scrub: Callable[[dict[str, Any]], dict[str, Any]]) -> list[str]:
    """Rewrite the detail of the entries ``event_ids`` with ``scrub(detail)`` and mark them
    redacted; their digest and hash stay, so the chain still verifies once a later
    ``profile.erase`` entry names them in its detail's ``redacted_events`` (the caller
    appends it, in the same transaction if it has one). Returns the ids redacted."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return []

    def rewrite() -> list[str]:
        rows = store.rows(f"SELECT event_id, detail::VARCHAR FROM {_table(store)} WHERE event_id IN ({marks(ids)})", ids)
        for event_id, text in rows:
            scrubbed = scrub(json.loads(text) if text else {})
            store.execute(f"UPDATE {_table(store)} SET detail = ?, redacted = true WHERE event_id = ?", [json.dumps(scrubbed), event_id])
        found = {str(r[0]) for r in rows}
        return [i for i in ids if i in found]

    if store.in_transaction:
        return rewrite()
    with store.transaction():
        return rewrite()


def verify_audit(store: Store) -> AuditVerdict:
    """Walk the chain in seq order: every entry must follow the one before it (seq one
    more, its previous hash that entry's hash), hash to its stored hash, and have the
    detail its digest names (or be redacted and named by a later erasure's entry)."""
    rows = store.rows(
        f"""SELECT seq, event_id, epoch_us(occurred_at), actor, role, action, subject, detail::VARCHAR, detail_digest,
                   prev_hash, entry_hash, coalesce(redacted, false)
            FROM {_table(store)} ORDER BY seq NULLS LAST, event_id"""
    )
    erased_at = _erasures(rows)
    known = {r[10] for r in rows}
    expected, prev, before_prev = 1, GENESIS, None
    checked = 0

    def broken(row: tuple[Any, ...], problem: str, message: str) -> AuditVerdict:
        return AuditVerdict(False, checked, seq=row[0], event_id=row[1], problem=problem, message=message)

    for i, row in enumerate(rows):
        seq, event_id, occurred_us, actor, role, action, subject, text, digest, prev_hash, stored = row[:11]
        if seq is None:
            return broken(row, "inserted", "the entry has no place in the chain (no seq)")
        if seq < expected:
            return broken(row, "inserted", f"its seq {seq} repeats or goes back (expected {expected})")
        if seq > expected and prev_hash != prev:
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            return broken(row, "removed", f"the entries before it ({missing}) are missing")
        if prev_hash != prev:
            if i >= 1 and prev_hash == before_prev:
                return broken(rows[i - 1], "inserted", "the entry after it chains onto the one before it")
            if prev_hash in known:
                return broken(row, "reordered", "it chains onto an entry that is elsewhere in the log")
            return broken(row, "removed", "the entry it chains onto is missing (removed, or changed and hashed again)")
        if entry_hash(seq, event_id, occurred_us, actor, role, action, subject, digest or "", prev_hash) != stored:
            return broken(row, "changed", "its fields no longer give its hash")
        if detail_digest(text) != digest:
            if not row[11]:
                return broken(row, "changed", "its detail no longer matches its digest")
            if erased_at.get(event_id, 0) <= seq:
                return broken(row, "changed", f"its detail was redacted, but no later {ERASE_ACTION} entry names it")
        checked += 1
        expected, before_prev, prev = seq + 1, prev, stored
    head = rows[-1] if rows else None
    return AuditVerdict(True, checked, head_seq=head[0] if head else 0, head_hash=head[10] if head else GENESIS)


def _erasures(rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
    """Each redacted entry's latest erasure entry (by seq), from erasure entries whose own
    detail is intact: a redaction counts only if an entry later in the chain names it."""
    erased: dict[str, int] = {}
    for seq, _id, _t, _a, _r, action, _s, text, digest, *_ in rows:
        if action != ERASE_ACTION or seq is None or detail_digest(text) != digest:
            continue
        try:
            names = json.loads(text).get("redacted_events") or []
        except (ValueError, AttributeError):
            continue
        for name in names:
            erased[str(name)] = max(erased.get(str(name), 0), int(seq))
    return erased


def migrate_audit_log(store: Store) -> bool:
    """Give an audit_log of an older store the chain's columns and chain its entries in
    (occurred_at, event_id) order, once. True when it did."""
    present = {
        str(r[0])
        for r in store.rows(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' AND table_name = 'audit_log'",
            [store.catalog],
        )
    }
    if "seq" in present:
        return False
    table = _table(store)
    with store.transaction():
        for column, kind in CHAIN_COLUMNS.items():
            if column not in present:
                store.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        rows = store.rows(
            f"SELECT event_id, epoch_us(occurred_at), actor, role, action, subject, detail::VARCHAR FROM {table} ORDER BY occurred_at, event_id"
        )
        prev = GENESIS
        chained: dict[str, list[Any]] = {"event_id": [], "seq": [], "prev_hash": [], "entry_hash": [], "detail_digest": []}
        for seq, (event_id, occurred_us, actor, role, action, subject, text) in enumerate(rows, start=1):
            digest = detail_digest(text)
            this = entry_hash(seq, event_id, occurred_us, actor, role, action, subject, digest, prev)
            for column, value in zip(chained, (event_id, seq, prev, this, digest)):
                chained[column].append(value)
            prev = this
        if rows:
            store.register("_audit_chain", pa.table(chained))
            try:
                store.execute(
                    f"""UPDATE {table} AS a SET seq = c.seq, prev_hash = c.prev_hash, entry_hash = c.entry_hash,
                               detail_digest = c.detail_digest, redacted = false
                        FROM _audit_chain c WHERE a.event_id = c.event_id"""
                )
            finally:
                store.unregister("_audit_chain")
    return True


__all__ = [
    "ERASE_ACTION",
    "GENESIS",
    "AuditEvent",
    "AuditVerdict",
    "append_audit",
    "detail_digest",
    "entry_hash",
    "migrate_audit_log",
    "redact_audit",
    "verify_audit",
]

"""Erasure that stays erased (issue 22): a person's profile and everything that holds
them leave the store in one transaction, and a suppression list keeps them from coming
back through a batch run, a bulk ingest, a live record or an event.

The suppression list holds digests only, never values: ``sha256(salt || token)`` in hex,
where the salt is the store's secret ``suppression_salt`` (``secrets`` table) and the
token is a record key (``source:record_id``) or a standardized identifier
(``kind:value``, the value as the ``identifiers`` run table holds it). The same digest is
computed by DuckDB (``sha256(salt || token)``, for the batch's whole tables) and by
Python (:func:`digest`, for a few live records); DuckDB has no HMAC, and with a secret
salt of 256 bits prepended the digest is as unguessable without the store's secrets.

An identifier another (not erased) record still holds is neither erased with its events
nor suppressed: it is that other person's too (a household's phone)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from profiles.errors import NotFoundError, UnifyError
from profiles.store.action_log import Steward
from profiles.store.audit import AuditEvent, redact_audit
from profiles.store.connection import Store, ident, in_list
from profiles.store.queries import ProfileQueries
from profiles.store.runs import current_run

SALT_SECRET: Final = "suppression_salt"
#: What an erased value is replaced with in the audit log's details.
ERASED: Final = "[erased]"


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: ids and counts, no values."""

    erasure_id: str
    profile_id: str
    actor: str
    role: str
    reason: str
    erased_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    redacted_events: list[str] = field(default_factory=list)
    suppressed: int = 0


def digest(salt: str, token: str) -> str:
    """The suppression digest of a record key or an ``kind:value`` identifier (the SQL's
    ``sha256(salt || token)``)."""
    return hashlib.sha256((salt + token).encode("utf-8")).hexdigest()


def identifier_token(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def suppression_salt(store: Store) -> str | None:
    """The salt, or None when nothing was ever erased (nothing to look for)."""
    value = store.scalar(f"SELECT value FROM {ident(store.catalog)}.main.secrets WHERE name = ?", [SALT_SECRET])
    return str(value) if value is not None else None


def any_suppressed(store: Store) -> bool:
    return bool(store.scalar(f"SELECT count(*) > 0 FROM {ident(store.catalog)}.main.suppression"))


def suppressed_sql(store: Store, token_sql: str) -> tuple[str, list[Any]] | None:
    """A SQL condition (with its bound parameters) that holds when ``token_sql`` (a SQL
    expression giving a record key or ``kind:value``) is suppressed; None when nothing is
    (the caller leaves its rows alone, without hashing them)."""
    salt = suppression_salt(store)
    if salt is None or not any_suppressed(store):
        return None
    return f"sha256(?::VARCHAR || ({token_sql})) IN (SELECT digest FROM {ident(store.catalog)}.main.suppression)", [salt]


def suppressed_records(store: Store, records: Mapping[str, Iterable[tuple[str, str]]]) -> set[str]:
    """Of ``records`` (record key -> its standardized identifiers (kind, value)), the keys
    that are suppressed: by their own key or by one of their identifiers."""
    salt = suppression_salt(store) if records else None
    if salt is None:
        return set()
    tokens: dict[str, set[str]] = {}
    for key, identifiers in records.items():
        for token in (key, *(identifier_token(k, v) for k, v in identifiers if v is not None)):
            tokens.setdefault(digest(salt, token), set()).add(key)
    where, params = in_list("digest", sorted(tokens))
    found = store.rows(f"SELECT DISTINCT digest FROM {ident(store.catalog)}.main.suppression WHERE {where}", params)
    return {key for (d,) in found for key in tokens[str(d)]}


def erase_profile(store: Store, profile_id: str, by: Steward, reason: str) -> Erasure:
    """Erase the profile ``profile_id`` (or the one an id of it redirects to) and the
    person it holds, in one transaction, and suppress their record keys and identifiers.
    Afterwards the id answers like one never issued."""
    if not reason.strip():
        raise UnifyError("a reason is required for an erasure")
    with store.exclusive(), store.transaction():
        return _erase(store, profile_id, by, reason)


@dataclass(frozen=True)
class _Held:
    """What names the person in the store: their profile ids (the profile's and those
    that redirect to it), record keys and the identifiers only they hold."""

    profile_id: str
    ids: list[str]
    keys: list[str]
    identifiers: list[tuple[str, str]]


class _Deletes:
    """Deletes rows and counts them per table name (over every run schema)."""

    def __init__(self, store: Store):
        self.store = store
        self.counts: dict[str, int] = {}

    def __call__(self, table: str, where: str, params: Sequence[Any], name: str | None = None) -> None:
        n = int(self.store.scalar(f"SELECT count(*) FROM {table} WHERE {where}", list(params)))
        if n:
            self.store.execute(f"DELETE FROM {table} WHERE {where}", list(params))
        name = name or table.rsplit(".", 1)[-1].strip('"')
        self.counts[name] = self.counts.get(name, 0) + n


def _held(store: Store, run: str, asked: str) -> _Held:
    """The person the profile ``asked`` (or the profile it redirects to) holds in the
    published ``run`` (qualified); NotFoundError like an id never issued."""
    current = store.scalar(f"SELECT profile_id FROM {run}.profiles WHERE profile_id = ?", [asked])
    if current is None:
        current = store.scalar("SELECT redirect_to FROM profile_registry WHERE profile_id = ? AND redirect_to IS NOT NULL", [asked])
        if current is None or store.scalar(f"SELECT count(*) FROM {run}.profiles WHERE profile_id = ?", [current]) == 0:
            raise NotFoundError(f"profile {asked} not found")
    pid = str(current)
    ids = sorted({pid, asked} | {str(p) for (p,) in store.rows("SELECT profile_id FROM profile_registry WHERE redirect_to = ?", [pid])})
    keys = sorted(str(k) for (k,) in store.rows(f"SELECT record_key FROM {run}.records WHERE profile_id = ?", [pid]))
    in_keys, key_params = in_list("record_key", keys)
    held = {(str(k), str(v)) for k, v in store.rows(f"SELECT DISTINCT kind, value FROM {run}.identifiers WHERE {in_keys}", key_params)}
    in_values, value_params = in_list("value", sorted({v for _, v in held}))
    shared = {
        (str(k), str(v))
        for k, v in store.rows(
            f"SELECT DISTINCT kind, value FROM {run}.identifiers WHERE {in_values} AND NOT ({in_keys})", [*value_params, *key_params]
        )
    }
    return _Held(pid, ids, keys, sorted(held - shared))


def _erase(store: Store, asked: str, by: Steward, reason: str) -> Erasure:
    cat = ident(store.catalog)
    run = current_run(store)
    if run is None:
        raise NotFoundError(f"profile {asked} not found")
    person = _held(store, f"{cat}.{ident(run)}", asked)
    keys, identifiers = person.keys, person.identifiers
    in_keys, key_params = in_list("record_key", keys)
    delete = _Deletes(store)
    # steward actions naming the person, with their snapshots: their undo is gone with them
    actions = sorted(
        str(a)
        for (a,) in store.rows(
            """SELECT action_id FROM steward_actions
               WHERE list_has_any(records, ?::VARCHAR[]) OR list_has_any(profiles_before || profiles_after, ?::VARCHAR[])""",
            [keys, person.ids],
        )
    )
    for (schema,) in store.rows(
        "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? AND schema_name LIKE 'run\\_%' ESCAPE '\\'", [store.catalog]
    ):
        _erase_from_run(store, f"{cat}.{ident(str(schema))}", str(schema), person, actions, delete)
    in_actions, action_params = in_list("action_id", actions)
    delete("steward_actions", in_actions, action_params)
    delete("link_constraints", "list_has_any([record_key_l, record_key_r], ?::VARCHAR[])", [keys])
    delete("ingest_log", in_keys.replace("record_key", "source || ':' || record_id", 1), key_params)
    in_pids, pid_params = in_list("profile_id", person.ids)
    delete("profile_registry", f"{in_pids} OR {in_pids.replace('profile_id', 'redirect_to', 1)}", pid_params * 2)
    # events: those linked to the person's records, and to identifiers only they held
    tokens = [identifier_token(k, v) for k, v in identifiers]
    delete("events", f"{in_keys} OR list_contains(?::VARCHAR[], link_kind || ':' || link_value)", [*key_params, tokens])
    # unreadable event rows cannot name a record or identifier reliably: those whose text holds one of theirs
    needles = sorted({v for _, v in identifiers if len(v) >= 5} | {k.split(":", 1)[1] for k in keys if len(k.split(":", 1)[1]) >= 5})
    if needles:
        delete("event_quarantine", "list_bool_or(list_transform(?::VARCHAR[], n -> contains(coalesce(content, ''), n)))", [needles])
    erasure_id = f"er_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"
    salt = ProfileQueries(store).secret(SALT_SECRET)
    digests = sorted({("record", digest(salt, k)) for k in keys} | {(k, digest(salt, identifier_token(k, v))) for k, v in identifiers})
    if digests:
        store.execute(
            "INSERT INTO suppression (kind, digest, erased_at, erasure_id) VALUES " + ", ".join("(?, ?, now(), ?)" for _ in digests),
            [x for kind, d in digests for x in (kind, d, erasure_id)],
        )
    # the person's own ids only: a profile that held their records in an older run may be someone else's now
    redacted = scrub_audit(store, sorted(set(person.ids) | set(keys) | {v for _, v in identifiers}))
    erasure = Erasure(
        erasure_id=erasure_id,
        profile_id=person.profile_id,
        actor=by.actor,
        role=by.role,
        reason=reason,
        erased_at=datetime.now(UTC),
        counts=dict(sorted(delete.counts.items())),
        redacted_events=redacted,
        suppressed=len(digests),
    )
    detail = {
        "reason": reason,
        "erasure_id": erasure_id,
        "erased_profile": person.profile_id,
        "redacted_events": redacted,
        "counts": erasure.counts,
        "suppressed": len(digests),
    }
    ProfileQueries(store).append_audit(
        [AuditEvent(actor=by.actor, role=by.role, action="profile.erase", subject=erasure_id, detail=detail)]
    )
    # the deleted rows' bytes stay in the store file until it is rewritten (docs/privacy.md)
    store.execute("INSERT INTO compaction_due VALUES (?, now())", [f"erasure {erasure_id}"])
    return erasure


def _erase_from_run(store: Store, s: str, schema: str, person: _Held, actions: list[str], delete: _Deletes) -> None:
    """The person out of one run schema ``s`` (qualified): the published run or an older
    one still kept. In an older run the profiles that held their records go whole."""
    tables = {
        str(t)
        for (t,) in store.rows(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?", [store.catalog, schema]
        )
    }
    in_keys, key_params = in_list("record_key", person.keys)
    held_by = set(person.ids)
    if "records" in tables:
        held_by |= {str(p) for (p,) in store.rows(f"SELECT DISTINCT profile_id FROM {s}.records WHERE {in_keys}", key_params) if p}
    in_old, old_params = in_list("profile_id", sorted(held_by))
    if "term_frequencies" in tables and "records" in tables:
        _forget_frequencies(store, s, in_keys, key_params, delete.counts)
    for table in ("records", "membership", "identifiers"):
        if table in tables:
            delete(f"{s}.{table}", in_keys, key_params)
    for table in ("field_issues", "quarantine"):
        if table in tables:
            delete(f"{s}.{table}", in_keys.replace("record_key", "source || ':' || record_id", 1), key_params)
    for table in ("pairs", "review_queue"):
        if table in tables:
            delete(
                f"{s}.{table}",
                f"{in_keys.replace('record_key', 'record_key_l', 1)} OR {in_keys.replace('record_key', 'record_key_r', 1)}",
                key_params * 2,
            )
    for table in ("profiles", "golden_fields"):
        if table in tables:
            delete(f"{s}.{table}", in_old, old_params)
    in_actions, action_params = in_list("action_id", actions)
    if "snap_records" in tables:
        delete(f"{s}.snap_records", f"{in_keys} OR {in_actions}", [*key_params, *action_params], "steward_snapshots")
    for table in ("snap_profiles", "snap_golden_fields"):
        if table in tables:
            delete(f"{s}.{table}", f"{in_old} OR {in_actions}", [*old_params, *action_params], "steward_snapshots")
    if "snap_registry" in tables:
        delete(
            f"{s}.snap_registry",
            f"{in_old} OR {in_old.replace('profile_id', 'redirect_to', 1)} OR {in_actions}",
            [*old_params, *old_params, *action_params],
            "steward_snapshots",
        )


def _forget_frequencies(store: Store, run: str, in_keys: str, key_params: list[Any], counts: dict[str, int]) -> None:
    """Term frequencies of values (emails, phones, names) that only the erased records of
    ``run`` hold: the value itself is the person's (the frequencies of shared values stay)."""
    columns = set(store.columns(f"{run}.records"))
    for (column,) in store.rows(f"SELECT DISTINCT column_name FROM {run}.term_frequencies"):
        if column not in columns:
            continue
        c = ident(str(column))
        where = f"""column_name = ? AND value IN (SELECT {c}::VARCHAR FROM {run}.records WHERE {in_keys})
                    AND value NOT IN (SELECT {c}::VARCHAR FROM {run}.records WHERE {c} IS NOT NULL AND NOT ({in_keys}))"""
        params = [column, *key_params, *key_params]
        n = int(store.scalar(f"SELECT count(*) FROM {run}.term_frequencies WHERE {where}", params))
        if n:
            store.execute(f"DELETE FROM {run}.term_frequencies WHERE {where}", params)
            counts["term_frequencies"] = counts.get("term_frequencies", 0) + n


def scrub_audit(store: Store, tokens: Sequence[str]) -> list[str]:
    """Redact the audit entries whose detail names one of ``tokens`` (profile ids, record
    keys, identifier values): their detail is rewritten without them through the chain's
    own redaction (profiles.store.audit.redact_audit), which keeps each entry's hash; the
    erasure's entry then names them. Returns the ids of the entries redacted. Subjects are
    hashed as they are and hold no person's data (action, statement and erasure ids)."""
    if not tokens:
        return []
    # a detail is JSON text, where json.dumps wrote non-ASCII characters as escapes: look for both forms
    needles = sorted(set(tokens) | {json.dumps(t)[1:-1] for t in tokens})
    found = store.rows(
        """SELECT event_id, detail::VARCHAR FROM audit_log
           WHERE list_bool_or(list_transform(?::VARCHAR[], t -> contains(coalesce(detail::VARCHAR, ''), t)))
           ORDER BY event_id""",
        [needles],
    )
    # a token inside JSON escapes only names nothing of theirs: those entries stay as they are
    naming = [str(event_id) for event_id, text in found if text and _scrub(detail := json.loads(text), tokens) != detail]
    return redact_audit(store, naming, lambda detail: _scrub(detail, tokens))


def _scrub(value: Any, tokens: Sequence[str]) -> Any:
    """``value`` without the tokens: list items and dict entries naming one are left
    out, a text holding one becomes :data:`ERASED`."""
    if isinstance(value, dict):
        return {k: _scrub(v, tokens) for k, v in value.items() if not _names(k, tokens)}
    if isinstance(value, list):
        return [_scrub(v, tokens) for v in value if not (isinstance(v, str) and _names(v, tokens))]
    if isinstance(value, str) and _names(value, tokens):
        return ERASED
    return value


def _names(text: str, tokens: Sequence[str]) -> bool:
    return any(t in text for t in tokens)


def unsuppress(store: Store, by: Steward, reason: str, *, record_key: str | None = None, identifier: tuple[str, str] | None = None) -> int:
    """Lift the suppression of a record key or a standardized identifier (kind, value);
    audited with the reason (the digest, never the value). Returns the rows lifted."""
    if not reason.strip():
        raise UnifyError("a reason is required to lift a suppression")
    if (record_key is None) == (identifier is None):
        raise UnifyError("give a record key or an identifier")
    if record_key is not None:
        token, kind = record_key, "record"
    else:
        assert identifier is not None
        token, kind = identifier_token(*identifier), identifier[0]
    salt = suppression_salt(store)
    d = digest(salt, token) if salt is not None else ""
    with store.exclusive(), store.transaction():
        n = int(store.scalar("SELECT count(*) FROM suppression WHERE digest = ?", [d]))
        if not n:
            raise NotFoundError("that record key or identifier is not suppressed")
        store.execute("DELETE FROM suppression WHERE digest = ?", [d])
        store.execute("DELETE FROM event_reads")  # an unchanged event file may hold the person's events again
        event = AuditEvent(
            actor=by.actor,
            role=by.role,
            action="suppression.lift",
            subject=None,
            detail={"reason": reason, "kind": kind, "digest": d},
        )
        ProfileQueries(store).append_audit([event])
    return n


__all__ = [
    "ERASED",
    "SALT_SECRET",
    "Erasure",
    "any_suppressed",
    "digest",
    "erase_profile",
    "identifier_token",
    "scrub_audit",
    "suppressed_records",
    "suppressed_sql",
    "suppression_salt",
    "unsuppress",
]

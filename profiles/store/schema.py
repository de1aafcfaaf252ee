"""Tables that outlive runs: the run log, the registry of every profile id ever issued
(ids are never reused; retired ids redirect), the append-only audit log (a hash chain: profiles.store.audit), and the
customers' events (attached to source records or identifiers, never to profile ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from profiles.store.connection import Store

#: Tables each run builds in its own schema and publishes as views in ``main``.
RUN_TABLES: Final[tuple[str, ...]] = (
    "records",
    "identifiers",
    "membership",
    "profiles",
    "golden_fields",
    "pairs",
    "review_queue",
    "quarantine",
    "field_issues",
    "term_frequencies",
)

_DDL: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        status VARCHAR NOT NULL,          -- running | published | failed | superseded
        config_path VARCHAR,
        model_path VARCHAR,
        model JSON,                       -- the exact model the run scored with
        summary JSON
    )""",
    """CREATE TABLE IF NOT EXISTS profile_registry (
        profile_id VARCHAR NOT NULL,
        created_run VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        retired_run VARCHAR,
        redirect_to VARCHAR                -- the surviving profile of a retired id
    )""",
    """CREATE TABLE IF NOT EXISTS secrets (
        name VARCHAR NOT NULL,
        value VARCHAR NOT NULL             -- e.g. the key of pseudonymous ids: stable across restarts
    )""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        event_id VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        subject VARCHAR,
        detail JSON,
        -- the hash chain (profiles.store.audit): the hash covers the fields above but
        -- detail, through its digest, so a detail can be redacted without breaking the chain
        seq BIGINT,
        prev_hash VARCHAR,
        entry_hash VARCHAR,
        detail_digest VARCHAR,
        redacted BOOLEAN DEFAULT false     -- detail rewritten by an erasure (named by its profile.erase entry)
    )""",
    # Steward decisions as constraints on record pairs (record_key_l < record_key_r):
    # 'same' keeps two records in one profile, 'different' keeps them apart, in every
    # later run. An undone decision is deactivated, never deleted.
    """CREATE TABLE IF NOT EXISTS link_constraints (
        constraint_id VARCHAR NOT NULL,
        record_key_l VARCHAR NOT NULL,
        record_key_r VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,             -- same | different
        action_id VARCHAR NOT NULL,        -- the steward action that made it
        created_at TIMESTAMPTZ NOT NULL,
        active BOOLEAN NOT NULL
    )""",
    # Every record accepted by a live ingest, as the source sent it: later batch runs
    # include the ones their source files do not have yet, and a run re-applies those that
    # arrived while it was running (seq above the mark it started from).
    "CREATE SEQUENCE IF NOT EXISTS ingest_seq START 1",
    """CREATE TABLE IF NOT EXISTS ingest_log (
        seq BIGINT NOT NULL,
        source VARCHAR NOT NULL,
        record_id VARCHAR NOT NULL,
        raw JSON NOT NULL,                 -- the row as the source sent it
        ingested_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL
    )""",
    # Steward actions: what was done, by whom and why, with the profiles it touched.
    # The exact rows before and after live in the run's snapshot tables (see
    # profiles.store.snapshots); an undo is an action too, so undoing it redoes.
    """CREATE TABLE IF NOT EXISTS steward_actions (
        action_id VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,           -- the published run it changed
        kind VARCHAR NOT NULL,             -- same | different | merge | split | undo
        actor VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        subject JSON,                      -- the pair, ids or record keys acted on
        profiles_before VARCHAR[] NOT NULL,
        profiles_after VARCHAR[] NOT NULL,
        records VARCHAR[] NOT NULL,        -- record keys whose profile it may change
        constraints_added VARCHAR[] NOT NULL,
        constraints_removed VARCHAR[] NOT NULL,
        undoes VARCHAR,
        undone_by VARCHAR
    )""",
    # The customers' events across channels (docs/customer360.md): each attaches to a
    # source record (record_key) or to an identifier (link_kind, link_value), so the
    # profile it belongs to is whichever holds that record or identifier now.
    """CREATE TABLE IF NOT EXISTS events (
        event_source VARCHAR NOT NULL,
        event_id VARCHAR NOT NULL,
        occurred_at TIMESTAMP NOT NULL,
        type VARCHAR NOT NULL,
        channel VARCHAR,
        topic VARCHAR,
        department VARCHAR,
        amount DOUBLE,
        attributes JSON,
        record_key VARCHAR,
        link_kind VARCHAR,
        link_value VARCHAR,
        line BIGINT,
        ingested_at TIMESTAMPTZ NOT NULL
    )""",
    # Erased people (profiles.store.erasure): digests of their record keys and standardized
    # identifiers, never the values; a run, an ingest or an event matching one is skipped.
    # Why the store file owes a compaction: an erasure deleted rows whose bytes stay in
    # the file until it is rewritten (profiles.store.backup.compact_store clears it; `unify
    # erase` compacts at once, `unify run` when an eraseProfile left it due).
    """CREATE TABLE IF NOT EXISTS compaction_due (
        reason VARCHAR NOT NULL,
        since TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS suppression (
        kind VARCHAR NOT NULL,             -- record | the identifier's kind (email, phone, ...)
        digest VARCHAR NOT NULL,           -- sha256(salt || "source:record_id" | "kind:value"), hex
        erased_at TIMESTAMPTZ NOT NULL,
        erasure_id VARCHAR NOT NULL        -- the profile.erase audit entry's subject
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (event_source, event_id)",
    "CREATE INDEX IF NOT EXISTS events_record ON events (record_key)",
    "CREATE INDEX IF NOT EXISTS events_link ON events (link_value)",
    # Event rows that could not be read, from the last read of each event file (and from
    # live events that were refused are not kept: their caller got the reason).
    # The last read of each event file (pipelines.history.events): a file read again with
    # the same fingerprint (its bytes, its event source's mapping) is not read again.
    # unsuppress empties it, as a lifted suppression lets rows of an unchanged file back in.
    """CREATE TABLE IF NOT EXISTS event_reads (
        event_source VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        accepted BIGINT NOT NULL,
        written BIGINT NOT NULL,           -- events inserted or replaced by that read
        read_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS event_quarantine (
        event_source VARCHAR NOT NULL,
        line BIGINT,
        event_id VARCHAR,
        reason VARCHAR NOT NULL,
        content VARCHAR,
        read_at TIMESTAMPTZ NOT NULL
    )""",
)


def ensure_schema(store: Store) -> None:
    from profiles.store.audit import migrate_audit_log

    for ddl in _DDL:
        store.execute(ddl)
    migrate_audit_log(store)  # stores made before the audit log was a hash chain

"""Tables that outlive runs: the run log, the registry of every profile id ever issued
(ids are never reused; retired ids redirect), and the append-only audit log."""

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
        detail JSON
    )""",
)


def ensure_schema(store: Store) -> None:
    for ddl in _DDL:
        store.execute(ddl)

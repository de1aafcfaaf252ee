"""Runs build new tables in a schema of their own and are published by repointing the
views in ``main`` in one transaction: readers see the previous run or the new one,
never a half-written one, and a crash before the swap leaves the previous run serving."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from profiles.errors import StoreError
from profiles.store.connection import Store, ident
from profiles.store.schema import RUN_TABLES


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"run_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


#: Publishes made by this process, per store file. Only one process can open a store file,
#: so every change of its published run is counted here: readers that name the run's
#: tables directly (binding a ``main`` view costs a fraction of a lookup's time) look the run up
#: again when this changes (:func:`published_tables`).
_publishes: dict[str, int] = {}


def publish_count(store: Store) -> int:
    return _publishes.get(store.abs_path, 0)


def published_run(store: Store, cache: list[Any]) -> str | None:
    """:func:`current_run`, kept in ``cache`` (a list owned by the caller) until the next
    publish: one query fewer per request or live record."""
    count = publish_count(store)  # read before the run: a publish in between is seen next time
    if not cache or cache[0] != count:
        cache[:] = [count, current_run(store)]
    return cache[1]  # type: ignore[no-any-return]


def published_tables(store: Store, cache: list[Any]) -> str | None:
    """``catalog.run`` of the published run (SQL, quoted), or None before the first publish."""
    run = published_run(store, cache)
    return f"{ident(store.catalog)}.{ident(run)}" if run else None


def current_run(store: Store) -> str | None:
    # max_by, not ORDER BY ... LIMIT 1: a quarter of the time, and this runs on every live ingest
    value = store.scalar("SELECT max_by(run_id, finished_at) FROM runs WHERE status = 'published'")
    return str(value) if value is not None else None


def begin_run(store: Store, config_path: str, model_path: str) -> str:
    """Drop leftovers of runs that never published, then open a schema for a new run."""
    for (schema,) in store.rows(
        "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? AND schema_name LIKE 'run\\_%' ESCAPE '\\'",
        [store.catalog],
    ):
        status = store.scalar("SELECT status FROM runs WHERE run_id = ?", [schema])
        if status not in ("published", "superseded"):
            store.execute(f"DROP SCHEMA IF EXISTS {ident(store.catalog)}.{ident(schema)} CASCADE")
    store.execute("UPDATE runs SET status = 'failed' WHERE status = 'running'")
    run_id = new_run_id()
    store.execute(
        "INSERT INTO runs (run_id, started_at, status, config_path, model_path) VALUES (?, now(), 'running', ?, ?)",
        [run_id, config_path, model_path],
    )
    store.execute(f"CREATE SCHEMA {ident(store.catalog)}.{ident(run_id)}")
    return run_id


def run_table(store: Store, run_id: str, table: str) -> str:
    """The qualified SQL name of a table of the run."""
    if table not in RUN_TABLES:
        raise StoreError(f"{table!r} is not a run table")
    return f"{ident(store.catalog)}.{ident(run_id)}.{ident(table)}"


def write_run_table(store: Store, run_id: str, table: str, select_sql: str) -> None:
    """Materialise ``select_sql`` (which may read the workspace) as a table of the run."""
    target = run_table(store, run_id, table)
    store.execute(f"CREATE OR REPLACE TABLE {target} AS {select_sql}", building=target)


def publish_run(store: Store, run_id: str, summary: Mapping[str, Any], model_json: str | None = None, keep_previous: int = 1) -> None:
    """Swap the views of ``main`` to this run, register new profile ids and retire the
    ones no longer in use, all in one transaction; then drop runs older than needed."""
    missing = [t for t in RUN_TABLES if not store.table_exists(t, schema=run_id)]
    if missing:
        raise StoreError(f"run {run_id} cannot be published: tables missing: {', '.join(missing)}")
    run = ident(run_id)
    with store.using_catalog(store.catalog), store.transaction():
        for table in RUN_TABLES:
            store.execute(f"CREATE OR REPLACE VIEW main.{ident(table)} AS SELECT * FROM {run}.{ident(table)}")
        store.execute(
            f"""INSERT INTO profile_registry (profile_id, created_run, created_at)
                SELECT p.profile_id, ?, now() FROM {run}.profiles p
                WHERE NOT EXISTS (SELECT 1 FROM profile_registry r WHERE r.profile_id = p.profile_id)""",
            [run_id],
        )
        # Ids that no profile of this run carries any more redirect to the profile that
        # took most of their records (computed by the pipeline as membership.previous_profile_id).
        store.execute(
            f"""UPDATE profile_registry AS r SET retired_run = ?, redirect_to = t.survivor
                FROM (
                    SELECT previous_profile_id AS old_id, arg_max(profile_id, n) AS survivor
                    FROM (SELECT previous_profile_id, profile_id, count(*) AS n FROM {run}.membership
                          WHERE previous_profile_id IS NOT NULL GROUP BY ALL)
                    GROUP BY previous_profile_id
                ) t
                WHERE r.profile_id = t.old_id AND r.retired_run IS NULL
                  AND NOT EXISTS (SELECT 1 FROM {run}.profiles p WHERE p.profile_id = r.profile_id)""",
            [run_id],
        )
        # Keep redirect chains one hop long: whatever pointed at a now-retired id follows it.
        store.execute(
            """UPDATE profile_registry AS r SET redirect_to = t.redirect_to
               FROM profile_registry t
               WHERE r.redirect_to = t.profile_id AND t.redirect_to IS NOT NULL"""
        )
        store.execute("UPDATE runs SET status = 'superseded' WHERE status = 'published'")
        store.execute(
            "UPDATE runs SET status = 'published', finished_at = now(), summary = ?, model = ? WHERE run_id = ?",
            [json.dumps(summary, default=str), model_json, run_id],
        )
    _publishes[store.abs_path] = publish_count(store) + 1
    _drop_old_runs(store, keep_previous)


def record_run_summary(store: Store, run_id: str, summary: Mapping[str, Any]) -> None:
    """Replace a run's summary (what was read after publishing it, e.g. the events)."""
    store.execute("UPDATE runs SET summary = ? WHERE run_id = ?", [json.dumps(summary, default=str), run_id])


def fail_run(store: Store, run_id: str, reason: str) -> None:
    store.execute(
        "UPDATE runs SET status = 'failed', finished_at = now(), summary = ? WHERE run_id = ?",
        [json.dumps({"error": reason}), run_id],
    )
    store.execute(f"DROP SCHEMA IF EXISTS {ident(store.catalog)}.{ident(run_id)} CASCADE")


def _drop_old_runs(store: Store, keep_previous: int) -> None:
    stale = store.rows(
        "SELECT run_id FROM runs WHERE status = 'superseded' ORDER BY finished_at DESC OFFSET ?",
        [keep_previous],
    )
    for (run_id,) in stale:
        store.execute(f"DROP SCHEMA IF EXISTS {ident(store.catalog)}.{ident(str(run_id))} CASCADE")


#: ART indexes on the published run's tables for what serving and live ingest look up
#: by key: a profile's rows, a record's rows and pairs, an identifier's records. Built
#: once per run (they are kept in the store file), by the process that serves it. Every
#: index costs each live record's commit (docs/benchmarks.md, "Figures behind the code's choices"):
#: live candidates come from memory (pipelines.live.match_index), not from indexes on the
#: blocking columns.
SERVING_INDEXES: Final[dict[str, tuple[str, ...]]] = {
    "records": ("record_key", "profile_id"),
    "membership": ("record_key",),
    "identifiers": ("record_key", "value"),
    "profiles": ("profile_id",),
    "golden_fields": ("profile_id",),
    "pairs": ("record_key_l", "record_key_r", "pair_id"),
    "review_queue": ("record_key_l", "record_key_r"),
    "term_frequencies": ("value",),
}


def ensure_serving_indexes(store: Store) -> int:
    """Create the missing serving indexes of the published run, and drop those an older
    version made that are no longer served (each costs every write); returns how many
    were created."""
    run = current_run(store)
    if run is None:
        return 0
    existing = {
        str(name)
        for (name,) in store.rows(
            "SELECT index_name FROM duckdb_indexes() WHERE database_name = ? AND schema_name = ?", [store.catalog, run]
        )
    }
    served = {f"ix_{table}_{column}" for table, columns in SERVING_INDEXES.items() for column in columns}
    for name in sorted(existing - served):
        if name.startswith("ix_"):  # ours; any other index is the owner's business
            store.execute(f"DROP INDEX {ident(store.catalog)}.{ident(run)}.{ident(name)}")
    made = 0
    if not store.scalar(
        "SELECT count(*) FROM duckdb_indexes() WHERE database_name = ? AND index_name = 'ix_registry_profile_id'", [store.catalog]
    ):
        store.execute("CREATE INDEX ix_registry_profile_id ON profile_registry (profile_id)")
        made += 1
    for table, columns in SERVING_INDEXES.items():
        missing = [c for c in columns if f"ix_{table}_{c}" not in existing]
        if not missing or not store.table_exists(table, schema=run):
            continue
        target = f"{ident(store.catalog)}.{ident(run)}.{ident(table)}"
        present = set(store.columns(target))  # a run published by an older version may lack a column
        for column in (c for c in missing if c in present):
            store.execute(f"CREATE INDEX {ident(f'ix_{table}_{column}')} ON {target} ({ident(column)})")
            made += 1
    return made

"""`unify export`: the published run as files for the warehouse (contract: profiles,
membership, review_queue; plus lineage and quarantine; with [[events]] configured, the
events with the profile that holds each now, the traits and the life events). Written to temporary names and
renamed, so a reader never picks up half a file. ``export --profile``: what is held about
one person, as JSON (:func:`export_profile`, the right of access)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.config import Config
from pipelines.history.events import interactions, profile_events_sql, read_profile_events, record_facts
from pipelines.history.life_events import life_events
from pipelines.history.traits import traits_python, traits_sql
from profiles.errors import NotFoundError, StoreError
from profiles.store import ProfileQueries, Store, current_run, ident, in_list, sql_literal_path

EXPORTS: dict[str, str] = {
    "profiles": "SELECT * FROM main.profiles ORDER BY profile_id",
    "membership": "SELECT source, record_id, profile_id, match_probability FROM main.membership ORDER BY source, record_id",
    # open pairs only: not decided by a steward, still in two profiles (current ids)
    "review_queue": """
        SELECT q.* REPLACE (rl.profile_id AS profile_id_l, rr.profile_id AS profile_id_r)
        FROM main.review_queue q
        JOIN main.records rl ON rl.record_key = q.record_key_l JOIN main.records rr ON rr.record_key = q.record_key_r
        WHERE rl.profile_id <> rr.profile_id
          AND NOT EXISTS (SELECT 1 FROM main.link_constraints c WHERE c.active
                          AND c.record_key_l = least(q.record_key_l, q.record_key_r)
                          AND c.record_key_r = greatest(q.record_key_l, q.record_key_r))
        ORDER BY q.distance_to_boundary, q.pair_id""",
    "golden_fields": "SELECT * FROM main.golden_fields ORDER BY profile_id, field",
    "quarantine": "SELECT * FROM main.quarantine ORDER BY source, line",
    "field_issues": "SELECT * FROM main.field_issues ORDER BY source, record_id, field",
}


def export(store_path: Path, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet", config: Config | None = None) -> dict[str, int]:
    """Write every export; returns rows per file. ``config``: its [[events]], [[traits]]
    and [[life_events]] add ``events``, ``traits`` and ``life_events``."""
    with Store.open(store_path, read_only=True) as store:
        run = current_run(store)
        if run is None:
            raise StoreError(f"store {store_path} has no published run: run `unify run` first")
        out_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, int] = {}
        exports: dict[str, tuple[str, list[Any]]] = {name: (query, []) for name, query in EXPORTS.items()}
        if config is not None and config.events:
            exports.update(history_exports(config, f"{ident(store.catalog)}.{ident(run)}"))
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
        for name, (query, params) in exports.items():
            target = out_dir / f"{name}.{fmt}"
            tmp = out_dir / f".{name}.{fmt}.tmp"
            if fmt == "csv":
                query = _csv_safe(store, query, params)
            # COPY answers with the number of rows it wrote
            written[name] = int(store.scalar(f"COPY ({query}) TO {sql_literal_path(tmp)} ({options})", params or None))
            os.replace(tmp, target)
        if config is not None and config.life_events:
            written["life_events"] = _export_life_events(store, config, f"{ident(store.catalog)}.{ident(run)}", out_dir, fmt)
        return written


def history_exports(config: Config, run: str) -> dict[str, tuple[str, list[Any]]]:
    """The events with their profile now, and the traits of every profile (one SQL for all)."""
    events = profile_events_sql(run)
    out: dict[str, tuple[str, list[Any]]] = {
        "events": (f"SELECT * FROM ({events}) ORDER BY profile_id, occurred_at, event_source, event_id", []),
    }
    if config.traits:
        sql, params = traits_sql(config.traits, "profile_events", datetime.now(UTC).replace(tzinfo=None))
        out["traits"] = (f"WITH profile_events AS ({events}) SELECT * FROM ({sql}) ORDER BY 1, 2", params)
    return out


def _export_life_events(store: Store, config: Config, run: str, out_dir: Path, fmt: str) -> int:
    """Life events of every profile, found by the API's own rules one profile at a time."""
    now = datetime.now(UTC).replace(tzinfo=None)
    events_by_profile: dict[str, list[dict[str, Any]]] = {}
    for row in store.dicts(f"SELECT * FROM ({profile_events_sql(run)}) ORDER BY profile_id, occurred_at"):
        events_by_profile.setdefault(str(row["profile_id"]), []).append(row)
    columns = "profile_id, record_key, source, updated_at, first_name, last_name, surname_tokens, date_of_birth, street, house_number, postcode, city"
    records_by_profile: dict[str, list[dict[str, Any]]] = {}
    for row in store.dicts(f"SELECT {columns} FROM {run}.records ORDER BY profile_id, record_key"):
        records_by_profile.setdefault(str(row["profile_id"]), []).append(row)
    found: list[dict[str, Any]] = []
    for profile_id, records in records_by_profile.items():
        facts = [record_facts(r) for r in records]
        for event in life_events(facts, interactions(events_by_profile.get(profile_id, [])), config.life_events, today=now.date(), now=now):
            found.append({"profile_id": profile_id, **{k: getattr(event, k) for k in ("kind", "occurred_at", "detected_at", "expires_at")},
                          "evidence": "|".join(event.evidence) if fmt == "csv" else event.evidence})  # fmt: skip
    table = pa.Table.from_pylist(found) if found else pa.table({"profile_id": pa.array([], pa.string())})
    tmp, target = out_dir / f".life_events.{fmt}.tmp", out_dir / f"life_events.{fmt}"
    if fmt == "csv":
        pa_csv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)
    return len(found)


def _csv_safe(store: Store, query: str, params: list[Any] | None = None) -> str:
    """CSV has no lists: join list columns (e.g. profiles.sources) with '|'."""
    described = store.rows(f"DESCRIBE {query}", params or None)
    cols = [
        f"array_to_string({ident(name)}, '|') AS {ident(name)}" if str(kind).endswith("[]") else ident(name) for name, kind, *_ in described
    ]
    return f"SELECT {', '.join(cols)} FROM ({query})"


def export_profile(store_path: Path, out_dir: Path, profile_id: str, config: Config) -> tuple[Path, dict[str, int]]:
    """Everything the store holds about one person (the right of access), as one JSON file
    ``profile_<id>.json``: the profile and its golden fields with lineage, its records (as
    the sources sent them and standardized) and identifiers, their events, traits and life
    events, the steward actions, constraints, live ingests and audit entries naming them.
    Returns the file and the items per section."""
    with Store.open(store_path, read_only=True) as store:
        queries = ProfileQueries(store)
        resolved = queries.resolve([profile_id]).get(profile_id)
        if resolved is None:
            raise NotFoundError(f"profile {profile_id} not found")
        pid = resolved.profile_id
        run = queries.run_schema()
        assert run is not None  # a profile was found in it
        ids = sorted(
            {pid, profile_id} | {str(p) for (p,) in store.rows("SELECT profile_id FROM profile_registry WHERE redirect_to = ?", [pid])}
        )
        records = store.dicts(
            f"SELECT * EXCLUDE (raw), raw::VARCHAR AS raw FROM {run}.records WHERE profile_id = ? ORDER BY record_key", [pid]
        )
        for record in records:
            record["raw"] = json.loads(record["raw"]) if record["raw"] else None
        keys = [str(r["record_key"]) for r in records]
        in_keys, key_params = in_list("record_key", keys)
        in_rows = in_keys.replace("record_key", "source || ':' || record_id", 1)  # tables keyed by (source, record_id)
        keys_of, identifiers = queries.links_of(pid)
        events = read_profile_events(store, pid, keys_of, identifiers)
        now = datetime.now(UTC).replace(tzinfo=None)
        held: dict[str, Any] = {
            "profile_id": pid,
            "asked_id": profile_id,
            "profile_ids": ids,
            "exported_at": datetime.now(UTC).isoformat(),
            "profile": queries.profiles([pid]).get(pid),
            "golden_fields": queries.golden_fields([pid]).get(pid, []),
            "records": records,
            "identifiers": store.dicts(f"SELECT * FROM {run}.identifiers WHERE {in_keys} ORDER BY record_key, kind, value", key_params),
            "events": events,
            "traits": [
                {"name": name, "value": value, "as_of": as_of, "event_count": count}
                for _, name, value, as_of, count in traits_python(config.traits, events, now)
            ],
            "life_events": [
                asdict(e)
                for e in life_events(
                    [record_facts(r) for r in queries.record_facts(pid)],
                    interactions(list(reversed(events))),
                    config.life_events,
                    today=now.date(),
                    now=now,
                )
            ],
            "field_issues": store.dicts(f"SELECT * FROM {run}.field_issues WHERE {in_rows}", key_params),
            "steward_actions": store.dicts(
                """SELECT * FROM steward_actions WHERE list_has_any(records, ?::VARCHAR[])
                   OR list_has_any(profiles_before || profiles_after, ?::VARCHAR[]) ORDER BY created_at""",
                [keys, ids],
            ),
            "link_constraints": store.dicts(
                "SELECT * FROM link_constraints WHERE list_has_any([record_key_l, record_key_r], ?::VARCHAR[]) ORDER BY created_at", [keys]
            ),
            "ingest_log": store.dicts(
                f"SELECT seq, source, record_id, raw::VARCHAR AS raw, ingested_at, actor FROM ingest_log WHERE {in_rows} ORDER BY seq",
                key_params,
            ),
            "audit_log": store.dicts(
                """SELECT event_id, occurred_at, actor, role, action, subject, detail::VARCHAR AS detail FROM audit_log
                   WHERE list_bool_or(list_transform(?::VARCHAR[], t -> contains(coalesce(detail::VARCHAR, ''), t))) ORDER BY occurred_at""",
                [ids + keys],
            ),
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"profile_{pid}.json"
    tmp = out_dir / f".profile_{pid}.json.tmp"
    tmp.write_text(json.dumps(held, default=str, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, target)
    return target, {name: len(value) for name, value in held.items() if isinstance(value, list)}

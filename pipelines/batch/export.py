"""`unify export`: the published run as files for the warehouse (contract: profiles,
membership, review_queue; plus lineage and quarantine). Written to temporary names and
renamed, so a reader never picks up half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from profiles.errors import StoreError
from profiles.store import Store, current_run, ident, sql_literal_path

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


def export(store_path: Path, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet") -> dict[str, int]:
    """Write every export; returns rows per file."""
    with Store.open(store_path, read_only=True) as store:
        if current_run(store) is None:
            raise StoreError(f"store {store_path} has no published run: run `unify run` first")
        out_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, int] = {}
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
        for name, query in EXPORTS.items():
            target = out_dir / f"{name}.{fmt}"
            tmp = out_dir / f".{name}.{fmt}.tmp"
            if fmt == "csv":
                query = _csv_safe(store, query)
            # COPY answers with the number of rows it wrote
            written[name] = int(store.scalar(f"COPY ({query}) TO {sql_literal_path(tmp)} ({options})"))
            os.replace(tmp, target)
        return written


def _csv_safe(store: Store, query: str) -> str:
    """CSV has no lists: join list columns (e.g. profiles.sources) with '|'."""
    described = store.rows(f"DESCRIBE {query}")
    cols = [
        f"array_to_string({ident(name)}, '|') AS {ident(name)}" if str(kind).endswith("[]") else ident(name) for name, kind, *_ in described
    ]
    return f"SELECT {', '.join(cols)} FROM ({query})"

"""Erased people stay erased: after standardization, before linking, the batch drops the
records whose key or standardized identifier is on the suppression list
(profiles.store.erasure), with their identifiers, field issues and quarantined rows."""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.batch.ingest import SourceCounts
from profiles.store import Store, ident
from profiles.store.erasure import suppressed_sql


def erasure_ids(store: Store) -> set[str]:
    """The erasures the suppression list holds now (a run compares them before publishing)."""
    return {str(e) for (e,) in store.rows(f"SELECT DISTINCT erasure_id FROM {ident(store.catalog)}.main.suppression")}


def drop_suppressed(store: Store, counts: Mapping[str, SourceCounts]) -> int:
    """Delete the suppressed records from the workspace's ``records``, ``identifiers``,
    ``field_issues`` and ``quarantine``; counts them per source (``suppressed``, taken
    off ``accepted``). Returns how many records were dropped."""
    by_key = suppressed_sql(store, "record_key")
    if by_key is None:
        return 0
    key_condition, params = by_key
    by_identifier, _ = suppressed_sql(store, "kind || ':' || value") or ("false", [])
    store.execute(
        f"""CREATE OR REPLACE TEMP TABLE _suppressed AS
            SELECT record_key, source FROM records WHERE {key_condition}
            UNION SELECT record_key, source FROM identifiers WHERE {by_identifier}""",
        [*params, *params],
    )
    dropped = store.rows("SELECT source, count(*) FROM _suppressed GROUP BY ALL")
    for table in ("records", "identifiers"):
        store.execute(f"DELETE FROM {table} WHERE record_key IN (SELECT record_key FROM _suppressed)")
    store.execute("DELETE FROM field_issues WHERE source || ':' || record_id IN (SELECT record_key FROM _suppressed)")
    # quarantined rows hold the row's text: a suppressed record's (a duplicate id) goes too
    by_row, _ = suppressed_sql(store, "source || ':' || record_id") or ("false", [])
    quarantined = store.rows(f"SELECT source, count(*) FROM quarantine WHERE record_id IS NOT NULL AND {by_row} GROUP BY ALL", params)
    if quarantined:
        store.execute(f"DELETE FROM quarantine WHERE record_id IS NOT NULL AND {by_row}", params)
    store.execute("DROP TABLE _suppressed")
    total = 0
    for source, n in dropped:
        c = counts.get(str(source))
        if c is not None:
            c.suppressed += int(n)
            c.accepted -= int(n)
        total += int(n)
    for source, n in quarantined:
        c = counts.get(str(source))
        if c is not None:
            c.suppressed += int(n)
            c.quarantined -= int(n)
        total += int(n)
    return total

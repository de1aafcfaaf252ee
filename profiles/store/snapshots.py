"""What makes a steward action undoable: the exact rows it changed, before and after, and
the constraints it adds or lifts.

An action keeps the rows of the records and profiles it touches (records' profile ids,
profiles, golden fields with lineage, id registry) in snapshot tables of the published
run, once before it changes them and once after. ``undo`` checks that those rows are
still as the action left them (:func:`state_matches`), puts the "before" rows back
(:func:`restore`), and turns the action's constraints off and the ones it lifted on again
(:func:`set_active`). Used by profiles.store.stewardship inside its transaction."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Final

import pyarrow as pa

from profiles.store.connection import Store, ident, marks

#: Snapshot tables of a run: what an action changed, before and after.
_SNAPSHOTS: Final[dict[str, str]] = {
    "snap_records": "SELECT record_key, profile_id, match_probability FROM {run}.records",
    "snap_profiles": "SELECT * FROM {run}.profiles",
    "snap_golden_fields": "SELECT * FROM {run}.golden_fields",
    "snap_registry": "SELECT * FROM {cat}.main.profile_registry",
}


def snapshot(store: Store, run: str, action_id: str, phase: str, profile_ids: Sequence[str], record_keys: Sequence[str]) -> None:
    """Keep the rows of ``profile_ids`` and ``record_keys`` as they are now, as the
    ``phase`` (before | after) of ``action_id``."""
    schema = ident(run)
    pids = list(dict.fromkeys(profile_ids))
    for table, select in _SNAPSHOTS.items():
        source = select.format(run=schema, cat=ident(store.catalog))
        target = f"{schema}.{table}"
        store.execute(
            f"CREATE TABLE IF NOT EXISTS {target} AS SELECT NULL::VARCHAR AS action_id, NULL::VARCHAR AS phase, * FROM ({source}) WHERE false"
        )
        where, params = _snapshot_filter(table, pids, record_keys)
        with store.unordered():  # read by key after this transaction's writes (see Store.unordered)
            store.execute(f"INSERT INTO {target} SELECT ?, ?, * FROM ({source}) WHERE {where}", [action_id, phase, *params])


def state_matches(store: Store, run: str, action_id: str, phase: str, profile_ids: Sequence[str], record_keys: Sequence[str]) -> bool:
    """Whether the rows of ``profile_ids`` and ``record_keys`` (those an action touched)
    are now exactly as its ``phase`` snapshot."""
    schema = ident(run)
    pids = list(dict.fromkeys(profile_ids))
    for table, select in _SNAPSHOTS.items():
        source = select.format(run=schema, cat=ident(store.catalog))
        where, params = _snapshot_filter(table, pids, record_keys)
        differs = store.scalar(
            f"""SELECT count(*) FROM (
                (SELECT * FROM ({source}) WHERE {where}
                 EXCEPT ALL SELECT * EXCLUDE (action_id, phase) FROM {schema}.{table} WHERE action_id = ? AND phase = ?)
                UNION ALL
                (SELECT * EXCLUDE (action_id, phase) FROM {schema}.{table} WHERE action_id = ? AND phase = ?
                 EXCEPT ALL SELECT * FROM ({source}) WHERE {where}))""",
            [*params, action_id, phase, action_id, phase, *params],
        )
        if differs:
            return False
    return True


def restore(store: Store, run: str, action_id: str, profile_ids: Sequence[str]) -> None:
    """Put back the rows action ``action_id`` found (its "before" snapshot); ``profile_ids``:
    the profiles it touched, before and after."""
    r = f"{ident(store.catalog)}.{ident(run)}"
    touched = list(dict.fromkeys(profile_ids))
    for table in ("records", "membership"):
        store.execute(
            f"""UPDATE {r}.{table} SET profile_id = s.profile_id, match_probability = s.match_probability
                FROM {r}.snap_records s WHERE s.action_id = ? AND s.phase = 'before' AND {table}.record_key = s.record_key""",
            [action_id],
        )
    store.execute(
        f"""UPDATE {r}.identifiers SET profile_id = s.profile_id FROM {r}.snap_records s
            WHERE s.action_id = ? AND s.phase = 'before' AND identifiers.record_key = s.record_key""",
        [action_id],
    )
    with store.unordered():  # inserts reading tables this transaction wrote (see Store.unordered)
        for table in ("profiles", "golden_fields"):
            store.execute(f"DELETE FROM {r}.{table} WHERE profile_id IN ({marks(touched)})", touched)
            store.execute(
                f"INSERT INTO {r}.{table} SELECT * EXCLUDE (action_id, phase) FROM {r}.snap_{table} WHERE action_id = ? AND phase = 'before'",
                [action_id],
            )
        store.execute(
            f"DELETE FROM profile_registry WHERE profile_id IN ({marks(touched)}) OR redirect_to IN ({marks(touched)})",
            touched * 2,
        )
        store.execute(
            f"INSERT INTO profile_registry SELECT * EXCLUDE (action_id, phase) FROM {r}.snap_registry WHERE action_id = ? AND phase = 'before'",
            [action_id],
        )


def moved_records(store: Store, run: str, action_id: str) -> dict[str, list[str]]:
    """Record key -> [profile before, profile after] of the records ``action_id`` moved,
    from its two snapshots."""
    schema = ident(run)
    return {
        str(key): [str(was), str(now)]
        for key, was, now in store.rows(
            f"""SELECT b.record_key, b.profile_id, a.profile_id FROM {schema}.snap_records b
                JOIN {schema}.snap_records a ON a.record_key = b.record_key AND a.action_id = b.action_id
                WHERE b.action_id = ? AND b.phase = 'before' AND a.phase = 'after' AND a.profile_id <> b.profile_id
                ORDER BY 1""",
            [action_id],
        )
    }


def add_constraints(store: Store, action_id: str, links: Sequence[tuple[str, str, str]]) -> list[str]:
    """Record ``links`` (record, record, same | different) as active constraints made by
    ``action_id``; returns their new ids."""
    ids = [f"c_{secrets.token_hex(8)}" for _ in links]
    if links:
        store.register(
            "_sw_constraints",
            pa.table(
                {
                    "constraint_id": ids,
                    "record_key_l": [min(a, b) for a, b, _ in links],
                    "record_key_r": [max(a, b) for a, b, _ in links],
                    "kind": [k for _, _, k in links],
                }
            ),
        )
        try:
            store.execute(
                """INSERT INTO link_constraints (constraint_id, record_key_l, record_key_r, kind, action_id, created_at, active)
                   SELECT constraint_id, record_key_l, record_key_r, kind, ?, now(), true FROM _sw_constraints""",
                [action_id],
            )
        finally:
            store.unregister("_sw_constraints")
    return ids


def set_active(store: Store, constraint_ids: Sequence[str], active: bool) -> None:
    """Turn constraints on or off (an action lifting them, an undo restoring them)."""
    if constraint_ids:
        ids = list(constraint_ids)
        store.execute(f"UPDATE link_constraints SET active = ? WHERE constraint_id IN ({marks(ids)})", [active, *ids])


def _snapshot_filter(table: str, pids: list[str], keys: Sequence[str]) -> tuple[str, list[Any]]:
    if table == "snap_records":
        return f"record_key IN ({marks(keys)})", list(keys)
    if table == "snap_registry":
        return f"profile_id IN ({marks(pids)}) OR redirect_to IN ({marks(pids)})", pids * 2
    return f"profile_id IN ({marks(pids)})", list(pids)


__all__ = ["add_constraints", "moved_records", "restore", "set_active", "snapshot", "state_matches"]

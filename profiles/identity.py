"""Profile ids: opaque, never reused, and never splink's cluster_id (which shifts); and
the one rule by which a regrouped set of records keeps the ids its profiles had."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

_ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
PROFILE_ID_PREFIX = "p_"


def mint_profile_ids(count: int) -> list[str]:
    """``count`` fresh ids, ``p_`` + 16 base32 characters (80 random bits each)."""
    if count <= 0:
        return []
    raw = np.frombuffer(os.urandom(count * 16), dtype=np.uint8) % 32
    chars = _ALPHABET[raw].reshape(count, 16)
    return [PROFILE_ID_PREFIX + s.decode("ascii") for s in chars.view("S16").ravel()]


def inherit_profile_ids(
    groups: Mapping[str, Sequence[str]],
    was: Mapping[str, str],
    mint: Callable[[int], list[str]] = mint_profile_ids,
    created: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Which profile id each new group of records keeps: the one rule of the batch run
    (in SQL: :func:`inherited_sql`), the live path and the stewards' regroupings.

    ``groups``: group name -> its record keys; ``was``: record key -> the profile it was
    in (records new to the store are absent). Each previous profile goes home to the
    group holding most of its records (a tie: the smallest group name). A group that is
    home to several keeps the one it shares most records with, then the oldest
    (``created``: profile id -> creation time; unknown ones count as newest), then the
    smallest id; the others redirect to it. A group home to none gets a fresh id from
    ``mint``. Returns (group -> profile id, kept id -> the ids that now redirect to it)."""
    created = created or {}
    overlap: dict[str, dict[str, int]] = {}  # profile -> group -> records shared
    for group, keys in groups.items():
        for key in keys:
            if (pid := was.get(key)) is not None:
                shared = overlap.setdefault(pid, {})
                shared[group] = shared.get(group, 0) + 1
    homes: dict[str, list[str]] = {}  # group -> the profiles whose home it is
    for pid, shared in overlap.items():
        homes.setdefault(min(shared, key=lambda g: (-shared[g], g)), []).append(pid)

    def rank(group: str) -> Callable[[str], tuple[Any, ...]]:
        return lambda p: (-overlap[p][group], created.get(p) is None, created.get(p) or 0, p)

    names: dict[str, str] = {}
    merged: dict[str, list[str]] = {}
    for group, holders in homes.items():
        kept, *others = sorted(holders, key=rank(group))
        names[group] = kept
        if others:
            merged[kept] = others
    homeless = sorted(g for g in groups if g not in names)
    names.update(zip(homeless, mint(len(homeless))))
    return names, merged


def inherited_sql(clusters: str, previous: str, created: str) -> str:
    """:func:`inherit_profile_ids` in SQL for a batch run's millions of records:
    (cluster_id, profile_id) of the clusters that keep a previous profile's id. Relations:
    ``clusters`` (record_key, cluster_id), ``previous`` (record_key, profile_id),
    ``created`` (profile_id, created_at). The clusters not named get fresh ids."""
    return f"""
        WITH overlap AS (
            SELECT c.cluster_id, p.profile_id AS old_id, count(*) AS shared
            FROM ({clusters}) c JOIN ({previous}) p USING (record_key) GROUP BY ALL
        ),
        homes AS (
            SELECT * FROM overlap
            QUALIFY row_number() OVER (PARTITION BY old_id ORDER BY shared DESC, cluster_id) = 1
        )
        SELECT h.cluster_id, h.old_id AS profile_id FROM homes h LEFT JOIN ({created}) r ON r.profile_id = h.old_id
        QUALIFY row_number() OVER (PARTITION BY h.cluster_id ORDER BY h.shared DESC, r.created_at ASC NULLS LAST, h.old_id) = 1"""

"""Pairwise precision and recall of a published run against ground truth."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class PairwiseScores:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        return self.true_positives / max(1, self.true_positives + self.false_positives)

    @property
    def recall(self) -> float:
        return self.true_positives / max(1, self.true_positives + self.false_negatives)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def membership(store: Path) -> dict[str, str]:
    with duckdb.connect(str(store), read_only=True) as con:
        return dict(con.execute("SELECT record_key, profile_id FROM membership").fetchall())


def membership_rows(store: Path) -> list[tuple[str, str]]:
    """Every (record key, profile id) row of the published membership, duplicates kept."""
    with duckdb.connect(str(store), read_only=True) as con:
        return [(str(k), str(p)) for k, p in con.execute("SELECT record_key, profile_id FROM membership").fetchall()]


def in_two_profiles(rows: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Record keys that appear in more than one profile (or twice), with their profiles."""
    seen: dict[str, list[str]] = {}
    for key, profile in rows:
        seen.setdefault(key, []).append(profile)
    return {k: set(p) for k, p in seen.items() if len(p) > 1}


def pairwise(truth: dict[str, str], profiles: dict[str, str]) -> PairwiseScores:
    """Counted over records present in both (quarantined rows are not in the store)."""
    keys = [k for k in truth if k in profiles]

    def pairs(label: dict[str, str]) -> set[tuple[str, str]]:
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(label[k], []).append(k)
        return {tuple(sorted(p)) for g in groups.values() for p in combinations(g, 2)}  # type: ignore[misc]

    true_pairs, found = pairs(truth), pairs(profiles)
    tp = len(true_pairs & found)
    return PairwiseScores(tp, len(found - true_pairs), len(true_pairs - found))


def merged_hard_negatives(truth: dict[str, str], profiles: dict[str, str], negatives: list[tuple[str, str, str]]) -> Counter[str]:
    """How many hard-negative person pairs (kind, a, b) share a profile."""
    profiles_of: dict[str, set[str]] = {}
    for key, person in truth.items():
        if key in profiles:
            profiles_of.setdefault(person, set()).add(profiles[key])
    merged: Counter[str] = Counter()
    for kind, a, b in negatives:
        if profiles_of.get(a, set()) & profiles_of.get(b, set()):
            merged[kind] += 1
    return merged

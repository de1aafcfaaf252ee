"""How a regrouping of records is decided, apart from the store: pure functions of record
keys, model links, steward constraints and the profiles records were in before.

A steward's decision, a split, a reconciliation after a batch run and a live record all
end in one regrouping: every record of the touched profiles gets the profile it is in
afterwards. This module decides that (which records form a group, which id each group
keeps, which rows change, which retired id redirects where); profiles.store.reassignment
writes it and profiles.store.stewardship reads the inputs from the store. Groups form as
in a batch run (links at or above the match threshold, strongest first, never across a
``different`` pair), so that a rerun on the same input reproduces what the steward sees;
the id a group keeps is the batch run's rule, profiles.identity.inherit_profile_ids."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from profiles.constraints import STEWARD_LINK, constrained_components
from profiles.identity import inherit_profile_ids
from profiles.tuning import TUNING

#: A model link: (record key, record key, match probability).
Link = tuple[str, str, float]
#: An active steward constraint: (constraint id, left record, right record, same | different).
Constraint = tuple[str, str, str, str]
#: A record's (profile id, match probability) as the store holds it; (None, None) for none.
Held = tuple[str | None, float | None]


def match_probabilities(assignment: Mapping[str, str], links: Sequence[tuple[str, str, float]]) -> dict[str, float]:
    """A record's match probability, as in a batch run: its strongest model link (of
    ``links``, the pairs at or above the match threshold) inside its profile."""
    best: dict[str, float] = {}
    for a, b, p in links:
        if assignment.get(a) is not None and assignment.get(a) == assignment.get(b):
            for key in (a, b):
                if p > best.get(key, -1.0):
                    best[key] = float(p)
    return best


def links_among(rows: Iterable[tuple[Any, Any, Any]], keys: Collection[str], threshold: float) -> list[Link]:
    """The model links of ``rows`` (record, record, probability) at or above ``threshold``
    with both records among ``keys``, each once, in the order of ``rows``."""
    return list(dict.fromkeys((str(a), str(b), float(p)) for a, b, p in rows if p >= threshold and a in keys and b in keys))


def group_records(
    keys: Sequence[str],
    links: Iterable[Link],
    constraints: Iterable[Constraint],
    apart: Iterable[tuple[str, str]] = (),
    ignore: Collection[str] | None = None,
) -> list[list[str]]:
    """``keys`` grouped by model ``links`` (those at or above the threshold) and SAME
    decisions, never across a DIFFERENT (nor a pair of ``apart``); largest group first.
    ``constraints`` are the active ones among ``keys``; those whose id is in ``ignore``
    do not count (a split lifts them)."""
    links = list(links)
    kept_apart = list(apart)
    for cid, left, right, kind in constraints:
        if ignore and cid in ignore:
            continue
        if kind == "same":
            links.append((left, right, STEWARD_LINK))
        else:
            kept_apart.append((left, right))
    groups: dict[str, list[str]] = {}
    for key, representative in constrained_components(keys, links, kept_apart).items():
        groups.setdefault(representative, []).append(key)
    return sorted(groups.values(), key=lambda g: (-len(g), min(g)))


def assign_groups(groups: Iterable[Sequence[str]], was: Mapping[str, str], mint: Callable[[int], list[str]]) -> dict[str, str]:
    """Record key -> the profile id its group keeps (profiles.identity.inherit_profile_ids):
    ``was`` names the profile each record was in, ``mint`` gives fresh ids for the groups
    that keep none."""
    named = {min(group): group for group in groups}
    names, _ = inherit_profile_ids(named, was, mint)
    return {k: names[g] for g, group in named.items() for k in group}


def former_profiles(current: Mapping[str, Held], previous: Mapping[str, str] | None) -> dict[str, str]:
    """Record key -> the profile it was in before a regrouping: as the store holds it
    (``current``), except for the records of ``previous`` (a live update's row already
    carries its new profile)."""
    was = {k: str(p) for k, (p, _) in current.items() if p is not None}
    was.update(previous or {})
    return was


def redirects(profiles_before: Sequence[str], assignment: Mapping[str, str], was: Mapping[str, str]) -> dict[str, str | None]:
    """The ids of ``profiles_before`` that no record keeps after ``assignment``, each with
    the profile it redirects to: the one that took most of its records (a tie: the
    smallest id); None when it took none. In the order of ``profiles_before``."""
    after = set(assignment.values())
    taken_from: dict[str, dict[str, int]] = {}  # former profile -> new profile -> records it took
    for key, profile in was.items():
        if key in assignment:
            counts = taken_from.setdefault(profile, {})
            counts[assignment[key]] = counts.get(assignment[key], 0) + 1
    retired: dict[str, str | None] = {}
    for old in (p for p in profiles_before if p not in after):
        taken = taken_from.get(old, {})
        retired[old] = min(taken, key=lambda p: (-taken[p], p)) if taken else None
    return retired


def changed_rows(
    records: Sequence[str], assignment: Mapping[str, str], current: Mapping[str, Held], best: Mapping[str, float]
) -> tuple[list[str], list[str]]:
    """The records whose rows a regrouping rewrites: (moved: a new profile id, reprobed:
    the same profile and only a new match probability ``best``). The others stay as
    they are."""
    moved = [k for k in records if current.get(k, (None, None))[0] != assignment[k]]
    staying = set(records) - set(moved)
    reprobed = [k for k in records if k in staying and current[k][1] != best.get(k)]
    return moved, reprobed


def golden_in_python(assignment: Mapping[str, str], records: Sequence[str]) -> bool:
    """Whether a regrouping is small enough that its golden records are computed in Python
    and its updates take bound values (profiles.tuning); otherwise the assignment is
    registered once for the updates and the batch's survivorship SQL."""
    return len(set(assignment.values())) <= TUNING.python_max_profiles and len(records) <= TUNING.few_records


__all__ = [
    "Constraint",
    "Held",
    "Link",
    "assign_groups",
    "changed_rows",
    "former_profiles",
    "golden_in_python",
    "group_records",
    "links_among",
    "match_probabilities",
    "redirects",
]

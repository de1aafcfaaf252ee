"""Clustering under constraints: records joined by strong links form one profile,
except that records which must be kept apart (a conflict, or a steward's "different")
never end up together, not even through a chain of other records.

Links are taken strongest first and a link is skipped when it would bring together two
groups that hold a kept-apart pair, so the weakest links are the ones that are cut."""

from __future__ import annotations

from collections.abc import Iterable

K = str  # record keys

#: Strength of a steward's SAME decision: above any model probability, so such a link is
#: taken first and is the last to be cut.
STEWARD_LINK = 2.0


def constrained_components(
    nodes: Iterable[K],
    links: Iterable[tuple[K, K, float]],
    apart: Iterable[tuple[K, K]],
) -> dict[K, K]:
    """Map every node to a representative of its group (the smallest node in it).

    ``links`` are (a, b, strength); ``apart`` are pairs that must not share a group.
    Ties in strength are broken by the node order, so the result is deterministic."""
    parent: dict[K, K] = {n: n for n in nodes}
    members: dict[K, set[K]] = {n: {n} for n in parent}
    apart_of: dict[K, set[K]] = {}
    for a, b in apart:
        if a != b:
            apart_of.setdefault(a, set()).add(b)
            apart_of.setdefault(b, set()).add(a)

    def find(x: K) -> K:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    ordered = sorted(links, key=lambda link: (-link[2], min(link[0], link[1]), max(link[0], link[1])))
    for a, b, _ in ordered:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        small, large = (ra, rb) if len(members[ra]) <= len(members[rb]) else (rb, ra)
        if any(find(other) == large for node in members[small] for other in apart_of.get(node, ())):
            continue
        parent[small] = large
        members[large] |= members.pop(small)
    result: dict[K, K] = {}
    for group in members.values():
        representative = min(group)
        for node in group:
            result[node] = representative
    return result

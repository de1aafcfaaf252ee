"""Constrained clustering: kept-apart records never share a group, the weakest link of a
chain is the one that is cut, and the result does not depend on input order."""

from __future__ import annotations

import random

from profiles.constraints import constrained_components


def _groups(result: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for node, rep in result.items():
        groups.setdefault(rep, set()).add(node)
    return {frozenset(g) for g in groups.values()}


def test_without_constraints_it_is_connected_components() -> None:
    result = constrained_components("abcde", [("a", "b", 0.99), ("b", "c", 0.97), ("d", "e", 0.96)], [])
    assert _groups(result) == {frozenset("abc"), frozenset("de")}
    assert result["c"] == "a"


def test_a_chain_between_kept_apart_records_is_cut_at_its_weakest_link() -> None:
    # father (f1, f2) and son (s1, s2); s1 links weakly to f2 through a shared landline
    links = [("f1", "f2", 0.999), ("s1", "s2", 0.998), ("f2", "s1", 0.96)]
    result = constrained_components(["f1", "f2", "s1", "s2"], links, [("f1", "s2")])
    assert _groups(result) == {frozenset({"f1", "f2"}), frozenset({"s1", "s2"})}


def test_the_stronger_link_decides_where_an_ambiguous_record_goes() -> None:
    links = [("a", "x", 0.97), ("x", "b", 0.99)]
    result = constrained_components(["a", "b", "x"], links, [("a", "b")])
    assert _groups(result) == {frozenset({"a"}), frozenset({"x", "b"})}


def test_result_does_not_depend_on_link_order() -> None:
    nodes = [f"r{i}" for i in range(30)]
    rng = random.Random(3)
    links = [(rng.choice(nodes), rng.choice(nodes), round(rng.random(), 2)) for _ in range(60)]
    apart = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(8)]
    expected = constrained_components(nodes, links, apart)
    for _ in range(5):
        shuffled = links[:]
        rng.shuffle(shuffled)
        assert constrained_components(nodes, shuffled, apart) == expected
    for a, b in apart:
        if a != b:
            assert expected[a] != expected[b]

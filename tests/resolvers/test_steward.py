"""The steward's API through the real schema on a copy of the demo store: review queue,
explanations, decisions, merge, split, undo, permissions and the audit log."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resolvers.auth import Role
from tests.resolvers.conftest import Api

DUMPS = {
    "profiles": "SELECT * FROM profiles ORDER BY ALL",
    "golden_fields": "SELECT * FROM golden_fields ORDER BY ALL",
    "membership": "SELECT * FROM membership ORDER BY ALL",
    "records": "SELECT record_key, profile_id, match_probability FROM records ORDER BY ALL",
    "identifiers": "SELECT * FROM identifiers ORDER BY ALL",
    "registry": "SELECT profile_id, created_run, created_at::VARCHAR, retired_run, redirect_to FROM profile_registry ORDER BY ALL",
}


def _state(api: Api) -> dict[str, list[tuple[Any, ...]]]:
    return {name: api.store.rows(sql) for name, sql in DUMPS.items()}


def _ok(result: Any) -> Any:
    assert result.errors is None, result.errors
    return result.data


def _code(result: Any) -> str:
    assert result.errors, "expected an error"
    return str(result.errors[0].extensions["code"])


def _queue(api: Api, first: int = 5, after: str | None = None) -> dict[str, Any]:
    return _ok(
        api.run(
            """query($first: Int!, $after: String) { reviewQueue(first: $first, after: $after) {
             totalCount pageInfo { hasNextPage endCursor }
             edges { node { id matchProbability matchWeight leftProfileId rightProfileId
                            left { key source recordId firstName raw } right { key firstName }
                            explanation { recordA recordB priorWeight matchWeight matchProbability scoredInRun
                                          comparisons { comparison level levelValue matchWeight termFrequencyAdjustment } } } } } }""",
            Role.STEWARD,
            {"first": first, "after": after},
        )
    )["reviewQueue"]


def test_review_queue_pages_through_every_open_pair_with_explanations_that_add_up(api: Api) -> None:
    first = _queue(api, first=5)
    total = first["totalCount"]
    assert total > 5
    seen, page = [], first
    while True:
        for edge in page["edges"]:
            node = edge["node"]
            seen.append(node["id"])
            assert node["leftProfileId"] != node["rightProfileId"]
            assert node["left"]["raw"] is not None  # side by side: raw and standardized
            e = node["explanation"]
            assert e["scoredInRun"] is True
            parts = e["priorWeight"] + sum(c["matchWeight"] + c["termFrequencyAdjustment"] for c in e["comparisons"])
            assert parts == pytest.approx(e["matchWeight"], abs=1e-9)
            assert e["matchWeight"] == pytest.approx(node["matchWeight"], abs=1e-9)
            assert e["matchProbability"] == pytest.approx(node["matchProbability"], abs=1e-12)
            assert e["matchProbability"] == pytest.approx(1 / (1 + math.pow(2, -e["matchWeight"])), abs=1e-12)
            assert all(c["level"] for c in e["comparisons"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        page = _queue(api, first=5, after=page["pageInfo"]["endCursor"])
    assert len(seen) == len(set(seen)) == total
    assert _code(api.run("{ reviewQueue(first: 101) { totalCount } }", Role.STEWARD)) == "BAD_REQUEST"


def test_every_steward_field_and_mutation_is_forbidden_to_other_roles(api: Api) -> None:
    pair = _queue(api, first=1)["edges"][0]["node"]
    operations = [
        "{ reviewQueue { totalCount } }",
        f'{{ explainMatch(a: "{pair["left"]["key"]}", b: "{pair["right"]["key"]}") {{ matchWeight }} }}',
        f'{{ profile(id: "{pair["leftProfileId"]}") {{ explanation {{ matchWeight }} }} }}',
        f'mutation {{ decideCandidate(pairId: "{pair["id"]}", decision: SAME, reason: "r") {{ id }} }}',
        f'mutation {{ mergeProfiles(ids: ["{pair["leftProfileId"]}", "{pair["rightProfileId"]}"], reason: "r") {{ id }} }}',
        f'mutation {{ splitRecord(recordKey: "{pair["left"]["key"]}", reason: "r") {{ id }} }}',
        f'mutation {{ splitRecords(recordKeys: ["{pair["left"]["key"]}"], reason: "r") {{ id }} }}',
        'mutation { undo(actionId: "act_x") { id } }',
    ]
    before = _state(api)
    for role in (Role.AGENT, Role.PERSONALIZATION, Role.ADMIN):
        for operation in operations:
            assert _code(api.run(operation, role)) == "FORBIDDEN", (role, operation)
    assert _code(api.run("{ auditLog { edges { cursor } } }", Role.AGENT)) == "FORBIDDEN"
    assert _state(api) == before


def test_decide_same_merges_at_once_and_a_second_decision_on_the_pair_conflicts(api: Api) -> None:
    pair = _queue(api, first=1)["edges"][0]["node"]
    data = _ok(
        api.run(
            'mutation($p: ID!) { decideCandidate(pairId: $p, decision: SAME, reason: "same phone, moved") '
            "{ id kind profilesBefore profilesAfter profiles { id records { key } explanation { recordA recordB decision } } } }",
            Role.STEWARD,
            {"p": pair["id"]},
        )
    )["decideCandidate"]
    assert data["kind"] == "same" and len(data["profilesBefore"]) == 2 and len(data["profilesAfter"]) == 1
    (merged,) = data["profiles"]
    keys = {r["key"] for r in merged["records"]}
    assert {pair["left"]["key"], pair["right"]["key"]} <= keys
    # the links that hold the profile together connect all its records (a spanning tree)
    links = [(e["recordA"], e["recordB"]) for e in merged["explanation"]]
    assert len(links) == len(keys) - 1 and {k for link in links for k in link} == keys
    decided = _ok(
        api.run(
            "query($a: String!, $b: String!) { explainMatch(a: $a, b: $b) { decision scoredInRun } }",
            Role.STEWARD,
            {"a": pair["right"]["key"], "b": pair["left"]["key"]},
        )
    )["explainMatch"]
    assert decided == {"decision": "SAME", "scoredInRun": True}
    assert pair["id"] not in [e["node"]["id"] for e in _queue(api, first=100)["edges"]]
    again = api.run(
        'mutation($p: ID!) { decideCandidate(pairId: $p, decision: DIFFERENT, reason: "no") { id } }', Role.STEWARD, {"p": pair["id"]}
    )
    assert _code(again) == "CONFLICT"
    assert _code(api.run('mutation { decideCandidate(pairId: "nope", decision: SAME, reason: "r") { id } }', Role.STEWARD)) == "NOT_FOUND"
    assert (
        _code(
            api.run(
                'mutation($p: ID!) { decideCandidate(pairId: $p, decision: SAME, reason: " ") { id } }', Role.STEWARD, {"p": pair["id"]}
            )
        )
        == "BAD_REQUEST"
    )


def test_merge_redirects_the_younger_id_and_undo_restores_it(api: Api) -> None:
    ids = [r[0] for r in api.store.rows("SELECT profile_id FROM profiles WHERE record_count = 1 ORDER BY profile_id LIMIT 2")]
    before = _state(api)
    action = _ok(
        api.run(
            'mutation($ids: [ID!]!) { mergeProfiles(ids: $ids, reason: "same person") { id profilesAfter } }', Role.STEWARD, {"ids": ids}
        )
    )["mergeProfiles"]
    (survivor,) = action["profilesAfter"]
    (retired,) = [i for i in ids if i != survivor]
    found = _ok(api.run("query($id: ID!) { profile(id: $id) { id redirectedFrom recordCount } }", Role.STEWARD, {"id": retired}))
    assert found["profile"] == {"id": survivor, "redirectedFrom": retired, "recordCount": 2}
    # merging a retired id again is a stale view of the data
    assert (
        _code(
            api.run('mutation($ids: [ID!]!) { mergeProfiles(ids: $ids, reason: "r") { id } }', Role.STEWARD, {"ids": [retired, survivor]})
        )
        == "CONFLICT"
    )
    _ok(api.run('mutation($a: ID!) { undo(actionId: $a, reason: "wrong pair") { id undoes } }', Role.STEWARD, {"a": action["id"]}))
    assert _state(api) == before


def test_split_then_undo_restores_byte_identical_state_and_undoing_the_undo_redoes(api: Api) -> None:
    (pid,) = api.store.rows("SELECT profile_id FROM profiles WHERE record_count >= 3 ORDER BY profile_id LIMIT 1")[0]
    key = api.store.rows("SELECT record_key FROM records WHERE profile_id = ? ORDER BY record_key LIMIT 1", [pid])[0][0]
    before = _state(api)
    split = _ok(
        api.run(
            'mutation($k: String!) { splitRecord(recordKey: $k, reason: "another person") { id profilesAfter } }', Role.STEWARD, {"k": key}
        )
    )["splitRecord"]
    assert pid in split["profilesAfter"] and len(split["profilesAfter"]) >= 2
    after_split = _state(api)
    assert after_split != before
    undo = _ok(api.run("mutation($a: ID!) { undo(actionId: $a) { id undoes } }", Role.STEWARD, {"a": split["id"]}))["undo"]
    assert undo["undoes"] == split["id"]
    assert _state(api) == before, "undo did not restore golden fields, ids and lineage exactly"
    assert _code(api.run("mutation($a: ID!) { undo(actionId: $a) { id } }", Role.STEWARD, {"a": split["id"]})) == "CONFLICT"
    _ok(api.run("mutation($a: ID!) { undo(actionId: $a) { id } }", Role.STEWARD, {"a": undo["id"]}))
    assert _state(api) == after_split, "undoing the undo did not redo the split"


def test_undo_is_refused_while_a_later_action_changed_the_same_profile(api: Api) -> None:
    (pid,) = api.store.rows("SELECT profile_id FROM profiles WHERE record_count >= 4 ORDER BY profile_id DESC LIMIT 1")[0]
    keys = [r[0] for r in api.store.rows("SELECT record_key FROM records WHERE profile_id = ? ORDER BY record_key", [pid])]
    first = _ok(api.run('mutation($k: String!) { splitRecord(recordKey: $k, reason: "r1") { id } }', Role.STEWARD, {"k": keys[0]}))
    second = _ok(api.run('mutation($k: String!) { splitRecord(recordKey: $k, reason: "r2") { id } }', Role.STEWARD, {"k": keys[-1]}))
    assert _code(api.run("mutation($a: ID!) { undo(actionId: $a) { id } }", Role.STEWARD, {"a": first["splitRecord"]["id"]})) == "CONFLICT"
    _ok(api.run("mutation($a: ID!) { undo(actionId: $a) { id } }", Role.STEWARD, {"a": second["splitRecord"]["id"]}))
    _ok(api.run("mutation($a: ID!) { undo(actionId: $a) { id } }", Role.STEWARD, {"a": first["splitRecord"]["id"]}))


def test_explain_match_by_profile_ids_and_every_action_is_in_the_audit_log(api: Api) -> None:
    pair = _queue(api, first=1)["edges"][0]["node"]
    explained = _ok(
        api.run(
            "query($a: String!, $b: String!) { explainMatch(a: $a, b: $b) { recordA recordB matchWeight } }",
            Role.STEWARD,
            {"a": pair["leftProfileId"], "b": pair["rightProfileId"]},
        )
    )["explainMatch"]
    assert explained["matchWeight"] >= pair["matchWeight"] - 1e-9  # the strongest pair between the two profiles
    action = _ok(
        api.run(
            'mutation($p: ID!) { decideCandidate(pairId: $p, decision: DIFFERENT, reason: "twins") { id profilesAfter } }',
            Role.STEWARD,
            {"p": pair["id"]},
        )
    )["decideCandidate"]
    log = _ok(
        api.run(
            "query($p: ID!) { auditLog(profileId: $p, first: 50) { edges { node { action actor role subject detail } } } }",
            Role.ADMIN,
            {"p": pair["leftProfileId"]},
        )
    )["auditLog"]["edges"]
    entry = next(e["node"] for e in log if e["node"]["subject"] == action["id"])
    assert entry["action"] == "steward.different" and entry["role"] == "steward" and entry["actor"] == "test:steward"
    assert entry["detail"]["reason"] == "twins"
    assert entry["detail"]["profiles_before"] and entry["detail"]["profiles_after"] == action["profilesAfter"]

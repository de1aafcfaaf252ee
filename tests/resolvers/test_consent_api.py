"""Consent per purpose where the data leaves (issue 22): the demo's preference-centre log
(data/consents.csv, linked by e-mail) decides which profiles a personalization key gets
traits for, checked against the demo's truth; aliases, fragments and lists reach nothing
more; a withdrawal withholds at the next request; a split moves the statements with the
records they are attached to, and an undo brings them back."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.config import load_config
from profiles.store import ProfileQueries, Store
from resolvers.auth import Role
from tests.conftest import DemoRun
from tests.resolvers.conftest import Api

PRECEDENCE = {"granted": 0, "denied": 1, "withdrawn": 2}


@pytest.fixture(scope="module")
def api(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    target = tmp_path_factory.mktemp("consent") / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp", "*.sock"))
    config = load_config(target / "unify.toml")
    store = Store.open(config.store_path)
    yield Api(config, store, ProfileQueries(store))
    store.close()


def _true_personalization(run: DemoRun) -> dict[str, str]:
    """Person id -> the status of their latest readable personalization statement in the
    demo's consents.csv (by the events' truth: linked, not malformed)."""
    assert run.manifest.events is not None
    truth = pq.read_table(run.manifest.events.truth_path).to_pylist()
    owner = {t["event_id"]: t["person_id"] for t in truth if t["event_source"] == "consents" and t["linked"] and not t["malformed"]}
    with run.manifest.events.paths["consents"].open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))  # a malformed row (an extra field) is read too, and left out by its truth
    latest: dict[str, tuple[Any, int, str]] = {}
    for row in rows:
        person = owner.get(row["change_id"])
        if person is None or row["purpose"] != "personalization":
            continue
        status = row["choice"].lower()
        key = (row["changed_at"], PRECEDENCE[status], status)
        if person not in latest or key > latest[person]:
            latest[person] = key
    return {person: key[2] for person, key in latest.items()}


def _clean_profiles(run: DemoRun, store: Store) -> dict[str, str]:
    """Profile id -> person id, for profiles that hold every record of exactly one person."""
    truth = run.truth()
    members: dict[str, set[str]] = defaultdict(set)
    records_of: dict[str, set[str]] = defaultdict(set)
    for profile_id, key in store.rows("SELECT profile_id, record_key FROM records"):
        members[str(profile_id)].add(truth[str(key)])
        records_of[truth[str(key)]].add(str(profile_id))
    return {p: next(iter(ps)) for p, ps in members.items() if len(ps) == 1 and len(records_of[next(iter(ps))]) == 1}


TRAITS = """query($ids: [ID!]!) { profiles(ids: $ids) { id traits { name value } } }"""


def test_a_personalization_key_gets_traits_only_for_profiles_that_granted(api: Api, small_demo: DemoRun) -> None:
    states = _true_personalization(small_demo)
    clean = _clean_profiles(small_demo, api.store)
    sample = sorted(clean)[:600]
    expected = {p: states.get(clean[p]) == "granted" for p in sample}
    assert sum(expected.values()) >= 50 and sum(not v for v in expected.values()) >= 50  # both kinds, and many
    got: dict[str, bool] = {}
    for start in range(0, len(sample), 100):
        result = api.run(TRAITS, Role.PERSONALIZATION, {"ids": sample[start : start + 100]})
        assert result.errors is None, result.errors
        got.update({p["id"]: p["traits"] is not None for p in result.data["profiles"]})
        withheld = {w["path"] for w in api.last_context.withheld}
        assert {f"profiles.{i}.traits" for i, p in enumerate(result.data["profiles"]) if p["traits"] is None} == withheld
    agree = sum(got[p] == expected[p] for p in sample) / len(sample)
    assert agree == 1.0, [(p, clean[p], expected[p], got[p]) for p in sample if got[p] != expected[p]][:5]
    # the agent reads for service and personalization: the same profiles; a steward is not restricted
    first = sample[:100]
    agent = api.run(TRAITS, Role.AGENT, {"ids": first}).data["profiles"]
    assert [p["traits"] is not None for p in agent] == [expected[p] for p in first]
    steward = api.run(TRAITS, Role.STEWARD, {"ids": first}).data["profiles"]
    assert all(p["traits"] is not None for p in steward)


def _granted_and_not(api: Api, small_demo: DemoRun) -> tuple[str, str]:
    states = _true_personalization(small_demo)
    clean = _clean_profiles(small_demo, api.store)
    granted = next(p for p in sorted(clean) if states.get(clean[p]) == "granted")
    unknown = next(p for p in sorted(clean) if clean[p] not in states)
    return granted, unknown


SHAPES = """query($yes: ID!, $no: ID!) {
  y: profile(id: $yes) { t1: traits { name } t2: traits { value } ...History ... on Profile { le: lifeEvents { kind } } }
  n: profile(id: $no) { t1: traits { name } t2: traits { value } ...History ... on Profile { le: lifeEvents { kind } } }
  list: profiles(ids: [$yes, $no]) { ...History }
}
fragment History on Profile { id traits { name } timeline(first: 1) { totalCount } effort { contacts } lifeEvents { kind } }"""


def test_aliases_fragments_and_lists_reach_nothing_more(api: Api, small_demo: DemoRun) -> None:
    granted, unknown = _granted_and_not(api, small_demo)
    result = api.run(SHAPES, Role.PERSONALIZATION, {"yes": granted, "no": unknown})
    assert result.errors is None, result.errors
    y, n, listed = result.data["y"], result.data["n"], result.data["list"]
    history = ("t1", "t2", "traits", "timeline", "effort", "lifeEvents", "le")
    assert all(y[f] is not None for f in history)
    assert all(n[f] is None for f in history), n
    assert all(listed[0][f] is not None for f in ("traits", "timeline", "effort", "lifeEvents"))
    assert all(listed[1][f] is None for f in ("traits", "timeline", "effort", "lifeEvents"))
    withheld = api.last_context.withheld
    assert {w["path"] for w in withheld} == {
        *(f"n.{f}" for f in history),
        *(f"list.1.{f}" for f in ("traits", "timeline", "effort", "lifeEvents")),
    }
    assert all("personalization: unknown" in w["reason"] for w in withheld)


CONSENTS = """query($id: ID!) { profile(id: $id) { id traits { name }
  consents { purpose legalBasis status allowed since source history { status source eventSource reason recordKey } } } }"""
RECORD = """mutation($id: ID!, $purpose: String!, $status: ConsentStatus!) {
  recordConsent(profileId: $id, purpose: $purpose, status: $status, source: "phone call", reason: "said so on the phone") {
    purpose status allowed history { status source eventSource recordKey } } }"""


def _consent(api: Api, profile_id: str, purpose: str, role: Role = Role.STEWARD) -> dict[str, Any]:
    result = api.run(CONSENTS, role, {"id": profile_id})
    assert result.errors is None, result.errors
    return dict(next(c for c in result.data["profile"]["consents"] if c["purpose"] == purpose))


def test_a_withdrawal_withholds_at_the_next_request_and_beats_an_older_grant(api: Api, small_demo: DemoRun) -> None:
    granted, _ = _granted_and_not(api, small_demo)
    before = api.run(CONSENTS, Role.PERSONALIZATION, {"id": granted}).data["profile"]
    assert before["traits"] is not None
    state = next(c for c in before["consents"] if c["purpose"] == "personalization")
    assert state["status"] == "granted" and state["allowed"] and state["history"][0]["eventSource"] == "consents"
    assert all(h["reason"] is None and h["recordKey"] is None for h in state["history"])  # no PII for this role
    done = api.run(RECORD, Role.AGENT, {"id": granted, "purpose": "personalization", "status": "WITHDRAWN"})
    assert done.errors is None, done.errors
    assert done.data["recordConsent"]["status"] == "withdrawn" and not done.data["recordConsent"]["allowed"]
    after = api.run(CONSENTS, Role.PERSONALIZATION, {"id": granted}).data["profile"]
    assert after["traits"] is None
    assert [w["reason"] for w in api.last_context.withheld] == ["personalization: withdrawn (consent)"]
    steward_view = _consent(api, granted, "personalization")
    assert [h["status"] for h in steward_view["history"]][:2] == ["withdrawn", "granted"]
    assert steward_view["history"][0]["source"] == "phone call" and steward_view["history"][0]["reason"] == "said so on the phone"
    # audited: who, which profile, what; never the reason's text
    audit = api.store.rows("SELECT actor, detail::VARCHAR FROM audit_log WHERE action = 'consent.record' ORDER BY occurred_at DESC LIMIT 1")
    assert audit[0][0] == "test:agent" and granted in audit[0][1] and "said so" not in audit[0][1]
    # contract-based service is not stopped by a statement; an undeclared purpose and the personalization role are refused
    api.run(RECORD, Role.AGENT, {"id": granted, "purpose": "service", "status": "WITHDRAWN"})
    assert _consent(api, granted, "service")["allowed"] is True
    bad = api.run(RECORD, Role.AGENT, {"id": granted, "purpose": "telepathy", "status": "GRANTED"})
    assert bad.errors and "not declared" in bad.errors[0].message
    refused = api.run(RECORD, Role.PERSONALIZATION, {"id": granted, "purpose": "personalization", "status": "GRANTED"})
    assert refused.errors and refused.errors[0].extensions["code"] == "FORBIDDEN"
    missing = api.run(RECORD, Role.AGENT, {"id": "p_nosuchprofile", "purpose": "personalization", "status": "GRANTED"})
    assert missing.errors and missing.errors[0].extensions["code"] == "NOT_FOUND"


def _multi_record_profile(api: Api, small_demo: DemoRun) -> str:
    """A clean profile of at least two records with no statement of its own."""
    states = _true_personalization(small_demo)
    clean = _clean_profiles(small_demo, api.store)
    counts = dict(api.store.rows("SELECT profile_id, count(*) FROM records GROUP BY 1"))
    return next(p for p in sorted(clean) if counts[p] >= 2 and clean[p] not in states)


SPLIT = """mutation($keys: [String!]!) { splitRecords(recordKeys: $keys, reason: "test") { id profilesAfter } }"""


def test_a_split_moves_consent_with_the_records_and_an_undo_brings_it_back(api: Api, small_demo: DemoRun, tmp_path: Path) -> None:
    profile_id = _multi_record_profile(api, small_demo)
    granted = api.run(RECORD, Role.AGENT, {"id": profile_id, "purpose": "personalization", "status": "GRANTED"})
    assert granted.errors is None, granted.errors
    (statement,) = granted.data["recordConsent"]["history"]
    holder = statement["recordKey"]  # a grant binds the most recently updated record only
    newest = api.store.rows(
        "SELECT record_key FROM records WHERE profile_id = ? ORDER BY updated_at DESC NULLS LAST, record_key DESC LIMIT 1", [profile_id]
    )
    assert holder == newest[0][0]
    assert api.run(TRAITS, Role.PERSONALIZATION, {"ids": [profile_id]}).data["profiles"][0]["traits"] is not None
    split = api.run(SPLIT, Role.STEWARD, {"keys": [holder]})
    assert split.errors is None, split.errors
    other = next(p for p in split.data["splitRecords"]["profilesAfter"] if p != profile_id)
    assert _consent(api, other, "personalization")["status"] == "granted"
    assert _consent(api, profile_id, "personalization")["status"] == "unknown"
    after = api.run(TRAITS, Role.PERSONALIZATION, {"ids": [profile_id, other]}).data["profiles"]
    assert after[0]["traits"] is None and after[1]["traits"] is not None
    undo = api.run(
        """mutation($id: ID!) { undo(actionId: $id, reason: "test") { id } }""", Role.STEWARD, {"id": split.data["splitRecords"]["id"]}
    )
    assert undo.errors is None, undo.errors
    assert _consent(api, profile_id, "personalization")["status"] == "granted"
    # a withdrawal binds every record: split off any one, both parts hold it
    api.run(RECORD, Role.AGENT, {"id": profile_id, "purpose": "personalization", "status": "WITHDRAWN"})
    keys = [k for (k,) in api.store.rows("SELECT record_key FROM records WHERE profile_id = ? ORDER BY 1", [profile_id])]
    split = api.run(SPLIT, Role.STEWARD, {"keys": [keys[0]]})
    assert split.errors is None, split.errors
    for part in split.data["splitRecords"]["profilesAfter"]:
        assert _consent(api, part, "personalization")["status"] == "withdrawn"

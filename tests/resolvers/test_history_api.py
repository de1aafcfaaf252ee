"""A profile's history through the API: events of two systems on one timeline, attached
to records so that a split takes them along and an undo brings them back exactly;
``recordEvent``; events linked by an identifier; bad rows quarantined with their line."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import load_config
from pipelines.history.events import ingest_event_files, unlinked_count
from profiles.store import ProfileQueries, Store
from resolvers.auth import Role
from resolvers.schema import utc_isoformat
from tests.conftest import DemoRun
from tests.resolvers.conftest import Api

EVENTS_TOML = """
[[events]]
name = "t_calls"
path = "t_calls.csv"
id = "call_id"
timestamp = "started_at"
date_format = "%d-%m-%Y %H:%M"
type = { value = "contact" }
channel = "channel"
topic = "reason"
department = "queue"
[events.link]
source = "crm"
record_id = "customer_ref"
[events.attributes]
duration_s = "duration"

[[events]]
name = "t_orders"
path = "t_orders.ndjson"
id = "order_no"
timestamp = "placed"
type = "kind"
channel = { value = "web" }
amount = "total"
[events.link]
source = "webshop"
record_id = "customer"

[[events]]
name = "t_surveys"
path = "t_surveys.csv"
id = "sid"
timestamp = "at"
type = { value = "survey" }
[events.link]
identifier = "email"
column = "mail"
[events.attributes]
ces = "score"

[[traits]]
name = "orders_total"
function = "sum"
events = ["t_orders"]
field = "amount"
where = { type = ["order"] }

[[traits]]
name = "contacts"
function = "count"
events = ["t_calls"]
"""


@dataclass
class History:
    api: Api
    profile_id: str
    crm_key: str
    webshop_key: str
    email: str


def _person(store: Store) -> tuple[str, str, str, str]:
    """A profile with a crm record, a webshop record and an email."""
    row = store.rows(
        """SELECT c.profile_id, c.record_id, w.record_id, c.email_std FROM records c JOIN records w USING (profile_id)
           WHERE c.source = 'crm' AND w.source = 'webshop' AND c.email_std IS NOT NULL
             AND (SELECT count(*) FROM records r WHERE r.profile_id = c.profile_id) = 2
           ORDER BY 1 LIMIT 1"""
    )[0]
    return str(row[0]), str(row[1]), str(row[2]), str(row[3])


def _write(target: Path, crm_id: str, webshop_id: str, email: str) -> None:
    with (target / "t_calls.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["call_id", "started_at", "channel", "reason", "queue", "customer_ref", "duration"])
        w.writerow(["C1", "01-11-2026 10:00", "phone", "delivery", "front", crm_id, "120"])
        w.writerow(["C2", "03-11-2026 09:30", "chat", "delivery", "front", crm_id, "60"])
        w.writerow(["C2b", "03-11-2026 09:40", "phone", "delivery", "logistics", crm_id, "300"])
        w.writerow(["C3", "", "phone", "billing", "front", crm_id, "5"])  # line 5: no time
        w.writerow(["C4", "31-02-2026 10:00", "phone", "billing", "front", crm_id, "5"])  # line 6: no such date
        w.writerow(["C5", "04-11-2026 10:00", "phone", "billing", "front", "", "5"])  # line 7: no customer
        w.writerow(["C6", "05-11-2026 10:00", "phone", "billing", "front", "NO-SUCH-ID", "5"])  # unlinked
    with (target / "t_orders.ndjson").open("w", encoding="utf-8") as f:
        for order in (
            {"order_no": "O1", "placed": "2026-10-30T12:00:00", "kind": "order", "total": 59.5, "customer": webshop_id},
            {"order_no": "O2", "placed": "2026-11-02T08:00:00", "kind": "return", "total": -59.5, "customer": webshop_id},
            {"order_no": "O3", "placed": "2026-11-05T08:00:00", "kind": "order", "total": "a lot", "customer": webshop_id},
        ):
            f.write(json.dumps(order) + "\n")
        f.write("{not json\n")
    with (target / "t_surveys.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sid", "at", "mail", "score"])
        w.writerow(["S1", "2026-11-04 08:00:00", f"  {email.upper()} ", "6"])


@pytest.fixture(scope="module")
def history(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    target = tmp_path_factory.mktemp("history") / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp", "*.sock"))
    config_path = target / "unify.toml"
    config_path.write_text(config_path.read_text(encoding="utf-8") + EVENTS_TOML, encoding="utf-8")
    config = load_config(config_path)
    store = Store.open(config.store_path)
    profile_id, crm_id, webshop_id, email = _person(store)
    _write(target, crm_id, webshop_id, email)
    counts = {n: c for n, c in ingest_event_files(store, config).items() if n.startswith("t_")}
    store.execute("DELETE FROM events WHERE event_source NOT LIKE 't\\_%' ESCAPE '\\'")  # the demo's own: this test's person only has these
    assert {n: (c.rows, c.accepted, c.quarantined) for n, c in counts.items()} == {
        "t_calls": (7, 4, 3),
        "t_orders": (4, 2, 2),
        "t_surveys": (1, 1, 0),
    }
    yield History(Api(config, store, ProfileQueries(store)), profile_id, f"crm:{crm_id}", f"webshop:{webshop_id}", email)
    store.close()


TIMELINE = """query($id: ID!, $first: Int, $after: String, $channels: [String!]) {
  profile(id: $id) { timeline(first: $first, after: $after, channels: $channels) {
    totalCount hasNextPage endCursor
    nodes { id source eventId occurredAt type channel topic department amount attributes recordKey } } }
}"""


def _timeline(api: Api, profile_id: str, role: Role = Role.AGENT, **variables: Any) -> dict[str, Any]:
    result = api.run(TIMELINE, role, {"id": profile_id, **variables})
    assert result.errors is None, result.errors
    return dict(result.data["profile"]["timeline"])


def test_bad_rows_are_quarantined_with_their_line_and_reason(history: History) -> None:
    rows = history.api.store.rows("SELECT event_source, line, reason FROM event_quarantine WHERE event_source LIKE 't_%' ORDER BY 1, 2")
    assert rows == [
        ("t_calls", 5, "no time (column 'started_at')"),
        ("t_calls", 6, "not a valid time in format %d-%m-%Y %H:%M (value 31-02-2026 10:00)"),
        ("t_calls", 7, "no customer reference (column 'customer_ref')"),
        ("t_orders", 3, "amount is not a number (value a lot)"),
        ("t_orders", 4, "not valid JSON"),
    ]
    run = history.api.queries.run_schema()
    assert run is not None and unlinked_count(history.api.store, run) >= 1  # C6 waits for its record


def test_the_timeline_holds_both_systems_newest_first(history: History) -> None:
    timeline = _timeline(history.api, history.profile_id, first=20)
    ids = [n["id"] for n in timeline["nodes"]]
    assert ids == ["t_surveys:S1", "t_calls:C2b", "t_calls:C2", "t_orders:O2", "t_calls:C1", "t_orders:O1"]
    assert timeline["totalCount"] == 6 and not timeline["hasNextPage"]
    survey = timeline["nodes"][0]
    assert survey["recordKey"] is not None and survey["attributes"] == {"ces": "6"}  # linked by the e-mail, as standardized
    call = timeline["nodes"][1]
    assert (call["channel"], call["topic"], call["department"], call["recordKey"]) == ("phone", "delivery", "logistics", history.crm_key)


def test_the_timeline_pages_and_filters(history: History) -> None:
    first = _timeline(history.api, history.profile_id, first=4)
    assert first["hasNextPage"] and len(first["nodes"]) == 4
    rest = _timeline(history.api, history.profile_id, first=4, after=first["endCursor"])
    assert [n["id"] for n in first["nodes"] + rest["nodes"]] == [n["id"] for n in _timeline(history.api, history.profile_id)["nodes"]]
    chats = _timeline(history.api, history.profile_id, channels=["chat"])
    assert [n["id"] for n in chats["nodes"]] == ["t_calls:C2"]


def test_times_are_given_in_utc_with_their_offset_and_read_with_theirs(history: History) -> None:
    """The store holds UTC without an offset; the API says so ("+00:00"), or a client (a
    browser's ``new Date``) reads the time as its own local time. A time sent with an
    offset is compared in UTC; one without is UTC."""
    nodes = _timeline(history.api, history.profile_id)["nodes"]
    assert {n["id"]: n["occurredAt"] for n in nodes}["t_calls:C2b"] == "2026-11-03T09:40:00+00:00"  # the file's 09:40, no offset
    assert all(datetime.fromisoformat(n["occurredAt"]).utcoffset() == timedelta(0) for n in nodes)
    since = """query($id: ID!, $since: DateTime) { profile(id: $id) { timeline(since: $since) { nodes { id } } } }"""
    for sent in ("2026-11-03T10:35:00+01:00", "2026-11-03T09:35:00", "2026-11-03T09:35:00Z"):  # each 09:35 UTC
        result = history.api.run(since, Role.AGENT, {"id": history.profile_id, "since": sent})
        assert result.errors is None, result.errors
        assert [n["id"] for n in result.data["profile"]["timeline"]["nodes"]] == ["t_surveys:S1", "t_calls:C2b"], sent


def test_personalization_sees_no_record_keys_or_attributes(history: History) -> None:
    api = history.api
    without = api.run(TIMELINE, Role.PERSONALIZATION, {"id": history.profile_id})
    assert without.errors is None and without.data["profile"]["timeline"] is None  # no consent yet (docs/privacy.md)
    grant = (
        """mutation($id: ID!) { recordConsent(profileId: $id, purpose: "personalization", status: GRANTED, source: "test") { allowed } }"""
    )
    assert api.run(grant, Role.AGENT, {"id": history.profile_id}).data["recordConsent"]["allowed"]
    try:
        nodes = _timeline(api, history.profile_id, Role.PERSONALIZATION)["nodes"]
        assert nodes and all(n["recordKey"] is None and n["attributes"] is None for n in nodes)
    finally:
        api.store.execute("DELETE FROM events WHERE event_source = 'consent'")  # the other tests count this profile's events


def test_traits_follow_a_split_and_an_undo_restores_them_exactly(history: History) -> None:
    api = history.api
    card = """query($id: ID!) { profile(id: $id) { id traits { name value asOf eventCount definition }
              timeline(first: 50) { nodes { id } } } }"""
    before = api.run(card, Role.STEWARD, {"id": history.profile_id})
    assert before.errors is None
    traits = {t["name"]: t for t in before.data["profile"]["traits"]}
    assert traits["orders_total"]["value"] == 59.5 and traits["orders_total"]["eventCount"] == 1
    assert traits["contacts"]["value"] == 3
    split = api.run(
        """mutation($keys: [String!]!) { splitRecords(recordKeys: $keys, reason: "test") { id profilesAfter } }""",
        Role.STEWARD,
        {"keys": [history.webshop_key]},
    )
    assert split.errors is None, split.errors
    action = split.data["splitRecords"]["id"]
    new_profile = next(p for p in split.data["splitRecords"]["profilesAfter"] if p != history.profile_id)
    left = api.run(card, Role.STEWARD, {"id": history.profile_id}).data["profile"]
    right = api.run(card, Role.STEWARD, {"id": new_profile}).data["profile"]
    assert {t["name"]: t["value"] for t in left["traits"]}["orders_total"] is None
    assert {t["name"]: t["value"] for t in right["traits"]}["orders_total"] == 59.5
    moved = {n["id"] for n in right["timeline"]["nodes"]}
    stayed = {n["id"] for n in left["timeline"]["nodes"]}
    # the orders leave with the webshop record; the calls stay; the survey is linked by an
    # e-mail address, and belongs to each profile holding a record with it
    assert moved - {"t_surveys:S1"} == {"t_orders:O1", "t_orders:O2"}
    assert stayed - {"t_surveys:S1"} == {"t_calls:C1", "t_calls:C2", "t_calls:C2b"}
    assert "t_surveys:S1" in moved | stayed
    undo = api.run("""mutation($id: ID!) { undo(actionId: $id, reason: "test") { id } }""", Role.STEWARD, {"id": action})
    assert undo.errors is None, undo.errors
    after = api.run(card, Role.STEWARD, {"id": history.profile_id})
    assert json.dumps(after.data, sort_keys=True) == json.dumps(before.data, sort_keys=True)


def test_record_event_adds_and_replaces_and_refuses_bad_ones(history: History) -> None:
    api = history.api
    mutation = """mutation($event: JSON!) { recordEvent(events: "t_calls", event: $event) { eventId status profileId } }"""
    event = {"call_id": "L1", "started_at": "06-11-2026 10:00", "channel": "phone", "reason": "billing", "queue": "front",
             "customer_ref": history.crm_key.split(":", 1)[1], "duration": "30"}  # fmt: skip
    done = api.run(mutation, Role.AGENT, {"event": event})
    assert done.errors is None, done.errors
    assert done.data["recordEvent"] == {"eventId": "L1", "status": "recorded", "profileId": history.profile_id}
    api.run(mutation, Role.AGENT, {"event": {**event, "reason": "delivery"}})
    topics = [n["topic"] for n in _timeline(api, history.profile_id)["nodes"] if n["id"] == "t_calls:L1"]
    assert topics == ["delivery"]  # the same id again replaced it
    bad = api.run(mutation, Role.AGENT, {"event": {**event, "call_id": "L2", "started_at": "yesterday"}})
    assert bad.errors and bad.errors[0].extensions["code"] == "INVALID_EVENT"
    assert "not a valid time" in bad.errors[0].message
    refused = api.run(mutation, Role.PERSONALIZATION, {"event": event})
    assert refused.errors and refused.errors[0].extensions["code"] == "FORBIDDEN"


@pytest.mark.parametrize("with_records", [True, False])
def test_a_card_reads_the_profiles_events_once(history: History, monkeypatch: pytest.MonkeyPatch, with_records: bool) -> None:
    # timeline, traits, effort, consents and the consent checks resolve side by side: one
    # read of the events between them, and none of its own for what they attach to when
    # the card reads the records anyway
    import resolvers.context

    reads: list[str] = []
    links: list[str] = []
    real_read, real_links = resolvers.context.read_profile_events, history.api.queries.links_of

    def read(store: Any, profile_id: str, *args: Any) -> Any:
        reads.append(profile_id)
        return real_read(store, profile_id, *args)

    def links_of(profile_id: str) -> Any:
        links.append(profile_id)
        return real_links(profile_id)

    monkeypatch.setattr(resolvers.context, "read_profile_events", read)
    monkeypatch.setattr(history.api.queries, "links_of", links_of)
    records = "records { source recordId } identifiers { kind value }" if with_records else ""
    card = f"""query($id: ID!) {{ profile(id: $id) {{ id {records} traits {{ name value }} effort(days: 3650) {{ contacts }}
               consents {{ purpose status }} lifeEvents {{ kind }} timeline(first: 5) {{ totalCount nodes {{ id }} }}
               again: timeline(first: 2, channels: ["chat"]) {{ nodes {{ id }} }} }} }}"""
    result = history.api.run(card, Role.AGENT, {"id": history.profile_id})
    assert result.errors is None, result.errors
    profile = result.data["profile"]
    assert profile["timeline"]["totalCount"] >= 5 and profile["effort"]["contacts"] >= 1  # traits: withheld without consent
    assert reads == [history.profile_id]
    assert links == ([] if with_records else [history.profile_id])


def test_an_events_owner_from_its_links_is_the_one_read_from_the_stored_event(history: History) -> None:
    # recordEvent answers with the owner from what the event it wrote is attached to
    queries = history.api.queries
    rows = history.api.store.rows(
        "SELECT event_source, event_id, record_key, link_kind, link_value FROM events ORDER BY event_source, event_id"
    )
    assert any(r[2] is None for r in rows) and any(r[2] is not None for r in rows)  # both kinds of link
    owners = {(s, i): queries.link_owner(key, kind, value) for s, i, key, kind, value in rows}
    assert owners == {(s, i): queries.event_owner(s, i) for s, i, *_ in rows}
    assert any(o is None for o in owners.values()) and any(o is not None for o in owners.values())  # unlinked ones too


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 3, 9, 40), "2026-11-03T09:40:00+00:00"),
        (datetime(2026, 11, 3, 9, 40, 0, 120), "2026-11-03T09:40:00.000120+00:00"),
        (datetime(2026, 11, 3, 10, 40, tzinfo=timezone(timedelta(hours=1))), "2026-11-03T09:40:00+00:00"),
        (datetime(1, 1, 1), "0001-01-01T00:00:00+00:00"),
    ],
)
def test_a_time_is_written_in_utc_with_its_offset(value: datetime, text: str) -> None:
    assert utc_isoformat(value) == text

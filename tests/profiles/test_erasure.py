"""Erasure that stays erased (issue 22): a demo person with records in several sources,
events and steward actions is erased through the API; nothing of them answers any more,
not in the store's tables, the exports or the audit log; a rerun over the unchanged
source files and a re-ingest of their records bring nothing back (counted as
suppressed) until an admin lifts the suppression."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.batch.run import run_pipeline
from pipelines.config import load_config
from profiles.errors import UnifyError
from profiles.store import ProfileQueries, Steward, Store, verify_audit
from profiles.store.erasure import erase_profile
from resolvers.auth import Role
from tests.conftest import DemoRun
from tests.resolvers.conftest import Api
from unify.cli import app

RUNNER = CliRunner()


@dataclass
class Person:
    profile_id: str
    record_keys: list[str]
    raws: dict[str, dict[str, Any]]  # record key -> the row as its source sent it
    identifiers: list[tuple[str, str]]  # (kind, standardized value)
    names: list[str]  # last names
    emails: list[str]
    phones: list[str]
    events: int


@dataclass
class Erased:
    api: Api
    person: Person
    erasure: dict[str, Any]
    export_before: dict[str, Any]
    tmp: Path


def _ok(result: Any) -> Any:
    assert result.errors is None, result.errors
    return result.data


def _code(result: Any) -> str:
    assert result.errors, "expected an error"
    return str(result.errors[0].extensions["code"])


def _cli(*args: str) -> Any:
    result = RUNNER.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _pick(store: Store) -> str:
    """A person with records in at least two sources, events and no shared identifier."""
    row = store.rows(
        """WITH per AS (
               SELECT r.profile_id, count(DISTINCT r.source) AS sources, count(*) AS records FROM records r GROUP BY ALL),
           ev AS (SELECT r.profile_id, count(*) AS n FROM events e JOIN records r USING (record_key) GROUP BY ALL),
           shared AS (SELECT DISTINCT a.profile_id FROM identifiers a JOIN identifiers b
                      ON a.kind = b.kind AND a.value = b.value AND a.profile_id <> b.profile_id)
           SELECT per.profile_id FROM per JOIN ev USING (profile_id)
           WHERE per.sources >= 2 AND per.records >= 3 AND per.profile_id NOT IN (SELECT profile_id FROM shared)
           ORDER BY ev.n DESC, per.profile_id LIMIT 1"""
    )
    assert row, "the demo has a person with records in several sources and events"
    return str(row[0][0])


def _person(store: Store, profile_id: str) -> Person:
    records = store.dicts(
        "SELECT record_key, raw::VARCHAR AS raw, last_name, email, phone FROM records WHERE profile_id = ? ORDER BY record_key",
        [profile_id],
    )
    keys = [r["record_key"] for r in records]
    identifiers = [
        (str(k), str(v)) for k, v in store.rows("SELECT DISTINCT kind, value FROM identifiers WHERE profile_id = ?", [profile_id])
    ]
    events = int(store.scalar("SELECT count(*) FROM events WHERE list_contains(?::VARCHAR[], record_key)", [keys]))
    return Person(
        profile_id=profile_id,
        record_keys=keys,
        raws={r["record_key"]: json.loads(r["raw"]) for r in records},
        identifiers=identifiers,
        names=sorted({r["last_name"] for r in records if r["last_name"]}),
        emails=sorted({r["email"] for r in records if r["email"]}),
        phones=sorted({r["phone"] for r in records if r["phone"]}),
        events=events,
    )


def _tokens(person: Person) -> list[str]:
    """What must not be found anywhere after the erasure: ids, keys, emails, phones."""
    return [person.profile_id, *person.record_keys, *person.emails, *person.phones]


def _holding(store: Store, tokens: list[str]) -> list[str]:
    """Every table of the store (every schema, every run) with a row whose text holds one of ``tokens``."""
    found = []
    for schema, table in store.rows(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY ALL", [store.catalog]
    ):
        name = f'"{schema}"."{table}"'
        n = store.scalar(
            f"SELECT count(*) FROM {name} t WHERE list_bool_or(list_transform(?::VARCHAR[], x -> contains(t::VARCHAR, x)))", [tokens]
        )
        if n:
            found.append(f"{schema}.{table}: {n}")
    return found


@pytest.fixture(scope="module")
def erased(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Erased]:
    tmp = tmp_path_factory.mktemp("erasure")
    target = tmp / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp", "*.sock"))
    config = load_config(target / "unify.toml")
    store = Store.open(config.store_path)
    store.host()  # the CLI's commands in this process work on it as a server's guests
    api = Api(config, store, ProfileQueries(store))
    person = _person(store, _pick(store))
    # steward actions naming them: a record split out and the split undone
    split = _ok(
        api.run('mutation($k: String!) { splitRecord(recordKey: $k, reason: "test") { id } }', Role.STEWARD, {"k": person.record_keys[0]})
    )["splitRecord"]["id"]
    _ok(api.run('mutation($a: ID!) { undo(actionId: $a, reason: "test") { id } }', Role.STEWARD, {"a": split}))
    # a card read (audited with the profile id)
    _ok(api.run("query($id: ID!) { profile(id: $id) { fullName email } }", Role.AGENT, {"id": person.profile_id}))
    _cli("export", "--config", str(target / "unify.toml"), "--out", str(tmp / "access"), "--profile", person.profile_id)
    export_before = json.loads((tmp / "access" / f"profile_{person.profile_id}.json").read_text(encoding="utf-8"))
    assert (
        _code(api.run('mutation($id: ID!) { eraseProfile(id: $id, reason: "x") { erasureId } }', Role.AGENT, {"id": person.profile_id}))
        == "FORBIDDEN"
    )
    erasure = _ok(
        api.run(
            """mutation($id: ID!) { eraseProfile(id: $id, reason: "GDPR art. 17 request #1")
               { erasureId profileId counts redactedEvents suppressed } }""",
            Role.STEWARD,
            {"id": person.profile_id},
        )
    )["eraseProfile"]
    yield Erased(api, person, erasure, export_before, tmp)
    store.close()


def test_the_export_before_erasure_holds_their_records_and_events(erased: Erased) -> None:
    held, person = erased.export_before, erased.person
    assert held["profile_id"] == person.profile_id
    assert [r["record_key"] for r in held["records"]] == person.record_keys
    assert all(r["raw"] for r in held["records"])  # as the sources sent them, and standardized
    assert {(i["kind"], i["value"]) for i in held["identifiers"]} == set(person.identifiers)
    assert len(held["events"]) >= person.events > 0
    assert held["golden_fields"] and held["profile"]["profile_id"] == person.profile_id
    assert len(held["steward_actions"]) == 2
    assert any(e["action"] == "pii.read" for e in held["audit_log"])


def test_nothing_of_the_erased_person_answers(erased: Erased) -> None:
    api, person = erased.api, erased.person
    assert erased.erasure["profileId"] == person.profile_id
    assert erased.erasure["counts"]["records"] >= len(person.record_keys)
    assert erased.erasure["counts"]["events"] >= person.events
    assert erased.erasure["suppressed"] == len(person.record_keys) + len(person.identifiers)
    query = "query($id: ID!) { profile(id: $id) { id fullName timeline(first: 5) { totalCount } } }"
    never = api.run(query, Role.STEWARD, {"id": "p_neverissued0000"})
    gone = api.run(query, Role.STEWARD, {"id": person.profile_id})
    assert gone.errors is None and gone.data == never.data == {"profile": None}
    assert _ok(api.run("query($ids: [ID!]!) { profiles(ids: $ids) { id } }", Role.STEWARD, {"ids": [person.profile_id]})) == {
        "profiles": [None]
    }
    lookup = "query($k: String!, $v: String!) { profileByIdentifier(kind: $k, value: $v) { id } }"
    for kind, value in [*person.identifiers, *(("record", k) for k in person.record_keys)]:
        assert _ok(api.run(lookup, Role.AGENT, {"k": kind, "v": value})) == {"profileByIdentifier": None}, (kind, value)
    for raw in person.raws.values():
        name = " ".join(str(v) for k, v in raw.items() if v and "name" in k.lower())
        if name:
            hits = _ok(
                api.run(
                    "query($q: String!) { searchProfiles(query: $q, first: 50) { matchedRecord profile { id } } }", Role.AGENT, {"q": name}
                )
            )
            for hit in hits["searchProfiles"]:
                assert hit["matchedRecord"] not in person.record_keys and hit["profile"]["id"] != person.profile_id
    after = None
    while True:  # the whole review queue
        page = _ok(
            api.run(
                """query($after: String) { reviewQueue(first: 100, after: $after) { pageInfo { hasNextPage endCursor }
                   edges { node { leftProfileId rightProfileId left { key } right { key } } } } }""",
                Role.STEWARD,
                {"after": after},
            )
        )["reviewQueue"]
        for edge in page["edges"]:
            node = edge["node"]
            assert {node["left"]["key"], node["right"]["key"]}.isdisjoint(person.record_keys)
            assert person.profile_id not in (node["leftProfileId"], node["rightProfileId"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # the audit log: only the erasure itself names the profile, and no value of theirs is left
    entries = _ok(api.run("{ auditLog(first: 100) { edges { node { action subject detail } } } }", Role.ADMIN))["auditLog"]["edges"]
    text = json.dumps([e["node"] for e in entries if e["node"]["action"] != "profile.erase"])
    assert not any(t in text for t in _tokens(person))
    (erase_entry,) = [e["node"] for e in entries if e["node"]["action"] == "profile.erase"]
    assert erase_entry["detail"]["reason"] == "GDPR art. 17 request #1" and erase_entry["detail"]["redacted_events"]
    assert not any(t in json.dumps(erase_entry["detail"]) for t in _tokens(person)[1:])  # no key or value, the id only
    # every table of the store, every run schema (term frequencies too): nothing of them
    holding = _holding(api.store, _tokens(person)[1:])
    assert holding == [], holding
    assert verify_audit(api.store).ok  # the redactions are named by the erasure's entry: the chain holds
    assert _holding(api.store, [person.profile_id]) == ["main.audit_log: 1"]  # the profile.erase entry
    # the saved model (file and runs.model) holds parameters learnt from labels, not the labelled pairs
    assert not any(t in api.config.model_path.read_text(encoding="utf-8") for t in _tokens(person))


def test_exports_hold_nothing_of_them(erased: Erased) -> None:
    out = erased.tmp / "export_after"
    _cli("export", "--config", str(erased.tmp / "demo" / "unify.toml"), "--out", str(out), "--format", "csv")
    text = "\n".join(p.read_text(encoding="utf-8") for p in out.glob("*.csv"))
    assert not any(t in text for t in _tokens(erased.person))
    result = RUNNER.invoke(
        app, ["export", "--config", str(erased.tmp / "demo" / "unify.toml"), "--out", str(out), "--profile", erased.person.profile_id]
    )
    assert result.exit_code == 1 and "not found" in result.output


def test_an_unknown_id_is_a_clear_error(erased: Erased) -> None:
    api = erased.api
    query = 'mutation($id: ID!) { eraseProfile(id: $id, reason: "x") { erasureId } }'
    assert _code(api.run(query, Role.STEWARD, {"id": "p_neverissued0000"})) == "NOT_FOUND"
    assert _code(api.run(query, Role.ADMIN, {"id": erased.person.profile_id})) == "NOT_FOUND"  # erased: like never issued
    assert _code(api.run(query, Role.PERSONALIZATION, {"id": "p_neverissued0000"})) == "FORBIDDEN"


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` (as their source sent them) as a file of the source's format."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_a_rerun_and_a_reingest_bring_nothing_back_until_unsuppressed(erased: Erased) -> None:
    api, person = erased.api, erased.person
    config = api.config
    summary = run_pipeline(config)  # the unchanged source files still hold them
    assert summary.suppressed >= len(person.record_keys)
    assert summary.events and not any(c["written"] for c in summary.events.values())  # their events stay out
    assert sum(c.suppressed for c in summary.sources.values()) == summary.suppressed
    assert _holding(api.store, _tokens(person)[1:]) == []
    # again through ingestRecord and through `unify ingest`
    key = person.record_keys[0]
    source = key.split(":", 1)[0]
    ingest = """mutation($s: String!, $r: JSON!) { ingestRecord(source: $s, record: $r) { recordKey status profile { id } } }"""
    result = _ok(api.run(ingest, Role.AGENT, {"s": source, "r": person.raws[key]}))["ingestRecord"]
    assert result["status"] == "suppressed" and result["profile"] is None
    src = next(s for s in config.sources if s.name == source)
    rows = [person.raws[k] for k in person.record_keys if k.startswith(source + ":")]
    file = _write_rows(erased.tmp / f"again{src.path.suffix}", rows)
    out = _cli("ingest", str(file), "--source", source, "--config", str(erased.tmp / "demo" / "unify.toml"))
    assert f"suppressed {len(rows)}" in " ".join(out.output.split())  # rich may wrap the line
    assert _holding(api.store, _tokens(person)[1:]) == []
    # an event of theirs through recordEvent: left out
    orders = next(e for e in config.events if e.name == "orders")  # linked to webshop records
    shop_key = next((k for k in person.record_keys if k.startswith(f"{orders.link.source}:")), None)
    if shop_key is not None:
        event = {
            orders.id: "AFTER-ERASURE-1",
            orders.timestamp: "2026-01-05T10:00:00",
            "kind": "order",
            orders.link.record_id: shop_key.split(":", 1)[1],
        }
        recorded = _ok(
            api.run('mutation($e: JSON!) { recordEvent(events: "orders", event: $e) { status profileId } }', Role.AGENT, {"e": event})
        )
        assert recorded["recordEvent"] == {"status": "suppressed", "profileId": None}
        assert api.store.scalar("SELECT count(*) FROM events WHERE event_id = 'AFTER-ERASURE-1'") == 0
    # an admin lets the record in again: its key and its identifiers
    lift = 'mutation($k: String, $kind: String, $v: String) { unsuppress(reason: "asked to come back", recordKey: $k, kind: $kind, value: $v) { lifted } }'
    assert _code(api.run(lift, Role.STEWARD, {"k": key})) == "FORBIDDEN"
    assert _ok(api.run(lift, Role.ADMIN, {"k": key}))["unsuppress"]["lifted"] == 1
    identifiers = {(i["kind"], i["value"]) for i in erased.export_before["identifiers"] if i["record_key"] == key}
    for kind, value in sorted(identifiers):
        _cli(
            "unsuppress",
            "--identifier",
            f"{kind}:{value}",
            "--reason",
            "asked to come back",
            "--config",
            str(erased.tmp / "demo" / "unify.toml"),
        )
    assert _code(api.run(lift, Role.ADMIN, {"k": key})) == "NOT_FOUND"  # lifted already
    assert api.store.scalar("SELECT count(*) FROM event_reads") == 0  # the next run reads the event files again
    result = _ok(api.run(ingest, Role.AGENT, {"s": source, "r": person.raws[key]}))["ingestRecord"]
    assert result["status"] != "suppressed" and result["profile"]["id"]
    assert api.store.scalar("SELECT count(*) FROM records WHERE record_key = ?", [key]) == 1
    lifts = api.store.rows("SELECT detail::VARCHAR FROM audit_log WHERE action = 'suppression.lift'")
    assert len(lifts) == 1 + len(identifiers) and all("asked to come back" in d and key not in d for (d,) in lifts)


def test_a_run_during_which_someone_is_erased_does_not_publish_them_again(erased: Erased) -> None:
    api = erased.api
    before = api.store.scalar("SELECT max_by(run_id, finished_at) FROM runs WHERE status = 'published'")
    other = _person(api.store, _pick(api.store))

    def erase_meanwhile(stage: str) -> None:
        if stage == "link":  # the run has read the sources and the suppression list
            erase_profile(api.store, other.profile_id, Steward(actor="test", role="steward"), "request #2")

    with pytest.raises(UnifyError, match="erased while this run was working"):
        run_pipeline(api.config, on_stage=erase_meanwhile)
    assert api.store.scalar("SELECT max_by(run_id, finished_at) FROM runs WHERE status = 'published'") == before
    assert _holding(api.store, _tokens(other)[1:]) == []
    assert run_pipeline(api.config).suppressed >= len(other.record_keys)  # the next run leaves them out
    assert _holding(api.store, _tokens(other)[1:]) == []


def test_the_cli_erases_by_identifier(erased: Erased) -> None:
    api = erased.api
    config = str(erased.tmp / "demo" / "unify.toml")
    other = _person(api.store, _pick(api.store))
    email = next(v for k, v in other.identifiers if k == "email")
    unknown = RUNNER.invoke(app, ["erase", "--identifier", "email:nobody@nowhere.example", "--reason", "r", "--config", config])
    assert unknown.exit_code == 1 and "no profile holds that email" in unknown.output
    out = _cli("erase", "--identifier", f"email:{email.upper()}", "--reason", "request #3", "--config", config)
    assert f"erased profile {other.profile_id}" in " ".join(out.output.split())
    assert "compacted the store after" in " ".join(out.output.split()), out.output
    lookup = "query($k: String!, $v: String!) { profileByIdentifier(kind: $k, value: $v) { id } }"
    assert _ok(api.run(lookup, Role.AGENT, {"k": "email", "v": email})) == {"profileByIdentifier": None}
    assert _holding(api.store, _tokens(other)[1:]) == []


def test_the_audit_scrub_rewrites_only_what_names_the_person(tmp_path: Path) -> None:
    from profiles.store import AuditEvent, verify_audit
    from profiles.store.erasure import ERASED, scrub_audit

    with Store.open(tmp_path / "s.duckdb") as store:
        queries = ProfileQueries(store)
        queries.append_audit(
            [
                AuditEvent("a", "steward", "steward.split", "act_1", {"profiles": ["p_x", "p_y"], "moved": {"crm:Jörg-1": ["p_x", "p_y"]}}),
                AuditEvent("a", "steward", "steward.refused", None, {"arguments": {"recordKey": "crm:Jörg-1"}, "message": "no crm:Jörg-1"}),
                AuditEvent("a", "agent", "pii.read", None, {"profiles": ["p_z"], "fields": ["email"]}),
            ]
        )
        before = {r[0]: r[1] for r in store.rows("SELECT action, detail::VARCHAR FROM audit_log")}
        redacted = scrub_audit(store, ["p_x", "crm:Jörg-1"])
        after = {r[0]: json.loads(r[1]) for r in store.rows("SELECT action, detail::VARCHAR FROM audit_log")}
        # the chain holds the redaction only once an erasure's entry names the entries redacted
        assert verify_audit(store).problem == "changed"
        queries.append_audit([AuditEvent("a", "steward", "profile.erase", "er_1", {"redacted_events": redacted})])
        assert verify_audit(store).ok
    assert len(redacted) == 2
    assert after["steward.split"] == {"profiles": ["p_y"], "moved": {}}
    assert after["steward.refused"] == {"arguments": {"recordKey": ERASED}, "message": ERASED}
    assert json.loads(before["pii.read"]) == after["pii.read"]  # not theirs: untouched


def test_an_id_merged_into_the_profile_is_erased_with_it(erased: Erased) -> None:
    api = erased.api
    a, b = (str(p) for (p,) in api.store.rows("SELECT profile_id FROM profiles ORDER BY profile_id LIMIT 2"))
    merged = _ok(
        api.run(
            'mutation($ids: [ID!]!) { mergeProfiles(ids: $ids, reason: "same person") { profilesAfter } }', Role.STEWARD, {"ids": [a, b]}
        )
    )
    (survivor,) = merged["mergeProfiles"]["profilesAfter"]
    retired = a if survivor == b else b
    query = "query($id: ID!) { profile(id: $id) { id } }"
    assert _ok(api.run(query, Role.AGENT, {"id": retired})) == {"profile": {"id": survivor}}  # redirects
    erasure = _ok(api.run('mutation($id: ID!) { eraseProfile(id: $id, reason: "r") { profileId } }', Role.STEWARD, {"id": retired}))
    assert erasure["eraseProfile"]["profileId"] == survivor
    for pid in (retired, survivor):
        assert _ok(api.run(query, Role.AGENT, {"id": pid})) == {"profile": None}
        assert api.store.scalar("SELECT count(*) FROM profile_registry WHERE ? IN (profile_id, redirect_to)", [pid]) == 0
    assert _holding(api.store, [retired]) == []
    assert _holding(api.store, [survivor]) == ["main.audit_log: 1"]  # its profile.erase entry


def _unique_values(store: Store, person: Person) -> list[str]:
    """The person's e-mails, phones, record keys and name texts (as their sources wrote them)
    that no other record of the store holds: what must leave the file's bytes."""
    names = {str(v) for raw in person.raws.values() for k, v in raw.items() if v and "name" in k.lower() and len(str(v)) >= 6}
    candidates = sorted({*person.emails, *person.phones, *person.record_keys, *names})
    return [
        t
        for t in candidates
        if not store.scalar(
            "SELECT count(*) FROM records WHERE profile_id <> ? AND contains(raw::VARCHAR || concat_ws('|', email, phone, record_key), ?)",
            [person.profile_id, t],
        )
    ]


def _file_bytes(store_path: Path) -> bytes:
    """Every store file of the directory (the store, its WAL, anything left beside it)."""
    return b"".join(p.read_bytes() for p in sorted(store_path.parent.glob(f"*{store_path.name}*")) if p.is_file())


def test_once_compacted_the_store_file_holds_no_bytes_of_them(small_demo: DemoRun, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp", "*.sock"))
    config = load_config(target / "unify.toml")
    with Store.open(config.store_path) as store:
        person = _person(store, _pick(store))
        values = _unique_values(store, person)
        # deleted and checkpointed, the rows' bytes stay in the file: that is what compaction is for
        erase_profile(store, person.profile_id, Steward("test", "admin"), "GDPR art. 17")
        store.execute("CHECKPOINT")
        assert store.rows("SELECT reason FROM compaction_due")
    held = [v for v in values if v.encode("utf-8") in _file_bytes(config.store_path)]
    assert len(held) >= 3, (values, held)  # names, e-mails, phones, keys: still in the file's bytes
    out = _cli("compact", "--config", str(target / "unify.toml"))
    assert "compacted" in out.output
    left = [v for v in values if v.encode("utf-8") in _file_bytes(config.store_path)]
    assert left == []
    with Store.open(config.store_path) as store:  # the rest is all there, and no compaction is owed
        assert store.scalar("SELECT count(*) FROM records") > 0 and verify_audit(store).ok
        assert store.rows("SELECT reason FROM compaction_due") == []


def test_a_run_compacts_what_an_erasure_through_the_api_left(erased: Erased) -> None:
    # someone else erased through the API: the next run compacts the file, here while the
    # fixture's store serves it
    api = erased.api
    other = _pick(api.store)
    _ok(api.run('mutation($id: ID!) { eraseProfile(id: $id, reason: "request #2") { erasureId } }', Role.STEWARD, {"id": other}))
    due = len(api.store.rows("SELECT reason FROM compaction_due"))  # the fixture's erasure too, unless a test compacted since
    assert due >= 1
    out = _cli("run", "--config", str(erased.tmp / "demo" / "unify.toml"))
    assert f"compacted the store after {due} erasure{'s' if due > 1 else ''}:" in " ".join(out.output.split())
    assert api.store.rows("SELECT reason FROM compaction_due") == []
    assert verify_audit(api.store).ok
    query = "query($id: ID!) { profile(id: $id) { id } }"
    some = str(api.store.scalar("SELECT min(profile_id) FROM profiles"))
    assert _ok(api.run(query, Role.AGENT, {"id": some})) == {"profile": {"id": some}}  # serving on, from the new file

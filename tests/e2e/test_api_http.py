"""The API as clients see it: a real uvicorn server on a free port, real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DemoRun
from tests.e2e.serving import KEYS, copy_demo, unify_serve

pytestmark = pytest.mark.slow  # real servers or larger data: `make test`, not `make test-fast`


@pytest.fixture(scope="module")
def server(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    config = copy_demo(small_demo, tmp_path_factory.mktemp("e2e") / "demo")
    with unify_serve(config, env={"UNIFY_API_KEYS": "steward=env-steward-key"}) as running:
        yield running.base, config.parent / "unify.duckdb"


def _post(base: str, query: str, key: str | None = KEYS["agent"], **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{base}/graphql", json={"query": query}, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_no_key_or_unknown_key_is_401(server: tuple[str, Path]) -> None:
    base, _ = server
    for key in (None, "wrong-key"):
        response = _post(base, '{ profile(id: "x") { id } }', key=key)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_other_methods_and_paths_are_refused(server: tuple[str, Path]) -> None:
    base, _ = server
    auth = {"Authorization": f"Bearer {KEYS['agent']}"}
    assert httpx.get(f"{base}/graphql", params={"query": "{ __typename }"}, headers=auth, timeout=10).status_code == 405
    assert httpx.post(f"{base}/graphql/", json={"query": "{ __typename }"}, headers=auth, timeout=10).status_code in (307, 404)
    assert httpx.post(f"{base}/other", json={"query": "{ __typename }"}, headers=auth, timeout=10).status_code == 404
    bad_json = httpx.post(f"{base}/graphql", content=b"{not json", headers={**auth, "Content-Type": "application/json"}, timeout=10)
    assert bad_json.status_code == 400


def test_every_malformed_body_gets_a_json_400(server: tuple[str, Path]) -> None:
    base, _ = server
    auth = {"Authorization": f"Bearer {KEYS['agent']}", "Content-Type": "application/json"}
    bodies = [
        b"null",
        b"42",
        b'"query"',
        b"[" * 5000 + b"]" * 5000,
        b'{"query": 7}',
        b'{"query": "{ __typename }", "variables": [1]}',
        b"\xff\xfe",
        b'{"query": "{ profileByIdentifier(kind: \\"email\\", value: \\"\\ud800\\") { id } }"}',
        b'{"query": "mutation($r: JSON!) { ingestRecord(source: \\"crm\\", record: $r) { status } }", "variables": {"r": {"x": "\\udc00"}}}',
    ]
    for body in bodies:
        response = httpx.post(f"{base}/graphql", content=body, headers=auth, timeout=10)
        assert response.status_code == 400, (body[:60], response.status_code, response.text[:200])
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_env_keys_work_too(server: tuple[str, Path]) -> None:
    base, _ = server
    assert _post(base, '{ profile(id: "x") { id } }', key="env-steward-key").json() == {"data": {"profile": None}}


def test_oversized_body_is_413(server: tuple[str, Path]) -> None:
    base, _ = server
    response = _post(base, '{ profile(id: "' + "x" * 70_000 + '") { id } }')
    assert response.status_code == 413


def test_caller_found_by_a_phone_written_differently(server: tuple[str, Path], small_demo: DemoRun) -> None:
    base, _ = server
    phone, person = small_demo.manifest.demo_phone_lookup
    response = _post(
        base, f'{{ profileByIdentifier(kind: "phone", value: "{phone}") {{ id fullName phone records {{ source recordId }} }} }}'
    )
    assert response.status_code == 200
    profile = response.json()["data"]["profileByIdentifier"]
    truth = small_demo.truth()
    assert {truth[f"{r['source']}:{r['recordId']}"] for r in profile["records"]} == {person}


def test_personalization_gets_no_contact_pii_over_http(server: tuple[str, Path], small_demo: DemoRun) -> None:
    base, _ = server
    phone, _ = small_demo.manifest.demo_phone_lookup
    agent = _post(base, f'{{ profileByIdentifier(kind: "phone", value: "{phone}") {{ pseudonymousId }} }}').json()["data"]
    pseudonym = agent["profileByIdentifier"]["pseudonymousId"]
    query = (
        f'{{ p: profileByIdentifier(kind: "pseudonymous_id", value: "{pseudonym}") {{ pseudonymousId phone e: email records {{ raw }} }} }}'
    )
    data = _post(base, query, key=KEYS["personalization"]).json()["data"]["p"]
    assert data["pseudonymousId"] == pseudonym and data["phone"] is None and data["e"] is None
    assert all(r["raw"] is None for r in data["records"])


def test_limits_and_production_hardening_answer_with_codes(server: tuple[str, Path]) -> None:
    base, _ = server
    aliases = "{ " + " ".join(f'p{i}: profile(id: "x") {{ id }}' for i in range(16)) + " }"
    error = _post(base, aliases).json()["errors"][0]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED"
    deep = '{ profile(id: "x") { records { address { street } } } }'
    assert "errors" not in _post(base, deep).json()
    introspection = _post(base, "{ __schema { types { name } } }").json()
    assert introspection["errors"]
    suggestion = _post(base, '{ profile(id: "x") { fulName } }').json()["errors"][0]["message"]
    assert "Did you mean" not in suggestion
    tokens = '{ profile(id: "x") { ' + "id " * 2100 + "} }"  # api.max_tokens 2000
    for _ in range(2):  # refused again: a document over the limit is not kept
        error = _post(base, tokens).json()["errors"][0]
        assert "more than 2000 tokens" in error["message"] and error["extensions"]["code"] == "LIMIT_EXCEEDED"
    unknown = httpx.post(
        f"{base}/graphql",
        json={"query": "query A { __typename }", "operationName": "B"},
        headers={"Authorization": f"Bearer {KEYS['agent']}"},
    )
    assert (unknown.status_code, unknown.text) == (400, 'Unknown operation named "B".')
    empty = httpx.post(f"{base}/graphql", json={"query": ""}, headers={"Authorization": f"Bearer {KEYS['agent']}"})
    assert (empty.status_code, empty.text) == (400, "No GraphQL query found in the request")


def test_two_stewards_deciding_one_pair_at_once_one_wins_one_conflicts_both_audited(server: tuple[str, Path]) -> None:
    base, _ = server
    steward = KEYS["steward"]
    queue = _post(base, "{ reviewQueue(first: 1) { edges { node { id leftProfileId } } } }", key=steward).json()
    pair = queue["data"]["reviewQueue"]["edges"][0]["node"]
    start = threading.Barrier(2)
    answers: dict[str, dict[str, object]] = {}

    def decide(decision: str) -> None:
        start.wait()
        query = (
            f'mutation {{ decideCandidate(pairId: "{pair["id"]}", decision: {decision}, reason: "concurrent {decision}") {{ id kind }} }}'
        )
        answers[decision] = _post(base, query, key=steward).json()

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("SAME", "DIFFERENT")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    won = [d for d, a in answers.items() if a.get("data") and a["data"]["decideCandidate"]]
    lost = [d for d, a in answers.items() if a.get("errors")]
    assert len(won) == 1 and len(lost) == 1, answers
    assert answers[lost[0]]["errors"][0]["extensions"]["code"] == "CONFLICT"  # type: ignore[index]
    log = _post(base, "{ auditLog(first: 20) { edges { node { action detail } } } }", key=steward).json()
    actions = [e["node"] for e in log["data"]["auditLog"]["edges"]]
    assert any(a["action"] == f"steward.{won[0].lower()}" for a in actions)
    assert any(a["action"] == "steward.refused" and a["detail"]["arguments"]["decision"] == lost[0] for a in actions)


def test_concurrent_pii_reads_are_each_audited_before_their_answer(server: tuple[str, Path], small_demo: DemoRun) -> None:
    """Requests finishing together share an audit write; each still gets its own entry,
    and it is in the log by the time the client has the answer."""
    base, _ = server
    phone, _ = small_demo.manifest.demo_phone_lookup
    start = threading.Barrier(24)
    answers: dict[int, str] = {}

    def lookup(i: int) -> None:
        start.wait()
        body = {
            "query": f'query Card{i} {{ profileByIdentifier(kind: "phone", value: "{phone}") {{ id phone }} }}',
            "operationName": f"Card{i}",
        }
        reply = httpx.post(f"{base}/graphql", json=body, headers={"Authorization": f"Bearer {KEYS['agent']}"}, timeout=30)
        answers[i] = reply.json()["data"]["profileByIdentifier"]["id"]

    threads = [threading.Thread(target=lookup, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 24
    log = _post(base, "{ auditLog(first: 100) { edges { node { action actor detail } } } }", key=KEYS["steward"]).json()
    reads = [e["node"]["detail"] for e in log["data"]["auditLog"]["edges"] if e["node"]["action"] == "pii.read"]
    by_operation = {d["operation"]: d for d in reads if str(d["operation"]).startswith("Card")}
    assert sorted(by_operation) == sorted(f"Card{i}" for i in range(24))
    assert all(by_operation[f"Card{i}"]["profiles"] == [answers[i]] and by_operation[f"Card{i}"]["fields"] == ["phone"] for i in range(24))


def test_strawberrys_view_and_the_direct_path_answer_alike_and_both_audit(server: tuple[str, Path], small_demo: DemoRun) -> None:
    """A JSON request is answered without strawberry's view (resolvers.app's ``respond``);
    one that asks for an answer in parts still goes through it. Both give the same body,
    headers that matter, error codes and audit entries."""
    base, _ = server
    phone, _ = small_demo.manifest.demo_phone_lookup
    card = f'profileByIdentifier(kind: "phone", value: "{phone}") {{ id fullName phone records {{ source updatedAt }} traits {{ name value }} }}'
    answers = {}
    for path, accept in (("Direct", "application/json"), ("View", "multipart/mixed")):
        headers = {"Authorization": f"Bearer {KEYS['agent']}", "Accept": accept}
        body = {"query": f"query Card{path} {{ {card} }}", "operationName": f"Card{path}"}
        reply = httpx.post(f"{base}/graphql", json=body, headers=headers, timeout=10)
        assert (reply.status_code, reply.headers["content-type"]) == (200, "application/json"), reply.text
        bad = httpx.post(f"{base}/graphql", json={"query": '{ profile(id: "x") { fulName } }'}, headers=headers, timeout=10)
        answers[path] = (reply.json(), bad.json()["errors"][0]["extensions"]["code"])
    assert answers["Direct"] == answers["View"]
    assert answers["Direct"][0]["data"]["profileByIdentifier"]["phone"] and answers["Direct"][1] == "BAD_REQUEST"
    log = _post(base, "{ auditLog(first: 50) { edges { node { action detail } } } }", key=KEYS["steward"]).json()
    operations = {e["node"]["detail"]["operation"] for e in log["data"]["auditLog"]["edges"] if e["node"]["action"] == "pii.read"}
    assert {"CardDirect", "CardView"} <= operations

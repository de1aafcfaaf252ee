"""`unify erase` while `unify serve` owns the store: the server erases for the CLI, its
live path forgets the erased records it held in memory, and their records sent again
are answered as suppressed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.config import load_config
from profiles.store import Store
from tests.conftest import DemoRun
from tests.e2e.serving import KEYS, UNIFY, copy_demo, unify_serve
from tests.profiles.test_erasure import _person, _pick

pytestmark = pytest.mark.slow  # real servers: `make test`, not `make test-fast`

INGEST = "mutation($s: String!, $r: JSON!) { ingestRecord(source: $s, record: $r) { recordKey status profile { id } } }"


def _gql(client: httpx.Client, base: str, query: str, variables: dict[str, Any], role: str = "agent") -> Any:
    response = client.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {KEYS[role]}"}, timeout=30
    )
    return response.json()


def test_the_cli_erases_through_the_server_and_the_live_path_keeps_them_out(small_demo: DemoRun, tmp_path: Path) -> None:
    config_path = copy_demo(small_demo, tmp_path / "demo")
    config = load_config(config_path)
    with Store.open(config.store_path, read_only=True) as store:
        person = _person(store, _pick(store))
    key = person.record_keys[0]
    source = key.split(":", 1)[0]
    spec = next(s for s in config.sources if s.name == source)
    # the person's name and address under a new id, without their email or phone: not suppressed
    lookalike = {k: v for k, v in person.raws[key].items() if k not in (spec.fields.get("email"), spec.fields.get("phone"))}
    lookalike[spec.id] = "LOOKALIKE-1"
    with unify_serve(config_path) as (base, _server), httpx.Client() as client:
        warm = _gql(client, base, INGEST, {"s": source, "r": {**person.raws[key], spec.id: "WARM-1", spec.fields["email"]: ""}})  # type: ignore[index]
        assert warm["data"]["ingestRecord"], warm  # the server has read the records into memory
        done = subprocess.run(
            [UNIFY, "erase", "--profile", person.profile_id, "--reason", "request #4", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and f"erased profile {person.profile_id}" in " ".join(done.stdout.split()), done.stdout + done.stderr
        gone = _gql(client, base, "query($id: ID!) { profile(id: $id) { id } }", {"id": person.profile_id})
        assert gone == {"data": {"profile": None}}
        again = _gql(client, base, INGEST, {"s": source, "r": person.raws[key]})["data"]["ingestRecord"]
        assert again["status"] == "suppressed" and again["profile"] is None
        other = _gql(client, base, INGEST, {"s": source, "r": lookalike})
        assert "errors" not in other, other
        assert other["data"]["ingestRecord"]["profile"]["id"] != person.profile_id
        export = subprocess.run(
            [UNIFY, "export", "--profile", person.profile_id, "--out", str(tmp_path / "x"), "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert export.returncode == 1 and "not found" in export.stderr, export.stdout + export.stderr
    with Store.open(config.store_path, read_only=True) as store:
        audit = store.rows("SELECT detail::VARCHAR FROM audit_log WHERE action = 'profile.erase'")
    assert len(audit) == 1 and json.loads(audit[0][0])["reason"] == "request #4"

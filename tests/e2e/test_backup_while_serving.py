"""Backup as an operator runs it: `unify backup` while a real `unify serve` answers
requests (the server makes the copy), then the backup restored elsewhere holds the same
profiles, steward actions, link constraints and audit chain; `unify compact` swaps the
served file under the server without a failed request; `unify restore` refuses while the
server holds the store."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.config import load_config
from profiles.store import Store, verify_audit
from profiles.store.backup import restore_store
from tests.conftest import DemoRun
from tests.e2e.serving import KEYS, UNIFY, copy_demo, unify_serve

pytestmark = pytest.mark.slow  # a real server: `make test`, not `make test-fast`


def _gql(client: httpx.Client, base: str, query: str, role: str = "agent") -> dict[str, Any]:
    response = client.post(f"{base}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {KEYS[role]}"}, timeout=30)
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body


def _state(path: Path) -> dict[str, Any]:
    with Store.open(path, read_only=True) as store:
        return {
            "membership": store.rows("SELECT profile_id, source, record_id FROM membership ORDER BY ALL"),
            "actions": store.rows("SELECT action_id, kind, actor, reason, records FROM steward_actions ORDER BY action_id"),
            "constraints": store.rows("SELECT constraint_id, record_key_l, record_key_r, kind, active FROM link_constraints ORDER BY ALL"),
            "registry": store.rows("SELECT profile_id, redirect_to FROM profile_registry ORDER BY ALL"),
        }


def test_a_backup_taken_while_serving_restores_the_same_store(small_demo: DemoRun, tmp_path: Path) -> None:
    config_path = copy_demo(small_demo, tmp_path / "demo")
    store_path = load_config(config_path).store_path
    backup = tmp_path / "backups" / "unify-backup.duckdb"
    phone, _ = small_demo.manifest.demo_phone_lookup
    lookup = f'{{ profileByIdentifier(kind: "phone", value: "{phone}") {{ id fullName email }} }}'

    with unify_serve(config_path) as server, httpx.Client() as client:
        base = server.base
        queue = _gql(client, base, "{ reviewQueue(first: 1) { edges { node { id } } } }", role="steward")
        pair = queue["data"]["reviewQueue"]["edges"][0]["node"]["id"]
        decided = _gql(
            client, base, f'mutation {{ decideCandidate(pairId: "{pair}", decision: SAME, reason: "backup test") {{ id }} }}', "steward"
        )
        action_id = decided["data"]["decideCandidate"]["id"]
        stop, failures = threading.Event(), []

        def load() -> None:  # requests (each a PII read: an audit entry) go on throughout
            with httpx.Client() as own:
                while not stop.is_set():
                    response = own.post(
                        f"{base}/graphql", json={"query": lookup}, headers={"Authorization": f"Bearer {KEYS['agent']}"}, timeout=30
                    )
                    if response.status_code != 200 or response.json().get("errors"):
                        failures.append(response.text[:200])

        worker = threading.Thread(target=load)
        worker.start()
        try:
            made = subprocess.run(
                [UNIFY, "backup", "--config", str(config_path), "--out", str(backup)], capture_output=True, text=True, timeout=300
            )
            compacted = subprocess.run([UNIFY, "compact", "--config", str(config_path)], capture_output=True, text=True, timeout=300)
            refused = subprocess.run(
                [UNIFY, "restore", "--from", str(backup), "--config", str(config_path)], capture_output=True, text=True, timeout=60
            )
            time.sleep(1.0)  # requests go on on the compacted file
        finally:
            stop.set()
            worker.join(timeout=30)
        assert made.returncode == 0, made.stderr
        assert f"written to {backup}" in made.stdout
        server.wait_for_log("running `unify backup` for the CLI")  # the server made the copy
        assert compacted.returncode == 0 and compacted.stdout.startswith(f"compacted {store_path}"), compacted.stdout + compacted.stderr
        assert not failures, failures[:3]
        assert refused.returncode == 1 and "stop the server" in refused.stderr, refused.stdout + refused.stderr
        verified = subprocess.run([UNIFY, "audit", "verify", "--config", str(config_path)], capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0 and verified.stdout.startswith("audit chain intact: "), verified
        entries_served = int(verified.stdout.split(":")[1].split()[0].replace(",", ""))

    restored = tmp_path / "restored" / "unify.duckdb"
    assert restore_store(restored, backup) is None
    original, copy = _state(store_path), _state(restored)
    assert copy == original  # the server's later requests added audit entries only
    assert any(row[0] == action_id for row in copy["actions"]) and copy["constraints"]
    with Store.open(restored) as store:
        head = verify_audit(store)
    with Store.open(store_path) as store:
        served = verify_audit(store)
        at_head = store.scalar("SELECT entry_hash FROM audit_log WHERE seq = ?", [head.head_seq])
    assert head.ok and served.ok and head.entries > 0
    assert at_head == head.head_hash and served.entries >= head.entries  # the backup's chain is a prefix of the store's
    assert served.entries >= entries_served > head.entries  # written after the compaction: in the new file

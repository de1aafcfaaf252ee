"""The server writes the WAL into the store file when it is idle, so that no request
pays for a checkpoint (at 1M records one takes seconds)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import resolvers.app as app_module
import resolvers.ingest as ingest_module
from pipelines.config import load_config
from pipelines.demo.config import DEMO_API_KEYS
from profiles.store import Store
from tests.conftest import DemoRun

#: seconds each (their own runs, subprocesses or servers): part of make test, not of make test-fast
pytestmark = pytest.mark.slow

INGEST = """mutation($record: JSON!) { ingestRecord(source: "crm", record: $record) { status } }"""


def _size(path: Path) -> int:
    """The file's size, 0 once it is gone (a checkpoint removes the WAL at any moment)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_the_server_checkpoints_when_idle(small_demo: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = target / "unify.toml"
    crm = next(s for s in load_config(config).sources if s.name == "crm")
    monkeypatch.setattr(app_module, "IDLE_SECONDS", 0.3)
    monkeypatch.setattr(app_module, "IDLE_CHECKPOINT_BYTES", 1)
    wal = target / "unify.duckdb.wal"
    headers = {"Authorization": f"Bearer {DEMO_API_KEYS['agent']}"}
    with TestClient(app_module.create_app(config)) as client:
        for i in range(3):
            record = {crm.id: f"IDLE-{i}", crm.fields["first_name"]: "Tessa", crm.fields["last_name"]: f"Idle{i}"}  # type: ignore[index]
            answer = client.post("/graphql", json={"query": INGEST, "variables": {"record": record}}, headers=headers).json()
            assert "errors" not in answer, answer
        assert _size(wal) > 0, "the ingests' commits stay in the WAL (below store.checkpoint_wal)"
        deadline = time.monotonic() + 10
        while _size(wal) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _size(wal) == 0, "idle: the WAL was written into the store"
        (live,) = [v for v in ingest_module._LIVE.values() if v.store.path == target / "unify.duckdb"]
        while live.warmed < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live.warmed == 2, "after the checkpoint the tables and indexes were read in again (and at start)"
        answer = client.post("/graphql", json={"query": INGEST, "variables": {"record": record}}, headers=headers).json()
        assert "errors" not in answer, answer
    with Store.open(target / "unify.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM records WHERE record_key LIKE 'crm:IDLE-%'") == 3

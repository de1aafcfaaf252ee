"""The request time limit: a read that overruns it answers TIMEOUT; a write that has
committed answers with its outcome however late, since a TIMEOUT would tell the client
that it failed (a DuckDB checkpoint can hold a commit for seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipelines.config import load_config
from pipelines.demo.config import DEMO_API_KEYS
from profiles.store import Store
from resolvers.app import create_app
from tests.conftest import DemoRun

INGEST = """mutation($record: JSON!) { ingestRecord(source: "crm", record: $record) { recordKey status profile { id } } }"""


@pytest.fixture()
def tiny_limit(small_demo: DemoRun, tmp_path: Path) -> Path:
    """The small demo served with a time limit no request can meet (one microsecond)."""
    target = tmp_path / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = target / "unify.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[api]\n", "[api]\nresolver_timeout = 0.000001\n", 1), encoding="utf-8")
    return config


def test_reads_time_out_but_committed_writes_answer(tiny_limit: Path, small_demo: DemoRun) -> None:
    crm = next(s for s in load_config(tiny_limit).sources if s.name == "crm")
    record = {crm.id: "LATE-1", crm.fields["first_name"]: "Anneke", crm.fields["last_name"]: "Grootveld"}  # type: ignore[index]
    headers = {"Authorization": f"Bearer {DEMO_API_KEYS['agent']}"}
    with TestClient(create_app(tiny_limit)) as client:
        read = client.post("/graphql", json={"query": '{ profile(id: "p_x") { id } }'}, headers=headers).json()
        assert read["errors"][0]["extensions"]["code"] == "TIMEOUT"
        write = client.post("/graphql", json={"query": INGEST, "variables": {"record": record}}, headers=headers).json()
        assert "errors" not in write, write
        assert write["data"]["ingestRecord"]["recordKey"] == "crm:LATE-1"
        assert write["data"]["ingestRecord"]["status"] in ("new_profile", "attached", "review", "merged")
        assert write["data"]["ingestRecord"]["profile"]["id"].startswith("p_")  # read after the limit passed
    with Store.open(tiny_limit.with_name("unify.duckdb"), read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM records WHERE record_key = 'crm:LATE-1'") == 1

"""The command line as a user runs it: real processes, exit codes, one-line errors, and
the export contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import DemoRun

#: seconds each (their own runs, subprocesses or servers): part of make test, not of make test-fast
pytestmark = pytest.mark.slow

UNIFY = [sys.executable, "-m", "unify.cli"]


def _unify(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*UNIFY, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_export_writes_the_contract_files(small_demo: DemoRun, tmp_path: Path) -> None:
    config = str(small_demo.manifest.config_path)
    result = _unify("export", "--config", config, "--out", str(tmp_path / "pq"))
    assert result.returncode == 0, result.stderr
    profiles = pq.read_table(tmp_path / "pq" / "profiles.parquet")
    membership = pq.read_table(tmp_path / "pq" / "membership.parquet")
    review = pq.read_table(tmp_path / "pq" / "review_queue.parquet")
    assert {"profile_id", "first_name", "last_name", "email", "phone", "date_of_birth", "postcode"} <= set(profiles.column_names)
    assert membership.column_names == ["source", "record_id", "profile_id", "match_probability"]
    assert membership.num_rows == small_demo.summary.records
    assert set(membership["profile_id"].to_pylist()) == set(profiles["profile_id"].to_pylist())
    assert {"pair_id", "record_key_l", "record_key_r", "match_probability"} <= set(review.column_names)
    assert (tmp_path / "pq" / "golden_fields.parquet").exists()

    result = _unify("export", "--config", config, "--out", str(tmp_path / "csv"), "--format", "csv")
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "csv" / "profiles.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("profile_id,")


def test_errors_are_one_red_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "unify.toml").write_text("[matching]\nthreshold = 2\n", encoding="utf-8")
    result = _unify("run", "--config", str(tmp_path / "unify.toml"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "matching.threshold (line 2): unknown key" in lines[0]
    assert "Traceback" not in result.stderr


def test_export_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "unify.toml").write_text(
        '[[sources]]\nname = "a"\npath = "a.csv"\nid = "id"\n[sources.fields]\nfirst_name = "f"\n', encoding="utf-8"
    )
    result = _unify("export", "--config", str(tmp_path / "unify.toml"), "--out", str(tmp_path / "x"))
    assert result.returncode == 1 and "run `unify run` first" in result.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = _unify("demo", "--records", "3000", "--out", str(tmp_path / "demo"), "--no-serve")
    assert result.returncode == 0, result.stderr
    assert "profiles" in result.stdout and "quarantined" in result.stdout
    assert (tmp_path / "demo" / "unify.duckdb").exists() and (tmp_path / "demo" / "unify-model.json").exists()


def test_review_and_export_show_only_open_pairs_after_a_decision(small_demo: DemoRun, tmp_path: Path) -> None:
    import shutil

    from pipelines.config import load_config
    from profiles.store import Steward, Stewardship, Store

    target = tmp_path / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    with Store.open(config.store_path) as store:
        ((pair_id, total),) = store.rows("SELECT min(pair_id), count(*) FROM review_queue")
        Stewardship(store, match_threshold=config.matching.match_threshold, rules={}, default_rule="trust").decide(
            pair_id, "different", "checked by phone", Steward("cli-test", "steward")
        )
    result = _unify("review", "--config", str(target / "unify.toml"), "--limit", "100")
    assert result.returncode == 0, result.stderr
    assert f"{total - 1:,} open pairs" in result.stdout and pair_id not in result.stdout.split("recent steward actions")[0]
    assert "checked by phone" in result.stdout and "different" in result.stdout
    assert _unify("export", "--config", str(target / "unify.toml"), "--out", str(tmp_path / "out")).returncode == 0
    exported = pq.read_table(tmp_path / "out" / "review_queue.parquet")["pair_id"].to_pylist()
    assert len(exported) == total - 1 and pair_id not in exported


def test_ingest_matches_a_file_into_the_profiles(small_demo: DemoRun, tmp_path: Path) -> None:
    import csv
    import shutil

    from pipelines.config import load_config
    from profiles.store import Store

    target = tmp_path / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    crm = next(s for s in config.sources if s.name == "crm")
    with (target / crm.path).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:30]
    again = tmp_path / "crm-again.csv"  # the same people under new customer numbers
    with again.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, crm.id: f"NEW-{row[crm.id]}"} for row in rows)
    result = _unify("ingest", str(again), "--source", "crm", "--config", str(target / "unify.toml"))
    assert result.returncode == 0, result.stderr
    assert "30 rows" in result.stdout and "attached" in result.stdout
    with Store.open(config.store_path, read_only=True) as store:
        new = store.rows("SELECT record_key, profile_id FROM records WHERE record_key LIKE 'crm:NEW-%'")
        assert len(new) == 30 and all(p is not None for _, p in new)
        assert store.scalar("SELECT count(*) FROM ingest_log WHERE record_id LIKE 'NEW-%'") == 30


def test_the_command_line_loads_without_the_batch_and_the_api() -> None:
    """`unify --help`, `unify ingest`, `unify export` and the others start without
    importing splink, pandas or strawberry (half a second of a start of one second):
    the commands that need them import them."""
    code = "import sys, unify.cli; print(sorted(m for m in ('splink', 'pandas', 'strawberry', 'resolvers.schema') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout

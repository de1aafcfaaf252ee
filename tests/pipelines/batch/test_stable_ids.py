"""Profile ids are stable across runs: a rerun keeps every id; adding records keeps the
id of every profile whose records did not change; ids that disappear redirect."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import load_config
from pipelines.demo import generate

pytestmark = pytest.mark.slow  # two full runs: `make test`, not `make test-fast`


def _memberships(store: Path) -> dict[str, str]:
    with duckdb.connect(str(store), read_only=True) as con:
        return dict(con.execute("SELECT record_key, profile_id FROM membership").fetchall())


def _groups(members: dict[str, str]) -> dict[str, frozenset[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for key, profile in members.items():
        groups[profile].add(key)
    return {p: frozenset(k) for p, k in groups.items()}


def _drop_every_tenth(path: Path) -> None:
    """Hold back about 10% of a source's rows (they arrive in the next run)."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        keep = [i for i in range(table.num_rows) if i % 10 != 5]
        pq.write_table(table.take(keep), path)
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = 0 if path.suffix == ".ndjson" else 1
    kept = lines[:header] + [line for i, line in enumerate(lines[header:]) if i % 10 != 5]
    path.write_text("".join(kept), encoding="utf-8")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str], dict[str, str]]:
    out = tmp_path_factory.mktemp("stable")
    manifest = generate(out, records=12_000, seed=5)
    full = out / "full"
    shutil.copytree(out / "data", full)
    for path in manifest.source_paths.values():
        _drop_every_tenth(path)
    config = load_config(manifest.config_path)
    run_pipeline(config)
    first = _memberships(config.store_path)
    run_pipeline(config)
    rerun = _memberships(config.store_path)
    shutil.rmtree(out / "data")
    shutil.copytree(full, out / "data")
    run_pipeline(config)
    grown = _memberships(config.store_path)
    return config.store_path, first, rerun, grown


def test_rerun_on_same_input_keeps_every_id(two_runs: tuple[Path, dict[str, str], dict[str, str], dict[str, str]]) -> None:
    _, first, rerun, _ = two_runs
    assert rerun == first


def test_unchanged_profiles_keep_their_id_after_new_records(
    two_runs: tuple[Path, dict[str, str], dict[str, str], dict[str, str]],
) -> None:
    _, first, _, grown = two_runs
    assert len(grown) > len(first) * 1.08
    before, after = _groups(first), _groups(grown)
    by_records = {records: profile for profile, records in after.items()}
    unchanged = [p for p, records in before.items() if records in by_records]
    assert len(unchanged) > 0.8 * len(before)
    assert all(by_records[before[p]] == p for p in unchanged)
    # profiles that only gained records keep their id too
    gained = [p for p, records in before.items() if p in after and records < after[p]]
    assert gained, "some profiles should have gained a new record"


def test_ids_are_new_and_old_ones_redirect(two_runs: tuple[Path, dict[str, str], dict[str, str], dict[str, str]]) -> None:
    store, first, _, grown = two_runs
    assert all(p.startswith("p_") and len(p) == 18 for p in grown.values())
    with duckdb.connect(str(store), read_only=True) as con:
        registry = dict(con.execute("SELECT profile_id, redirect_to FROM profile_registry").fetchall())
        current = {r[0] for r in con.execute("SELECT profile_id FROM profiles").fetchall()}
    assert set(first.values()) | set(grown.values()) <= set(registry)
    for old in set(first.values()) - current:
        assert registry[old] in current, f"{old} should redirect to a current profile"
    assert all(registry[p] is None for p in current)

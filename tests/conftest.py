"""Shared fixtures: demo data sets made by our own generator (known ground truth) and
pipeline runs on them, built once per test session in real DuckDB files."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.batch.run import RunSummary, run_pipeline
from pipelines.config import load_config
from pipelines.demo import DemoManifest, generate
from pipelines.demo.events import EVENTS_PER_PERSON


@dataclass(frozen=True)
class DemoRun:
    manifest: DemoManifest
    summary: RunSummary

    @property
    def store_path(self) -> Path:
        return self.manifest.out_dir / "unify.duckdb"

    def truth(self) -> dict[str, str]:
        table = pq.read_table(self.manifest.truth_path)
        return {
            f"{s}:{r}": p for s, r, p in zip(table["source"].to_pylist(), table["record_id"].to_pylist(), table["person_id"].to_pylist())
        }

    def hard_negatives(self) -> list[tuple[str, str, str]]:
        table = pq.read_table(self.manifest.hard_negatives_path)
        return list(zip(table["kind"].to_pylist(), table["person_a"].to_pylist(), table["person_b"].to_pylist()))


def copy_demo_dir(run: DemoRun, target: Path) -> Path:
    """A writable copy of a demo run's directory (sources, config, store); returns its config."""
    shutil.copytree(run.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp", "*.sock"))
    return target / "unify.toml"


def demo_run(out: Path, records: int, seed: int, events: bool = True) -> DemoRun:
    manifest = generate(out, records=records, seed=seed, events_per_person=EVENTS_PER_PERSON if events else 0)
    return DemoRun(manifest, run_pipeline(load_config(manifest.config_path)))


def shared_demo_run(tmp_path_factory: pytest.TempPathFactory, name: str, records: int, seed: int, events: bool = True) -> DemoRun:
    """A demo run built once per test run: pytest-xdist's workers share it (the first to
    take the lock builds it, the others read what it left). Every test reads it only.
    With UNIFY_TEST_DEMO_CACHE (make test-fast) it is kept in that directory for the next
    runs while the code that builds it is unchanged; make test always builds afresh."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the directory all workers of this run share
    if os.environ.get("UNIFY_TEST_DEMO_CACHE"):  # make test-fast: kept between runs while the code that builds it is the same
        cache = Path(os.environ["UNIFY_TEST_DEMO_CACHE"])
        root = cache / _builder_digest()
        if not root.exists():  # the code changed: the demos of the code before go
            for old in (p for p in cache.glob("*") if p.is_dir()):
                shutil.rmtree(old, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = root / name / "demo-run.pickle"
        if built.exists():
            run: DemoRun = pickle.loads(built.read_bytes())
            return run
        run = demo_run(root / name, records, seed, events)
        built.write_bytes(pickle.dumps(run))
        return run


def _builder_digest() -> str:
    """Digest of the code that generates and runs a demo (and of this file)."""
    repo = Path(__file__).resolve().parents[1]
    files = sorted([*(repo / "pipelines").rglob("*.py"), *(repo / "profiles").rglob("*.py"), repo / "tests" / "conftest.py"])
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """5,000 records: for behaviour (not accuracy) tests. Read it, do not write to it."""
    return shared_demo_run(tmp_path_factory, "small_demo", 5_000, seed=11)


@pytest.fixture
def demo_copy(small_demo: DemoRun, tmp_path: Path) -> Path:
    """A writable copy of the small demo (sources, config, store); its config's path."""
    return copy_demo_dir(small_demo, tmp_path / "demo")


@pytest.fixture(scope="session")
def accuracy_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """50,000 records in 4 sources: the accuracy fixture of the issue."""
    return shared_demo_run(tmp_path_factory, "accuracy_demo", 50_000, seed=2026, events=False)  # matching only

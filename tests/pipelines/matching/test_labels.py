"""Steward decisions are labels: with at least ``matching.min_labels`` of them a retrain
estimates m-probabilities from them, and every run reports the model's precision and
recall against them."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import Config, load_config
from tests.conftest import DemoRun

#: seconds each (their own runs, subprocesses or servers): part of make test, not of make test-fast
pytestmark = pytest.mark.slow

#: Far below the default: a retrain of the 5,000-record demo takes ~2 s instead of ~15 s.
FAST_U_MAX_PAIRS = 300_000

Pair = tuple[str, str]


def _copy(source: Path, target: Path) -> Config:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.tmp"))
    return load_config(target / "unify.toml")


@pytest.fixture(scope="module")
def baseline(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo retrained without labels, with fast training settings."""
    config = _copy(small_demo.manifest.out_dir, tmp_path_factory.mktemp("labels") / "demo")
    text = config.base_dir.joinpath("unify.toml").read_text(encoding="utf-8")
    config.base_dir.joinpath("unify.toml").write_text(
        text.replace("[matching]\n", f"[matching]\nu_max_pairs = {FAST_U_MAX_PAIRS}\n", 1), encoding="utf-8"
    )
    config = load_config(config.base_dir / "unify.toml")
    assert config.matching.u_max_pairs == FAST_U_MAX_PAIRS
    summary = run_pipeline(config, retrain=True)
    assert summary.labels is not None and summary.labels.pairs == 0 and not summary.labels.used_for_training
    return config.base_dir


@pytest.fixture
def demo(baseline: Path, tmp_path: Path) -> Config:
    return _copy(baseline, tmp_path / "demo")


def _truth_pairs(store: Path, truth: dict[str, str]) -> tuple[list[Pair], list[Pair]]:
    """The published scored pairs, split by ground truth into (same, different)."""
    with duckdb.connect(str(store), read_only=True) as con:
        pairs = con.execute("SELECT record_key_l, record_key_r FROM pairs ORDER BY 1, 2").fetchall()
    same = [(l, r) for l, r in pairs if truth[l] == truth[r]]
    return same, [(l, r) for l, r in pairs if truth[l] != truth[r]]


def _decide(store: Path, same: list[Pair], different: list[Pair], *, active: bool = True) -> None:
    rows = [(l, r, "same") for l, r in same] + [(l, r, "different") for l, r in different]
    with duckdb.connect(str(store)) as con:
        start = con.execute("SELECT count(*) FROM link_constraints").fetchall()[0][0]
        con.executemany(
            "INSERT INTO link_constraints VALUES (?, ?, ?, ?, 'test', now(), ?)",
            [(f"c{start + i}", l, r, kind, active) for i, (l, r, kind) in enumerate(rows)],
        )


def _m_probabilities(model_path: Path) -> dict[tuple[str, str], float]:
    """Trained m-probability per (comparison, level)."""
    model: dict[str, Any] = json.loads(model_path.read_text(encoding="utf-8"))
    return {
        (c["output_column_name"], level["label_for_charts"]): level["m_probability"]
        for c in model["comparisons"]
        for level in c["comparison_levels"]
        if isinstance(level.get("m_probability"), float)
    }


def _expected_scores(store: Path, same: list[Pair], different: list[Pair], threshold: float) -> tuple[float, float]:
    """Precision and recall computed from the published pairs, independently of the run."""
    with duckdb.connect(str(store), read_only=True) as con:
        scored = dict(((l, r), p) for l, r, p in con.execute("SELECT record_key_l, record_key_r, match_probability FROM pairs").fetchall())
    true_pos = sum(scored.get(p, 0.0) >= threshold for p in same)
    false_pos = sum(scored.get(p, 0.0) >= threshold for p in different)
    return true_pos / (true_pos + false_pos), true_pos / len(same)


def test_enough_labels_train_m_and_are_scored(demo: Config, baseline: Path, small_demo: DemoRun) -> None:
    """30 'same' and 30 'different' ground-truth labels. The 'different' pairs are the
    model's hardest negatives (households, twins: truth disagrees although the pair was
    scored), so precision is well below recall; vetoes split most of them later."""
    same, different = _truth_pairs(demo.store_path, small_demo.truth())
    rng = random.Random(3)
    same, different = rng.sample(same, 30), rng.sample(different, 30)
    _decide(demo.store_path, same, different)

    summary = run_pipeline(demo, retrain=True)

    labels = summary.labels
    assert labels is not None and labels.used_for_training
    assert (labels.pairs, labels.same, labels.different) == (60, 30, 30)
    assert labels.precision is not None and labels.recall is not None
    precision, recall = _expected_scores(demo.store_path, same, different, demo.matching.match_threshold)
    assert labels.precision == pytest.approx(precision) and labels.recall == pytest.approx(recall)
    assert labels.recall >= 0.9 and labels.precision >= 0.5
    with duckdb.connect(str(demo.store_path), read_only=True) as con:
        saved = con.execute("SELECT summary->'labels' FROM runs WHERE status = 'published'").fetchall()[0][0]
    assert json.loads(saved)["used_for_training"] is True

    unlabelled, labelled = _m_probabilities(baseline / demo.matching.model), _m_probabilities(demo.model_path)
    changed = [k for k in unlabelled if labelled[k] != pytest.approx(unlabelled[k], abs=1e-6)]
    assert changed, "m estimated from labels moves the model"


def test_fewer_labels_than_min_labels_are_reported_not_used(demo: Config, baseline: Path, small_demo: DemoRun) -> None:
    same, different = _truth_pairs(demo.store_path, small_demo.truth())
    _decide(demo.store_path, same[:5], different[:5])
    _decide(demo.store_path, same[5:40], [], active=False)  # undone decisions do not count
    _decide(demo.store_path, [("gone:1", f"gone:{i}") for i in range(2, 40)], [])  # records not in this run

    summary = run_pipeline(demo, retrain=True)

    labels = summary.labels
    assert labels is not None and not labels.used_for_training
    assert (labels.pairs, labels.same, labels.different) == (10, 5, 5)
    assert "min_labels = 20" in labels.note
    assert labels.precision is not None and labels.recall is not None
    unlabelled, trained = _m_probabilities(baseline / demo.matching.model), _m_probabilities(demo.model_path)
    assert trained == pytest.approx(unlabelled, abs=1e-9)


def test_a_reused_model_is_still_scored_against_labels(demo: Config, small_demo: DemoRun) -> None:
    same, different = _truth_pairs(demo.store_path, small_demo.truth())
    _decide(demo.store_path, same[:25], different[:25])
    model = demo.model_path.read_text(encoding="utf-8")

    summary = run_pipeline(demo)

    labels = summary.labels
    assert labels is not None and not labels.used_for_training and "reused" in labels.note
    assert labels.pairs == 50 and labels.recall is not None and labels.precision is not None
    assert demo.model_path.read_text(encoding="utf-8") == model

"""A store built from one clean system, the usual start (load the CRM, let the webshop
arrive later): training finds no certain duplicates, and no true matches to learn the
m-probabilities from. The run must still work and say what it assumed, and the second
source must be recognised when it arrives by `unify ingest`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.batch.link import prior_floor, provisional_marker
from pipelines.batch.run import run_pipeline
from pipelines.config import load_config
from tests.accuracy import membership, pairwise
from tests.febrl import _HEADER, _REGISTRY, write_febrl4


@pytest.mark.slow
def test_one_source_without_duplicates_then_the_second_by_ingest(tmp_path: Path) -> None:
    """One clean source, then the second by `unify ingest`: the same profiles as a batch
    run over both (pairwise agreement >= 0.99)."""
    truth = write_febrl4(tmp_path / "batch", social_security=False)
    run_pipeline(load_config(tmp_path / "batch" / "unify.toml"))  # the batch run over both
    batch = membership(tmp_path / "batch" / "unify.duckdb")

    write_febrl4(tmp_path / "ingest", social_security=False)  # its registry holds no duplicates
    config = tmp_path / "ingest" / "unify.toml"
    both = config.read_text(encoding="utf-8")
    config.write_text(_HEADER + _REGISTRY, encoding="utf-8")
    summary = run_pipeline(load_config(config))
    assert summary.records == 5_000
    assert len(set(membership(tmp_path / "ingest" / "unify.duckdb").values())) == 5_000
    assert len(summary.assumptions) == 2, summary.assumptions
    assert "one true pair per 100 records" in summary.assumptions[0]
    assert "default m" in summary.assumptions[1]
    # nothing was learned of the conflicts: the veto rules stand, and the model is provisional
    assert all(reason.startswith("active") for reason in summary.vetoes.values()), summary.vetoes
    assert provisional_marker(load_config(config)).exists()

    config.write_text(both, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unify.cli",
            "ingest",
            "--config",
            str(config),
            "--source",
            "claims",
            str(tmp_path / "ingest" / "claims.ndjson"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "The model is provisional" in result.stdout and "records ->" in result.stdout, result.stdout
    assert not provisional_marker(load_config(config)).exists()  # trained on the duplicates the file brought
    ingested = membership(tmp_path / "ingest" / "unify.duckdb")
    agreement = pairwise(batch, ingested)
    assert agreement.f1 >= 0.99, agreement
    scores = pairwise(truth, ingested)
    assert scores.precision >= 0.995 and scores.recall >= 0.98, scores


def test_prior_floor() -> None:
    assert prior_floor(10_000) == 100 / (10_000 * 9_999 // 2)
    assert prior_floor(2) == 0.5  # never above one half, whatever the count
    assert 0 < prior_floor(1) <= 0.5

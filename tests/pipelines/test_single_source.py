"""A store built from one clean system, the usual start (load the CRM, let the webshop
arrive later): training finds no certain duplicates, and the run must still work and say
what it assumed instead of failing in splink with a math domain error."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import load_config
from pipelines.link import prior_floor
from pipelines.run import run_pipeline
from tests.accuracy import membership
from tests.febrl import _HEADER, _REGISTRY, write_febrl4


def test_one_source_without_duplicates_runs_and_says_what_it_assumed(tmp_path: Path) -> None:
    write_febrl4(tmp_path, social_security=False)  # its registry holds no duplicates
    (tmp_path / "unify.toml").write_text(_HEADER + _REGISTRY, encoding="utf-8")
    summary = run_pipeline(load_config(tmp_path / "unify.toml"))
    assert summary.records == 5_000
    assert len(set(membership(tmp_path / "unify.duckdb").values())) == 5_000
    assert len(summary.assumptions) == 1 and "one true pair per 100 records" in summary.assumptions[0]
    # nothing was learned of the conflicts there: the veto rules stand
    assert all(reason.startswith("active") for reason in summary.vetoes.values()), summary.vetoes


def test_prior_floor() -> None:
    assert prior_floor(10_000) == 100 / (10_000 * 9_999 // 2)
    assert prior_floor(2) == 0.5  # never above one half, whatever the count
    assert 0 < prior_floor(1) <= 0.5

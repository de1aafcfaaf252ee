"""Linkage accuracy against ground truth: our demo data (with hard negatives) and FEBRL4,
public benchmark data we did not generate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench import plain_splink
from pipelines.batch.run import RunSummary, run_pipeline
from pipelines.config import load_config
from tests.accuracy import PairwiseScores, in_two_profiles, membership, membership_rows, merged_hard_negatives, pairwise
from tests.conftest import DemoRun
from tests.febrl import with_full_names, without_fields, write_febrl1, write_febrl2, write_febrl3, write_febrl4

pytestmark = pytest.mark.slow  # real servers or larger data: `make test`, not `make test-fast`


def test_demo_pairwise_precision_and_recall(accuracy_demo: DemoRun) -> None:
    assert sum(accuracy_demo.manifest.records_per_source.values()) >= 49_000
    assert len(accuracy_demo.manifest.source_paths) == 4
    scores = pairwise(accuracy_demo.truth(), membership(accuracy_demo.store_path))
    assert scores.precision >= 0.995, scores
    assert scores.recall >= 0.98, scores


def test_no_household_twin_or_father_son_is_merged(accuracy_demo: DemoRun) -> None:
    negatives = accuracy_demo.hard_negatives()
    kinds = {kind for kind, _, _ in negatives}
    assert {"household", "twins", "father_son", "common_name"} <= kinds
    merged = merged_hard_negatives(accuracy_demo.truth(), membership(accuracy_demo.store_path), negatives)
    assert merged == {}, f"merged hard negatives: {dict(merged)}"


def test_every_good_record_is_in_exactly_one_profile(accuracy_demo: DemoRun) -> None:
    rows = membership_rows(accuracy_demo.store_path)
    assert not in_two_profiles(rows)
    profiles = dict(rows)
    truth = accuracy_demo.truth()
    # truth lists every record with an id except the ones with a row-level problem
    missing = set(truth) - set(profiles)
    quarantined = sum(accuracy_demo.manifest.injected_row_errors.values())
    assert len(missing) <= quarantined
    assert set(profiles) <= set(truth)


def test_the_check_finds_a_record_in_two_profiles() -> None:
    rows = [("crm:1", "p_a"), ("shop:1", "p_a"), ("crm:2", "p_b"), ("crm:1", "p_b")]
    assert in_two_profiles(rows) == {"crm:1": {"p_a", "p_b"}}
    assert in_two_profiles(rows[:3]) == {}


def _febrl4(out: Path, *, social_security: bool) -> tuple[RunSummary, PairwiseScores]:
    """FEBRL4 as two systems, run with default settings and no labels."""
    truth = write_febrl4(out, social_security=social_security)
    summary = run_pipeline(load_config(out / "unify.toml"))
    return summary, pairwise(truth, membership(out / "unify.duckdb"))


def test_febrl4_as_two_source_systems(tmp_path: Path) -> None:
    """Default settings, no labels: the issue aims at pairwise F1 >= 0.995."""
    _, scores = _febrl4(tmp_path, social_security=True)
    assert scores.precision >= 0.995, scores
    assert scores.f1 >= 0.995, scores


def test_febrl4_without_a_shared_identifier(tmp_path: Path) -> None:
    """The two systems share no number, as most companies' silos do not: the vetoes step
    aside (FEBRL retypes one given name in ten) and the address's fuzzy parts carry the
    typo'd pairs."""
    summary, scores = _febrl4(tmp_path, social_security=False)
    assert all(reason.startswith("inactive") for reason in summary.vetoes.values()), summary.vetoes
    assert scores.precision >= 0.995, scores
    assert scores.f1 >= 0.995, scores


def _at_least_as_well_as_plain_splink(out: Path, write: Callable[[Path], dict[str, str]], min_f1: float, below_plain: float) -> None:
    """Default settings, no labels: precision >= 0.995, F1 >= ``min_f1`` and not below the
    plain splink script (bench/plain_splink.py) on the same records by more than ``below_plain``."""
    truth = write(out)
    run_pipeline(load_config(out / "unify.toml"))
    store = out / "unify.duckdb"
    ours = pairwise(truth, membership(store))
    plain = pairwise(truth, plain_splink.link(plain_splink.records_of(store)))
    assert ours.precision >= 0.995, ours
    assert ours.f1 >= min_f1, ours
    assert ours.f1 >= plain.f1 - below_plain, (ours, plain)


@pytest.mark.parametrize(
    ("write", "min_f1", "below_plain"),
    [
        pytest.param(write_febrl1, 0.99, 0.0, id="febrl1"),
        pytest.param(write_febrl2, 0.995, 0.0, id="febrl2"),
        # up to five heavily retyped records a person (swapped names, a second address):
        # unify and the script each find pairs the other misses (40 and 47 of 6,538 true
        # pairs); a thousandth of F1 is about six pairs
        pytest.param(write_febrl3, 0.995, 0.001, id="febrl3"),
    ],
)
def test_one_system_deduplicated_at_least_as_well_as_plain_splink(
    tmp_path: Path, write: Callable[[Path], dict[str, str]], min_f1: float, below_plain: float
) -> None:
    """One system holding its own duplicates, no identifier: FEBRL1 (1,000 records),
    FEBRL2 and FEBRL3 (5,000 each; FEBRL3 as NDJSON with other column names and
    dd/mm/YYYY dates)."""
    _at_least_as_well_as_plain_splink(tmp_path, write, min_f1, below_plain)


def _febrl4_full_names(out: Path) -> dict[str, str]:
    truth = write_febrl4(out, social_security=False)
    with_full_names(out)
    return truth


def _febrl2_without_birth_dates(out: Path) -> dict[str, str]:
    truth = write_febrl2(out)
    without_fields(out, ("date_of_birth",))
    return truth


@pytest.mark.parametrize(
    ("write", "min_f1", "below_plain"),
    [
        # one name column in each system (unify splits it); measured 0.9953 against 0.996
        pytest.param(_febrl4_full_names, 0.99, 0.001, id="febrl4-full-names"),
        # no birth dates: names and addresses only; measured 0.9647 against 0.9379
        pytest.param(_febrl2_without_birth_dates, 0.95, 0.0, id="febrl2-no-birth-dates"),
    ],
)
def test_other_shapes_of_the_same_people(
    tmp_path: Path, write: Callable[[Path], dict[str, str]], min_f1: float, below_plain: float
) -> None:
    """The columns another company's systems would hold: the defaults are not tuned to
    FEBRL's given name, surname and birth date columns."""
    _at_least_as_well_as_plain_splink(tmp_path, write, min_f1, below_plain)


def test_demo_vetoes_stay_active(accuracy_demo: DemoRun) -> None:
    """On data where a conflicting birth date or given name marks different people, the
    trained model keeps both veto rules active (and the summary says why)."""
    assert set(accuracy_demo.summary.vetoes) == {"date_of_birth", "first_name"}
    assert all(reason.startswith("active") for reason in accuracy_demo.summary.vetoes.values()), accuracy_demo.summary.vetoes

"""The splink internals pipelines.matching.scoring and explain build on (splink has no
public API for "the SQL of a model's scores", which the live path needs to score a few
pairs exactly as the batch did). pyproject.toml pins splink to the minor version these
were read from; this test says what moved when a new release changes one of them, and
tests/pipelines/matching/test_scoring.py holds the scores equal to splink's own."""

from __future__ import annotations

import inspect
import json
from importlib.metadata import version
from typing import Any

import pytest
from splink.internals import predict
from splink.internals.comparison import Comparison
from splink.internals.comparison_level import ComparisonLevel

from pipelines.matching.scoring import _settings_of

SPLINK = f"splink {version('splink')}"


def _parameters(fn: object) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("owner", "name", "parameters"),
    [
        (predict, "_combine_prior_and_mws", ["prior", "mw_terms", "sql_dialect"]),
        (ComparisonLevel, "_tf_adjustment_sql", ["gamma_column_name", "comparison_levels"]),
        (Comparison, "_columns_to_select_for_comparison_vector_values", ["retain_matching_columns"]),
        (Comparison, "_columns_to_select_for_match_weight_parts", ["retain_matching_columns", "retain_intermediate_calculation_columns"]),
    ],
)
def test_the_functions_scoring_calls_take_the_same_parameters(owner: object, name: str, parameters: list[str]) -> None:
    fn = getattr(owner, name, None)
    assert fn is not None, f"{SPLINK}: {getattr(owner, '__name__', owner)}.{name} is gone (pipelines.matching.scoring calls it)"
    assert _parameters(fn) == parameters, f"{SPLINK}: {name} now takes {_parameters(fn)}"


def test_the_attributes_scoring_reads_are_there_with_their_types(model: dict[str, Any]) -> None:
    built = _settings_of(json.dumps(model, sort_keys=True))
    comparisons = built.core_model_settings.comparisons
    assert comparisons, f"{SPLINK}: settings built without comparisons"
    for comparison in comparisons:
        assert isinstance(comparison._gamma_column_name, str), f"{SPLINK}: Comparison._gamma_column_name"
        assert all(isinstance(t, str) for t in comparison._match_weight_columns_to_sum), (
            f"{SPLINK}: Comparison._match_weight_columns_to_sum"
        )
        for attribute in ("_tf_adjustment_input_columns", "_input_columns_used_by_case_statement"):
            assert all(hasattr(c, "unquote") for c in getattr(comparison, attribute)), f"{SPLINK}: Comparison.{attribute}"
        for level in comparison.comparison_levels:
            assert level._is_else_level in (True, False, None), f"{SPLINK}: ComparisonLevel._is_else_level"
            assert isinstance(level._has_tf_adjustments, bool), f"{SPLINK}: ComparisonLevel._has_tf_adjustments"
            assert level._match_weight is None or isinstance(level._match_weight, float), f"{SPLINK}: ComparisonLevel._match_weight"
        assert any(isinstance(level._match_weight, float) for level in comparison.comparison_levels), f"{SPLINK}: no level weighs"

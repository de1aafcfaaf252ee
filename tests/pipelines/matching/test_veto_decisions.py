"""Which veto rules a trained model makes active (comparisons.active_vetoes)."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.matching.vetoes import VETO_MAX_M, active_vetoes, model_veto_sql


def _model(**else_m: float | None) -> dict[str, Any]:
    comparisons = []
    for name, m in else_m.items():
        last: dict[str, Any] = {"sql_condition": "ELSE", "label_for_charts": "all other comparisons", "u_probability": 0.99}
        if m is not None:
            last["m_probability"] = m
        comparisons.append({"output_column_name": name, "comparison_levels": [last]})
    return {"comparisons": comparisons}


@pytest.mark.parametrize(
    ("m", "active"),
    [(0.0008, True), (VETO_MAX_M * 0.99, True), (VETO_MAX_M, False), (0.099, False), (None, True), (0.99, True)],
)
def test_a_rule_is_active_where_the_conflict_is_rare_among_true_matches(m: float | None, active: bool) -> None:
    (decision,) = active_vetoes(_model(first_name=m), ["first_name"])
    assert decision.active is active
    assert decision.reason.startswith("active" if active else "inactive")


def test_a_rule_on_a_field_the_model_does_not_compare_is_inactive() -> None:
    (decision,) = active_vetoes(_model(first_name=0.001), ["date_of_birth"])
    assert not decision.active and "does not compare" in decision.reason


def test_the_condition_holds_only_the_active_rules() -> None:
    sql = model_veto_sql(_model(first_name=0.001, date_of_birth=0.046), ["date_of_birth", "first_name"], [])
    assert "first_name_std" in sql and "dob" not in sql
    assert model_veto_sql(_model(first_name=0.2, date_of_birth=0.046), ["date_of_birth", "first_name"], []) == "false"

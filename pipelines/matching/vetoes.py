"""Vetoes: evidence that two records are different people whatever else they share (a
birth date or a given name that clearly differs). Which rules are active the trained
model decides; a pair that breaks an active rule never links, directly or through a
chain (pipelines.batch.cluster, pipelines.live.regroup), unless the model learned that
agreement on a shared identifier outweighs it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.matching.blocking import identifier_column

#: Evidence that two records are different people whatever else they share: both have a
#: birth date and the dates differ by more than a typo or a day/month swap, or both have
#: a given name and the names clearly differ (different initial, or two full names far
#: apart). Households, twins and father/son pairs share everything else; the
#: independence assumption of the model cannot see that, these rules can. Pairs that
#: break an active rule never link directly or through a chain (see pipelines/batch/cluster.py);
#: which rules are active the trained model decides (:func:`active_vetoes`).
#: Each rule is a chain of ANDs, cheap tests first: DuckDB evaluates a conjunct only on
#: the rows the ones before it kept, and nearly every pair checked (the members of one
#: cluster) has equal dates and names, so the string distances are rarely computed
#: (tests/pipelines/matching/test_vetoes.py holds them equal to the rules as documented).
VETO_RULES: dict[str, str] = {
    "date_of_birth": """l.dob IS NOT NULL AND r.dob IS NOT NULL AND l.dob <> r.dob
        AND NOT (year(l.dob) = year(r.dob) AND month(l.dob) = day(r.dob) AND day(l.dob) = month(r.dob))
        AND damerau_levenshtein(strftime(l.dob, '%Y%m%d'), strftime(r.dob, '%Y%m%d')) > 1""",
    # equal names never conflict (same initial, similarity 1): tested first
    "first_name": """l.first_name_std IS NOT NULL AND r.first_name_std IS NOT NULL AND l.first_name_std <> r.first_name_std AND (
        l.first_initial <> r.first_initial
        OR (length(l.first_name_std) > 1 AND length(r.first_name_std) > 1
            AND jaro_winkler_similarity(l.first_name_std, r.first_name_std) < 0.80))
        AND NOT coalesce(jaro_winkler_similarity(l.first_name_std, r.last_name_std) >= 0.92
                         AND jaro_winkler_similarity(l.last_name_std, r.first_name_std) >= 0.92, false)""",
}


#: A veto rule is active only where the trained model says such a conflict is rare among
#: true matches: the m-probability of the level it covers below this bound. Data where
#: one true match in fifty or more carries the conflict (replaced given names, retyped
#: birth dates: FEBRL's 9.9% and 4.6%) has the conflict scored as the weak evidence it
#: is there; data where it marks different people (households, twins, father and son:
#: the demo's 0.8% and 0.08%) keeps them apart absolutely.
VETO_MAX_M = 0.02


@dataclass(frozen=True)
class VetoDecision:
    """Whether a configured veto rule is active for a trained model, and why."""

    rule: str
    active: bool
    m_probability: float | None  # share of true matches with the conflict; None: not in the model or untrained

    @property
    def reason(self) -> str:
        if self.m_probability is None:
            return (
                "active: the model has no trained m-probability for the conflict, the rule stands"
                if self.active
                else ("inactive: the model does not compare this field")
            )
        share = f"{self.m_probability:.2%} of true matches conflict"
        return f"{'active' if self.active else 'inactive'}: {share} (bound {VETO_MAX_M:.0%})"


def active_vetoes(model: dict[str, Any], rules: list[str]) -> list[VetoDecision]:
    """Per configured rule, whether the trained ``model`` makes it active (see
    :data:`VETO_MAX_M`). Each rule is named after the comparison whose "all other
    comparisons" level holds the pairs it calls a conflict (for first names, all but the
    rare similar names with another initial)."""
    by_name = {c["output_column_name"]: c for c in model.get("comparisons", [])}
    decisions = []
    for rule in rules:
        comparison = by_name.get(rule)
        if comparison is None:
            decisions.append(VetoDecision(rule, False, None))
            continue
        last = comparison["comparison_levels"][-1]
        m, u = last.get("m_probability"), last.get("u_probability")
        # an m of one half or more says training found no true matches to learn from (one
        # clean source): nothing is known of the conflict there, and the rule stands
        trained = isinstance(m, float) and isinstance(u, float) and m != u and m < 0.5
        decisions.append(VetoDecision(rule, not trained or m < VETO_MAX_M, m if trained else None))
    return decisions


def model_veto_sql(model: dict[str, Any], rules: list[str], shared_identifiers: list[str]) -> str:
    """:func:`veto_sql` of the rules the trained ``model`` makes active, with its
    identifier overrides: the one condition batch and live ingest keep records apart by."""
    active = [d.rule for d in active_vetoes(model, rules) if d.active]
    return veto_sql(active, identifier_overrides(model, shared_identifiers))


#: A conflict is overridden by agreement on an identifier only when the model learned
#: that agreement to be strong: a Bayes factor of at least 2^10 (about 1000 to 1).
VETO_OVERRIDE_WEIGHT = 10.0


def identifier_overrides(model: dict[str, Any], shared_identifiers: list[str]) -> list[str]:
    """SQL conditions (aliases ``l``/``r``) for identifier agreements strong enough in
    the trained ``model`` to outweigh a conflict: an exact customer or social security
    number, and a one-typo match where the data shows typos are rare among non-matches
    (never for sequential numbers, whose neighbours belong to other people)."""
    by_name = {c["output_column_name"]: c for c in model.get("comparisons", [])}
    conditions = []
    for name in shared_identifiers:
        col = identifier_column(name)
        level_sql = {
            "exact": f"l.{col} = r.{col}",
            "one character differs or two adjacent swapped": f"damerau_levenshtein(l.{col}, r.{col}) <= 1",
        }
        for level in by_name.get(name, {}).get("comparison_levels", []):
            m, u = level.get("m_probability"), level.get("u_probability")
            label = level.get("label_for_charts")
            if label in level_sql and m and u and math.log2(m / u) >= VETO_OVERRIDE_WEIGHT:
                conditions.append(level_sql[label])
    return conditions


def veto_sql(rules: list[str], overrides: list[str]) -> str:
    """One boolean SQL expression over aliases ``l`` and ``r`` of ``linkable``: the
    records conflict and no strong identifier agreement (see identifier_overrides)
    outweighs it. That is how records with a typed-over birth date or a replaced given
    name are still recognised by their customer or social security number."""
    if not rules:
        return "false"
    conflict = " OR ".join(f"({VETO_RULES[name]})" for name in rules)
    if not overrides:
        return f"({conflict})"
    agree = " OR ".join(f"({o})" for o in overrides)
    return f"(({conflict}) AND NOT coalesce({agree}, false))"

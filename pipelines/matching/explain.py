"""Why were two records linked? The evidence per comparison, with the exact numbers the
published run's model used: the level each comparison reached (evaluated with the
model's own level conditions), its match weight and its term-frequency adjustment.

A pair the run scored (it is in ``pairs``) is explained with the weights stored for it;
any other pair is scored now from the model, without term-frequency adjustments."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from splink.comparison_library import CustomComparison
from splink.internals.comparison_level_creator import ComparisonLevelCreator

from pipelines.matching.blocking import identifier_column
from pipelines.matching.comparisons import level_sql, prior_weight
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.store import Store, ident


@dataclass(frozen=True)
class ComparisonEvidence:
    """What one comparison of the model contributed to a pair's score."""

    comparison: str  # output_column_name, e.g. "first_name"
    level: str  # label_for_charts of the level reached, e.g. "Jaro-Winkler >= 0.92"
    level_value: int  # splink's comparison vector value (-1 = null level)
    match_weight: float  # log2(m/u) of that level as the run used it
    tf_adjustment: float  # term-frequency adjustment weight (0.0 when none)


@dataclass(frozen=True)
class Explanation:
    """A pair's score taken apart: prior + per-comparison weights = match weight."""

    record_key_l: str
    record_key_r: str
    prior_weight: float  # log2 of the prior odds
    match_weight: float  # prior + sum of comparison weights and tf adjustments
    match_probability: float
    comparisons: list[ComparisonEvidence]
    scored_in_run: bool  # True: read from the run's pairs; False: computed now (no tf)


@dataclass(frozen=True)
class _Comparison:
    """A model comparison as splink scores it."""

    name: str
    levels: dict[int, tuple[str, float]]  # comparison vector value -> (label, match weight)
    has_tf: bool  # the run stored a mw_tf_adj_<name> column for it


def _comparisons(model: dict[str, Any]) -> list[_Comparison]:
    """The model's comparisons built by splink itself, so that level numbers, labels and
    weights are splink's own: its default m/u for levels training never observed, and m
    and u clamped to M_U_CLAMP_MIN before log2(m/u)."""
    dialect = model.get("sql_dialect", "duckdb")
    out = []
    for comparison in model.get("comparisons", []):
        levels: list[ComparisonLevelCreator | dict[str, Any]] = [
            {k: v for k, v in level.items() if k != "comparison_vector_value"}  # output only, not a setting
            for level in comparison["comparison_levels"]
        ]
        built = CustomComparison(levels, comparison["output_column_name"]).get_comparison(dialect)
        out.append(
            _Comparison(
                name=comparison["output_column_name"],
                levels={
                    level.comparison_vector_value: (level.label_for_charts, float(level._match_weight)) for level in built.comparison_levels
                },
                has_tf=any(level.get("tf_adjustment_column") for level in comparison["comparison_levels"]),
            )
        )
    return out


def _probability(match_weight: float) -> float:
    """1 / (1 + 2^-w), computed as splink does so that large weights do not overflow."""
    if match_weight >= 0:
        return 1.0 / (1.0 + math.pow(2.0, -match_weight))
    odds = math.pow(2.0, match_weight)
    return odds / (1.0 + odds)


def explain_pairs(
    store: Store, model: dict[str, Any], identifiers: list[str], pairs: Sequence[tuple[str, str]]
) -> list[Explanation | None]:
    """Explain each asked pair of record keys (either order), in order; None where a
    record key is unknown. One store query, however many pairs are asked."""
    asked = [(a, b) if a <= b else (b, a) for a, b in pairs]  # pairs keeps record_key_l < record_key_r
    if not asked:
        return []
    unique = list(dict.fromkeys(asked))
    comparisons = _comparisons(model)
    columns = [*MATCH_COLUMNS, *(identifier_column(n) for n in identifiers)]
    # identifiers as the run compared them (see pipelines.batch.link.prepare_linkable)
    pivots = "".join(f", list_max([i.value FOR i IN r.identifiers IF i.kind = ?]) AS {ident(identifier_column(n))}" for n in identifiers)
    sides = ", ".join(f"l.{ident(c)} AS {ident(c + '_l')}, r.{ident(c)} AS {ident(c + '_r')}" for c in columns)
    reached = "".join(f", {sql} AS level_{i}" for i, sql in enumerate(level_sql(model)))
    stored = "".join(
        f", p.{ident('mw_' + c.name)} AS mw_{i}" + (f", p.{ident('mw_tf_adj_' + c.name)} AS tf_{i}" if c.has_tf else "")
        for i, c in enumerate(comparisons)
    )
    sql = f"""
        WITH asked AS (SELECT unnest(?::VARCHAR[]) AS key_l, unnest(?::VARCHAR[]) AS key_r),
        side AS (
            SELECT r.record_key, {", ".join("r." + ident(c) for c in MATCH_COLUMNS)}{pivots}
            FROM records r
            WHERE r.record_key IN (SELECT key_l FROM asked UNION SELECT key_r FROM asked)),
        compared AS (
            SELECT a.key_l, a.key_r, {sides}
            FROM asked a JOIN side l ON l.record_key = a.key_l JOIN side r ON r.record_key = a.key_r)
        SELECT c.key_l, c.key_r{reached},
               p.record_key_l IS NOT NULL AS scored, p.match_weight, p.match_probability{stored}
        FROM compared c LEFT JOIN pairs p ON p.record_key_l = c.key_l AND p.record_key_r = c.key_r"""
    params = [[k for k, _ in unique], [k for _, k in unique], *identifiers]
    prior = prior_weight(model)
    found = {(row["key_l"], row["key_r"]): _explanation(row, comparisons, prior) for row in store.dicts(sql, params)}
    return [found.get(pair) for pair in asked]


def _explanation(row: dict[str, Any], comparisons: list[_Comparison], prior: float) -> Explanation:
    """One result row as an explanation: stored weights for a pair the run scored, the
    model's level weights otherwise."""
    scored = bool(row["scored"])
    evidence = []
    for i, c in enumerate(comparisons):
        value = int(row[f"level_{i}"])
        label, weight = c.levels[value]
        evidence.append(
            ComparisonEvidence(
                comparison=c.name,
                level=label,
                level_value=value,
                match_weight=float(row[f"mw_{i}"]) if scored else weight,
                tf_adjustment=float(row[f"tf_{i}"]) if scored and c.has_tf else 0.0,
            )
        )
    if scored:
        match_weight, match_probability = float(row["match_weight"]), float(row["match_probability"])
    else:
        match_weight = prior + sum(e.match_weight for e in evidence)
        match_probability = _probability(match_weight)
    return Explanation(row["key_l"], row["key_r"], prior, match_weight, match_probability, evidence, scored)

"""Match explanations in the API: the model's evidence for a pair of records, with the
numbers the published run used (see pipelines.matching.explain)."""

from __future__ import annotations

import enum

import strawberry

from pipelines.matching.explain import Explanation, explain_pairs
from resolvers.context import Context


@strawberry.enum
class Decision(enum.Enum):
    SAME = "same"
    DIFFERENT = "different"


@strawberry.type
class ComparisonEvidence:
    """One comparison of the model for one pair: the level reached and what it weighed."""

    comparison: str
    level: str = strawberry.field(description='The comparison level reached, e.g. "Jaro-Winkler >= 0.92".')
    level_value: int = strawberry.field(description="splink's comparison vector value (-1: missing on either side).")
    match_weight: float = strawberry.field(description="log2(m/u) of that level in the run's model.")
    term_frequency_adjustment: float = strawberry.field(description="Weight added for how rare the shared value is.")


@strawberry.type
class MatchExplanation:
    """Why two records are (or are not) one person: prior weight plus the evidence per
    comparison gives the match weight; probability = 1 / (1 + 2^-weight)."""

    record_a: str
    record_b: str
    prior_weight: float
    match_weight: float
    match_probability: float
    scored_in_run: bool = strawberry.field(
        description="True: the numbers the run used. False: never a candidate pair in the run; scored now from its model, without term-frequency adjustments."
    )
    comparisons: list[ComparisonEvidence]
    decision: Decision | None = strawberry.field(description="A steward's decision on this pair, if any.")


def _explanation(found: Explanation, decision: str | None) -> MatchExplanation:
    return MatchExplanation(
        record_a=found.record_key_l,
        record_b=found.record_key_r,
        prior_weight=found.prior_weight,
        match_weight=found.match_weight,
        match_probability=found.match_probability,
        scored_in_run=found.scored_in_run,
        comparisons=[
            ComparisonEvidence(
                comparison=c.comparison,
                level=c.level,
                level_value=c.level_value,
                match_weight=c.match_weight,
                term_frequency_adjustment=c.tf_adjustment,
            )
            for c in found.comparisons
        ],
        decision=Decision(decision) if decision else None,
    )


def explain(ctx: Context, pairs: list[tuple[str, str]]) -> list[MatchExplanation | None]:
    """Explanations of record pairs (one batch of store queries for all of them)."""
    model = ctx.queries.published_model()
    if not pairs or not model:
        return [None for _ in pairs]
    found = explain_pairs(ctx.queries.store, model, ctx.config.shared_identifiers(), pairs)
    decisions = ctx.queries.decisions(pairs)
    return [_explanation(e, decisions.get((min(a, b), max(a, b)))) if e else None for (a, b), e in zip(pairs, found)]


def spanning_links(keys: list[str], links: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The links, in the order given (strongest first), that connect ``keys``: each one
    joins two groups not yet joined (a maximum spanning forest)."""
    parent = {k: k for k in keys}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    held = []
    for a, b in links:
        if a in parent and b in parent and find(a) != find(b):
            parent[find(a)] = find(b)
            held.append((a, b))
    return held

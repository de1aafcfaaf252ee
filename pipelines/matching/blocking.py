"""Blocking rules as data: which pairs of records are compared at all.

A rule is a conjunction of equalities between an expression over one record and one over
the other (``Term``). The same rule is handed to splink as SQL (``BlockingRule.sql``,
``l.dob = r.dob AND ...``) and turned into the live path's lookups (``BlockingRule.roles``:
the new record on either side), so nothing parses SQL back into its parts.

Three sets of rules, each for the comparisons a config's mapped fields make available
(``needs``: groups of pipelines.matching.comparisons):
- ``blocking_rules``: the candidate pairs the model scores (batch and live);
- ``em_training_rules``: the pairs EM estimates the m-probabilities on;
- ``deterministic_rules``: near-certain pairs for the prior."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def identifier_column(name: str) -> str:
    """The model's column of a shared identifier (``[[identifiers]]`` mapped by several sources)."""
    return f"id_{name}"


@dataclass(frozen=True)
class Term:
    """``left`` over one record equals ``right`` over the other (``right`` None: the same
    expression). Expressions are SQL over one record's columns, ``{}`` standing for the
    record's alias: ``"{}.dob"``, ``"left({}.last_name_std, 3)"``."""

    left: str
    right: str | None = None

    def sides(self, left_alias: str, right_alias: str) -> tuple[str, str]:
        return self.left.format(left_alias), (self.right or self.left).format(right_alias)


def col(column: str) -> Term:
    """A column equal on both records."""
    return Term("{}." + column)


@dataclass(frozen=True)
class BlockingRule:
    needs: frozenset[str]  # the comparison groups whose fields it reads
    terms: tuple[Term, ...]

    def sql(self) -> str:
        """The rule as splink takes it (records ``l`` and ``r``)."""
        return " AND ".join(" = ".join(t.sides("l", "r")) for t in self.terms)

    def roles(self) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """The rule with a new record (``n``) on either side: (its expressions, the other
        record's ``o`` expressions), once when both roles are one (a symmetric rule)."""
        out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for new_side in ("l", "r"):
            pairs = [t.sides("n", "o") if new_side == "l" else tuple(reversed(t.sides("o", "n"))) for t in self.terms]
            role = (tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
            if role not in out:
                out.append(role)
        return out


def _rule(needs: Iterable[str], *terms: Term) -> BlockingRule:
    return BlockingRule(frozenset(needs), terms)


_DOB, _FIRST, _LAST, _INITIAL = col("dob"), col("first_name_std"), col("last_name_std"), col("first_initial")
_POSTCODE, _NUMBER, _STREET, _CITY = col("postcode_std"), col("house_number_std"), col("street_std"), col("city_std")
_LINE2, _REGION = col("address_line2_std"), col("region_std")

#: Each rule is selective on its own; together they let through a pair that agrees on
#: any one strong field (or name + birth date).
PREDICTION_RULES: tuple[BlockingRule, ...] = (
    _rule({"phone"}, col("phone_std")),
    _rule({"email"}, col("email_std")),
    _rule({"date_of_birth", "name"}, _DOB, _INITIAL),
    _rule({"date_of_birth", "name"}, _DOB, Term("left({}.last_name_std, 3)")),
    _rule({"address", "name"}, _POSTCODE, _INITIAL),
    # Name alone pairs every "Jan de Vries" with every other one (docs/benchmarks.md,
    # "Figures behind the code's choices"); a name plus birth year or plus city keeps
    # the movers and the number changers that share nothing else, at a hundredth of the cost.
    _rule({"name", "date_of_birth"}, _FIRST, _LAST, Term("year({}.dob)")),
    _rule({"name", "locality"}, _FIRST, _LAST, _CITY),
    _rule({"name"}, Term("{}.first_name_std", "{}.last_name_std"), Term("{}.last_name_std", "{}.first_name_std")),
    _rule({"date_of_birth", "address"}, _DOB, _POSTCODE),
    # One dwelling or one place, whatever was retyped in the names and the birth date
    # (most of FEBRL4's missed true pairs were no candidate before these rules). Never a
    # street name with a number or a given name alone: street names repeat in every town,
    # and such a rule grows with the square of the data. A rule on a field no source maps
    # (the demo's region, address line 2) pairs nothing.
    _rule({"address"}, _POSTCODE, _NUMBER),
    _rule({"address"}, _STREET, _POSTCODE),
    _rule({"address", "locality"}, _STREET, _NUMBER, _CITY),
    _rule({"address"}, _LINE2, _NUMBER),
    _rule({"address", "name"}, _LAST, _POSTCODE),
    _rule({"date_of_birth", "locality"}, _DOB, _CITY),
    _rule({"address", "locality"}, _LINE2, _CITY),
    _rule({"name", "address", "locality"}, _LAST, _NUMBER, _REGION),
    _rule({"name", "address", "locality"}, _FIRST, _STREET, _REGION),
)


def prediction_rules(groups: set[str], shared_identifiers: Sequence[str]) -> list[BlockingRule]:
    """The rules that make candidate pairs, for the available comparison ``groups``; a
    shared identifier is a rule of its own."""
    rules = [rule for rule in PREDICTION_RULES if rule.needs <= groups]
    return rules + [_rule((), col(identifier_column(n))) for n in shared_identifiers]


def blocking_rules(groups: set[str], shared_identifiers: Sequence[str]) -> list[str]:
    """:func:`prediction_rules` as splink's SQL."""
    return [rule.sql() for rule in prediction_rules(groups, shared_identifiers)]


def em_training_rules(groups: set[str]) -> list[str]:
    """Blocking rules for EM: each leaves the comparisons it does not touch free to be
    estimated, and together they estimate every comparison."""
    rules = []
    if "date_of_birth" in groups:
        rules.append(_rule({"date_of_birth"}, _DOB))
    elif "address" in groups:
        rules.append(_rule({"address"}, _POSTCODE))
    if "name" in groups:
        rules.append(_rule({"name"}, _LAST, _INITIAL))
    return [rule.sql() for rule in rules]


def deterministic_rules(groups: set[str], shared_identifiers: Sequence[str]) -> list[str]:
    """Near-certain rules for the prior (probability that two random records match)."""
    candidates = (
        _rule({"email", "date_of_birth"}, col("email_std"), _DOB),
        _rule({"name", "date_of_birth"}, _FIRST, _LAST, _DOB),
        _rule({"name", "address"}, _FIRST, _LAST, _POSTCODE, _NUMBER),
    )
    return [rule.sql() for rule in candidates if rule.needs <= groups]


__all__ = [
    "PREDICTION_RULES",
    "BlockingRule",
    "Term",
    "blocking_rules",
    "col",
    "deterministic_rules",
    "em_training_rules",
    "identifier_column",
    "prediction_rules",
]

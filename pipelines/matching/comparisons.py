"""The linkage model's shape: comparisons per field type (and the blocking rules of
pipelines.matching.blocking), as one plain splink settings dict (saved with the trained model as JSON).

Design notes (see ../shared/SPLINK-NOTES.md): the address is ONE comparison with
combined levels (postcode, street and city compared separately would count one address
three times); emails are compared exactly after normalisation (fuzzy emails over-merged
at scale); Dutch postcodes get their own levels (splink's PostcodeComparison is UK)."""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from typing import Any

from pipelines.matching.blocking import blocking_rules, identifier_column

#: Given name and surname entered in each other's fields (a common data-entry error).
SWAPPED_NAMES = (
    'jaro_winkler_similarity("first_name_std_l", "last_name_std_r") >= 0.92 '
    'AND jaro_winkler_similarity("last_name_std_l", "first_name_std_r") >= 0.92'
)


def _null(*columns: str) -> dict[str, Any]:
    cond = " OR ".join(f'"{c}_l" IS NULL OR "{c}_r" IS NULL' for c in columns)
    return {"sql_condition": cond, "label_for_charts": "missing on either side", "is_null_level": True}


def _level(sql: str, label: str, tf: str | None = None) -> dict[str, Any]:
    level: dict[str, Any] = {"sql_condition": sql, "label_for_charts": label}
    if tf:
        level["tf_adjustment_column"] = tf
        level["tf_adjustment_weight"] = 1.0
    return level


_ELSE = {"sql_condition": "ELSE", "label_for_charts": "all other comparisons"}


def within_one_edit(left: str, right: str) -> str:
    """SQL: ``damerau_levenshtein(left, right) <= 1``, computed only where ``levenshtein``
    (a sixth of its cost in DuckDB) leaves it open: one transposition is two
    substitutions."""
    edits = f"levenshtein({left}, {right})"
    return f"({edits} <= 1 OR ({edits} = 2 AND damerau_levenshtein({left}, {right}) = 1))"


def first_name() -> dict[str, Any]:
    c = "first_name_std"
    return {
        "output_column_name": "first_name",
        "comparison_description": "first name: exact (term frequency), Jaro-Winkler, initial",
        "comparison_levels": [
            _null(c),
            _level(f'"{c}_l" = "{c}_r"', "exact", tf=c),
            _level(f'jaro_winkler_similarity("{c}_l", "{c}_r") >= 0.92', "Jaro-Winkler >= 0.92"),
            _level(f'jaro_winkler_similarity("{c}_l", "{c}_r") >= 0.80', "Jaro-Winkler >= 0.80"),
            _level(
                f'(length("{c}_l") = 1 OR length("{c}_r") = 1) AND "first_initial_l" = "first_initial_r"',
                "initial matches the name",
            ),
            _level(SWAPPED_NAMES, "first and last name swapped"),
            _ELSE,
        ],
    }


def last_name() -> dict[str, Any]:
    c = "last_name_std"
    return {
        "output_column_name": "last_name",
        "comparison_description": "surname without particles: exact (term frequency), Jaro-Winkler, shared part of a double name",
        "comparison_levels": [
            _null(c),
            _level(f'"{c}_l" = "{c}_r"', "exact", tf=c),
            _level(f'jaro_winkler_similarity("{c}_l", "{c}_r") >= 0.92', "Jaro-Winkler >= 0.92"),
            _level('len(list_intersect("surname_tokens_l", "surname_tokens_r")) > 0', "shares a part of a double name"),
            _level(f'jaro_winkler_similarity("{c}_l", "{c}_r") >= 0.80', "Jaro-Winkler >= 0.80"),
            # one swap is one piece of evidence: the first name's comparison weighs it,
            # here it weighs nothing (it counted twice: 26 bits, which chained FEBRL's
            # "lachlan nguyen" to a "nguyen lachlan" sharing only a postcode)
            {
                "sql_condition": SWAPPED_NAMES,
                "label_for_charts": "first and last name swapped (weighed with the first name)",
                "m_probability": 1.0,
                "u_probability": 1.0,
                "fix_m_probability": True,
                "fix_u_probability": True,
            },
            _ELSE,
        ],
    }


def date_of_birth() -> dict[str, Any]:
    return {
        "output_column_name": "date_of_birth",
        "comparison_description": "birth date: exact, day and month swapped, one typing error",
        "comparison_levels": [
            _null("dob"),
            _level('"dob_l" = "dob_r"', "exact"),
            _level(
                'year("dob_l") = year("dob_r") AND month("dob_l") = day("dob_r") AND day("dob_l") = month("dob_r")',
                "day and month swapped",
            ),
            _level(
                # One edit of YYYYMMDD leaves the year or the day as it was (a swap across a
                # boundary changes two parts; month and day always have two digits): the
                # test holds for ~5% of random pairs, and the strings and their edit
                # distance are computed for those only (splink's u sampling: 0.42 -> 0.06 s
                # a 2.1M pairs, the same levels)
                '(year("dob_l") = year("dob_r") OR day("dob_l") = day("dob_r")) AND '
                + within_one_edit("strftime(\"dob_l\", '%Y%m%d')", "strftime(\"dob_r\", '%Y%m%d')"),
                "one digit differs or two adjacent swapped",
            ),
            _ELSE,
        ],
    }


def exact(name: str, column: str, description: str, tf: bool) -> dict[str, Any]:
    return {
        "output_column_name": name,
        "comparison_description": description,
        "comparison_levels": [
            _null(column),
            _level(f'"{column}_l" = "{column}_r"', "exact", tf=column if tf else None),
            _ELSE,
        ],
    }


def identifier(name: str) -> dict[str, Any]:
    c = identifier_column(name)
    return {
        "output_column_name": name,
        "comparison_description": f"identifier {name}: exact, one typing error",
        "comparison_levels": [
            _null(c),
            _level(f'"{c}_l" = "{c}_r"', "exact"),
            _level(f'damerau_levenshtein("{c}_l", "{c}_r") <= 1', "one character differs or two adjacent swapped"),
            _ELSE,
        ],
    }


def address() -> dict[str, Any]:
    """The dwelling as ONE comparison: postcode, house number, street and address line 2
    in combined levels, never compared separately (that counts a household's shared
    address several times). Typos are allowed where they are common: the postcode within
    one edit (any country's: "3138"/"3128", "1234AB"/"1234AC"), free text at
    Jaro-Winkler >= 0.9. Training learns per level how rare the agreement is."""
    pc, hn, st, l2 = "postcode_std", "house_number_std", "street_std", "address_line2_std"
    postcode_typo = within_one_edit(f'"{pc}_l"', f'"{pc}_r"')
    street = f'jaro_winkler_similarity("{st}_l", "{st}_r") >= 0.9'
    line2 = f'jaro_winkler_similarity("{l2}_l", "{l2}_r") >= 0.9'
    number = f'"{hn}_l" = "{hn}_r"'
    return {
        "output_column_name": "address",
        "comparison_description": "address as one comparison: postcode (one edit allowed), house number, street and "
        "address line 2 (Jaro-Winkler >= 0.9) in combined levels",
        "comparison_levels": [
            {
                "sql_condition": f'("{pc}_l" IS NULL AND "{st}_l" IS NULL) OR ("{pc}_r" IS NULL AND "{st}_r" IS NULL)',
                "label_for_charts": "missing on either side",
                "is_null_level": True,
            },
            _level(f'"{pc}_l" = "{pc}_r" AND {number}', "postcode and house number"),
            _level(f"{number} AND {postcode_typo} AND ({street} OR {line2})", "house number, street or line 2, postcode within a typo"),
            _level(f"{number} AND {street}", "street and house number"),
            _level(f"{number} AND {line2}", "address line 2 and house number"),
            _level(f'"{pc}_l" = "{pc}_r" AND ("{hn}_l" IS NULL OR "{hn}_r" IS NULL)', "postcode, house number unknown"),
            _level(f'"{pc}_l" = "{pc}_r"', "postcode, other house number"),
            _level(f"{street} OR {line2}", "street or line 2, other house number"),
            _level(f"{postcode_typo}", "postcode within a typo"),
            _ELSE,
        ],
    }


def locality() -> dict[str, Any]:
    """The place: city (typos allowed) and region, compared only where a postcode that
    places a street and the house number do not already put both records at one dwelling
    (``dwelling_key``: there the town adds nothing, and a household's shared address would
    count twice). Elsewhere (a town-wide postcode as in Australia, a postcode typo, a
    missing number) the town is evidence of its own: splink samples u among all random
    pairs, true matches included, so no one comparison outweighs the prior, and FEBRL's
    pairs with a retyped given name and birth date needed both."""
    city, region, dwelling = "city_std", "region_std", "dwelling_key"
    similar = f'jaro_winkler_similarity("{city}_l", "{city}_r") >= 0.9'
    return {
        "output_column_name": "locality",
        "comparison_description": "locality: city (Jaro-Winkler >= 0.9) and region",
        "comparison_levels": [
            {
                "sql_condition": f'(("{city}_l" IS NULL OR "{city}_r" IS NULL) AND ("{region}_l" IS NULL OR "{region}_r" IS NULL))'
                f' OR coalesce("{dwelling}_l" = "{dwelling}_r", false)',
                "label_for_charts": "missing on either side",  # or one dwelling: see the docstring
                "is_null_level": True,
            },
            _level(f'"{city}_l" = "{city}_r" AND "{region}_l" = "{region}_r"', "city and region"),
            _level(f'"{city}_l" = "{city}_r"', "city"),
            _level(f"{similar}", "city within a typo"),
            _level(f'"{region}_l" = "{region}_r"', "region only"),
            _ELSE,
        ],
    }


# Which groups of canonical fields feed which comparison; a comparison is part of the
# model only when some source maps one of its fields (an unmapped one cannot be trained).
_GROUPS: dict[str, tuple[str, ...]] = {
    "name": ("first_name", "last_name", "full_name"),
    "date_of_birth": ("date_of_birth",),
    "email": ("email",),
    "phone": ("phone",),
    "address": ("postcode", "street", "house_number", "address_line2"),
    # with any address: a model's shape must not depend on whether a source maps the city
    "locality": ("city", "region", "postcode", "street", "house_number", "address_line2"),
}


def available(mapped_fields: AbstractSet[str]) -> set[str]:
    return {group for group, fields in _GROUPS.items() if mapped_fields & set(fields)}


def settings(groups: set[str], shared_identifiers: list[str]) -> dict[str, Any]:
    candidates = [
        ("name", first_name()),
        ("name", last_name()),
        ("date_of_birth", date_of_birth()),
        ("email", exact("email", "email_std", "email, normalised, exact (term frequency)", tf=True)),
        ("phone", exact("phone", "phone_std", "phone in E.164, exact (term frequency)", tf=True)),
        ("address", address()),
        ("locality", locality()),
    ]
    comparisons = [c for group, c in candidates if group in groups]
    comparisons += [identifier(name) for name in shared_identifiers]
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "record_key",
        "probability_two_random_records_match": 1e-5,
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": blocking_rules(groups, shared_identifiers),
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": True,
        "additional_columns_to_retain": [],
        "em_convergence": 0.0001,
        "max_iterations": 25,
    }


def weight_sql(model: dict[str, Any]) -> tuple[str, list[str]]:
    """The trained model as SQL over a relation with ``<column>_l``/``<column>_r``
    columns: each comparison becomes a CASE over its levels' own conditions, in the
    model's order, giving that level's match weight log2(m/u) (0 for the null level and
    for levels training never observed). Returns (sum of weights, per-comparison
    expressions). Term-frequency adjustments are not applied."""
    parts = []
    for comparison in model.get("comparisons", []):
        cases = []
        for level in comparison["comparison_levels"]:
            condition = level["sql_condition"]
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = 0.0 if level.get("is_null_level") or not m or not u else math.log2(m / u)
            # DOUBLE, not the DECIMAL DuckDB reads a literal as: sums of those overflow
            value = f"CAST({weight!r} AS DOUBLE)"
            if condition.strip().upper() == "ELSE":
                cases.append(f"ELSE {value}")
            else:
                cases.append(f"WHEN {condition} THEN {value}")
        if not cases[-1].startswith("ELSE"):
            cases.append("ELSE CAST(0 AS DOUBLE)")
        parts.append(f"(CASE {' '.join(cases)} END)")
    return (" + ".join(parts) or "CAST(0 AS DOUBLE)"), parts


def prior_weight(model: dict[str, Any]) -> float:
    p = float(model.get("probability_two_random_records_match", 1e-4))
    return math.log2(p / (1 - p))


def level_sql(model: dict[str, Any]) -> list[str]:
    """Per comparison of ``model``, a CASE over a relation with ``<column>_l``/
    ``<column>_r`` columns giving the level reached as splink's comparison vector value:
    the first level (in the model's order) whose condition holds; the null level is -1,
    the others count down from (number of non-null levels - 1) to 0."""
    parts = []
    for comparison in model.get("comparisons", []):
        levels = comparison["comparison_levels"]
        value = sum(1 for level in levels if not level.get("is_null_level"))
        cases = []
        for level in levels:
            if level.get("is_null_level"):
                number = -1
            else:
                value -= 1
                number = value
            condition = level["sql_condition"]
            if condition.strip().upper() == "ELSE":
                cases.append(f"ELSE {number}")
            else:
                cases.append(f"WHEN {condition} THEN {number}")
        parts.append(f"(CASE {' '.join(cases)} END)")
    return parts

"""Survivorship: which member record gives each golden field, by a rule per field, with
lineage (source, record id, rule, timestamp) kept for every value.

Rules (ties fall through to the next criterion, then to the record key, so the
outcome is deterministic):
  trust     highest source trust, then most recent, then most frequent value
  recent    most recent, then highest trust, then most frequent
  frequent  most frequent value, then highest trust, then most recent
Before any rule, a complete value beats a partial one (a first name beats an initial).
The address survives as one unit, so a golden address never mixes two records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from profiles.model import ADDRESS_FIELDS, CANONICAL_FIELDS

Rule = Literal["trust", "recent", "frequent"]

#: The order of each rule, as the components of an ascending sort key (see _KEY).
_ORDER: Final[dict[str, tuple[str, ...]]] = {
    "trust": ("trust", "updated_at", "freq"),
    "recent": ("updated_at", "trust", "freq"),
    "frequent": ("freq", "trust", "updated_at"),
}
#: Ascending sort key components: highest trust, most recent (no date last), most frequent.
_KEY: Final[dict[str, str]] = {
    "trust": "coalesce(-{}, 2147483647)",
    "updated_at": "coalesce(-epoch_us({}), 9223372036854775807)",
}
#: Fields chosen one by one (the address is chosen as a unit; full_name is derived).
SINGLE_FIELDS: Final[tuple[str, ...]] = tuple(
    f for f in CANONICAL_FIELDS if f not in ADDRESS_FIELDS and f != "full_name"
)
_QUALITY: Final[dict[str, str]] = {"first_name": "CASE WHEN length(first_name_std) > 1 THEN 1 ELSE 0 END"}


def rule_for(field: str, rules: Mapping[str, str], default: str) -> str:
    rule = rules.get("address" if field in ADDRESS_FIELDS else field, default)
    if rule not in _ORDER:
        raise ValueError(f"unknown survivorship rule {rule!r} for {field}")
    return rule


def _pick(rows: str, group: str, first: str, rule: str, picked: str) -> str:
    """Per profile, the row of ``rows`` that ``rule`` prefers, as a struct ``best`` of the
    ``picked`` columns. ``first`` (a column, lower is better) comes before the rule, the
    record key after it. Frequency is the number of the profile's rows with the same
    ``group`` value: the rows are first aggregated per value (where frequency is
    constant, so the value's best row is the rule's best without it), then per profile:
    two hash aggregations instead of a sort of every row per field."""
    within = ", ".join([first, *(_KEY[c].format(c) for c in _ORDER[rule] if c != "freq"), "record_key"])
    across = ", ".join(
        [f"best.{first}", *("-freq" if c == "freq" else _KEY[c].format(f"best.{c}") for c in _ORDER[rule]), "best.record_key"]
    )
    columns = ", ".join(f"{c} := {c}" for c in dict.fromkeys([*picked.split(", "), first, "trust", "updated_at", "record_key"]))
    return f"""SELECT profile_id, arg_min(best, ({across})) AS best FROM (
                   SELECT profile_id, count(*) AS freq, arg_min(struct_pack({columns}), ({within})) AS best
                   FROM {rows} GROUP BY profile_id, {group})
               GROUP BY profile_id"""


def golden_fields_sql(records: str, membership: str, rules: Mapping[str, str], default: str = "trust") -> str:
    """SELECT producing ``golden_fields`` (profile_id, field, value, source, record_id,
    rule, updated_at) from a records table and a (record_key, profile_id) membership.
    Table names come from our own code, never from input."""
    columns = ", ".join(f"r.{c}" for c in dict.fromkeys(
        ["record_key", "source", "record_id", "trust", "updated_at", "first_name_std", *SINGLE_FIELDS, *ADDRESS_FIELDS]
    ))
    member_rows = f"""member_rows AS MATERIALIZED (
        SELECT m.profile_id, {columns} FROM {records} r JOIN {membership} m USING (record_key))"""
    parts: list[str] = []
    for field in SINGLE_FIELDS:
        rule = rule_for(field, rules, default)
        rows = f"""(SELECT profile_id, CAST({field} AS VARCHAR) AS value, source, record_id, record_key, trust, updated_at,
                           -{_QUALITY.get(field, "1")} AS quality
                    FROM member_rows WHERE {field} IS NOT NULL)"""
        parts.append(
            f"""SELECT profile_id, '{field}' AS field, best.value, best.source, best.record_id, '{rule}' AS rule, best.updated_at
                FROM ({_pick(rows, "value", "quality", rule, "value, source, record_id")})"""
        )
    address_rule = rule_for("street", rules, default)
    address_rows = f"""(SELECT *, -((postcode IS NOT NULL)::INT + (street IS NOT NULL)::INT + (house_number IS NOT NULL)::INT) AS completeness
                        FROM member_rows WHERE postcode IS NOT NULL OR street IS NOT NULL)"""
    picked = ", ".join([*ADDRESS_FIELDS, "source", "record_id"])
    chosen_address = f"""chosen_address AS MATERIALIZED (
        SELECT profile_id, best.* FROM ({_pick(address_rows, "postcode, house_number, street, city", "completeness", address_rule, picked)}))"""
    for field in ADDRESS_FIELDS:
        parts.append(
            f"""SELECT profile_id, '{field}', CAST({field} AS VARCHAR), source, record_id, '{address_rule}', updated_at
                FROM chosen_address WHERE {field} IS NOT NULL"""
        )
    return f"WITH {member_rows},\n{chosen_address}\n" + "\nUNION ALL\n".join(parts)


def profiles_sql(golden_fields: str, records: str, membership: str) -> str:
    """SELECT producing the wide ``profiles`` table: one row per profile with its golden
    fields (full_name derived from the golden name parts) and summary columns."""
    pivots = ",\n".join(
        f"max(value) FILTER (WHERE field = '{f}')" + ("::DATE" if f == "date_of_birth" else "") + f" AS {f}"
        for f in CANONICAL_FIELDS
        if f != "full_name"
    )
    return f"""
        WITH g AS (SELECT profile_id, {pivots} FROM {golden_fields} GROUP BY profile_id),
        s AS (SELECT m.profile_id, count(*) AS record_count, list(DISTINCT r.source ORDER BY r.source) AS sources,
                     max(r.updated_at) AS updated_at
              FROM {membership} m JOIN {records} r USING (record_key) GROUP BY m.profile_id)
        SELECT s.profile_id, g.* EXCLUDE (profile_id),
               nullif(concat_ws(' ', g.first_name, g.middle_name, g.last_name), '') AS full_name,
               s.record_count, s.sources, s.updated_at
        FROM s LEFT JOIN g USING (profile_id)
        ORDER BY s.profile_id"""

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

_ORDER: Final[dict[str, str]] = {
    "trust": "trust DESC, updated_at DESC NULLS LAST, freq DESC",
    "recent": "updated_at DESC NULLS LAST, trust DESC, freq DESC",
    "frequent": "freq DESC, trust DESC, updated_at DESC NULLS LAST",
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


def golden_fields_sql(records: str, membership: str, rules: Mapping[str, str], default: str = "trust") -> str:
    """SELECT producing ``golden_fields`` (profile_id, field, value, source, record_id,
    rule, updated_at) from a records table and a (record_key, profile_id) membership.
    Table names come from our own code, never from input."""
    parts: list[str] = []
    for field in SINGLE_FIELDS:
        rule = rule_for(field, rules, default)
        quality = _QUALITY.get(field, "1")
        parts.append(
            f"""SELECT profile_id, '{field}' AS field, value, source, record_id, '{rule}' AS rule, updated_at FROM (
                SELECT profile_id, value, source, record_id, updated_at,
                       row_number() OVER (PARTITION BY profile_id ORDER BY quality DESC, {_ORDER[rule]}, record_key) AS rank
                FROM (SELECT m.profile_id, CAST(r.{field} AS VARCHAR) AS value, r.source, r.record_id, r.record_key,
                             r.trust, r.updated_at, {quality} AS quality,
                             count(*) OVER (PARTITION BY m.profile_id, r.{field}) AS freq
                      FROM {records} r JOIN {membership} m USING (record_key) WHERE r.{field} IS NOT NULL)
            ) WHERE rank = 1"""
        )
    address_rule = rule_for("street", rules, default)
    chosen_address = f"""chosen_address AS MATERIALIZED (
        SELECT * FROM (
            SELECT x.*, row_number() OVER (
                PARTITION BY x.profile_id ORDER BY completeness DESC, {_ORDER[address_rule]}, x.record_key) AS rank
            FROM (SELECT m.profile_id, r.*,
                         (r.postcode IS NOT NULL)::INT + (r.street IS NOT NULL)::INT + (r.house_number IS NOT NULL)::INT AS completeness,
                         count(*) OVER (PARTITION BY m.profile_id, r.postcode, r.house_number, r.street, r.city) AS freq
                  FROM {records} r JOIN {membership} m USING (record_key)
                  WHERE r.postcode IS NOT NULL OR r.street IS NOT NULL) x
        ) WHERE rank = 1)"""
    for field in ADDRESS_FIELDS:
        parts.append(
            f"""SELECT profile_id, '{field}', CAST({field} AS VARCHAR), source, record_id, '{address_rule}', updated_at
                FROM chosen_address WHERE {field} IS NOT NULL"""
        )
    return f"WITH {chosen_address}\n" + "\nUNION ALL\n".join(parts)


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

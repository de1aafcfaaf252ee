"""Standardize: turn mapped raw values into clean display values and matching keys, for a
whole table (the batch, a live file). The rules of single fields are in
pipelines.standardize.fields and .dates, each with its Python twin (.rows).

Set-based DuckDB SQL for the row work; Python (names, phonenumbers, email-validator)
runs once per distinct value and is joined back. A value that cannot be read (an
impossible date, an invalid email) is nulled and recorded in ``field_issues``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from pipelines.batch.ingest import FIELD_MAX_CHARS, SPACE_CHARS, UNWANTED_CHARS
from pipelines.config import Config
from pipelines.standardize.contacts import (
    DUTCH_INTERNATIONAL_PATTERN,
    DUTCH_NATIONAL_PATTERN,
    PLAIN_EMAIL_SQL_PATTERN,
    standardize_email,
    standardize_phone,
)
from pipelines.standardize.dates import DateFormats, parse_dates_sql
from pipelines.standardize.fields import country_sql, dwelling_key_sql, gender_sql, postcode_sql, postcode_std_sql, street_sql, words_sql
from pipelines.standardize.names import parse_given_name, parse_surname, split_full_name
from profiles.model import CANONICAL_FIELDS
from profiles.store import Store, ident

#: Columns of ``records`` used for matching (the model's inputs), besides the display fields.
MATCH_COLUMNS = (
    "first_name_std",
    "first_initial",
    "last_name_std",
    "surname_tokens",
    "dob",
    "email_std",
    "phone_std",
    "postcode_std",
    "house_number_std",
    "street_std",
    "city_std",
    "address_line2_std",
    "region_std",
    "dwelling_key",
)


def standardize(store: Store, config: Config, date_formats: DateFormats | None = None) -> dict[str, dict[str, int]]:
    """Build ``records``, ``identifiers`` and ``field_issues`` from ``ingested``, and
    ``date_formats`` (the format read per source: configured, given, or detected; a live
    ingest passes the batch run's so that one record is read like the batch read it).
    Returns field issue counts per source and field."""
    store.execute("CREATE OR REPLACE TABLE field_issues (source VARCHAR, record_id VARCHAR, line BIGINT, field VARCHAR, reason VARCHAR)")
    _clean_values(store)
    _value_maps(store, config, date_formats or {})
    store.execute(_records_sql(), building="records")
    _contact_issues(store)
    store.execute(
        """CREATE OR REPLACE TABLE identifiers AS
           SELECT record_key, source, x.kind, x.value FROM (SELECT record_key, source, unnest(identifiers) AS x FROM records)""",
        building="identifiers",
    )
    for table in ("names_split", "given_map", "surname_map", "email_map", "phone_map", "phone_keys", "parsed_dates", "ingested"):
        store.execute(f"DROP TABLE IF EXISTS {table}")
    counts: dict[str, dict[str, int]] = {}
    for source, field, n in store.rows("SELECT source, field, count(*) FROM field_issues GROUP BY ALL ORDER BY ALL"):
        counts.setdefault(source, {})[field] = int(n)
    return counts


def _value_maps(store: Store, config: Config, date_formats: DateFormats) -> None:
    """The tables ``records`` joins: names, emails, phones and dates, each read once per
    distinct value (names, emails and phones in Python)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unify-names") as pool:
        # the names are parsed in Python on a thread of their own while the SQL below runs
        # (DuckDB lets go of the GIL while it works)
        names = pool.submit(_parse_names, *_distinct_names(store))
        _email_map(store)
        _phone_keys(store, config.matching.default_country)
        default_region = config.matching.default_country
        _map_distinct(
            store,
            "phone_map",
            "SELECT DISTINCT digits, region FROM phone_keys WHERE fast IS NULL",
            lambda digits, region: standardize_phone(digits, region or default_region),
            ("value", "problem"),
        )
        parse_dates_sql(store, config, date_formats)
        _name_maps(store, names.result())


def _records_sql() -> str:
    """``records`` from ``ingested`` and the value maps."""
    street_std, house_number_std = street_sql("i.street", "i.house_number")
    postcode_std = postcode_std_sql("i.postcode")
    return f"""CREATE OR REPLACE TABLE records AS
        SELECT
            i.source || ':' || i.record_id AS record_key, i.source, i.record_id, i.line, i.trust,
            i.raw::JSON AS raw, d.updated_at,
            g.display AS first_name, n.middle_raw AS middle_name, s.display AS last_name,
            coalesce(i.full_name, concat_ws(' ', g.display, n.middle_raw, s.display)) AS full_name,
            {gender_sql("i.gender")} AS gender,
            d.dob AS date_of_birth,
            e.value AS email,
            coalesce(pk.fast, p.value) AS phone,
            i.street, i.house_number, i.address_line2,
            {postcode_sql("i.postcode")} AS postcode,
            i.city, i.region, {country_sql("i.country")} AS country,
            -- matching keys
            g.folded AS first_name_std, g.initial AS first_initial,
            s.core AS last_name_std, s.tokens AS surname_tokens,
            d.dob,
            e.value AS email_std, coalesce(pk.fast, p.value) AS phone_std,
            {postcode_std} AS postcode_std,
            {house_number_std} AS house_number_std, {street_std} AS street_std,
            {words_sql("i.city")} AS city_std,
            {words_sql("i.address_line2")} AS address_line2_std,
            {words_sql("i.region")} AS region_std,
            {dwelling_key_sql(postcode_std, house_number_std)} AS dwelling_key,
            -- the full name as one key: live ingest looks up the name rules by it (a
            -- surname alone matches a tenth of the records: "vries" 121,529 of 2.2M)
            g.folded || '|' || s.core AS name_key,
            -- the record's identifiers as served with it (kind, value), sorted; NULL for none
            nullif(list_sort(list_filter(
                [{{'kind': 'email', 'value': e.value}}, {{'kind': 'phone', 'value': coalesce(pk.fast, p.value)}}]
                    || i.source_identifiers::STRUCT(kind VARCHAR, value VARCHAR)[],
                x -> x.value IS NOT NULL)), []) AS identifiers
        FROM ingested i
        JOIN names_split n USING (source, record_id)
        JOIN parsed_dates d USING (source, record_id)
        LEFT JOIN given_map g ON g.key = n.first_raw
        LEFT JOIN surname_map s ON s.key = n.last_raw
        LEFT JOIN email_map e ON e.key = i.email
        LEFT JOIN phone_keys pk USING (source, record_id)
        LEFT JOIN phone_map p ON p.digits = pk.digits AND p.region IS NOT DISTINCT FROM pk.region"""


def _contact_issues(store: Store) -> None:
    """The emails and phones that could not be read, into ``field_issues``."""
    store.execute(
        """INSERT INTO field_issues
           SELECT i.source, i.record_id, i.line, 'email', m.problem || ' (value ' || i.email || ')'
           FROM ingested i JOIN email_map m ON m.key = i.email WHERE m.problem IS NOT NULL"""
    )
    store.execute(
        """INSERT INTO field_issues
           SELECT i.source, i.record_id, i.line, 'phone', m.problem || ' (value ' || i.phone || ')'
           FROM ingested i JOIN phone_keys k USING (source, record_id)
           JOIN phone_map m ON m.digits = k.digits AND m.region IS NOT DISTINCT FROM k.region
           WHERE m.problem IS NOT NULL"""
    )


def _clean_values(store: Store) -> None:
    """Remove control and invisible characters (ingest.UNWANTED_CHARS; tabs and line
    breaks become spaces) from every mapped value of ``ingested``, and leave out values
    longer than ingest.FIELD_MAX_CHARS; each is a field issue. The rows that need it are
    found in one scan (at 1M clean records, a fraction of a second) and fixed by rowid."""
    store.execute(
        f"""CREATE OR REPLACE TEMP MACRO _unclean(v) AS
                regexp_matches(v, '{UNWANTED_CHARS}') OR regexp_matches(v, '{SPACE_CHARS}') OR length(v) > {FIELD_MAX_CHARS}"""
    )
    store.execute(
        f"""CREATE OR REPLACE TEMP MACRO _cleaned(v) AS
                nullif(trim(regexp_replace(regexp_replace(v, '{UNWANTED_CHARS}', '', 'g'), '{SPACE_CHARS}', ' ', 'g')), '')"""
    )
    store.execute(
        f"""CREATE OR REPLACE TEMP MACRO _clean(v) AS
                CASE WHEN NOT _unclean(v) THEN v WHEN length(_cleaned(v)) > {FIELD_MAX_CHARS} THEN NULL ELSE _cleaned(v) END"""
    )
    values = [*CANONICAL_FIELDS, "updated_at_raw"]
    identifier_values = "list_transform(source_identifiers, x -> x.value)"
    unclean = " OR ".join(
        [*(f"_unclean({ident(f)})" for f in values), f"list_bool_or(list_transform({identifier_values}, v -> _unclean(v)))"]
    )
    store.execute(f"CREATE OR REPLACE TEMP TABLE _unclean_rows AS SELECT rowid AS row_id, * FROM ingested WHERE {unclean}")
    if store.scalar("SELECT count(*) FROM _unclean_rows"):
        reason = (
            f"CASE WHEN length(_cleaned(v)) > {FIELD_MAX_CHARS} THEN 'longer than {FIELD_MAX_CHARS} characters: left out' "
            "ELSE 'control or invisible characters removed' END"
        )
        for f in values:
            name = "updated_at" if f == "updated_at_raw" else f
            store.execute(
                f"""INSERT INTO field_issues SELECT source, record_id, line, ?, {reason.replace("(v)", f"({ident(f)})")}
                    FROM _unclean_rows WHERE _unclean({ident(f)})""",
                [name],
            )
        store.execute(
            f"""INSERT INTO field_issues SELECT source, record_id, line, 'identifier ' || x.kind, {reason.replace("(v)", "(x.value)")}
                FROM (SELECT source, record_id, line, unnest(source_identifiers) AS x FROM _unclean_rows) WHERE _unclean(x.value)"""
        )
        sets = ", ".join(f"{ident(f)} = _clean({ident(f)})" for f in values)
        store.execute(
            f"""UPDATE ingested SET {sets},
                    source_identifiers = list_transform(source_identifiers, x -> {{'kind': x.kind, 'value': _clean(x.value)}})
                WHERE rowid IN (SELECT row_id FROM _unclean_rows)"""
        )
    store.execute("DROP TABLE _unclean_rows")


def _phone_keys(store: Store, default_country: str) -> None:
    """``phone_keys``: each record's phone as digits plus the region to read it in, and
    its E.164 form straight away when it has the unambiguous shape of a Dutch number
    (+31/0031/0 and nine digits, ``contacts.DUTCH_*_PATTERN``: what phonenumbers returns
    for it too, and what ``standardize_phone`` writes without it). Only the
    other shapes go to phonenumbers, once per distinct value."""
    store.execute(
        f"""CREATE OR REPLACE TEMP TABLE phone_keys AS
            SELECT source, record_id, digits, region,
                   CASE WHEN regexp_full_match(digits, '{DUTCH_INTERNATIONAL_PATTERN}') THEN '+31' || right(digits, 9)
                        WHEN coalesce(region, ?) = 'NL' AND regexp_full_match(digits, '{DUTCH_NATIONAL_PATTERN}')
                        THEN '+31' || right(digits, 9) END AS fast
            FROM (SELECT source, record_id, regexp_replace(phone, '[^0-9+]', '', 'g') AS digits,
                         {country_sql("country")} AS region
                  FROM ingested WHERE phone IS NOT NULL)""",
        [default_country],
        building="phone_keys",
    )


def _email_map(store: Store) -> None:
    """``email_map``: plain addresses (the vast majority) lowered in SQL, every other
    distinct value through ``standardize_email`` (the validator decides)."""
    pattern = PLAIN_EMAIL_SQL_PATTERN.replace("'", "''")  # our constant, written as a literal so it compiles once
    plain = f"regexp_full_match(trim(email), '{pattern}') AND NOT contains(email, '..')"
    _map_distinct(
        store,
        "email_map",
        f"SELECT DISTINCT email FROM ingested WHERE email IS NOT NULL AND NOT ({plain})",
        standardize_email,
        ("value", "problem"),
    )
    store.execute(
        f"""INSERT INTO email_map SELECT email, lower(trim(email)), NULL
            FROM (SELECT DISTINCT email FROM ingested WHERE email IS NOT NULL AND {plain})"""
    )


_NameMap = tuple[list[str], list[tuple[Any, ...]]]  # distinct values, what each gives


def _distinct_names(store: Store) -> tuple[list[str], list[str], list[str]]:
    """The distinct full names to split (of records lacking a first or last name), given
    names and surnames of the source columns."""

    def distinct(sql: str) -> list[str]:
        return [str(v) for (v,) in store.rows(sql)]

    return (
        distinct("SELECT DISTINCT full_name FROM ingested WHERE full_name IS NOT NULL AND (first_name IS NULL OR last_name IS NULL)"),
        distinct("SELECT DISTINCT first_name FROM ingested WHERE first_name IS NOT NULL"),
        distinct("SELECT DISTINCT last_name FROM ingested WHERE last_name IS NOT NULL"),
    )


def _parse_names(full_names: list[str], given_names: list[str], surnames: list[str]) -> dict[str, _NameMap]:
    """Pure Python (no store): full names split into first/middle/last, and every given
    name and surname parsed: those of the name columns and those the splits give (a
    superset of the values ``names_split`` holds; the maps are joined by value)."""
    split = [tuple(getattr(split_full_name(v), f) for f in ("first", "middle", "last")) for v in full_names]
    given = sorted(set(given_names) | {str(s[0]) for s in split if s[0] is not None})
    last = sorted(set(surnames) | {str(s[2]) for s in split if s[2] is not None})
    return {
        "fullname_map": (full_names, split),
        "given_map": (given, [_given(v) for v in given]),
        "surname_map": (last, [_surname(v) for v in last]),
    }


def _name_maps(store: Store, maps: dict[str, _NameMap]) -> None:
    """``names_split`` (records that only have a full name get first/middle/last from
    it), ``given_map`` and ``surname_map``, from :func:`_parse_names`."""
    _map_table(store, "fullname_map", {"key": maps["fullname_map"][0]}, maps["fullname_map"][1], ("first", "middle", "last"))
    store.execute(
        """CREATE OR REPLACE TEMP TABLE names_split AS
           SELECT i.source, i.record_id,
                  coalesce(i.first_name, f.first) AS first_raw,
                  coalesce(i.middle_name, f.middle) AS middle_raw,
                  coalesce(i.last_name, f.last) AS last_raw
           FROM ingested i LEFT JOIN fullname_map f
                ON f.key = CASE WHEN i.first_name IS NULL OR i.last_name IS NULL THEN i.full_name END"""
    )
    store.execute("DROP TABLE fullname_map")
    _map_table(store, "given_map", {"key": maps["given_map"][0]}, maps["given_map"][1], ("display", "folded", "initial"))
    _map_table(
        store,
        "surname_map",
        {"key": maps["surname_map"][0]},
        maps["surname_map"][1],
        ("display", "core", "tokens"),
        {"tokens": pa.list_(pa.string())},
    )


def _given(value: str) -> tuple[Any, ...]:
    parsed = parse_given_name(value)
    return (parsed.display, parsed.folded, parsed.initial) if parsed else (None, None, None)


def _surname(value: str) -> tuple[Any, ...]:
    parsed = parse_surname(value)
    return (parsed.display, parsed.core, list(parsed.tokens)) if parsed else (None, None, None)


def _map_distinct(
    store: Store,
    table: str,
    distinct_sql: str,
    fn: Callable[..., Iterable[Any]],
    outputs: tuple[str, ...],
    types: dict[str, pa.DataType] | None = None,
) -> None:
    """Apply ``fn`` once per distinct input row and keep the results as a table keyed by
    the inputs (a single input is named ``key``)."""
    arrow = store.arrow(distinct_sql)
    names = arrow.column_names
    inputs = [arrow.column(n).to_pylist() for n in names]
    results = [tuple(fn(*args)) for args in zip(*inputs)]
    key_names = ["key"] if len(names) == 1 else names
    _map_table(store, table, {k: arrow.column(n) for k, n in zip(key_names, names)}, results, outputs, types)


def _map_table(
    store: Store,
    table: str,
    keys: dict[str, Any],
    results: list[tuple[Any, ...]],
    outputs: tuple[str, ...],
    types: dict[str, pa.DataType] | None = None,
) -> None:
    """A temp table of the ``keys`` columns (the inputs) and the ``outputs`` of each result."""
    columns: dict[str, Any] = {k: v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v, pa.string()) for k, v in keys.items()}
    for index, name in enumerate(outputs):
        data = [r[index] for r in results]
        columns[name] = pa.array(data, type=(types or {}).get(name, pa.string()))
    staged = f"_{table}_arrow"
    store.register(staged, pa.table(columns))
    store.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {staged}")
    store.unregister(staged)

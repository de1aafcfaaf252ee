"""Standardize: turn mapped raw values into clean display values and matching keys.

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
from pipelines.standardize.names import parse_given_name, parse_surname, split_full_name
from profiles.model import CANONICAL_FIELDS
from profiles.store import Store, ident

DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%y", "%m-%d-%Y")
TIMESTAMP_FORMATS = ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%Y%m%d%H%M%S", *DATE_FORMATS)
COUNTRIES = {
    "nederland": "NL",
    "netherlands": "NL",
    "the netherlands": "NL",
    "holland": "NL",
    "belgie": "BE",
    "belgië": "BE",
    "belgium": "BE",
    "belgique": "BE",
    "deutschland": "DE",
    "germany": "DE",
    "duitsland": "DE",
    "france": "FR",
    "frankrijk": "FR",
    "united kingdom": "GB",
    "uk": "GB",
    "engeland": "GB",
    "luxembourg": "LU",
    "luxemburg": "LU",
}

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


def _words_sql(column: str) -> str:
    """A free-text value as matching words: lower case, no accents, runs of anything but
    a-z and 0-9 as one space (standardize_rows._words is the same rule in Python)."""
    return f"nullif(trim(regexp_replace(lower(strip_accents({column})), '[^a-z0-9]+', ' ', 'g')), '')"


#: A house number written inside the street line: "12 oak street", "12a oak street",
#: "kerkstraat 12", "kerkstraat 12a". A leading number with an "e" is a Dutch ordinal
#: ("2e helmersstraat"), not a house number. standardize_rows.street_parts is the same
#: rule in Python.
STREET_NUMBER_LEADING = "^([0-9]+[a-df-z]?) "
STREET_NUMBER_TRAILING = " ([0-9]+[a-z]?)$"


def street_sql(street: str, house_number: str) -> tuple[str, str]:
    """(``street_std``, ``house_number_std``) of raw street and house number columns: the
    house number parsed out of the street line when the record has none or the same one,
    and taken out of the street's matching form then."""
    words = _words_sql(street)
    number = f"nullif(lower(regexp_replace({house_number}, '[^0-9A-Za-z]', '', 'g')), '')"
    inside = (
        f"coalesce(nullif(regexp_extract({words}, '{STREET_NUMBER_LEADING}', 1), ''),"
        f" nullif(regexp_extract({words}, '{STREET_NUMBER_TRAILING}', 1), ''))"
    )
    stripped = f"nullif(trim(regexp_replace(regexp_replace({words}, '{STREET_NUMBER_LEADING}', ''), '{STREET_NUMBER_TRAILING}', '')), '')"
    street_std = f"CASE WHEN {inside} IS NOT NULL AND coalesce({number} = {inside}, true) THEN {stripped} ELSE {words} END"
    return street_std, f"coalesce({number}, {inside})"


#: Postcodes whose shape places a street, not a town: Dutch (1234AB, about 20 addresses)
#: and British unit postcodes (SW1A1AA, about 15). With the house number such a postcode
#: is one dwelling, whatever the city says; a 4- or 5-digit postcode (Australia, Germany,
#: the US) is a town or a district. standardize_rows.dwelling_key is the same rule.
STREET_POSTCODE = "[0-9]{4}[A-Z]{2}|[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}"


def dwelling_key_sql(postcode_std: str, house_number_std: str) -> str:
    """``dwelling_key``: postcode and house number, where the postcode places a street
    (:data:`STREET_POSTCODE`); NULL elsewhere."""
    return (
        f"CASE WHEN regexp_full_match({postcode_std}, '{STREET_POSTCODE}') AND {house_number_std} IS NOT NULL"
        f" THEN {postcode_std} || ' ' || {house_number_std} END"
    )


DateFormats = dict[str, dict[str, str | None]]  # source -> {"date_of_birth": fmt, "updated_at": fmt}


def standardize(store: Store, config: Config, date_formats: DateFormats | None = None) -> dict[str, dict[str, int]]:
    """Build ``records``, ``identifiers`` and ``field_issues`` from ``ingested``, and
    ``date_formats`` (the format read per source: configured, given, or detected; a live
    ingest passes the batch run's so that one record is read like the batch read it).
    Returns field issue counts per source and field."""
    store.execute("CREATE OR REPLACE TABLE field_issues (source VARCHAR, record_id VARCHAR, line BIGINT, field VARCHAR, reason VARCHAR)")
    _clean_values(store)
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
        _parse_dates(store, config, date_formats or {})
        _name_maps(store, names.result())
    street_std, house_number_std = street_sql("i.street", "i.house_number")
    postcode_std = "nullif(upper(regexp_replace(i.postcode, '[^0-9A-Za-z]', '', 'g')), '')"
    store.execute(
        f"""CREATE OR REPLACE TABLE records AS
        SELECT
            i.source || ':' || i.record_id AS record_key, i.source, i.record_id, i.line, i.trust,
            i.raw::JSON AS raw, d.updated_at,
            g.display AS first_name, n.middle_raw AS middle_name, s.display AS last_name,
            coalesce(i.full_name, concat_ws(' ', g.display, n.middle_raw, s.display)) AS full_name,
            CASE WHEN lower(i.gender) IN ('m', 'man', 'male', 'mr', 'dhr') THEN 'M'
                 WHEN lower(i.gender) IN ('f', 'v', 'vrouw', 'female', 'woman', 'mrs', 'ms', 'mevr') THEN 'F' END AS gender,
            d.dob AS date_of_birth,
            e.value AS email,
            coalesce(pk.fast, p.value) AS phone,
            i.street, i.house_number, i.address_line2,
            CASE WHEN regexp_full_match(upper(replace(i.postcode, ' ', '')), '[0-9]{{4}}[A-Z]{{2}}')
                 THEN substr(upper(replace(i.postcode, ' ', '')), 1, 4) || ' ' || substr(upper(replace(i.postcode, ' ', '')), 5, 2)
                 ELSE upper(trim(i.postcode)) END AS postcode,
            i.city, i.region, {_country_sql("i.country")} AS country,
            -- matching keys
            g.folded AS first_name_std, g.initial AS first_initial,
            s.core AS last_name_std, s.tokens AS surname_tokens,
            d.dob,
            e.value AS email_std, coalesce(pk.fast, p.value) AS phone_std,
            {postcode_std} AS postcode_std,
            {house_number_std} AS house_number_std, {street_std} AS street_std,
            {_words_sql("i.city")} AS city_std,
            {_words_sql("i.address_line2")} AS address_line2_std,
            {_words_sql("i.region")} AS region_std,
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
        LEFT JOIN phone_map p ON p.digits = pk.digits AND p.region IS NOT DISTINCT FROM pk.region""",
        building="records",
    )
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
                         {_country_sql("country")} AS region
                  FROM ingested WHERE phone IS NOT NULL)""",
        [default_country],
        building="phone_keys",
    )


def _country_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{name}' THEN '{code}'" for name, code in COUNTRIES.items())
    return f"(CASE WHEN length(trim({column})) = 2 THEN upper(trim({column})) ELSE (CASE lower(trim({column})) {cases} END) END)"


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


def _parse_dates(store: Store, config: Config, given: DateFormats) -> None:
    """``parsed_dates``: birth date and update time per record, in each source's format
    (configured, given, or the format that reads most of the source's values)."""
    selects: list[str] = []
    params: list[Any] = []
    used: list[tuple[str, str | None, str | None]] = []
    for source in config.sources:
        known = given.get(source.name)
        dob_format = source.date_format or (
            known["date_of_birth"] if known else _detect_format(store, source.name, "date_of_birth", DATE_FORMATS)
        )
        ts_format = source.updated_at_format or (
            known["updated_at"] if known else _detect_format(store, source.name, "updated_at_raw", TIMESTAMP_FORMATS, iso_first=True)
        )
        used.append((source.name, dob_format, ts_format))
        ts_sql = (
            "coalesce(try_cast(updated_at_raw AS TIMESTAMP), try_strptime(updated_at_raw, ?))"
            if ts_format
            else "try_cast(updated_at_raw AS TIMESTAMP)"
        )
        selects.append(
            f"""SELECT source, record_id, line, date_of_birth AS dob_raw, updated_at_raw,
                       try_strptime(date_of_birth, ?)::DATE AS dob_parsed, {ts_sql} AS updated_at, ? AS dob_format
                FROM ingested WHERE source = ?"""
        )
        params.extend([dob_format or "%Y-%m-%d", *([ts_format] if ts_format else []), dob_format or "%Y-%m-%d", source.name])
    store.execute(f"""CREATE OR REPLACE TEMP TABLE dates_raw AS {" UNION ALL ".join(selects)}""", params, building="dates_raw")
    store.execute(
        """CREATE OR REPLACE TEMP TABLE parsed_dates AS
           SELECT source, record_id, updated_at,
                  CASE WHEN dob_parsed BETWEEN DATE '1900-01-01' AND current_date THEN dob_parsed END AS dob
           FROM dates_raw"""
    )
    store.execute(
        """INSERT INTO field_issues
           SELECT source, record_id, line, 'date_of_birth',
                  CASE WHEN dob_parsed IS NULL THEN 'not a valid date in format ' || dob_format
                       ELSE 'date out of range (before 1900 or in the future)' END || ' (value ' || dob_raw || ')'
           FROM dates_raw
           WHERE dob_raw IS NOT NULL AND (dob_parsed IS NULL OR dob_parsed NOT BETWEEN DATE '1900-01-01' AND current_date)
           UNION ALL
           SELECT source, record_id, line, 'updated_at', 'not a valid timestamp (value ' || updated_at_raw || ')'
           FROM dates_raw WHERE updated_at_raw IS NOT NULL AND updated_at IS NULL"""
    )
    store.execute("DROP TABLE dates_raw")
    store.execute("CREATE OR REPLACE TABLE date_formats (source VARCHAR, date_of_birth VARCHAR, updated_at VARCHAR)")
    store.execute(
        "INSERT INTO date_formats SELECT * FROM (VALUES " + ", ".join("(?, ?, ?)" for _ in used) + ")", [v for row in used for v in row]
    )


def _detect_format(store: Store, source: str, column: str, formats: tuple[str, ...], iso_first: bool = False) -> str | None:
    sample = f"(SELECT {column} AS v FROM ingested WHERE source = ? AND {column} IS NOT NULL LIMIT 20000)"
    if iso_first:
        total, iso = store.rows(f"SELECT count(*), count(try_cast(v AS TIMESTAMP)) FROM {sample}", [source])[0]
        if total == 0 or iso >= 0.5 * total:
            return None
    best, best_count = None, 0
    for fmt in formats:
        n = int(store.scalar(f"SELECT count(try_strptime(v, ?)) FROM {sample}", [fmt, source]))
        if n > best_count:
            best, best_count = fmt, n
    return best

"""The batch's mapping and standardization (pipelines.batch.ingest, pipelines.standardize.batch) of
records handed over one at a time, computed in Python.

A live record that went through the batch's SQL took ~30 statements in a workspace,
~40 ms at 1M records: a third of a single-record ingest. Here it takes a fraction of a
millisecond, with the same Python functions for names, emails and phones and the SQL's
own rules for everything else. Where the two could differ (a value whose parsing or
casing this module does not reproduce exactly: non-ASCII addresses, floats in the JSON,
dates in a shape the format's strict pattern does not take, a missing record id), it
says so by returning None and the rows go through the SQL as before.
tests/pipelines/standardize/test_standardize_rows.py checks that every demo record comes out of both
exactly alike, and that the fallback is the exception."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipelines.batch.ingest import FIELD_MAX_CHARS, NUMBER_ROLES, UNCLEAN_TEXT
from pipelines.config import Config, Constant, SourceConfig
from pipelines.standardize.contacts import PLAIN_EMAIL_SQL_PATTERN, standardize_email, standardize_phone
from pipelines.standardize.dates import FIRST_DOB, DateFormats, Format, iso, parse, strict
from pipelines.standardize.fields import SqlOnly, country, dwelling_key, gender, postcode, postcode_std, street_parts, words
from pipelines.standardize.names import parse_given_name, parse_surname, split_full_name
from profiles.model import CANONICAL_FIELDS

#: ``records`` as pipelines.standardize.batch builds it: column and DuckDB type, in order.
RECORD_TYPES: tuple[tuple[str, str], ...] = (
    ("record_key", "VARCHAR"),
    ("source", "VARCHAR"),
    ("record_id", "VARCHAR"),
    ("line", "BIGINT"),
    ("trust", "INTEGER"),
    ("raw", "JSON"),
    ("updated_at", "TIMESTAMP"),
    ("first_name", "VARCHAR"),
    ("middle_name", "VARCHAR"),
    ("last_name", "VARCHAR"),
    ("full_name", "VARCHAR"),
    ("gender", "VARCHAR"),
    ("date_of_birth", "DATE"),
    ("email", "VARCHAR"),
    ("phone", "VARCHAR"),
    ("street", "VARCHAR"),
    ("house_number", "VARCHAR"),
    ("address_line2", "VARCHAR"),
    ("postcode", "VARCHAR"),
    ("city", "VARCHAR"),
    ("region", "VARCHAR"),
    ("country", "VARCHAR"),
    ("first_name_std", "VARCHAR"),
    ("first_initial", "VARCHAR"),
    ("last_name_std", "VARCHAR"),
    ("surname_tokens", "VARCHAR[]"),
    ("dob", "DATE"),
    ("email_std", "VARCHAR"),
    ("phone_std", "VARCHAR"),
    ("postcode_std", "VARCHAR"),
    ("house_number_std", "VARCHAR"),
    ("street_std", "VARCHAR"),
    ("city_std", "VARCHAR"),
    ("address_line2_std", "VARCHAR"),
    ("region_std", "VARCHAR"),
    ("dwelling_key", "VARCHAR"),
    ("name_key", "VARCHAR"),
    ("identifiers", "STRUCT(kind VARCHAR, value VARCHAR)[]"),
)
_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "JSON": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
    "VARCHAR[]": pa.list_(pa.string()),
    "STRUCT(kind VARCHAR, value VARCHAR)[]": pa.list_(pa.struct([("kind", pa.string()), ("value", pa.string())])),
}
RECORDS_SCHEMA = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in RECORD_TYPES])
IDENTIFIERS_SCHEMA = pa.schema([("record_key", pa.string()), ("source", pa.string()), ("kind", pa.string()), ("value", pa.string())])
ISSUES_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("record_id", pa.string()),
        ("line", pa.int64()),
        ("field", pa.string()),
        ("reason", pa.string()),
    ]
)

_PLAIN_EMAIL = re.compile(PLAIN_EMAIL_SQL_PATTERN)
_NOT_PHONE = re.compile(r"[^0-9+]")
_EXACT_INT = 2**53  # a JSON integer DuckDB surely renders as Python does


@dataclass(frozen=True)
class StandardizedRows:
    """``records``, ``identifiers`` and ``field_issues`` as the batch's SQL builds them."""

    records: pa.Table
    identifiers: pa.Table
    issues: pa.Table


def standardize_rows(
    source: SourceConfig, rows: Sequence[Mapping[str, Any]], formats: DateFormats, config: Config
) -> StandardizedRows | None:
    """``rows`` (JSON objects keyed by the source's column names) mapped and standardized
    as a batch run reads them; None when one of them needs the SQL for that."""
    known = formats.get(source.name)
    if known is None and not (source.date_format and source.updated_at_format):
        return None  # the SQL would detect the formats from these rows
    dob_format = source.date_format or (known["date_of_birth"] if known else None) or "%Y-%m-%d"
    ts_format = source.updated_at_format or (known["updated_at"] if known else None)
    try:
        dob_pattern = strict(dob_format)
        ts_pattern = strict(ts_format) if ts_format else None
        if ts_format and ts_format[:2] not in ("%d", "%m"):
            return None  # a format an ISO cast might also read (the SQL tries the cast first)
        records: list[dict[str, Any]] = []
        issues: list[dict[str, Any]] = []
        seen: set[str] = set()
        today = date.today()
        for line, row in enumerate(rows, start=1):
            record = _standardize(source, row, line, dob_format, dob_pattern, ts_pattern, issues, config, today)
            if record["record_id"] is None or record["record_id"] in seen:
                return None  # quarantined: the SQL words and counts that
            seen.add(record["record_id"])
            records.append(record)
    except SqlOnly:
        return None
    identifiers = [
        {"record_key": r["record_key"], "source": r["source"], "kind": x["kind"], "value": x["value"]}
        for r in records
        for x in r["identifiers"] or []
    ]
    return StandardizedRows(
        records=pa.Table.from_pylist(records, schema=RECORDS_SCHEMA),
        identifiers=pa.Table.from_pylist(identifiers, schema=IDENTIFIERS_SCHEMA),
        issues=pa.Table.from_pylist(issues, schema=ISSUES_SCHEMA),
    )


def _standardize(
    source: SourceConfig,
    row: Mapping[str, Any],
    line: int,
    dob_format: str,
    dob_pattern: Format,
    ts_pattern: Format | None,
    issues: list[dict[str, Any]],
    config: Config,
    today: date,
) -> dict[str, Any]:
    mapped: dict[str, str | None] = {}
    for name in CANONICAL_FIELDS:
        mapping = source.fields.get(name)  # type: ignore[call-overload]
        mapped[name] = mapping.value if isinstance(mapping, Constant) else _text(row, mapping, name in NUMBER_ROLES) if mapping else None
    record_id = _text(row, source.id, True)

    def issue(field: str, reason: str) -> None:
        issues.append({"source": source.name, "record_id": record_id, "line": line, "field": field, "reason": reason})

    record = _names(mapped)
    dob, updated_at = _dates(
        mapped, _text(row, source.updated_at, True) if source.updated_at else None, dob_format, dob_pattern, ts_pattern, issue, today
    )
    email, phone, country_code = _contacts(mapped, config, issue)
    identifiers = [{"kind": "email", "value": email}, {"kind": "phone", "value": phone}]
    identifiers += [{"kind": kind, "value": _text(row, column, True)} for kind, column in source.identifiers.items()]
    identifiers = sorted((x for x in identifiers if x["value"] is not None), key=lambda x: (x["kind"], x["value"]))
    key = f"{source.name}:{record_id}"
    record.update({"record_key": key, "source": source.name, "record_id": record_id, "line": line, "trust": source.trust})
    record.update({"raw": json.dumps(dict(row), default=str), "updated_at": updated_at, "date_of_birth": dob, "dob": dob})
    record.update({"email": email, "phone": phone, "email_std": email, "phone_std": phone, "country": country_code})
    record.update({"gender": gender(mapped["gender"]), "identifiers": identifiers or None, **_address(mapped)})
    return {name: record[name] for name, _ in RECORD_TYPES}


def _names(mapped: Mapping[str, str | None]) -> dict[str, Any]:
    """The name columns: the full name split only where first or last is missing (the SQL's names_split)."""
    first_raw, middle_raw, last_raw = mapped["first_name"], mapped["middle_name"], mapped["last_name"]
    if mapped["full_name"] is not None and (first_raw is None or last_raw is None):
        split = split_full_name(mapped["full_name"])
        first_raw = first_raw if first_raw is not None else split.first
        middle_raw = middle_raw if middle_raw is not None else split.middle
        last_raw = last_raw if last_raw is not None else split.last
    given = parse_given_name(first_raw) if first_raw is not None else None
    surname = parse_surname(last_raw) if last_raw is not None else None
    first_display, folded, initial = (given.display, given.folded, given.initial) if given else (None, None, None)
    last_display, core, tokens = (surname.display, surname.core, list(surname.tokens)) if surname else (None, None, None)
    full_name = mapped["full_name"]
    return {
        "first_name": first_display,
        "middle_name": middle_raw,
        "last_name": last_display,
        "full_name": full_name
        if full_name is not None
        else " ".join(p for p in (first_display, middle_raw, last_display) if p is not None),
        "first_name_std": folded,
        "first_initial": initial,
        "last_name_std": core,
        "surname_tokens": tokens,
        "name_key": f"{folded}|{core}" if folded is not None and core is not None else None,
    }


def _dates(
    mapped: Mapping[str, str | None],
    updated_raw: str | None,
    dob_format: str,
    dob_pattern: Format,
    ts_pattern: Format | None,
    issue: Callable[[str, str], None],
    today: date,
) -> tuple[date | None, datetime | None]:
    """The birth date and the update time (the SQL's parse_dates_sql), with their issues."""
    dob_raw = mapped["date_of_birth"]
    dob = parse(dob_raw, dob_pattern) if dob_raw is not None else None
    if dob is not None and dob.date() >= today - timedelta(days=1):
        raise SqlOnly  # the SQL's current_date decides (its time zone)
    dob_ok = dob.date() if dob is not None and dob.date() >= FIRST_DOB else None
    if dob_raw is not None and dob_ok is None:
        reason = f"not a valid date in format {dob_format}" if dob is None else "date out of range (before 1900 or in the future)"
        issue("date_of_birth", f"{reason} (value {dob_raw})")
    updated_at = None
    if updated_raw is not None:
        updated_at = iso(updated_raw)
        if updated_at is None and ts_pattern is not None:
            updated_at = parse(updated_raw, ts_pattern)
            if updated_at is None:
                raise SqlOnly  # impossible in the format's shape: DuckDB's strptime decides
        if updated_at is None:
            issue("updated_at", f"not a valid timestamp (value {updated_raw})")
    return dob_ok, updated_at


def _contacts(
    mapped: Mapping[str, str | None], config: Config, issue: Callable[[str, str], None]
) -> tuple[str | None, str | None, str | None]:
    """(email, phone, country): the SQL's email_map, phone_keys and phone_map, with their issues."""
    email, email_problem = None, None
    if mapped["email"] is not None:
        raw_email = mapped["email"]
        if _PLAIN_EMAIL.fullmatch(raw_email.strip(" ")) and ".." not in raw_email:
            email = raw_email.strip(" ").lower()
        else:
            email, email_problem = standardize_email(raw_email)
    country_code = country(mapped["country"])
    region = country_code or config.matching.default_country  # the region a national number is read in
    phone, phone_problem = None, None
    if mapped["phone"] is not None:
        phone, phone_problem = standardize_phone(_NOT_PHONE.sub("", mapped["phone"]), region)
    if email_problem is not None:
        issue("email", f"{email_problem} (value {mapped['email']})")
    if phone_problem is not None:
        issue("phone", f"{phone_problem} (value {mapped['phone']})")
    return email, phone, country_code


def _address(mapped: Mapping[str, str | None]) -> dict[str, Any]:
    """The address columns, display and matching keys (pipelines.standardize.fields)."""
    street_std, house_number_std = street_parts(mapped["street"], mapped["house_number"])
    postcode_key = postcode_std(mapped["postcode"])
    return {
        "street": mapped["street"],
        "house_number": mapped["house_number"],
        "address_line2": mapped["address_line2"],
        "postcode": postcode(mapped["postcode"]),
        "city": mapped["city"],
        "region": mapped["region"],
        "postcode_std": postcode_key,
        "house_number_std": house_number_std,
        "street_std": street_std,
        "city_std": words(mapped["city"]),
        "address_line2_std": words(mapped["address_line2"]),
        "region_std": words(mapped["region"]),
        "dwelling_key": dwelling_key(postcode_key, house_number_std),
    }


def _text(row: Mapping[str, Any], column: str, number: bool = False) -> str | None:
    """``nullif(trim(json_extract_string(_raw, '$."column"')), '')`` of the row's JSON.
    What the SQL quarantines (a value of the wrong JSON type; ``number``: a number may
    stand for the text) or cleans (unwanted characters, over-long values) goes to the SQL."""
    value = row.get(column)
    if value is None:
        return None
    if type(value) is int and number and -_EXACT_INT < value < _EXACT_INT:
        text = str(value)
    elif type(value) is str and len(value) <= FIELD_MAX_CHARS and not UNCLEAN_TEXT.search(value):
        text = value
    elif isinstance(value, (str, int, float, list, tuple, dict)):
        raise SqlOnly  # floats, nested values: DuckDB's rendering decides
    else:
        text = str(value)  # what json.dumps(..., default=str) wrote for it (dates, decimals)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SqlOnly from None
    return text.strip(" ") or None  # DuckDB's trim removes spaces only

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
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipelines.batch.ingest import FIELD_MAX_CHARS, NUMBER_ROLES, UNCLEAN_TEXT
from pipelines.config import Config, Constant, SourceConfig
from pipelines.standardize.batch import COUNTRIES, STREET_NUMBER_LEADING, STREET_NUMBER_TRAILING, STREET_POSTCODE, DateFormats
from pipelines.standardize.contacts import PLAIN_EMAIL_SQL_PATTERN, standardize_email, standardize_phone
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
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_NOT_LOWER_ALNUM = re.compile(r"[^a-z0-9]+")
_DUTCH_POSTCODE = re.compile(r"[0-9]{4}[A-Z]{2}")
_ISO_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?")
_MALE = ("m", "man", "male", "mr", "dhr")
_FEMALE = ("f", "v", "vrouw", "female", "woman", "mrs", "ms", "mevr")
_FIRST_DOB = date(1900, 1, 1)
_EXACT_INT = 2**53  # a JSON integer DuckDB surely renders as Python does


class _SqlOnly(Exception):
    """This value is read the way the SQL reads it only by the SQL."""


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
        dob_pattern = _strict(dob_format)
        ts_pattern = _strict(ts_format) if ts_format else None
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
    except _SqlOnly:
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
    dob_pattern: _Format,
    ts_pattern: _Format | None,
    issues: list[dict[str, Any]],
    config: Config,
    today: date,
) -> dict[str, Any]:
    mapped: dict[str, str | None] = {}
    for name in CANONICAL_FIELDS:
        mapping = source.fields.get(name)  # type: ignore[call-overload]
        mapped[name] = mapping.value if isinstance(mapping, Constant) else _text(row, mapping, name in NUMBER_ROLES) if mapping else None
    record_id = _text(row, source.id, True)
    key = f"{source.name}:{record_id}"

    def issue(field: str, reason: str) -> None:
        issues.append({"source": source.name, "record_id": record_id, "line": line, "field": field, "reason": reason})

    # names: the full name split only where first or last is missing (names_split)
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

    # dates (_parse_dates): issues of the birth date, then of the update time
    dob_raw = mapped["date_of_birth"]
    dob = _parse(dob_raw, dob_pattern) if dob_raw is not None else None
    if dob is not None and dob.date() >= today - timedelta(days=1):
        raise _SqlOnly  # the SQL's current_date decides (its time zone)
    dob_ok = dob.date() if dob is not None and dob.date() >= _FIRST_DOB else None
    if dob_raw is not None and dob_ok is None:
        reason = f"not a valid date in format {dob_format}" if dob is None else "date out of range (before 1900 or in the future)"
        issue("date_of_birth", f"{reason} (value {dob_raw})")
    updated_raw = _text(row, source.updated_at, True) if source.updated_at else None
    updated_at = None
    if updated_raw is not None:
        updated_at = _iso(updated_raw)
        if updated_at is None and ts_pattern is not None:
            updated_at = _parse(updated_raw, ts_pattern)
            if updated_at is None:
                raise _SqlOnly  # impossible in the format's shape: DuckDB's strptime decides
        if updated_at is None:
            issue("updated_at", f"not a valid timestamp (value {updated_raw})")

    # email (email_map) and phone (phone_keys, phone_map)
    email, email_problem = None, None
    if mapped["email"] is not None:
        raw_email = mapped["email"]
        if _PLAIN_EMAIL.fullmatch(raw_email.strip(" ")) and ".." not in raw_email:
            email = raw_email.strip(" ").lower()
        else:
            email, email_problem = standardize_email(raw_email)
    country = _country(mapped["country"])
    region = country or config.matching.default_country  # the region a national number is read in
    phone, phone_problem = None, None
    if mapped["phone"] is not None:
        phone, phone_problem = standardize_phone(_NOT_PHONE.sub("", mapped["phone"]), region)
    if email_problem is not None:
        issue("email", f"{email_problem} (value {mapped['email']})")
    if phone_problem is not None:
        issue("phone", f"{phone_problem} (value {mapped['phone']})")

    identifiers = [{"kind": "email", "value": email}, {"kind": "phone", "value": phone}]
    identifiers += [{"kind": kind, "value": _text(row, column, True)} for kind, column in source.identifiers.items()]
    identifiers = sorted((x for x in identifiers if x["value"] is not None), key=lambda x: (x["kind"], x["value"]))
    postcode, house_number = mapped["postcode"], mapped["house_number"]
    street, city = mapped["street"], mapped["city"]
    street_std, house_number_std = street_parts(street, house_number)
    postcode_std = _NOT_ALNUM.sub("", postcode).upper() or None if postcode is not None else None
    raw = json.dumps(dict(row), default=str)
    return {
        "record_key": key,
        "source": source.name,
        "record_id": record_id,
        "line": line,
        "trust": source.trust,
        "raw": raw,
        "updated_at": updated_at,
        "first_name": first_display,
        "middle_name": middle_raw,
        "last_name": last_display,
        "full_name": mapped["full_name"]
        if mapped["full_name"] is not None
        else " ".join(p for p in (first_display, middle_raw, last_display) if p is not None),
        "gender": _gender(mapped["gender"]),
        "date_of_birth": dob_ok,
        "email": email,
        "phone": phone,
        "street": street,
        "house_number": house_number,
        "address_line2": mapped["address_line2"],
        "postcode": _postcode_display(postcode),
        "city": city,
        "region": mapped["region"],
        "country": country,
        "first_name_std": folded,
        "first_initial": initial,
        "last_name_std": core,
        "surname_tokens": tokens,
        "dob": dob_ok,
        "email_std": email,
        "phone_std": phone,
        "postcode_std": postcode_std,
        "house_number_std": house_number_std,
        "street_std": street_std,
        "city_std": _words(city),
        "address_line2_std": _words(mapped["address_line2"]),
        "region_std": _words(mapped["region"]),
        "dwelling_key": dwelling_key(postcode_std, house_number_std),
        "name_key": f"{folded}|{core}" if folded is not None and core is not None else None,
        "identifiers": identifiers or None,
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
        raise _SqlOnly  # floats, nested values: DuckDB's rendering decides
    else:
        text = str(value)  # what json.dumps(..., default=str) wrote for it (dates, decimals)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _SqlOnly from None
    return text.strip(" ") or None  # DuckDB's trim removes spaces only


def _ascii(value: str) -> str:
    """Casing and accents of non-ASCII text are DuckDB's own (``upper('ß')`` is 'ẞ')."""
    if not value.isascii():
        raise _SqlOnly
    return value


def _country(value: str | None) -> str | None:
    if value is None:
        return None
    text = _ascii(value).strip(" ")
    return text.upper() if len(text) == 2 else COUNTRIES.get(text.lower())


def _gender(value: str | None) -> str | None:
    if value is None:
        return None
    text = _ascii(value).lower()
    return "M" if text in _MALE else "F" if text in _FEMALE else None


def _postcode_display(value: str | None) -> str | None:
    if value is None:
        return None
    compact = _ascii(value).replace(" ", "").upper()
    return f"{compact[:4]} {compact[4:6]}" if _DUTCH_POSTCODE.fullmatch(compact) else value.strip(" ").upper()


#: Characters that ``lower(strip_accents(c))`` in DuckDB and the canonical decomposition
#: without its marks, lower-cased, in Python map alike, each on its own and inside a word
#: (Latin-1 Supplement, Latin Extended-A and -B: 'ä', 'ß', 'ø', 'ł'; checked against
#: DuckDB character by character in tests/pipelines/standardize/test_standardize_rows.py). Combining
#: marks are not among them: a string of these has no sequence whose marks compose.
WORD_CHARACTERS = frozenset(map(chr, range(0xA0, 0x250)))


def _words(value: str | None) -> str | None:
    """``nullif(trim(regexp_replace(lower(strip_accents(v)), '[^a-z0-9]+', ' ', 'g')), '')``.
    ``strip_accents`` (utf8proc) drops the marks of the canonical decomposition; what is
    not a-z or 0-9 afterwards ('ß', 'ø') becomes a space either way. Text with characters
    outside ``WORD_CHARACTERS`` (Greek, Cyrillic, combining marks) is left to DuckDB."""
    if value is None:
        return None
    if not value.isascii():
        if not all(c.isascii() or c in WORD_CHARACTERS for c in value):
            raise _SqlOnly
        value = "".join(c for c in unicodedata.normalize("NFD", value) if unicodedata.category(c) not in ("Mn", "Mc", "Me"))
    return _NOT_LOWER_ALNUM.sub(" ", value.lower()).strip(" ") or None


_STREET_POSTCODE = re.compile(STREET_POSTCODE)


def dwelling_key(postcode_std: str | None, house_number_std: str | None) -> str | None:
    """``standardize.dwelling_key_sql`` in Python."""
    if postcode_std is None or house_number_std is None or not _STREET_POSTCODE.fullmatch(postcode_std):
        return None
    return f"{postcode_std} {house_number_std}"


_STREET_NUMBER_LEADING = re.compile(STREET_NUMBER_LEADING)
_STREET_NUMBER_TRAILING = re.compile(STREET_NUMBER_TRAILING)


def street_parts(street: str | None, house_number: str | None) -> tuple[str | None, str | None]:
    """``standardize.street_sql`` in Python: (street_std, house_number_std)."""
    number = _NOT_ALNUM.sub("", house_number).lower() or None if house_number is not None else None
    words = _words(street)
    if words is None:
        return None, number
    leading, trailing = _STREET_NUMBER_LEADING.search(words), _STREET_NUMBER_TRAILING.search(words)
    inside = leading.group(1) if leading else trailing.group(1) if trailing else None
    if inside is None or (number is not None and number != inside):
        return words, number
    stripped = _STREET_NUMBER_TRAILING.sub("", _STREET_NUMBER_LEADING.sub("", words, count=1), count=1).strip(" ") or None
    return stripped, number if number is not None else inside


#: strptime directives read strictly (fixed width), as every demo and sample source writes them.
_DIRECTIVES = {"%Y": r"([0-9]{4})", "%m": r"([0-9]{2})", "%d": r"([0-9]{2})", "%H": r"([0-9]{2})", "%M": r"([0-9]{2})", "%S": r"([0-9]{2})"}


def _strict(fmt: str) -> _Format:
    """A pattern that takes exactly the fixed-width values of ``fmt``; other directives
    (``%y``, month names, ...) are DuckDB's to read."""
    parts: list[str] = []
    fields: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i : i + 2]
            if directive not in _DIRECTIVES:
                raise _SqlOnly
            parts.append(_DIRECTIVES[directive])
            fields.append(directive[1])
            i += 2
        else:
            if fmt[i].isalnum() or (fmt[i].isspace() and fmt[i] != " "):
                raise _SqlOnly
            parts.append(re.escape(fmt[i]))
            i += 1
    return _Format(re.compile("".join(parts)), tuple(fields))


@dataclass(frozen=True)
class _Format:
    pattern: re.Pattern[str]
    fields: tuple[str, ...]  # the directive letter of each group


def _parse(value: str, fmt: _Format) -> datetime | None:
    """``try_strptime(value, format)``: None for a well-formed but impossible date (31
    February); a value of another shape is left to DuckDB, which reads more shapes."""
    match = fmt.pattern.fullmatch(value)
    if match is None:
        raise _SqlOnly
    parts = dict(zip(fmt.fields, (int(g) for g in match.groups())))
    return _datetime(parts.get("Y", 1900), parts.get("m", 1), parts.get("d", 1), parts.get("H", 0), parts.get("M", 0), parts.get("S", 0))


def _iso(value: str) -> datetime | None:
    """``try_cast(value AS TIMESTAMP)`` for ``YYYY-MM-DD[( |T)HH:MM[:SS]]``; None for
    values that cannot be ISO (they start otherwise); any other ISO-like shape (zones,
    fractions) is left to DuckDB."""
    match = _ISO_TIMESTAMP.fullmatch(value)
    if match is None:
        if value[:4].isdigit() or not value[:1].isdigit():
            raise _SqlOnly  # a year first (another ISO variant), or words ('epoch', 'infinity')
        return None
    y, m, d, hh, mm, ss = (int(g) if g is not None else 0 for g in match.groups())
    parsed = _datetime(y, m, d, hh, mm, ss)
    if parsed is None:
        raise _SqlOnly  # an impossible time of ISO shape: DuckDB's cast decides (leap seconds, 24:00)
    return parsed


def _datetime(*parts: int) -> datetime | None:
    """The date and time, None when impossible (31 February); year 0 and before exist
    for DuckDB, not for Python: left to DuckDB."""
    if parts[0] < 1:
        raise _SqlOnly
    try:
        return datetime(*parts)  # type: ignore[arg-type]  # (year, month, day[, hour, minute, second])
    except ValueError:
        return None

"""Birth dates and update times, in both engines: the batch reads each source's column
with one format (configured, the batch run's for a live file, or detected: the format
that reads most of a sample) in DuckDB; the live path reads a few records' values with
the same format in Python, strictly (fixed-width directives), and leaves every value of
another shape to DuckDB (``SqlOnly``). tests/pipelines/standardize/test_standardize_rows.py
holds the two equal on every demo record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pipelines.config import Config
from pipelines.standardize.fields import SqlOnly
from profiles.store import Store

DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%y", "%m-%d-%Y")
TIMESTAMP_FORMATS = ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%Y%m%d%H%M%S", *DATE_FORMATS)
#: The earliest birth date read as one; earlier ones (and future ones) are field issues.
FIRST_DOB = date(1900, 1, 1)

DateFormats = dict[str, dict[str, str | None]]  # source -> {"date_of_birth": fmt, "updated_at": fmt}

# ---- SQL: the batch ------------------------------------------------------------------

#: A time of day with a UTC offset or Z at the end of a text (not a date's "-07").
_OFFSET_AT_END = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)? ?(Z|[+-]\d{2}(:?\d{2})?)$"


def timestamp_sql(value: str) -> str:
    """SQL: the text ``value`` as a TIMESTAMP in UTC, NULL when it is not one. A time with
    an offset is taken to UTC: DuckDB's TIMESTAMP cast drops the offset
    ("2026-12-07T10:00:00+01:00" read as 10:00), which put one system's events an hour
    off another's. A time without one keeps its wall time, as before, and so does one whose
    offset DuckDB cannot read ("10:00 +01")."""
    return (
        f"CASE WHEN regexp_matches({value}, '{_OFFSET_AT_END}') "
        f"THEN coalesce(try_cast(try_cast({value} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP), try_cast({value} AS TIMESTAMP)) "
        f"ELSE try_cast({value} AS TIMESTAMP) END"
    )


def parse_dates_sql(store: Store, config: Config, given: DateFormats) -> None:
    """``parsed_dates``: birth date and update time per record, in each source's format
    (configured, given, or the format that reads most of the source's values)."""
    selects: list[str] = []
    params: list[Any] = []
    used: list[tuple[str, str | None, str | None]] = []
    for source in config.sources:
        known = given.get(source.name)
        dob_format = source.date_format or (
            known["date_of_birth"] if known else detect_format(store, source.name, "date_of_birth", DATE_FORMATS)
        )
        ts_format = source.updated_at_format or (
            known["updated_at"] if known else detect_format(store, source.name, "updated_at_raw", TIMESTAMP_FORMATS, iso_first=True)
        )
        used.append((source.name, dob_format, ts_format))
        ts_sql = (
            f"coalesce({timestamp_sql('updated_at_raw')}, try_strptime(updated_at_raw, ?))"
            if ts_format
            else timestamp_sql("updated_at_raw")
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


def detect_format(store: Store, source: str, column: str, formats: tuple[str, ...], iso_first: bool = False) -> str | None:
    """The format of a source's ``column`` of ``ingested`` (see :func:`best_format`)."""
    sample = f"(SELECT {column} AS v FROM ingested WHERE source = ? AND {column} IS NOT NULL LIMIT 20000)"
    return best_format(store, sample, [source], formats, iso_first)


def best_format(store: Store, sample: str, params: list[Any], formats: tuple[str, ...], iso_first: bool = False) -> str | None:
    """Of ``formats``, the one that reads most values ``v`` of the relation ``sample`` (with
    its bound ``params``); None when none reads any, or with ``iso_first`` when ISO reads
    half of them or more (a cast reads them, no format is needed)."""
    if iso_first:
        total, iso = store.rows(f"SELECT count(*), count(try_cast(v AS TIMESTAMP)) FROM {sample}", params)[0]
        if total == 0 or iso >= 0.5 * total:
            return None
    best, best_count = None, 0
    for fmt in formats:
        n = int(store.scalar(f"SELECT count(try_strptime(v, ?)) FROM {sample}", [fmt, *params]))
        if n > best_count:
            best, best_count = fmt, n
    return best


# ---- Python: a few live records ------------------------------------------------------

_ISO_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?)?")


#: strptime directives read strictly (fixed width), as every demo and sample source writes them.
_DIRECTIVES = {"%Y": r"([0-9]{4})", "%m": r"([0-9]{2})", "%d": r"([0-9]{2})", "%H": r"([0-9]{2})", "%M": r"([0-9]{2})", "%S": r"([0-9]{2})"}


def strict(fmt: str) -> Format:
    """A pattern that takes exactly the fixed-width values of ``fmt``; other directives
    (``%y``, month names, ...) are DuckDB's to read."""
    parts: list[str] = []
    fields: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i : i + 2]
            if directive not in _DIRECTIVES:
                raise SqlOnly
            parts.append(_DIRECTIVES[directive])
            fields.append(directive[1])
            i += 2
        else:
            if fmt[i].isalnum() or (fmt[i].isspace() and fmt[i] != " "):
                raise SqlOnly
            parts.append(re.escape(fmt[i]))
            i += 1
    return Format(re.compile("".join(parts)), tuple(fields))


@dataclass(frozen=True)
class Format:
    pattern: re.Pattern[str]
    fields: tuple[str, ...]  # the directive letter of each group


def parse(value: str, fmt: Format) -> datetime | None:
    """``try_strptime(value, format)``: None for a well-formed but impossible date (31
    February); a value of another shape is left to DuckDB, which reads more shapes."""
    match = fmt.pattern.fullmatch(value)
    if match is None:
        raise SqlOnly
    parts = dict(zip(fmt.fields, (int(g) for g in match.groups())))
    return _datetime(parts.get("Y", 1900), parts.get("m", 1), parts.get("d", 1), parts.get("H", 0), parts.get("M", 0), parts.get("S", 0))


def iso(value: str) -> datetime | None:
    """``try_cast(value AS TIMESTAMP)`` for ``YYYY-MM-DD[( |T)HH:MM[:SS]]``; None for
    values that cannot be ISO (they start otherwise); any other ISO-like shape (zones,
    fractions) is left to DuckDB."""
    match = _ISO_TIMESTAMP.fullmatch(value)
    if match is None:
        if value[:4].isdigit() or not value[:1].isdigit():
            raise SqlOnly  # a year first (another ISO variant), or words ('epoch', 'infinity')
        return None
    y, m, d, hh, mm, ss = (int(g) if g is not None else 0 for g in match.groups())
    parsed = _datetime(y, m, d, hh, mm, ss)
    if parsed is None:
        raise SqlOnly  # an impossible time of ISO shape: DuckDB's cast decides (leap seconds, 24:00)
    return parsed


def _datetime(*parts: int) -> datetime | None:
    """The date and time, None when impossible (31 February); year 0 and before exist
    for DuckDB, not for Python: left to DuckDB."""
    if parts[0] < 1:
        raise SqlOnly
    try:
        return datetime(*parts)  # type: ignore[arg-type]  # (year, month, day[, hour, minute, second])
    except ValueError:
        return None

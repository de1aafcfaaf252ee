"""The rules for the plain fields (free-text words, country, gender, postcode, street and
house number, dwelling), each in both engines side by side: a ``*_sql`` function that
writes the batch's DuckDB expression and a Python function of the same name for the live
path (pipelines.standardize.rows). The two must give the same value for every input the
Python takes; an input it cannot read exactly as DuckDB does raises ``SqlOnly`` and the
record goes through the SQL. tests/pipelines/standardize/test_fields.py holds each pair
equal, value by value."""

from __future__ import annotations

import re
import unicodedata


class SqlOnly(Exception):
    """This value is read the way the SQL reads it only by the SQL."""


def ascii_only(value: str) -> str:
    """Casing and accents of non-ASCII text are DuckDB's own (``upper('ß')`` is 'ẞ')."""
    if not value.isascii():
        raise SqlOnly
    return value


# ---- words: free text as matching words (city, region, address line 2, street) ------


def words_sql(column: str) -> str:
    """A free-text value as matching words: lower case, no accents, runs of anything but
    a-z and 0-9 as one space."""
    return f"nullif(trim(regexp_replace(lower(strip_accents({column})), '[^a-z0-9]+', ' ', 'g')), '')"


#: Characters that ``lower(strip_accents(c))`` in DuckDB and the canonical decomposition
#: without its marks, lower-cased, in Python map alike, each on its own and inside a word
#: (Latin-1 Supplement, Latin Extended-A and -B: 'ä', 'ß', 'ø', 'ł'; checked against
#: DuckDB character by character in tests/pipelines/standardize/test_standardize_rows.py). Combining
#: marks are not among them: a string of these has no sequence whose marks compose.
WORD_CHARACTERS = frozenset(map(chr, range(0xA0, 0x250)))
_NOT_LOWER_ALNUM = re.compile(r"[^a-z0-9]+")


def words(value: str | None) -> str | None:
    """:func:`words_sql` in Python. ``strip_accents`` (utf8proc) drops the marks of the
    canonical decomposition; what is not a-z or 0-9 afterwards ('ß', 'ø') becomes a space
    either way. Text with characters outside ``WORD_CHARACTERS`` (Greek, Cyrillic,
    combining marks) is left to DuckDB."""
    if value is None:
        return None
    if not value.isascii():
        if not all(c.isascii() or c in WORD_CHARACTERS for c in value):
            raise SqlOnly
        value = "".join(c for c in unicodedata.normalize("NFD", value) if unicodedata.category(c) not in ("Mn", "Mc", "Me"))
    return _NOT_LOWER_ALNUM.sub(" ", value.lower()).strip(" ") or None


# ---- country ----------------------------------------------------------------------

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


def country_sql(column: str) -> str:
    """An ISO 3166 alpha-2 code: two letters as given, or a known country name."""
    cases = " ".join(f"WHEN '{name}' THEN '{code}'" for name, code in COUNTRIES.items())
    return f"(CASE WHEN length(trim({column})) = 2 THEN upper(trim({column})) ELSE (CASE lower(trim({column})) {cases} END) END)"


def country(value: str | None) -> str | None:
    """:func:`country_sql` in Python."""
    if value is None:
        return None
    text = ascii_only(value).strip(" ")
    return text.upper() if len(text) == 2 else COUNTRIES.get(text.lower())


# ---- gender -----------------------------------------------------------------------

MALE = ("m", "man", "male", "mr", "dhr")
FEMALE = ("f", "v", "vrouw", "female", "woman", "mrs", "ms", "mevr")


def gender_sql(column: str) -> str:
    """'M', 'F' or NULL."""
    return (
        f"CASE WHEN lower({column}) IN ({', '.join(repr(v) for v in MALE)}) THEN 'M'"
        f" WHEN lower({column}) IN ({', '.join(repr(v) for v in FEMALE)}) THEN 'F' END"
    )


def gender(value: str | None) -> str | None:
    """:func:`gender_sql` in Python."""
    if value is None:
        return None
    text = ascii_only(value).lower()
    return "M" if text in MALE else "F" if text in FEMALE else None


# ---- postcode ---------------------------------------------------------------------

_DUTCH_POSTCODE = re.compile(r"[0-9]{4}[A-Z]{2}")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")


def postcode_sql(column: str) -> str:
    """The postcode as displayed: a Dutch one as '1234 AB', others upper case."""
    compact = f"upper(replace({column}, ' ', ''))"
    return (
        f"CASE WHEN regexp_full_match({compact}, '[0-9]{{4}}[A-Z]{{2}}')"
        f" THEN substr({compact}, 1, 4) || ' ' || substr({compact}, 5, 2) ELSE upper(trim({column})) END"
    )


def postcode(value: str | None) -> str | None:
    """:func:`postcode_sql` in Python."""
    if value is None:
        return None
    compact = ascii_only(value).replace(" ", "").upper()
    return f"{compact[:4]} {compact[4:6]}" if _DUTCH_POSTCODE.fullmatch(compact) else value.strip(" ").upper()


def postcode_std_sql(column: str) -> str:
    """The postcode's matching key: letters and digits, upper case."""
    return f"nullif(upper(regexp_replace({column}, '[^0-9A-Za-z]', '', 'g')), '')"


def postcode_std(value: str | None) -> str | None:
    """:func:`postcode_std_sql` in Python."""
    return _NOT_ALNUM.sub("", value).upper() or None if value is not None else None


# ---- street and house number ------------------------------------------------------

#: A house number written inside the street line: "12 oak street", "12a oak street",
#: "kerkstraat 12", "kerkstraat 12a". A leading number with an "e" is a Dutch ordinal
#: ("2e helmersstraat"), not a house number.
STREET_NUMBER_LEADING = "^([0-9]+[a-df-z]?) "
STREET_NUMBER_TRAILING = " ([0-9]+[a-z]?)$"
_STREET_NUMBER_LEADING = re.compile(STREET_NUMBER_LEADING)
_STREET_NUMBER_TRAILING = re.compile(STREET_NUMBER_TRAILING)


def street_sql(street: str, house_number: str) -> tuple[str, str]:
    """(``street_std``, ``house_number_std``) of raw street and house number columns: the
    house number parsed out of the street line when the record has none or the same one,
    and taken out of the street's matching form then."""
    street_words = words_sql(street)
    number = f"nullif(lower(regexp_replace({house_number}, '[^0-9A-Za-z]', '', 'g')), '')"
    inside = (
        f"coalesce(nullif(regexp_extract({street_words}, '{STREET_NUMBER_LEADING}', 1), ''),"
        f" nullif(regexp_extract({street_words}, '{STREET_NUMBER_TRAILING}', 1), ''))"
    )
    stripped = (
        f"nullif(trim(regexp_replace(regexp_replace({street_words}, '{STREET_NUMBER_LEADING}', ''), '{STREET_NUMBER_TRAILING}', '')), '')"
    )
    street_std = f"CASE WHEN {inside} IS NOT NULL AND coalesce({number} = {inside}, true) THEN {stripped} ELSE {street_words} END"
    return street_std, f"coalesce({number}, {inside})"


def street_parts(street: str | None, house_number: str | None) -> tuple[str | None, str | None]:
    """:func:`street_sql` in Python: (street_std, house_number_std)."""
    number = _NOT_ALNUM.sub("", house_number).lower() or None if house_number is not None else None
    street_words = words(street)
    if street_words is None:
        return None, number
    leading, trailing = _STREET_NUMBER_LEADING.search(street_words), _STREET_NUMBER_TRAILING.search(street_words)
    inside = leading.group(1) if leading else trailing.group(1) if trailing else None
    if inside is None or (number is not None and number != inside):
        return street_words, number
    stripped = _STREET_NUMBER_TRAILING.sub("", _STREET_NUMBER_LEADING.sub("", street_words, count=1), count=1).strip(" ") or None
    return stripped, number if number is not None else inside


# ---- dwelling ---------------------------------------------------------------------

#: Postcodes whose shape places a street, not a town: Dutch (1234AB, about 20 addresses)
#: and British unit postcodes (SW1A1AA, about 15). With the house number such a postcode
#: is one dwelling, whatever the city says; a 4- or 5-digit postcode (Australia, Germany,
#: the US) is a town or a district.
STREET_POSTCODE = "[0-9]{4}[A-Z]{2}|[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}"
_STREET_POSTCODE = re.compile(STREET_POSTCODE)


def dwelling_key_sql(postcode_std: str, house_number_std: str) -> str:
    """``dwelling_key``: postcode and house number, where the postcode places a street
    (:data:`STREET_POSTCODE`); NULL elsewhere."""
    return (
        f"CASE WHEN regexp_full_match({postcode_std}, '{STREET_POSTCODE}') AND {house_number_std} IS NOT NULL"
        f" THEN {postcode_std} || ' ' || {house_number_std} END"
    )


def dwelling_key(postcode_std: str | None, house_number_std: str | None) -> str | None:
    """:func:`dwelling_key_sql` in Python."""
    if postcode_std is None or house_number_std is None or not _STREET_POSTCODE.fullmatch(postcode_std):
        return None
    return f"{postcode_std} {house_number_std}"

"""Emails and phone numbers in one canonical form, so that ``06-12345678`` and
``+31 6 1234 5678`` are the same identifier. Applied once per distinct value."""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# Plain addresses (the vast majority) pass this and skip the full validator, which
# still decides every address that does not look plain (quoted parts, unicode, ...).
_PLAIN_PATTERN = r"[a-z0-9](?:[a-z0-9._%+\-]{0,62}[a-z0-9_%+\-])?@[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*\.[a-z]{2,24}"
_PLAIN_EMAIL = re.compile(f"^{_PLAIN_PATTERN}$")
#: The same test for SQL (RE2, whole-string match), on the trimmed value before lowering:
#: ASCII letters of either case only, so lowering it is what Python's ``lower`` does.
PLAIN_EMAIL_SQL_PATTERN = _PLAIN_PATTERN.replace("a-z", "a-zA-Z")


def standardize_email(value: str) -> tuple[str | None, str | None]:
    """Return (canonical email, problem). Case and surrounding whitespace are ignored."""
    text = value.strip().lower()
    if not text:
        return None, None
    if _PLAIN_EMAIL.match(text) and ".." not in text:
        return text, None
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return None, f"invalid email: {exc}"
    return result.normalized.lower(), None


_PHONE_CHARS = re.compile(r"[^\d+]")


def phone_digits(value: str) -> str:
    """What survives of a phone number once layout is removed (cheap, for grouping)."""
    text = _PHONE_CHARS.sub("", value)
    return ("+" + text.replace("+", "")) if text.startswith("+") else text.replace("+", "")


#: The unambiguous shapes of a Dutch number, on a value's digits and plus signs: +31/0031
#: and nine digits, or (read in NL) 0 and nine digits. Their E.164 form is "+31" and the
#: nine digits, as phonenumbers gives it (tests/pipelines/standardize/test_standardize_values.py);
#: phonenumbers is slow for millions of numbers. For Python and SQL (RE2, whole-string match)
#: alike: the pipeline's SQL applies the same rule (pipelines.standardize.batch._phone_keys).
#: ASCII digits only, as the SQL reads them; other digits go to phonenumbers.
DUTCH_INTERNATIONAL_PATTERN = r"(\+31|0031)[1-9][0-9]{8}"
DUTCH_NATIONAL_PATTERN = r"0[1-9][0-9]{8}"
_DUTCH_INTERNATIONAL = re.compile(DUTCH_INTERNATIONAL_PATTERN)
_DUTCH_NATIONAL = re.compile(DUTCH_NATIONAL_PATTERN)


def standardize_phone(value: str, default_region: str) -> tuple[str | None, str | None]:
    """Return (E.164 number, problem); national numbers are read in ``default_region``."""
    digits = phone_digits(value)
    if not digits.strip("+"):
        return None, "invalid phone: no digits"
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if _DUTCH_INTERNATIONAL.fullmatch(digits) or (default_region == "NL" and _DUTCH_NATIONAL.fullmatch(digits)):
        return "+31" + digits[-9:], None
    try:
        number = phonenumbers.parse(digits, default_region)
    except phonenumbers.NumberParseException as exc:
        return None, f"invalid phone: {exc}"
    if not phonenumbers.is_possible_number(number):
        return None, "invalid phone: not a possible number"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def standardized_identifier(kind: str, value: str, default_country: str) -> str | None:
    """An identifier's value as the pipeline standardizes it for that kind, to look it up
    (None: it cannot match): emails and phones by their rules, other kinds trimmed."""
    if kind == "email":
        return standardize_email(value)[0]
    if kind == "phone":
        return standardize_phone(value, default_country)[0]
    return value.strip() or None

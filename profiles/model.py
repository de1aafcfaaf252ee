"""The canonical customer schema every source is mapped onto, shared by all layers."""

from __future__ import annotations

from typing import Final

#: Fields a source may map (architecture contract); order is the golden record's order.
CANONICAL_FIELDS: Final[tuple[str, ...]] = (
    "first_name",
    "middle_name",
    "last_name",
    "full_name",
    "gender",
    "date_of_birth",
    "email",
    "phone",
    "street",
    "house_number",
    "address_line2",
    "postcode",
    "city",
    "region",
    "country",
)

#: Fields that survive as one unit: a golden address never mixes two records' parts.
ADDRESS_FIELDS: Final[tuple[str, ...]] = CANONICAL_FIELDS[CANONICAL_FIELDS.index("street") :]

#: Fields that are contact PII (masked for roles that may not see raw contact data).
CONTACT_PII_FIELDS: Final[frozenset[str]] = frozenset({"email", "phone", "date_of_birth", *ADDRESS_FIELDS})

#: Identifier kinds every record can carry besides configured source identifiers.
BUILTIN_IDENTIFIER_KINDS: Final[tuple[str, ...]] = ("email", "phone")


def record_key(source: str, record_id: str) -> str:
    """The store-wide key of a source record: ``source:record_id``."""
    return f"{source}:{record_id}"


def split_record_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`record_key`; record ids may themselves contain colons."""
    source, sep, record_id = key.partition(":")
    if not sep or not source or not record_id:
        raise ValueError(f"record key {key!r} is not of the form 'source:record_id'")
    return source, record_id

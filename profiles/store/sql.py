"""SQL text from names and values: identifiers and names from validated config or our own
code are checked and quoted here; values never go into SQL text, they are bound
parameters (``marks``, ``in_list``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from profiles.errors import StoreError
from profiles.tuning import TUNING

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """Quote an identifier that comes from validated config or our own code.

    Values never go through here: they are bound parameters.
    """
    if not _IDENTIFIER.match(name):
        raise StoreError(f"refusing to use {name!r} as an SQL identifier")
    return f'"{name}"'


def name_literal(name: str) -> str:
    """A name from validated config or our own code (a column, an identifier kind) as an
    SQL string literal; refuses anything but ``[A-Za-z_][A-Za-z0-9_]*``, as :func:`ident`."""
    ident(name)
    return f"'{name}'"


def sql_literal_path(path: Path | str) -> str:
    """A file path as an SQL string literal (table functions do not take parameters
    for their path in every DuckDB version)."""
    return "'" + str(path).replace("'", "''") + "'"


def marks(values: Sequence[object]) -> str:
    """Placeholders for an IN list: a literal list lets DuckDB answer from an index (a
    list parameter or a subquery makes it a join that scans); values stay bound
    parameters."""
    return ", ".join("?" * len(values)) or "NULL"


def in_list(expression: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``expression IN (...)`` for bound ``values``, as (sql, params)."""
    values = list(values)
    if not values:
        return "false", []
    if len(values) <= TUNING.in_list_max:
        return f"{expression} IN ({marks(values)})", values
    return f"{expression} IN (SELECT unnest(?))", [values]


def quote_column(name: str) -> str:
    """Quote a column name read from a source file header (may hold spaces, quotes)."""
    if "\x00" in name:
        raise StoreError(f"column name {name!r} contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'

"""File writers for the demo sources, including the malformed rows ingestion must quarantine.

Each format breaks in its own way: CSV/TSV rows gain a column, NDJSON lines are cut off mid-object.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EXTRA_FIELD = "achterom"
"""A stray value inserted mid-row, giving a CSV/TSV row one column too many (like an unquoted comma)."""


def write_delimited(
    path: Path, header: tuple[str, ...], ids: list[str], columns: list[list[str]], delimiter: str, extra_column_rows: set[int]
) -> None:
    """CSV/TSV with a header; missing values are empty strings; some rows get an extra field."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        rows = zip(ids, *columns)
        for i, row in enumerate(rows):
            if i in extra_column_rows:
                r = list(row)
                r.insert(len(r) // 2, EXTRA_FIELD)
                w.writerow(r)
            else:
                w.writerow(row)


def write_ndjson(path: Path, header: tuple[str, ...], ids: list[int | None], columns: list[list[str]], truncated_rows: set[int]) -> None:
    """One JSON object per line; missing values are null; some lines are cut off (invalid JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = header
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for i, row in enumerate(zip(ids, *columns)):
            obj = {k: (v if v != "" else None) for k, v in zip(keys, row)}
            line = json.dumps(obj, ensure_ascii=False)
            if i in truncated_rows:
                line = line[: len(line) // 2]
            fh.write(line + "\n")


def write_parquet(path: Path, header: tuple[str, ...], ids: list[str], columns: list[Any]) -> None:
    """Typed Parquet: strings with nulls for missing values, the timestamp column as timestamp[us]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: list[pa.Array] = [pa.array(ids, type=pa.string())]
    for values in columns:
        if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
            arrays.append(pa.array(values.astype("datetime64[us]"), type=pa.timestamp("us")))
        else:
            arrays.append(pa.array([v if v != "" else None for v in values], type=pa.string()))
    pq.write_table(pa.table(arrays, names=list(header)), path, compression="zstd")


def write_table(path: Path, data: dict[str, list[str]]) -> None:
    """Small string-only Parquet files: truth and hard negatives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in data.items()})
    pq.write_table(table, path, compression="zstd")

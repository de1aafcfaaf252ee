"""File writers for the demo sources, including the malformed rows ingestion must quarantine.

Each format breaks in its own way: CSV/TSV rows gain a column, NDJSON lines are cut off mid-object.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
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


# ---- event files: millions of rows, so Arrow writes them column by column ----------------


def write_csv_table(path: Path, table: pa.Table, delimiter: str, extra_field_rows: Sequence[int]) -> None:
    """CSV/TSV with a header and unquoted values (none holds a delimiter); the rows in
    ``extra_field_rows`` get a stray field mid-row, as in the sources."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start = 0
    options = pa_csv.WriteOptions(include_header=False, delimiter=delimiter, quoting_style="none")
    with path.open("wb") as fh:
        fh.write((delimiter.join(table.column_names) + "\n").encode("utf-8"))  # Arrow would quote the names
        for row in [*sorted(extra_field_rows), table.num_rows]:
            pa_csv.write_csv(table.slice(start, row - start), fh, options)
            if row < table.num_rows:
                values = ["" if v is None else str(v) for v in table.slice(row, 1).to_pylist()[0].values()]
                values.insert(len(values) // 2, EXTRA_FIELD)
                fh.write((delimiter.join(values) + "\n").encode("utf-8"))
            start = row + 1


def write_ndjson_table(path: Path, table: pa.Table, raw: frozenset[str], truncated_rows: Sequence[int]) -> None:
    """One JSON object per line, built by Arrow string kernels: text columns quoted, the
    ``raw`` columns (numbers, already text) as they are, nulls as null; the lines in
    ``truncated_rows`` are cut off mid-object. Values must need no JSON escaping (checked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = np.zeros(table.num_rows, dtype=bool)
    cut[list(truncated_rows)] = True
    with path.open("wb") as fh:
        for start in range(0, table.num_rows, _CHUNK):  # chunks keep each text column under 2 GB
            lines = _json_lines(table.slice(start, _CHUNK), raw)
            mask = pa.array(cut[start : start + len(lines)])
            if pc.any(mask).as_py():
                broken = [line[: len(line) // 2] + "\n" for line in lines.filter(mask).to_pylist()]
                lines = pc.replace_with_mask(lines, mask, pa.array(broken, pa.string()))
            fh.write(_joined(lines))


_CHUNK = 250_000
_JSON_UNSAFE = r'["\\\x00-\x1f]'


def _json_lines(table: pa.Table, raw: frozenset[str]) -> pa.Array:
    """Each row as a JSON object and a newline."""
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):
        column = table[name].combine_chunks()
        if pa.types.is_string(column.type) and name not in raw:
            if pc.any(pc.match_substring_regex(column, _JSON_UNSAFE)).as_py():
                raise ValueError(f"column {name!r} holds text that needs JSON escaping")
            text = pc.binary_join_element_wise('"', column, '"', "")
        else:
            text = pc.cast(column, pa.string())
        parts += [("{" if i == 0 else ", ") + f'"{name}": ', pc.fill_null(text, "null")]
    return pc.binary_join_element_wise(*parts, "}\n", "")


def _joined(lines: pa.Array) -> pa.Buffer:
    """The concatenated values of a string array without nulls: its data buffer's used part."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None or len(lines) == 0:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def write_parquet_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")

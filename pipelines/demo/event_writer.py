"""Writing the demo's event streams: sorted by time, numbered, a few rows broken and a few
links made unknown on purpose, each in its file's format, with a truth row per event.

A stream holds one event file's rows as numpy columns (pipelines.demo.events makes them);
Arrow turns them into text and files, so forty million events take minutes, not hours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.demo import moments, writers
from pipelines.demo.contacts import ROLES, TOPICS
from pipelines.demo.event_files import LOYALTY_TRANSACTIONS, EventFile
from pipelines.demo.people import Population
from pipelines.demo.places import EMAIL_DOMAINS
from pipelines.demo.records import SourceRecords

UNKNOWN_LINK_RATE = 0.005
MALFORMED_RATE = 0.0002  # per kind of broken row and file, at least one each
MISTYPED_DOMAINS = ("gmial.com", "hotmial.com", "outlok.com", "zigo.nl", "kpnmial.nl")
assert not set(MISTYPED_DOMAINS) & {d for d, _ in EMAIL_DOMAINS}  # no record can carry these addresses
TRUTH_SCHEMA = pa.schema(
    [
        ("event_source", pa.string()),
        ("event_id", pa.string()),
        ("person_id", pa.string()),
        ("linked", pa.bool_()),  # false: the event names an id no system has
        ("malformed", pa.bool_()),
        ("problem", pa.string()),  # missing_id, bad_time, no_time, extra_field, not_json
        ("line", pa.int64()),  # the row's line in its file (CSV/TSV: the header is line 1), or row number
        ("role", pa.string()),  # contacts: first, repeat or transfer
        ("episode", pa.int64()),  # contacts and surveys: the episode they belong to
    ]
)
MALFORMED = {
    "csv": ("missing_id", "bad_time", "extra_field"),
    "tsv": ("missing_id", "bad_time", "extra_field"),
    "ndjson": ("missing_id", "bad_time", "not_json"),
    "parquet": ("missing_id", "no_time"),
}


@dataclass(frozen=True)
class Col:
    """A file column before sorting: numbers, indices into a vocabulary, or cents."""

    values: np.ndarray
    vocab: tuple[str, ...] | None = None
    money: bool = False  # cents, written as 12.34 (a double in Parquet)
    null: np.ndarray | None = None  # bool: no value


@dataclass
class Stream:
    """One event file's rows before they are sorted, numbered and written."""

    spec: EventFile
    person: np.ndarray
    ts: np.ndarray  # seconds since 1970
    link: np.ndarray  # the record (index in SourceRecords) the event names, or the identifier typed (object)
    columns: dict[str, Col]  # the file's other columns
    role: np.ndarray | None = None  # contacts: index in ROLES
    episode: np.ndarray | None = None
    moment: np.ndarray | None = None  # the planned life moment the row announces, -1 for none
    parent: np.ndarray | None = None  # returns: the row of the order (its id goes to ``parent_column``)
    parent_column: str = ""
    kind_prefix: tuple[str, ...] = field(default_factory=tuple)  # id prefix per value of the "kind" column


class EventWriter:
    """Sorts, numbers, breaks and writes one stream after another, keeping the truth."""

    def __init__(
        self,
        out_dir: Path,
        pop: Population,
        records: SourceRecords,
        rng: np.random.Generator,
        featured: int | None,
        truth_path: Path,
        end: int,
    ) -> None:
        self.out_dir, self.records, self.rng, self.featured, self.end = out_dir, records, rng, featured, end
        self.person_ids = pa.array(pop.person_id, pa.string())
        self.truth = pq.ParquetWriter(truth_path, TRUTH_SCHEMA, compression="zstd")
        self.announced: dict[int, moments.Announcement] = {}
        self.paths: dict[str, Path] = {}
        self.rows: dict[str, int] = {}
        self.malformed: dict[str, int] = {}
        self.unknown: dict[str, int] = {}

    def write(self, s: Stream) -> None:
        spec = s.spec
        if spec.timestamp_format and "%S" not in spec.timestamp_format:
            s.ts = s.ts - s.ts % 60  # the file shows minutes: the truth and the row order go by what it shows
        live = np.flatnonzero(s.ts < self.end)  # what the export at the window's end cannot hold yet
        order = live[np.lexsort((s.person[live], s.ts[live]))]
        n = len(order)
        fmt = spec.file.rsplit(".", 1)[1]
        moment = s.moment[order] if s.moment is not None else np.full(n, -1)
        protected = (moment >= 0) | (s.person[order] == (self.featured if self.featured is not None else -1))
        unknown = (self.rng.random(n) < UNKNOWN_LINK_RATE) & ~protected
        broken = self._break(n, fmt, protected | unknown)
        ids = self._ids(s, order)
        table = self._table(s, order, ids, unknown, broken, fmt)
        path = self.out_dir / spec.file
        if fmt == "ndjson":
            raw = frozenset(name for name, col in s.columns.items() if col.money)
            writers.write_ndjson_table(path, table, raw, np.flatnonzero(broken == "not_json").tolist())
        elif fmt == "parquet":
            writers.write_parquet_table(path, table)
        else:
            writers.write_csv_table(path, table, spec.delimiter or ",", np.flatnonzero(broken == "extra_field").tolist())
        self._keep_truth(s, order, ids, unknown, broken, fmt)
        self.paths[spec.name], self.rows[spec.name] = path, n
        self.malformed[spec.name], self.unknown[spec.name] = int(np.count_nonzero(broken != "")), int(np.count_nonzero(unknown))
        for row in np.flatnonzero(moment >= 0).tolist():
            what = "child_added" if spec is LOYALTY_TRANSACTIONS else f"topic {TOPICS[int(s.columns[spec.topic or ''].values[order[row]])]}"
            self.announced[int(moment[row])] = moments.Announcement(spec.name, str(ids[row]), int(s.ts[order[row]]), what)

    def _break(self, n: int, fmt: str, spared: np.ndarray) -> np.ndarray:
        """Which rows are broken and how ("" for none): a few of each kind the format allows."""
        out = np.full(n, "", dtype=object)
        kinds = MALFORMED[fmt]
        per_kind = max(1, round(n * MALFORMED_RATE)) if n >= 50 else 0
        pool = np.flatnonzero(~spared)
        chosen = self.rng.choice(pool, size=min(per_kind * len(kinds), len(pool)), replace=False) if per_kind else pool[:0]
        for k, kind in enumerate(kinds):
            out[chosen[k * per_kind : (k + 1) * per_kind]] = kind
        return out

    def _ids(self, s: Stream, order: np.ndarray) -> np.ndarray:
        """Ids in time order with small gaps (other systems' rows in between), as text."""
        n = len(order)
        numbers = 10_000_000 + np.cumsum(self.rng.integers(1, 4, size=n))
        name = s.spec.name
        if name == "loyalty_transactions":
            return (numbers + 490_000_000).astype(object)
        digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), 9, "0")
        if s.kind_prefix:
            prefix = pa.array(s.kind_prefix, pa.string()).take(pa.array(s.columns["kind"].values[order]))
        else:
            prefix = pa.array(np.full(n, {"calls": "C", "messages": "M", "surveys": "S", "consents": "P"}[name], dtype=object), pa.string())
        return np.array(pc.binary_join_element_wise(prefix, digits, "").to_pylist(), dtype=object)

    def _table(self, s: Stream, order: np.ndarray, ids: np.ndarray, unknown: np.ndarray, broken: np.ndarray, fmt: str) -> pa.Table:
        spec = s.spec
        no_id = broken == "missing_id"
        out: dict[str, pa.Array] = {
            spec.id: pa.array(ids, pa.int64() if spec is LOYALTY_TRANSACTIONS else pa.string(), mask=no_id),
            spec.timestamp: self._times(s.ts[order], spec, broken),
            spec.link_column: self._links(s, order, unknown),
        }
        for name, col in s.columns.items():
            out[name] = _arrow(col, order, text_money=fmt != "parquet")
        if s.parent is not None:
            position = np.full(len(s.ts), -1, dtype=np.int64)
            position[order] = np.arange(len(order))
            parent = s.parent[order]
            at = np.where(parent >= 0, position[np.maximum(parent, 0)], -1)
            out[s.parent_column] = pa.array(ids[np.maximum(at, 0)], pa.string(), mask=at < 0)
        return pa.table({c: out[c] for c in spec.columns})

    def _times(self, ts: np.ndarray, spec: EventFile, broken: np.ndarray) -> pa.Array:
        """Native timestamps (Parquet) or text in the file's format; broken rows get an impossible date."""
        stamps = pa.array(ts.astype("datetime64[s]"))
        if not spec.timestamp_format:
            return pc.if_else(pa.array(broken == "no_time"), pa.scalar(None, stamps.type), stamps)
        text = pc.strftime(stamps, format=spec.timestamp_format)
        bad = np.flatnonzero(broken == "bad_time")
        if not len(bad):
            return text
        impossible = spec.timestamp_format.replace("%d", "31").replace("%m", "02")  # 31 February
        values = [dt.datetime.fromtimestamp(int(ts[i]), dt.UTC).strftime(impossible) for i in bad.tolist()]
        mask = np.zeros(len(ts), dtype=bool)
        mask[bad] = True
        return pc.replace_with_mask(text, pa.array(mask), pa.array(values, pa.string()))

    def _links(self, s: Stream, order: np.ndarray, unknown: np.ndarray) -> pa.Array:
        """The record id (or typed identifier) each event names; ids no system has for the unknown ones."""
        spec = s.spec
        n = len(order)
        if spec.link_identifier:
            values = s.link[order].copy()
            for i in np.flatnonzero(unknown).tolist():
                local = str(values[i]).strip().split("@")[0]
                values[i] = f"{local}@{MISTYPED_DOMAINS[i % len(MISTYPED_DOMAINS)]}"
            return pa.array(values, pa.string())
        ids = self.records.record_id[s.link[order]]
        stranger = np.arange(1, n + 1)
        if spec.link_source == "webshop":  # numeric ids in JSON, like the webshop's own
            return pa.array(np.where(unknown, 990_000_000 + stranger, ids.astype(np.int64)), pa.int64())
        values = ids.copy()
        for i in np.flatnonzero(unknown).tolist():  # shaped like the system's ids, in a range it never issues
            values[i] = f"CC-9{i:07d}" if spec.link_source == "contact_center" else f"7{i:011d}"
        return pa.array(values, pa.string())

    def _keep_truth(self, s: Stream, order: np.ndarray, ids: np.ndarray, unknown: np.ndarray, broken: np.ndarray, fmt: str) -> None:
        n = len(order)
        first_line = 2 if fmt in ("csv", "tsv") else 1  # a header takes line 1; Parquet counts rows
        none = np.ones(n, dtype=bool)
        role = pa.array(ROLES, pa.string()).take(
            pa.array(s.role[order] if s.role is not None else np.zeros(n, dtype=np.int64), mask=none if s.role is None else None)
        )
        episode = pa.array(
            s.episode[order] if s.episode is not None else np.zeros(n, dtype=np.int64), pa.int64(), mask=none if s.episode is None else None
        )
        event_id = pa.array(ids.astype(np.int64)).cast(pa.string()) if s.spec is LOYALTY_TRANSACTIONS else pa.array(ids, pa.string())
        self.truth.write_table(
            pa.table(
                {
                    "event_source": pa.array(np.full(n, s.spec.name, dtype=object), pa.string()),
                    "event_id": event_id,
                    "person_id": self.person_ids.take(pa.array(s.person[order])),
                    "linked": pa.array(~unknown),
                    "malformed": pa.array(broken != ""),
                    "problem": pa.array(broken, pa.string(), mask=broken == ""),
                    "line": pa.array(np.arange(n, dtype=np.int64) + first_line),
                    "role": role,
                    "episode": episode,
                },
                schema=TRUTH_SCHEMA,
            )
        )

    def close(self) -> None:
        self.truth.close()


def _arrow(col: Col, order: np.ndarray, *, text_money: bool) -> pa.Array:
    values = col.values[order]
    null = col.null[order] if col.null is not None else None
    if col.vocab is not None:
        return pa.array(col.vocab, pa.string()).take(pa.array(values, mask=null))
    if col.money and text_money:  # "12.30", as exports print money
        euros = pc.cast(pa.array(values // 100), pa.string())
        cents = pc.utf8_lpad(pc.cast(pa.array(values % 100), pa.string()), 2, "0")
        text = pc.binary_join_element_wise(euros, cents, ".")
        return text if null is None else pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    if col.money:
        return pa.array(values / 100.0, pa.float64(), mask=null)
    return pa.array(values, pa.int64(), mask=null)

"""The published records as the model reads them, held in memory, so that a live record's
candidates, its candidates' columns and their term frequencies cost no statement.

Why: at 1,000,000 profiles most of a live record's time went into DuckDB reading index
and table blocks it had not touched before (a record's candidate lookup alone: 13 ms in
the bench, 7 ms warm, up to 30 ms). One scan when the first record comes in (and again
after each published run) reads every record's model input into an Arrow table and, per
blocking rule and role (a :class:`Plan`), a sorted array of the 64-bit DuckDB ``hash``
of the values the rule compares, with the row each came from. A record's candidates are
then binary searches: the rows whose stored-side hash equals the hash of its new-side
values. Both hashes are DuckDB's over the same expressions and types (the new side's in
the statement that reads the new records), so the candidates are those splink's join on
the rule gives, plus, with a chance of about n/2^64 per lookup (1e-13 at 2M records), a
record whose values only share the hash: that pair is then scored like the others,
although the batch would not have compared it. tests/pipelines/live/test_live.py holds the
candidates, scores and profiles to those of the joins in the store.

Records ingested after the scan are kept beside it (:meth:`MatchIndex.add`): the rows of
updated records are shadowed by their new version. Nothing else changes a record's
model input while a run is published."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.matching.blocking import BlockingRule
from profiles.store import Store, ident, name_literal
from profiles.tuning import TUNING

#: Prefix of the index's term-frequency columns: ``__tf_<input column>``.
TF_PREFIX = "__tf_"
#: The column of DuckDB's hash of record_key (the scan's rows are found by it).
KEY_HASH = "__key_hash"


@dataclass(frozen=True)
class Plan:
    """One blocking rule in one role: a new record (``n``) pairs with another (``o``)
    when ``news`` evaluated on it equals ``stored`` evaluated on the other."""

    news: tuple[str, ...]
    stored: tuple[str, ...]


def plans_of(rules: Sequence[BlockingRule]) -> list[Plan]:
    """The plans of blocking rules: each rule with the new record on either side; the
    two roles of a symmetric rule are one."""
    plans: list[Plan] = []
    for rule in rules:
        for news, stored in rule.roles():
            if (plan := Plan(news, stored)) not in plans:
                plans.append(plan)
    return plans


def _hash_sql(expressions: Iterable[str]) -> str:
    """DuckDB's hash of the values, NULL when one is NULL (NULL never equals)."""
    exprs = list(expressions)
    return f"CASE WHEN {' AND '.join(f'({e}) IS NOT NULL' for e in exprs)} THEN hash({', '.join(exprs)}) END"


def _aliased(expressions: Iterable[str], alias: str, to: str) -> list[str]:
    return [re.sub(rf"\b{alias}\.", f"{to}.", e) for e in expressions]


def stored_hashes_sql(plans: Sequence[Plan], alias: str = "o") -> list[str]:
    """Per plan, the hash of a record's stored-side values (as ``h<i>``), over ``alias``."""
    return [f"{_hash_sql(_aliased(p.stored, 'o', alias))} AS h{i}" for i, p in enumerate(plans)]


def probes_sql(plans: Sequence[Plan], relation: str) -> str:
    """New records (``relation``, aliased n) with their hashes as the index looks them up:
    ``__key_hash``, per plan the hash of the new side's values (``q<i>``) and of the stored
    side's (``h<i>``, what the index holds of them once they are in). Each distinct hash
    is computed once: a symmetric rule's two sides are one, and binding and planning each
    twice was half of the statement's time (6.0 -> 3.0 ms a live record, 19 plans)."""
    news = [_hash_sql(_aliased(p.news, "n", "n")) for p in plans]
    stored = [_hash_sql(_aliased(p.stored, "o", "n")) for p in plans]
    distinct = list(dict.fromkeys([*news, *stored]))
    number = {expression: i for i, expression in enumerate(distinct)}
    inner = ", ".join(f"{expression} AS __u{i}" for i, expression in enumerate(distinct))
    outer = ", ".join(
        [*(f"__u{number[e]} AS q{i}" for i, e in enumerate(news)), *(f"__u{number[e]} AS h{i}" for i, e in enumerate(stored))]
    )
    hidden = ", ".join(f"__u{i}" for i in range(len(distinct)))
    return f"SELECT * EXCLUDE ({hidden}), {outer} FROM (SELECT n.*, hash(n.record_key) AS {KEY_HASH}, {inner} FROM {relation})"


def _alone(plans: Sequence[Plan]) -> dict[str, int]:
    """Per column a plan compares alone (``n.c = o.c``): the first such plan, whose hash
    finds the rows holding a value of it."""
    alone: dict[str, int] = {}
    for i, plan in enumerate(plans):
        if len(plan.stored) == 1 and plan.stored[0].startswith("o.") and plan.news == ("n." + plan.stored[0][2:],):
            alone.setdefault(plan.stored[0][2:], i)
    return alone


def _sorted(hashes: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hashes ascending, the row of each) for the non-NULL ``hashes``."""
    valid = pc.is_valid(hashes)
    rows = np.flatnonzero(np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)).astype(np.int32)
    values = np.asarray(pc.drop_null(hashes).to_numpy(zero_copy_only=False), dtype=np.uint64)
    order = np.argsort(values, kind="stable")
    return values[order], rows[order]


class MatchIndex:
    """Every record of a published run as the model reads it, with its hashes per plan.

    ``table`` holds ``record_key``, the model's input columns, ``__tf_<col>`` per tf
    column, ``__key_hash`` (the hash of record_key) and ``h<i>`` per plan (see
    :func:`stored_hashes_sql`)."""

    def __init__(
        self,
        table: pa.Table,
        plans: Sequence[Plan],
        tf_columns: Sequence[str],
        preloaded: Mapping[tuple[str, str], float],
        preloaded_columns: Iterable[str],
    ):
        self.plans = list(plans)
        self.tf_columns = list(tf_columns)
        self._alone = _alone(self.plans)
        self._preloaded = dict(preloaded)
        self._preloaded_columns = set(preloaded_columns)
        self._by_plan = [_sorted(table.column(f"h{i}")) for i in range(len(self.plans))]
        self._by_key = _sorted(table.column(KEY_HASH))
        drop = [f"h{i}" for i in range(len(self.plans))] + [KEY_HASH]
        self.table = table.drop_columns(drop).combine_chunks()  # one chunk a column: take() copies only what it takes
        self.schema = self.table.schema
        self._keys = self.table.column("record_key")
        # records ingested since the scan: their rows, and per plan hash -> keys
        self._added: dict[str, dict[str, Any]] = {}
        self._added_hashes: dict[str, list[int | None]] = {}
        self._added_by_plan: list[dict[int, set[str]]] = [{} for _ in self.plans]
        self._shadowed: set[str] = set()  # keys of the scan whose row there is out of date

    @classmethod
    def load(cls, store: Store, linkable: str, plans: Sequence[Plan], tf_columns: Sequence[str], term_frequencies: str) -> MatchIndex:
        """Scan ``linkable`` (a SELECT of record_key and the model's input columns from
        the published records) with each record's term frequencies (as scoring joins
        them) and hashes. The tf values of a column no plan compares alone are read
        too, when there are at most ``TUNING.preload_tf_max`` (names: thousands)."""
        joins = "".join(
            f" LEFT JOIN {term_frequencies} t{i} ON t{i}.column_name = {name_literal(c)} AND t{i}.value = CAST(o.{ident(c)} AS VARCHAR)"
            for i, c in enumerate(tf_columns)
        )
        tf = "".join(f", t{i}.tf AS {ident(TF_PREFIX + c)}" for i, c in enumerate(tf_columns))
        table = store.arrow(
            f"SELECT o.*{tf}, hash(o.record_key) AS {KEY_HASH}, {', '.join(stored_hashes_sql(plans))} FROM ({linkable}) o{joins}"
        )
        rest = [c for c in tf_columns if c not in _alone(plans)]
        preloaded: dict[tuple[str, str], float] = {}
        if rest:
            names = ", ".join(name_literal(c) for c in rest)
            count = store.scalar(f"SELECT count(*) FROM {term_frequencies} WHERE column_name IN ({names})")
            if count <= TUNING.preload_tf_max:
                rows = store.rows(f"SELECT column_name, value, tf FROM {term_frequencies} WHERE column_name IN ({names})")
                preloaded = {(str(c), str(v)): float(t) for c, v, t in rows}
            else:
                rest = []
        return cls(table, plans, tf_columns, preloaded, rest)

    def __len__(self) -> int:
        """Records held: the scan's, less those updated since, and those added since."""
        return int(self.table.num_rows) - len(self._shadowed) + len(self._added)

    def _base_rows(self, index: tuple[np.ndarray, np.ndarray], value: int) -> np.ndarray:
        hashes, rows = index
        h = np.uint64(value)
        return rows[np.searchsorted(hashes, h, "left") : np.searchsorted(hashes, h, "right")]

    def candidates(self, probes: pa.Table) -> tuple[list[tuple[str, str]], pa.Table]:
        """(new key, other key) for every record a plan pairs with a probe, and the
        rows of those others that are not probes. The probes are the new records with
        ``record_key``, ``q<i>`` and ``h<i>`` per plan (:func:`probes_sql`). Probes pair with each other by their own (current)
        values, never by an older version held here."""
        keys = probes.column("record_key").to_pylist()
        new = set(keys)
        found: set[tuple[str, str]] = set()
        base: dict[str, int] = {}  # other key -> its row in the scan
        added: set[str] = set()
        for i in range(len(self.plans)):
            q = probes.column(f"q{i}").to_pylist()
            probe_by_hash: dict[int, list[str]] = {}
            for key, value in zip(keys, probes.column(f"h{i}").to_pylist()):
                if value is not None:
                    probe_by_hash.setdefault(value, []).append(key)
            for key, value in zip(keys, q):
                if value is None:
                    continue
                rows = self._base_rows(self._by_plan[i], value)
                if len(rows):
                    for other, row in zip(self._keys.take(pa.array(rows, pa.int32())).to_pylist(), rows.tolist()):
                        if other not in self._shadowed and other not in new:
                            found.add((key, other))
                            base[other] = row
                for other in self._added_by_plan[i].get(value, ()):
                    if other not in new:
                        found.add((key, other))
                        added.add(other)
                found.update((key, other) for other in probe_by_hash.get(value, ()) if other != key)
        return sorted(found), self._rows(sorted(base.values()), sorted(added))

    def _rows(self, base: list[int], added: list[str]) -> pa.Table:
        """Rows of the scan (by row) and held since (by key), in the index's schema."""
        table = self.table.take(pa.array(base, pa.int32()))
        if not added:
            return table
        return pa.concat_tables([table, pa.Table.from_pylist([self._added[k] for k in added], schema=self.schema)])

    def conform(self, probes: pa.Table, tf: Mapping[tuple[str, str], float]) -> pa.Table:
        """``probes`` with the index's columns in its types, their ``__tf_<col>`` from
        ``tf`` ((column, value) -> tf), and their hashes (``__key_hash``, ``q<i>``, ``h<i>``)."""
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for name in self.schema.names:
            if name.startswith(TF_PREFIX):
                column = name[len(TF_PREFIX) :]
                values = probes.column(column).to_pylist()
                columns[name] = pa.array([tf.get((column, str(v))) if v is not None else None for v in values], pa.float64())
            else:
                columns[name] = probes.column(name)
        hashes = [KEY_HASH, *(f"{p}{i}" for p in "qh" for i in range(len(self.plans)))]
        table = pa.table(columns).cast(self.schema)
        for name in hashes:
            table = table.append_column(name, probes.column(name))
        return table

    def holds(self, key: str, key_hash: int) -> bool:
        """Whether ``key`` (with ``key_hash``, its DuckDB ``hash``) is a record here."""
        return key in self._added or (key not in self._shadowed and self._scan_row(key, key_hash) is not None)

    def rows(self, keys: Sequence[str], key_hashes: Sequence[int]) -> tuple[pa.Table, list[str]]:
        """The rows of ``keys`` (with ``key_hashes``, their DuckDB ``hash``) in the
        index's schema, and the keys it does not hold."""
        base: list[int] = []
        added: list[str] = []
        missing: list[str] = []
        for key, value in zip(keys, key_hashes):
            if key in self._added:
                added.append(key)
                continue
            row = None if key in self._shadowed else self._scan_row(key, value)
            if row is None:
                missing.append(key)
            else:
                base.append(row)
        return self._rows(base, added), missing

    def add(self, rows: pa.Table) -> None:
        """Hold ``rows`` (committed records: the index's columns, ``__key_hash`` and
        ``h<i>`` per plan, see :meth:`conform`) as the current version of their keys."""
        hashes = [rows.column(f"h{i}").to_pylist() for i in range(len(self.plans))]
        key_hashes = rows.column(KEY_HASH).to_pylist()
        for n, row in enumerate(rows.select(self.schema.names).cast(self.schema).to_pylist()):
            key = row["record_key"]
            for i, value in enumerate(self._added_hashes.pop(key, ())):  # an earlier version held here
                if value is not None:
                    self._added_by_plan[i].get(value, set()).discard(key)
            if self._scan_row(key, key_hashes[n]) is not None:
                self._shadowed.add(key)
            self._added[key] = row
            own = [hashes[i][n] for i in range(len(self.plans))]
            self._added_hashes[key] = own
            for i, value in enumerate(own):
                if value is not None:
                    self._added_by_plan[i].setdefault(value, set()).add(key)

    def _scan_row(self, key: str, key_hash: int) -> int | None:
        """The row of ``key`` in the scan (shadowed or not), None when the scan lacks it."""
        return next((int(r) for r in self._base_rows(self._by_key, key_hash) if self._keys[int(r)].as_py() == key), None)

    def term_frequencies(self, side: pa.Table) -> dict[tuple[str, str], float]:
        """(input column, value as VARCHAR) -> tf of the values of ``side``'s rows that
        hold a term frequency (rows from this index)."""
        out: dict[tuple[str, str], float] = {}
        for column in self.tf_columns:
            for value, tf in zip(side.column(column).to_pylist(), side.column(TF_PREFIX + column).to_pylist()):
                if value is not None and tf is not None:
                    out[(column, str(value))] = float(tf)
        return out

    def probe_term_frequencies(self, probes: pa.Table) -> tuple[dict[tuple[str, str], float], list[tuple[str, str]]]:
        """The published term frequencies of the probes' values, as far as they are known
        here: (column, value) -> tf, and the (column, value) pairs to look up in the store.

        The run's term frequencies are those of its records' values: a value no record of
        the scan holds has none. A column a plan compares alone (email, phone) is found
        by that plan's hash among all the scan's rows (updated ones too: the table was
        counted with them); the others come from ``preloaded`` when it holds the column."""
        known: dict[tuple[str, str], float] = {}
        missing: list[tuple[str, str]] = []
        for column in self.tf_columns:
            values = probes.column(column).to_pylist()
            plan = self._alone.get(column)
            if plan is not None:
                q = probes.column(f"q{plan}").to_pylist()
                for value, hashed in zip(values, q):
                    if value is None or hashed is None:
                        continue
                    rows = self._base_rows(self._by_plan[plan], hashed)
                    for stored, tf in zip(
                        self.table.column(column).take(pa.array(rows, pa.int32())).to_pylist(),
                        self.table.column(TF_PREFIX + column).take(pa.array(rows, pa.int32())).to_pylist(),
                    ):
                        if stored == value and tf is not None:
                            known[(column, str(value))] = float(tf)
            elif column in self._preloaded_columns:
                for value in values:
                    if value is not None and (column, str(value)) in self._preloaded:
                        known[(column, str(value))] = self._preloaded[(column, str(value))]
            else:
                missing += [(column, str(v)) for v in values if v is not None]
        return known, sorted(set(missing))

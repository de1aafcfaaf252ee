"""Phase 1 of a live ingest, in a workspace of its own: the batch's own steps on the new
rows (mapping, standardization with the run's date formats), their candidates by the
run's blocking rules (from the in-memory index for a few records, by hash joins for a
file) and their scores with the run's model; nothing in the store changes here."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.batch.ingest import SourceCounts, stage_live
from pipelines.config import Config, SourceConfig
from pipelines.live.match_index import MatchIndex, Plan, probes_sql
from pipelines.matching import rowwise
from pipelines.matching.blocking import identifier_column
from pipelines.matching.scoring import bound_sql, pairs_sql, pairs_table, score_sql, tf_columns
from pipelines.standardize.batch import MATCH_COLUMNS, standardize
from pipelines.standardize.dates import DateFormats
from pipelines.standardize.rows import RECORD_TYPES, StandardizedRows, standardize_rows
from profiles.store import Store, ident, in_list, name_literal
from profiles.tuning import TUNING

#: A live record's quarantine table when none of its rows is quarantined (stage_live's columns).
NO_QUARANTINE = pa.table(
    {
        "source": pa.array([], pa.string()),
        "line": pa.array([], pa.int64()),
        "record_id": pa.array([], pa.string()),
        "reason": pa.array([], pa.string()),
        "content": pa.array([], pa.string()),
    }
)


class Staging:
    """Stages new rows of a source against a published run (``Prepared``)."""

    def __init__(self, store: Store, config: Config, plans: list[Plan], *, in_memory: bool):
        self.store, self.config, self.plans, self.in_memory = store, config, plans, in_memory

    def stage(self, state: Prepared, source: SourceConfig, *, rows: Sequence[Mapping[str, Any]] | None, path: Path | None) -> Staged:
        """The new ``rows`` (JSON objects keyed by the source's columns) or the file at
        ``path``, standardized, with their kept pairs (at or above the review threshold)."""
        # records handed over one by one: standardized in Python (the same values; ~30
        # statements fewer); a file, or rows only the SQL reads alike, through the batch's SQL
        fast = standardize_rows(source, rows, state.date_formats, self.config) if rows is not None and path is None else None
        if fast is not None and self.in_memory and fast.records.num_rows <= TUNING.live_lookup_max:
            # a few records standardized in Python: their hashes from their values, bound
            # (no workspace, no table: fewer statements a record)
            linkable = _fast_linkable(fast, self.config.shared_identifiers())
            columns = self._linkable_columns()
            values = ", ".join("(" + ", ".join(f"?::{t}" for _, t in columns) + ")" for _ in range(linkable.num_rows))
            relation = f"(VALUES {values}) n({', '.join(ident(c) for c, _ in columns)})"
            params = [row[c] for row in linkable.to_pylist() for c, _ in columns]
            pairs, probes = self._score_few(state, self.index(state), self.store.arrow(probes_sql(self.plans, relation), params))
            return Staged(
                fast.records.num_rows, 0, NO_QUARANTINE, fast.records.sort_by("record_key"), fast.identifiers, pairs, fast.issues, probes
            )
        with self.store.workspace(name=f"live_{secrets.token_hex(4)}"):
            return self._stage_in_workspace(state, source, fast, rows=rows, path=path)

    def _linkable_columns(self) -> list[tuple[str, str]]:
        """The model's input columns (``new_linkable``'s) and their SQL types."""
        types = dict(RECORD_TYPES)
        ids = self.config.shared_identifiers()
        return [("record_key", "VARCHAR"), *((c, types[c]) for c in MATCH_COLUMNS), *((identifier_column(n), "VARCHAR") for n in ids)]

    def _stage_in_workspace(
        self,
        state: Prepared,
        source: SourceConfig,
        fast: StandardizedRows | None,
        *,
        rows: Sequence[Mapping[str, Any]] | None,
        path: Path | None,
    ) -> Staged:
        """:meth:`stage` of a file (or of many rows) through the batch's SQL, in a workspace."""
        ids = self.config.shared_identifiers()
        if fast is not None:
            counts = SourceCounts(rows=fast.records.num_rows, quarantined=0, accepted=fast.records.num_rows)
            quarantine = NO_QUARANTINE
            self.store.execute("CREATE TABLE new_linkable (" + ", ".join(f"{ident(c)} {t}" for c, t in self._linkable_columns()) + ")")
            self.store.append("new_linkable", _fast_linkable(fast, ids))
        else:
            counts = stage_live(self.store, source, rows=rows, path=path)
            quarantine = self.store.arrow("SELECT * FROM quarantine")
            standardize(self.store, self.config, state.date_formats)
            pivots = "".join(
                f", (SELECT max(i.value) FROM identifiers i WHERE i.record_key = r.record_key AND i.kind = {name_literal(n)})"
                f" AS {ident(identifier_column(n))}"
                for n in ids
            )
            self.store.execute(
                f"CREATE TABLE new_linkable AS SELECT r.record_key, {', '.join('r.' + c for c in MATCH_COLUMNS)}{pivots} FROM records r"
            )
        count = fast.records.num_rows if fast is not None else int(self.store.scalar("SELECT count(*) FROM new_linkable"))
        probes = None
        if self.in_memory and count <= TUNING.live_lookup_max:
            pairs, probes = self._score_few(state, self.index(state), self.store.arrow(probes_sql(self.plans, "new_linkable n")))
        else:
            self._candidates(self.plans, ids)
            pairs = self._score_bulk(state, stored_linkable(ident(self.store.catalog), ids))
        if fast is not None:
            records, identifiers, issues = fast.records.sort_by("record_key"), fast.identifiers, fast.issues
        else:
            records = self.store.arrow("SELECT * FROM records ORDER BY record_key")
            identifiers = self.store.arrow("SELECT * FROM identifiers")
            issues = self.store.arrow("SELECT * FROM field_issues")
        return Staged(counts.rows, counts.quarantined, quarantine, records, identifiers, pairs, issues, probes)

    def index(self, state: Prepared) -> MatchIndex:
        """The published records in memory (read once per run, when first needed)."""
        if state.index is None:
            cat = ident(self.store.catalog)
            tf = f"{cat}.main.term_frequencies" if state.term_frequencies == "term_frequencies" else state.term_frequencies
            state.index = MatchIndex.load(
                self.store, stored_linkable(cat, self.config.shared_identifiers()), self.plans, tf_columns(state.model), tf
            )
        return state.index

    def _candidates(self, plans: list[Plan], identifiers: list[str]) -> None:
        """``candidates(new_key, stored_key)`` in the workspace: for every new record,
        the records (stored or new) some blocking rule pairs it with, in either role, as
        splink applies the rules; one hash join per rule and role."""
        cat = ident(self.store.catalog)
        # rules on one identifier are joined with ``identifiers`` (kind, value): email and
        # phone too, which are identifiers as standardized
        id_columns = {"o.email_std": "email", "o.phone_std": "phone", **{f"o.{identifier_column(n)}": n for n in identifiers}}
        parts: list[str] = []
        for plan in plans:
            news, stored = plan.news, plan.stored
            if len(stored) == 1 and stored[0] in id_columns:
                parts.append(
                    f"""SELECT n.record_key AS new_key, o.record_key AS stored_key FROM new_linkable n
                        JOIN {cat}.main.identifiers o ON o.kind = {name_literal(id_columns[stored[0]])} AND o.value = {news[0]}"""
                )
            else:
                condition = " AND ".join(f"{n} = {o}" for n, o in zip(news, stored))
                parts.append(
                    f"SELECT n.record_key AS new_key, o.record_key AS stored_key FROM new_linkable n JOIN {cat}.main.records o ON {condition}"
                )
        for plan in plans:  # pairs among the new records themselves
            condition = " AND ".join(f"{n} = {o}" for n, o in zip(plan.news, plan.stored))
            parts.append(
                f"SELECT n.record_key AS new_key, o.record_key AS stored_key FROM new_linkable n JOIN new_linkable o ON {condition} AND n.record_key <> o.record_key"
            )
        # UNION ALL: every reader of candidates takes distinct keys or pairs (a UNION here sorted out ~1.3M rows twice)
        self.store.execute(f"CREATE TABLE candidates AS {' UNION ALL '.join(parts)}", building="candidates")

    def _kept(self, model: dict[str, Any], pairs: str) -> pa.Table:
        """The scored ``pairs`` at or above the review threshold (keys ordered l < r, as
        splink orders them), with their pair ids: no pair id for the others."""
        return self.store.arrow(
            f"""SELECT md5(record_key_l || '|' || record_key_r)[:16] AS pair_id, COLUMNS(c -> NOT starts_with(c, 'gamma_'))
                FROM ({score_sql(model, pairs)}) WHERE match_probability >= ?""",
            [self.config.matching.review_threshold],
        )

    def _score_few(self, state: Prepared, index: MatchIndex, probes: pa.Table) -> tuple[pa.Table, pa.Table]:
        """A few new records (``probes``: their model input and hashes) scored against
        their candidates from ``index``: both records' columns and term frequencies are
        put together here and handed to the scoring SQL, which has no joins to plan.
        Returns the kept pairs and the probes as the index holds rows (with their tf)."""
        model = state.model
        found, stored = index.candidates(probes)
        known, missing = index.probe_term_frequencies(probes)
        if missing:  # a column no plan compares alone and not held in memory
            wanted = set(missing)
            known.update({(c, v): tf for c, v, tf in self._term_frequencies(state, sorted({v for _, v in missing})) if (c, v) in wanted})
        new = index.conform(probes, known)
        side = pa.concat_tables([new.select(index.schema.names), stored])
        pairs = pairs_table(model, side, sorted({(min(a, b), max(a, b)) for a, b in found}), {**index.term_frequencies(stored), **known})
        compiled = rowwise.scorer(score_sql(model, "_live_pairs")) if pairs.num_rows <= TUNING.rowwise_max else None
        if compiled is None:  # many pairs (DuckDB's vectors win), or SQL the row-wise evaluator does not know
            self.store.register("_live_pairs", pairs)
            try:
                return self._kept(model, "_live_pairs"), new
            finally:
                self.store.unregister("_live_pairs")
        threshold = self.config.matching.review_threshold
        scored = [row for row in compiled.score(pairs.to_pylist()) if row["match_probability"] >= threshold]
        columns = [c for c in compiled.columns if not c.startswith("gamma_")]
        keys = ("record_key_l", "record_key_r")
        return pa.table(
            {
                "pair_id": pa.array([rowwise.pair_id(r["record_key_l"], r["record_key_r"]) for r in scored], pa.string()),
                **{c: pa.array([r[c] for r in scored], pa.string() if c in keys else pa.float64()) for c in columns},
            }
        ), new

    def _score_bulk(self, state: Prepared, stored: str) -> pa.Table:
        """The ``candidates`` of a bulk file scored with the run's model and term
        frequencies, in the workspace by joins: those whose upper bound
        (:func:`pipelines.matching.scoring.bound_sql`) reaches the review band."""
        model = state.model
        columns = ["record_key", *MATCH_COLUMNS, *(identifier_column(n) for n in self.config.shared_identifiers())]
        columns_tf = tf_columns(model)
        tf = state.term_frequencies
        self._side_and_pairs(columns, stored)
        if tf == "term_frequencies" and columns_tf:
            self.store.execute(f"CREATE TABLE tf_needed AS {_term_frequencies_of(self.store.catalog, 'side', columns_tf)}")
            tf = "tf_needed"

        def of(candidates: str) -> str:
            return pairs_sql(
                model, "SELECT * FROM side", "SELECT * FROM side", candidates=f"SELECT * FROM {candidates}", term_frequencies=tf
            )

        bound = bound_sql(model, of("candidate_pairs"))
        if bound is None:
            return self._kept(model, of("candidate_pairs"))
        # only the pairs whose upper bound reaches the review band are scored
        self.store.execute(
            f"CREATE TABLE plausible_pairs AS SELECT record_key_l, record_key_r FROM ({bound}) WHERE match_probability >= ?",
            [self.config.matching.review_threshold],
        )
        return self._kept(model, of("plausible_pairs"))

    def _side_and_pairs(self, columns: list[str], stored: str) -> None:
        """``side`` (the new records and their stored candidates, as the model reads them)
        and ``candidate_pairs`` of a bulk file, in the workspace."""
        stored_keys = "SELECT DISTINCT stored_key FROM candidates WHERE stored_key NOT IN (SELECT record_key FROM new_linkable)"
        keys = [k for (k,) in self.store.rows(f"{stored_keys} ORDER BY 1 LIMIT {TUNING.keys_lookup_max + 1}")]
        if len(keys) > TUNING.keys_lookup_max:  # one semi-join (the keys stay in the database)
            in_stored, stored_params = f"s.record_key IN ({stored_keys})", list[Any]()
        else:  # a few: looked up by key (index scans)
            in_stored, stored_params = in_list("s.record_key", keys)
        self.store.execute(
            f"""CREATE TABLE side AS
                SELECT {", ".join(columns)} FROM new_linkable
                UNION ALL
                SELECT {", ".join("s." + c for c in columns)} FROM ({stored} WHERE {in_stored}) s""",
            stored_params,
        )
        self.store.execute(
            """CREATE TABLE candidate_pairs AS
               SELECT DISTINCT least(new_key, stored_key) AS record_key_l, greatest(new_key, stored_key) AS record_key_r
               FROM candidates WHERE new_key <> stored_key"""
        )

    def _term_frequencies(self, state: Prepared, values: list[str]) -> list[tuple[str, str, float]]:
        """The published term frequencies (column, value, tf) of ``values``, cached per run:
        each value is an indexed equality (an ``IN`` list of them scans the table)."""
        cache = state.tf_rows
        missing = [v for v in values if v not in cache]
        if len(cache) + len(missing) > TUNING.tf_cache_max:
            cache.clear()
        table = f"{ident(self.store.catalog)}.main.term_frequencies"
        if missing:
            found = self.store.rows(
                " UNION ALL ".join(f"SELECT column_name, value, tf FROM {table} WHERE value = ?" for _ in missing), missing
            )
        else:
            found = []
        for v in missing:
            cache[v] = []
        for column, value, tf in found:
            cache[str(value)].append((str(column), str(value), float(tf)))
        return [row for v in values for row in cache.get(v, [])]


@dataclass
class Prepared:
    """What a live ingester read of the published run (again when another is published)."""

    run: str
    model: dict[str, Any]  # the model the run scored with
    date_formats: DateFormats
    record_columns: frozenset[str]
    term_frequencies: str  # the relation scoring reads them from
    tf_rows: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # value -> rows
    index: MatchIndex | None = None  # the records in memory (LiveIngest(in_memory=True)), read when first needed


@dataclass(frozen=True)
class Staged:
    rows: int
    quarantined: int
    quarantine: pa.Table
    records: pa.Table
    identifiers: pa.Table
    pairs: pa.Table
    issues: pa.Table
    probes: pa.Table | None  # a few records as the index holds them (None: a bulk file)


def _term_frequencies_of(catalog: str, relation: str, columns: list[str]) -> str:
    """The published term frequencies (column_name, value, tf) of the values ``columns``
    of ``relation`` hold: one semi-join, for values too many to look up one by one."""
    values = f"SELECT DISTINCT unnest([{', '.join(f'CAST({ident(c)} AS VARCHAR)' for c in columns)}]) AS value FROM {relation}"
    return f"""SELECT column_name, value, tf FROM {ident(catalog)}.main.term_frequencies
               WHERE value IN ({values}) AND column_name IN ({", ".join(name_literal(c) for c in columns)})"""


def _fast_linkable(fast: StandardizedRows, identifiers: list[str]) -> pa.Table:
    """The model's input for records standardized in Python, as the SQL path builds it
    from ``records`` and ``identifiers`` (an identifier column: the kind's largest value)."""
    linkable = fast.records.select(["record_key", *MATCH_COLUMNS])
    largest: dict[tuple[str, str], str] = {}
    for key, kind, value in zip(*(fast.identifiers.column(c).to_pylist() for c in ("record_key", "kind", "value"))):
        if value is not None and value > largest.get((key, kind), value[:0]):
            largest[(key, kind)] = value
    keys = linkable.column("record_key").to_pylist()
    for kind in identifiers:
        linkable = linkable.append_column(identifier_column(kind), pa.array([largest.get((key, kind)) for key in keys], pa.string()))
    return linkable


def stored_linkable(cat: str, identifiers: list[str], *, source: str | None = None) -> str:
    """Records as the model's input (``linkable``'s columns), aliased ``s``: the published
    ones, or those of ``source`` (a relation with the columns of ``records``)."""
    relation = source or f"{cat}.main.records"
    pivots = "".join(
        f", list_max(list_transform(list_filter(s.identifiers, x -> x.kind = {name_literal(n)}), x -> x.value)) AS {ident(identifier_column(n))}"
        for n in identifiers
    )
    return f"SELECT s.record_key, {', '.join('s.' + c for c in MATCH_COLUMNS)}{pivots} FROM {relation} s"

"""Real-time recognition: records ingested one at a time (the API's ``ingestRecord``) or
in bulk (``unify ingest``) are matched against the published profiles at once.

A live record goes through the batch run's own steps, on just that record:
- mapping and standardization of its source (with the date formats the run read);
- candidates by the run's blocking rules, against the store and the other new records;
- scores from the run's model with splink's own arithmetic (pipelines.scoring), so a
  pair scores the same as in the batch;
- profiles as the batch would form them around the record: links at or above the match
  threshold, vetoes and steward decisions (the weakest links are cut), so a record that
  links two profiles merges them (the oldest id survives, the other redirects), and one
  whose best candidate is in the review band gets its own profile and a review pair;
- the golden records of the touched profiles rebuilt with the batch's survivorship.

Ingesting a record again (same source and id) updates it, never duplicates it; an update
may move it to another profile (audited). Every accepted record is also kept in the
``ingest_log``, so a later batch run includes it (and a run that was in progress while it
came in applies it again after publishing: none is lost)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines import rowwise
from pipelines.comparisons import blocking_rules, identifier_column, model_veto_sql
from pipelines.config import Config, SourceConfig
from pipelines.ingest import SourceCounts, stage_live
from pipelines.link import model_groups, provisional_marker
from pipelines.match_index import KEY_HASH, MatchIndex, Plan, plans_of, probe_hashes_sql, stored_hashes_sql
from pipelines.scoring import bound_sql, pairs_sql, pairs_table, score_sql, term_frequencies_relation, tf_columns
from pipelines.standardize import MATCH_COLUMNS, DateFormats, standardize
from pipelines.standardize_rows import RECORD_TYPES, StandardizedRows, standardize_rows
from profiles.constraints import STEWARD_LINK, constrained_components
from profiles.errors import ConfigError, StoreError
from profiles.identity import mint_profile_ids
from profiles.store import (
    SERVING_INDEXES,
    AuditEvent,
    ProfileQueries,
    Steward,
    Stewardship,
    Store,
    ensure_serving_indexes,
    ident,
    in_list,
    match_probabilities,
    name_literal,
    published_run,
)
from profiles.tuning import TUNING

#: The published run's tables a live record's profile is read from and written to (warm()).
_WARM_TABLES = ("records", "membership", "identifiers", "pairs", "profiles", "golden_fields")
#: A live record's quarantine table when none of its rows is quarantined (stage_live's columns).
_NO_QUARANTINE = pa.table(
    {
        "source": pa.array([], pa.string()),
        "line": pa.array([], pa.int64()),
        "record_id": pa.array([], pa.string()),
        "reason": pa.array([], pa.string()),
        "content": pa.array([], pa.string()),
    }
)
STATUSES = ("attached", "new_profile", "review", "merged", "updated", "moved", "quarantined")


@dataclass(frozen=True)
class IngestedRecord:
    """What became of one ingested record."""

    record_key: str
    status: str  # one of STATUSES
    profile_id: str | None
    match_probability: float | None  # its strongest link inside its profile
    previous_profile_id: str | None = None  # an updated record's profile before the update
    merged_profiles: list[str] = field(default_factory=list)  # ids that now redirect to profile_id
    review_pairs: list[str] = field(default_factory=list)  # pair ids queued for a steward
    problem: str | None = None  # why a row was quarantined
    field_issues: list[str] = field(default_factory=list)  # values nulled as unreadable, "field: reason"


@dataclass
class IngestReport:
    source: str
    rows: int
    quarantined: int
    field_issues: int
    records: list[IngestedRecord]
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.records:
            out[r.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts()}


class LiveIngest:
    """Matches new records into the published profiles of a store (the caller owns it)."""

    def __init__(self, store: Store, config: Config, *, in_memory: bool = True):
        """``in_memory``: keep the published records' model input in memory (a
        MatchIndex, read in one scan when the first few records come: ~seconds at
        1,000,000 records) and take a few records' candidates from it. Off for a
        one-off ingest (the CLI), which joins every file with the stored records."""
        self.store, self.config = store, config
        self.in_memory = in_memory
        self.warmed = 0  # warm-ups finished (warming())
        self.plans = plans_of(blocking_rules(model_groups(config), config.shared_identifiers()))  # the run's rules, per role
        self.queries = ProfileQueries(store)
        self.stewardship = Stewardship(store, **config.stewardship_settings())
        self._prepared: _Prepared | None = None  # what was read of the published run, once per run
        self._published: list[Any] = []  # published_run's cache

    def ingest(
        self, source_name: str, by: Steward, *, rows: Sequence[Mapping[str, Any]] | None = None, path: Path | None = None
    ) -> IngestReport:
        """Ingest ``rows`` (JSON objects keyed by the source's column names) or the file at
        ``path`` for source ``source_name``; the store reflects them when this returns."""
        started = time.perf_counter()
        source = self._source(source_name)
        with self.store.exclusive():
            run, model = self._prepare()
            staged = self._stage(source, model, self._state.date_formats, rows=rows, path=path)
            with self.store.transaction():
                report = self._apply(run, model, source, staged, by)
            index = self._state.index
            if index is not None and staged.probes is not None:
                index.add(staged.probes)  # committed: the new rows are the records' current version
            elif index is not None:
                self._state.index = None  # a bulk file: read again when a few records come
        report.seconds = round(time.perf_counter() - started, 4)
        return report

    def forget(self) -> None:
        """Read the published records again when the next records come: another writer
        changed them (a `unify ingest` that a server ran for the CLI, beside this one)."""
        with self.store.exclusive():
            if self._prepared is not None:
                self._prepared.index = None
                self._prepared.tf_rows.clear()

    @property
    def model_is_provisional(self) -> bool:
        """The published run's model had nothing to learn true matches from (one clean
        source): see pipelines.link.provisional_marker."""
        return provisional_marker(self.config).exists()

    def log_for_batch(self, source_name: str, by: Steward, path: Path) -> tuple[SourceCounts, list[dict[str, Any]]]:
        """Read the file at ``path`` for source ``source_name`` and keep its good rows in
        the ingest log without matching them, for the batch run that follows: with a
        provisional model, a file that may bring the first duplicates is matched by a run
        that trains on every record, as a batch run over all sources would. Returns the
        counts and the quarantined rows."""
        source = self._source(source_name)
        with self.store.exclusive(), self.store.workspace(name=f"live_{secrets.token_hex(4)}"):
            counts = stage_live(self.store, source, path=path)
            quarantined = self.store.dicts("SELECT * FROM quarantine ORDER BY line")
            with self.store.transaction():
                self.store.execute(
                    f"""INSERT INTO {ident(self.store.catalog)}.main.ingest_log (seq, source, record_id, raw, ingested_at, actor)
                        SELECT nextval('{ident(self.store.catalog)[1:-1]}.main.ingest_seq'), source, record_id, raw::JSON, now(), ?
                        FROM ingested ORDER BY line""",
                    [by.actor],
                )
        return counts, quarantined

    def warm(self) -> dict[str, float]:
        """Read in, before the first record comes, what live records need: the published
        records' model input (the in-memory index, with ``in_memory``) and the blocks of
        the tables a record's profile is read from and written to, into DuckDB's buffer
        pool. Without it the first records of a large store pay for both: at 1,000,000
        profiles a record's golden record, pairs and profile read blocks no query has
        touched yet, and p99 was 2-3 times p50. Returns the seconds of each step (none
        without a published run)."""
        seconds: dict[str, float] = {}
        with self.store.exclusive():
            for step, took in self.warming():
                seconds[step] = round(seconds.get(step, 0.0) + took, 3)
        return seconds

    def warming(self, *, index: bool = True) -> Iterator[tuple[str, float]]:
        """:meth:`warm` one statement at a time, each holding the store alone, yielding
        (step, seconds) after each: a server reads the tables and indexes in again this
        way between requests after its idle checkpoints, which rewrite them (``index``
        False: the in-memory index does not change). Stops when the published run
        changes or a statement fails; ``warmed`` counts the runs that finished."""
        with self.store.exclusive():
            try:
                run, model = self._prepare()
            except StoreError:  # nothing published yet: nothing to read
                return
        if index and self.in_memory:
            started = time.perf_counter()
            with self.store.exclusive():
                self._index(model)
            yield "index", time.perf_counter() - started
        r = f"{ident(self.store.catalog)}.{ident(run)}"

        def statement(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]] | None:
            """One statement holding the store alone; None once another run is published or it fails."""
            with self.store.exclusive():
                if published_run(self.store, self._published) != run:
                    return None  # another run was published: its own warm-up is due
                try:
                    return self.store.rows(sql, params)
                except StoreError:
                    return None

        for table in (*(f"{r}.{t}" for t in _WARM_TABLES), "profile_registry"):
            # every column's blocks, read once, a few row groups at a time
            started = time.perf_counter()
            if (bounds := statement(f"SELECT min(rowid), max(rowid) FROM {table}")) is None:
                return
            yield "tables", time.perf_counter() - started
            low, high = bounds[0]
            for start in range(low or 0, (high if high is not None else -1) + 1, TUNING.warm_rows):
                started = time.perf_counter()
                sql = f"SELECT bit_xor(hash(COLUMNS(*))) FROM {table} WHERE rowid BETWEEN ? AND ?"
                if statement(sql, [start, start + TUNING.warm_rows - 1]) is None:
                    return
                yield "tables", time.perf_counter() - started
        # An index is read in as it is searched: a key lookup that finds its nodes unread
        # takes several times as long as one after many keys have been looked up (in
        # lists of 1,000, which DuckDB answers from the index).
        indexed = [(f"{r}.{ident(t)}", c) for t, columns in SERVING_INDEXES.items() for c in columns if t in _WARM_TABLES]
        for table, column in [*indexed, ("profile_registry", "profile_id")]:
            started = time.perf_counter()
            if (sample := statement(f"SELECT {ident(column)} FROM {table} USING SAMPLE {TUNING.warm_keys} ROWS")) is None:
                return
            yield "indexes", time.perf_counter() - started
            values = [v for (v,) in sample]
            for i in range(0, len(values), 1000):
                started = time.perf_counter()
                batch = values[i : i + 1000]
                if statement(f"SELECT count(*) FROM {table} WHERE {ident(column)} IN ({', '.join('?' * len(batch))})", batch) is None:
                    return
                yield "indexes", time.perf_counter() - started
        self.warmed += 1

    def _prepare(self) -> tuple[str, dict[str, Any]]:
        """The published run and its model; what is read once per run is read when it changes."""
        run = published_run(self.store, self._published)  # a statement only after a publish
        if run is not None and (self._prepared is None or self._prepared.run != run):
            ensure_serving_indexes(self.store)  # once per run: keyed lookups instead of table scans
            self._prepared = _Prepared(
                run=run,
                model=self.queries.published_model(),
                date_formats=self._date_formats(),
                record_columns=frozenset(self.store.columns(f"{ident(self.store.catalog)}.{ident(run)}.records")),
                term_frequencies=term_frequencies_relation(self.store),
            )
        if run is None or self._prepared is None or not self._prepared.model:
            raise StoreError("no published run with a model: run `unify run` before ingesting")
        return run, self._prepared.model

    # ---- phase 1: in a workspace, the batch's own steps on the new rows -------------

    def _source(self, name: str) -> SourceConfig:
        for source in self.config.sources:
            if source.name == name:
                return source
        raise ConfigError(f"unknown source {name!r}; configured: {', '.join(s.name for s in self.config.sources)}")

    def _date_formats(self) -> DateFormats:
        text = self.store.scalar("SELECT max_by(summary::VARCHAR, finished_at) FROM runs WHERE status = 'published'")
        formats = json.loads(text).get("date_formats", {}) if text else {}
        return {str(k): dict(v) for k, v in formats.items()}

    def _stage(
        self,
        source: SourceConfig,
        model: dict[str, Any],
        formats: DateFormats,
        *,
        rows: Sequence[Mapping[str, Any]] | None,
        path: Path | None,
    ) -> _Staged:
        cat = ident(self.store.catalog)
        ids = self.config.shared_identifiers()
        # records handed over one by one: standardized in Python (the same values; ~30
        # statements fewer); a file, or rows only the SQL reads alike, through the batch's SQL
        fast = standardize_rows(source, rows, formats, self.config) if rows is not None and path is None else None
        types = dict(RECORD_TYPES)
        columns = [("record_key", "VARCHAR"), *((c, types[c]) for c in MATCH_COLUMNS), *((identifier_column(n), "VARCHAR") for n in ids)]
        if fast is not None and self.in_memory and fast.records.num_rows <= TUNING.live_lookup_max:
            # a few records standardized in Python: their hashes from their values, bound
            # (no workspace, no table: fewer statements a record)
            linkable = _fast_linkable(fast, ids)
            values = ", ".join("(" + ", ".join(f"?::{t}" for _, t in columns) + ")" for _ in range(linkable.num_rows))
            relation = f"(VALUES {values}) n({', '.join(ident(c) for c, _ in columns)})"
            params = [row[c] for row in linkable.to_pylist() for c, _ in columns]
            pairs, probes = self._score_few(model, self._index(model), self.store.arrow(_probes_sql(self.plans, relation), params))
            return _Staged(
                fast.records.num_rows, 0, _NO_QUARANTINE, fast.records.sort_by("record_key"), fast.identifiers, pairs, fast.issues, probes
            )
        with self.store.workspace(name=f"live_{secrets.token_hex(4)}"):
            if fast is not None:
                counts = SourceCounts(rows=fast.records.num_rows, quarantined=0, accepted=fast.records.num_rows)
                quarantine = _NO_QUARANTINE
                self.store.execute("CREATE TABLE new_linkable (" + ", ".join(f"{ident(c)} {t}" for c, t in columns) + ")")
                self.store.append("new_linkable", _fast_linkable(fast, ids))
            else:
                counts = stage_live(self.store, source, rows=rows, path=path)
                quarantine = self.store.arrow("SELECT * FROM quarantine")
                standardize(self.store, self.config, formats)
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
                pairs, probes = self._score_few(model, self._index(model), self.store.arrow(_probes_sql(self.plans, "new_linkable n")))
            else:
                self._candidates(self.plans, ids)
                pairs = self._score_bulk(model, _stored_linkable(cat, ids))
            if fast is not None:
                records, identifiers, issues = fast.records.sort_by("record_key"), fast.identifiers, fast.issues
            else:
                records = self.store.arrow("SELECT * FROM records ORDER BY record_key")
                identifiers = self.store.arrow("SELECT * FROM identifiers")
                issues = self.store.arrow("SELECT * FROM field_issues")
        return _Staged(counts.rows, counts.quarantined, quarantine, records, identifiers, pairs, issues, probes)

    def _index(self, model: dict[str, Any]) -> MatchIndex:
        """The published records in memory (read once per run, when first needed)."""
        state = self._state
        if state.index is None:
            cat = ident(self.store.catalog)
            tf = f"{cat}.main.term_frequencies" if state.term_frequencies == "term_frequencies" else state.term_frequencies
            state.index = MatchIndex.load(
                self.store, _stored_linkable(cat, self.config.shared_identifiers()), self.plans, tf_columns(model), tf
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

    def _score_few(self, model: dict[str, Any], index: MatchIndex, probes: pa.Table) -> tuple[pa.Table, pa.Table]:
        """A few new records (``probes``: their model input and hashes) scored against
        their candidates from ``index``: both records' columns and term frequencies are
        put together here and handed to the scoring SQL, which has no joins to plan.
        Returns the kept pairs and the probes as the index holds rows (with their tf)."""
        found, stored = index.candidates(probes)
        known, missing = index.probe_term_frequencies(probes)
        if missing:  # a column no plan compares alone and not held in memory
            wanted = set(missing)
            known.update({(c, v): tf for c, v, tf in self._term_frequencies(sorted({v for _, v in missing})) if (c, v) in wanted})
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

    def _score_bulk(self, model: dict[str, Any], stored: str) -> pa.Table:
        """The ``candidates`` of a bulk file scored with the run's model and term
        frequencies, in the workspace by joins: those whose upper bound
        (:func:`pipelines.scoring.bound_sql`) reaches the review band."""
        columns = ["record_key", *MATCH_COLUMNS, *(identifier_column(n) for n in self.config.shared_identifiers())]
        columns_tf = tf_columns(model)
        tf = self._state.term_frequencies
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

    @property
    def _state(self) -> _Prepared:
        assert self._prepared is not None, "prepared in ingest()"
        return self._prepared

    def _term_frequencies(self, values: list[str]) -> list[tuple[str, str, float]]:
        """The published term frequencies (column, value, tf) of ``values``, cached per run:
        each value is an indexed equality (an ``IN`` list of them scans the table)."""
        cache = self._state.tf_rows
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

    # ---- phase 2: in one transaction on the store ----------------------------------

    def _apply(self, run: str, model: dict[str, Any], source: SourceConfig, staged: _Staged, by: Steward) -> IngestReport:
        r = f"{ident(self.store.catalog)}.{ident(run)}"
        keys = staged.records.column("record_key").to_pylist()
        quarantined = [
            IngestedRecord(
                record_key=f"{source.name}:{rid}" if rid else f"{source.name}:line {line}",
                status="quarantined",
                profile_id=None,
                match_probability=None,
                problem=str(reason),
            )
            for rid, line, reason in zip(
                staged.quarantine.column("record_id").to_pylist(),
                staged.quarantine.column("line").to_pylist(),
                staged.quarantine.column("reason").to_pylist(),
            )
        ]
        index = self._state.index if staged.probes is not None else None
        # keys the store holds: all that the index does not know are new (no lookup for them)
        known = (
            keys
            if index is None or staged.probes is None
            else [k for k, h in zip(keys, staged.probes.column(KEY_HASH).to_pylist()) if index.holds(k, h)]
        )
        in_keys, key_params = in_list("record_key", known)
        previous = (
            {str(k): str(p) for k, p in self.store.rows(f"SELECT record_key, profile_id FROM records WHERE {in_keys}", key_params)}
            if known
            else {}
        )
        self._replace_rows(r, staged, sorted(previous))
        linked = sorted(
            {
                k
                for a, b, p in zip(
                    staged.pairs.column("record_key_l").to_pylist(),
                    staged.pairs.column("record_key_r").to_pylist(),
                    staged.pairs.column("match_probability").to_pylist(),
                )
                if p >= self.config.matching.match_threshold
                for k in (a, b)
            }
            - set(keys)
        )
        in_linked, linked_params = in_list("record_key", linked)
        touched = sorted(
            {
                str(p)
                for (p,) in (self.store.rows(f"SELECT profile_id FROM records WHERE {in_linked}", linked_params) if linked else [])
                if p
            }
            | set(previous.values())
        )
        # the touched profiles' records: their profile and probability (what reassign
        # reads otherwise) and the hash the index finds a record's row by, in one read
        members: dict[str, list[str]] = {p: [] for p in touched}
        current: dict[str, tuple[str | None, float | None]] = {}
        key_hashes: dict[str, int] = {}
        if touched:
            in_touched, touched_params = in_list("profile_id", touched)
            for key, pid, probability, key_hash in self.store.rows(
                f"SELECT record_key, profile_id, match_probability, hash(record_key) FROM records WHERE {in_touched}", touched_params
            ):
                members[str(pid)].append(str(key))
                current[str(key)] = (str(pid), probability)
                key_hashes[str(key)] = int(key_hash)
        existing = {k for ks in members.values() for k in ks}
        for key, pid in previous.items():  # a profile whose only record is updated still names its group
            if not members.get(pid):
                members[pid] = [key]
        assignment, merged, links = self._group(model, sorted(existing | set(keys)), members, staged, key_hashes)
        probabilities = match_probabilities(assignment, links)
        # The new rows go in with their profile ids and probabilities: an update of
        # records' indexed profile_id rewrites the whole row and its index entries
        self._insert_records(r, staged, assignment, probabilities)
        current.update({k: (assignment.get(k), probabilities.get(k)) for k in keys})
        if assignment:
            self.stewardship.reassign(touched, assignment, previous=previous, links=links, current=current)
        review = self._queue_reviews(r, staged, assignment)
        issues: dict[str, list[str]] = {}
        for rid, name, reason in zip(
            staged.issues.column("record_id").to_pylist(),
            staged.issues.column("field").to_pylist(),
            staged.issues.column("reason").to_pylist(),
        ):
            issues.setdefault(f"{source.name}:{rid}", []).append(f"{name}: {reason}")
        outcome = self._outcomes(keys, assignment, previous, merged, review, existing, probabilities, issues)
        logged = staged.records.select(["source", "record_id", "raw", "line"]).sort_by("line")
        if not logged.num_rows:
            pass  # every row quarantined
        elif logged.num_rows <= TUNING.live_lookup_max:  # a few: bound values (an Arrow scan costs ~1 ms more)
            self.store.execute(
                "INSERT INTO ingest_log (seq, source, record_id, raw, ingested_at, actor) VALUES "
                + ", ".join("(nextval('ingest_seq'), ?, ?, ?, now(), ?)" for _ in range(logged.num_rows)),
                [v for row in logged.to_pylist() for v in (row["source"], row["record_id"], row["raw"], by.actor)],
            )
        else:
            self.store.register("_live_records", logged)
            try:
                self.store.execute(
                    """INSERT INTO ingest_log (seq, source, record_id, raw, ingested_at, actor)
                       SELECT nextval('ingest_seq'), source, record_id, raw, now(), ? FROM _live_records ORDER BY line""",
                    [by.actor],
                )
            finally:
                self.store.unregister("_live_records")
        report = IngestReport(
            source=source.name,
            rows=staged.rows,
            quarantined=staged.quarantined,
            field_issues=staged.issues.num_rows,
            records=outcome + quarantined,
        )
        self.queries.append_audit(
            [
                AuditEvent(
                    actor=by.actor,
                    role=by.role,
                    action="ingest",
                    subject=source.name,
                    detail={
                        "records": keys,
                        "counts": report.counts(),
                        "profiles": sorted({o.profile_id for o in outcome if o.profile_id} | set(touched)),
                        "merged": {old: new for o in outcome for old in o.merged_profiles for new in [o.profile_id]},
                        "moved": {o.record_key: [o.previous_profile_id, o.profile_id] for o in outcome if o.status == "moved"},
                    },
                )
            ]
        )
        return report

    def _replace_rows(self, r: str, staged: _Staged, updated: list[str]) -> None:
        """Put the new rows into the run's tables (an ``updated`` record replaces its old
        row and its old pairs); profile ids are given by ``reassign`` afterwards."""
        in_keys, params = in_list("record_key", updated)
        for table in ("records", "membership", "identifiers") if updated else ():
            self.store.execute(f"DELETE FROM {r}.{table} WHERE {in_keys}", params)
        for table in ("pairs", "review_queue") if updated else ():
            for side in ("record_key_l", "record_key_r"):  # two indexed deletes, not one scanning OR
                self.store.execute(f"DELETE FROM {r}.{table} WHERE {in_keys.replace('record_key', side)}", params)
        self._insert_rows(r, "pairs", staged.pairs)
        self._insert_rows(r, "field_issues", staged.issues)
        self._insert_rows(r, "quarantine", staged.quarantine)

    def _insert_rows(self, r: str, table: str, rows: pa.Table) -> None:
        """``rows`` into the run's ``table``, by column name (the table's other columns NULL)."""
        self.store.append(f"{r}.{table}", rows)

    def _insert_records(self, r: str, staged: _Staged, assignment: Mapping[str, str], probabilities: Mapping[str, float]) -> None:
        """The staged records, their membership and identifiers into the run's tables,
        each with its new profile id and match probability."""
        # a run published before a column was added lacks it
        records = staged.records.select([c for c in staged.records.column_names if c in self._state.record_columns])
        keys = records.column("record_key").to_pylist()
        profile_ids = pa.array([assignment.get(k) for k in keys], pa.string())
        probability = pa.array([probabilities.get(k) for k in keys], pa.float64())
        identifier_profiles = pa.array([assignment.get(k) for k in staged.identifiers.column("record_key").to_pylist()], pa.string())
        self._insert_rows(r, "records", records.append_column("profile_id", profile_ids).append_column("match_probability", probability))
        self._insert_rows(
            r,
            "membership",
            staged.records.select(["record_key", "source", "record_id"])
            .append_column("profile_id", profile_ids)
            .append_column("match_probability", probability),
        )
        self._insert_rows(r, "identifiers", staged.identifiers.append_column("profile_id", identifier_profiles))

    def _group(
        self, model: dict[str, Any], keys: list[str], members: dict[str, list[str]], staged: _Staged, key_hashes: Mapping[str, int]
    ) -> tuple[dict[str, str], dict[str, list[str]], list[tuple[str, str, float]]]:
        """Profiles of ``keys`` as the batch would cluster them: links at or above the
        threshold and SAME decisions, never across a veto or a DIFFERENT decision. Each
        group keeps the id of the (oldest) profile it holds most of; the others it
        absorbs redirect to it. Returns (record -> profile id, survivor -> merged ids,
        the model's links among ``keys``)."""
        in_l, params = in_list("record_key_l", keys)
        in_r, _ = in_list("record_key_r", keys)
        group = set(keys)
        model_links = [  # looked up by one key (an index scan; another condition in SQL makes it a scan), filtered here
            (str(a), str(b), float(p))
            for a, b, p in self.store.rows(f"SELECT record_key_l, record_key_r, match_probability FROM pairs WHERE {in_l}", params)
            if b in group and p >= self.config.matching.match_threshold
        ]
        decided = self.store.rows(
            f"SELECT record_key_l, record_key_r, kind FROM link_constraints WHERE active AND {in_l} AND {in_r}", params * 2
        )
        links = model_links + [(a, b, STEWARD_LINK) for a, b, kind in decided if kind == "same"]
        apart = [(a, b) for a, b, kind in decided if kind == "different"]
        loose = constrained_components(keys, links, [])
        apart += self._veto_conflicts(model, loose, staged, key_hashes)
        # Only the loose groups holding a kept-apart pair can be cut; the others stand
        # (a group's representative is its smallest key, whatever else is computed).
        held = {loose[k] for pair in apart for k in pair}
        inside = {k for k in keys if loose[k] in held}
        grouping = {
            **loose,
            **constrained_components(
                sorted(inside), [link for link in links if link[0] in inside], [pair for pair in apart if pair[0] in inside]
            ),
        }
        groups: dict[str, list[str]] = {}
        for key, representative in grouping.items():
            groups.setdefault(representative, []).append(key)
        # As a batch run names clusters: each profile goes to the group holding most of its
        # records; a group holding several keeps the one it shares most records with (then
        # the oldest), and the others redirect to it; a group holding none gets a new id.
        group_of = {k: g for g, ks in groups.items() for k in ks}
        overlap: dict[str, dict[str, int]] = {}  # profile -> group -> records shared
        for pid, records in members.items():
            for k in records:
                if k in group_of:
                    counts = overlap.setdefault(pid, {})
                    counts[group_of[k]] = counts.get(group_of[k], 0) + 1
        held_by: dict[str, list[str]] = {}  # group -> the profiles whose home it is
        for pid, counts in overlap.items():
            held_by.setdefault(min(counts, key=lambda g: (-counts[g], g)), []).append(pid)
        created: dict[str, Any] = {}
        if any(len(held) > 1 for held in held_by.values()):  # their ages decide a tie
            created = dict(
                self.store.rows(
                    "SELECT profile_id, created_at FROM profile_registry WHERE profile_id IN (SELECT unnest(?::VARCHAR[]))", [list(members)]
                )
            )
        assignment: dict[str, str] = {}
        merged: dict[str, list[str]] = {}
        fresh = iter(mint_profile_ids(len(groups)))
        for g, ks in groups.items():
            holders = sorted(held_by.get(g, []), key=lambda p: (-overlap[p][g], str(created.get(p, "")), p))
            name = holders[0] if holders else next(fresh)
            if len(holders) > 1:
                merged[name] = holders[1:]
            assignment.update({k: name for k in ks})
        return assignment, merged, model_links

    def _veto_conflicts(
        self, model: dict[str, Any], grouping: dict[str, str], staged: _Staged, key_hashes: Mapping[str, int]
    ) -> list[tuple[str, str]]:
        """Pairs inside one loose group that a veto keeps apart (as the batch's enforce_vetoes).
        The staged records are not in the store yet; the stored ones are read from the
        index when the ingester holds one (and holds them all: ``key_hashes`` finds their
        rows), else from the store."""
        groups: dict[str, list[str]] = {}
        for key, g in grouping.items():
            groups.setdefault(g, []).append(key)
        pairs = [(a, b) for ks in groups.values() if len(ks) > 1 for a in ks for b in ks if a < b]
        if not pairs:
            return []
        ids = self.config.shared_identifiers()
        condition = model_veto_sql(model, list(self.config.matching.vetoes), ids)
        involved = sorted({k for pair in pairs for k in pair})
        new_keys = set(staged.records.column("record_key").to_pylist())
        stored_keys = [k for k in involved if k not in new_keys]
        index = self._state.index
        vetoes = rowwise.condition(condition)
        if index is not None and staged.probes is not None and vetoes is not None:
            held, missing = index.rows(stored_keys, [key_hashes.get(k, 0) for k in stored_keys]) if stored_keys else (None, [])
            if not missing:
                columns = ["record_key", *MATCH_COLUMNS, *(identifier_column(n) for n in ids)]
                rows = {
                    row["record_key"]: row for part in (staged.probes, held) if part is not None for row in part.select(columns).to_pylist()
                }
                return [
                    (a, b)
                    for a, b in pairs
                    if vetoes({**{f"{c}_l": rows[a][c] for c in columns}, **{f"{c}_r": rows[b][c] for c in columns}}) is True
                ]
        parts, params = (
            [f"{_stored_linkable('', ids, source='_live_vnew')} WHERE s.record_key IN (SELECT unnest(?::VARCHAR[]))"],
            [[k for k in involved if k in new_keys]],
        )
        if stored_keys:
            in_stored, stored_params = in_list("s.record_key", stored_keys)
            parts.append(f"{_stored_linkable('', ids, source='records')} WHERE {in_stored}")
            params.extend(stored_params)
        self.store.register("_live_vnew", staged.records)
        try:
            return self._vetoed(pairs, " UNION ALL BY NAME ".join(f"({p})" for p in parts), params, condition)
        finally:
            self.store.unregister("_live_vnew")

    def _vetoed(self, pairs: list[tuple[str, str]], involved: str, params: list[Any], condition: str) -> list[tuple[str, str]]:
        """The ``pairs`` whose records (rows of the query ``involved``) meet the veto ``condition``."""
        if len(pairs) <= TUNING.live_lookup_max * 10:  # a few: one statement, the pairs as bound values
            found = self.store.rows(
                f"""WITH v AS MATERIALIZED ({involved})
                    SELECT p.a, p.b FROM (VALUES {", ".join("(?, ?)" for _ in pairs)}) p(a, b)
                    JOIN v l ON l.record_key = p.a JOIN v r ON r.record_key = p.b WHERE {condition}""",
                [*params, *(k for pair in pairs for k in pair)],
            )
        else:
            self.store.register("_live_vpairs", pa.table({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]}))
            self.store.register("_live_vrows", self.store.arrow(involved, params))
            try:
                found = self.store.rows(
                    f"""SELECT p.a, p.b FROM _live_vpairs p JOIN _live_vrows l ON l.record_key = p.a JOIN _live_vrows r ON r.record_key = p.b
                        WHERE {condition}"""
                )
            finally:
                self.store.unregister("_live_vpairs")
                self.store.unregister("_live_vrows")
        return [(str(a), str(b)) for a, b in found]

    def _queue_reviews(self, r: str, staged: _Staged, assignment: Mapping[str, str]) -> dict[str, list[str]]:
        """Review-band pairs of the new records that now join two profiles go to the queue."""
        threshold, midpoint = (
            self.config.matching.match_threshold,
            (self.config.matching.match_threshold + self.config.matching.review_threshold) / 2,
        )
        band = [p for p in staged.pairs.to_pylist() if p["match_probability"] < threshold]
        others = sorted({k for p in band for k in (p["record_key_l"], p["record_key_r"]) if k not in assignment})
        in_others, params = in_list("record_key", others)
        profile_of = dict(assignment)
        if others:
            profile_of.update(
                {str(k): str(v) for k, v in self.store.rows(f"SELECT record_key, profile_id FROM records WHERE {in_others}", params)}
            )
        queued = [p for p in band if profile_of.get(p["record_key_l"]) != profile_of.get(p["record_key_r"])]
        if queued:
            self._insert_rows(
                r,
                "review_queue",
                pa.table(
                    {
                        "pair_id": [p["pair_id"] for p in queued],
                        "record_key_l": [p["record_key_l"] for p in queued],
                        "record_key_r": [p["record_key_r"] for p in queued],
                        "profile_id_l": [profile_of.get(p["record_key_l"]) for p in queued],
                        "profile_id_r": [profile_of.get(p["record_key_r"]) for p in queued],
                        "match_probability": [p["match_probability"] for p in queued],
                        "match_weight": [p["match_weight"] for p in queued],
                        "distance_to_boundary": [abs(p["match_probability"] - midpoint) for p in queued],
                    }
                ),
            )
        out: dict[str, list[str]] = {}
        for p in queued:
            for key in (p["record_key_l"], p["record_key_r"]):
                out.setdefault(key, []).append(p["pair_id"])
        return out

    def _outcomes(
        self,
        keys: list[str],
        assignment: dict[str, str],
        previous: Mapping[str, str],
        merged: dict[str, list[str]],
        review: dict[str, list[str]],
        existing: set[str],
        probability: Mapping[str, float],
        issues: Mapping[str, list[str]],
    ) -> list[IngestedRecord]:
        joined = {assignment[k] for k in existing if k in assignment}  # profiles holding records from before
        out = []
        for key in keys:
            pid = assignment[key]
            before = previous.get(key)
            if before is not None:
                status = "updated" if before == pid or before in merged.get(pid, []) else "moved"
            elif merged.get(pid):
                status = "merged"
            elif pid in joined:
                status = "attached"
            else:
                status = "review" if review.get(key) else "new_profile"
            out.append(
                IngestedRecord(
                    record_key=key,
                    status=status,
                    profile_id=pid,
                    match_probability=float(probability[key]) if probability.get(key) is not None else None,
                    previous_profile_id=before,
                    merged_profiles=list(merged.get(pid, [])),
                    review_pairs=review.get(key, []),
                    field_issues=issues.get(key, []),
                )
            )
        return out


@dataclass
class _Prepared:
    """What a live ingester read of the published run (again when another is published)."""

    run: str
    model: dict[str, Any]  # the model the run scored with
    date_formats: DateFormats
    record_columns: frozenset[str]
    term_frequencies: str  # the relation scoring reads them from
    tf_rows: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # value -> rows
    index: MatchIndex | None = None  # the records in memory (LiveIngest(in_memory=True)), read when first needed


@dataclass(frozen=True)
class _Staged:
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


def _probes_sql(plans: list[Plan], relation: str) -> str:
    """New records (``relation``, aliased n) with their hashes, as the index looks them up."""
    return f"SELECT n.*, hash(n.record_key) AS {KEY_HASH}, {', '.join([*probe_hashes_sql(plans), *stored_hashes_sql(plans, 'n')])} FROM {relation}"


def _stored_linkable(cat: str, identifiers: list[str], *, source: str | None = None) -> str:
    """Records as the model's input (``linkable``'s columns), aliased ``s``: the published
    ones, or those of ``source`` (a relation with the columns of ``records``)."""
    relation = source or f"{cat}.main.records"
    pivots = "".join(
        f", list_max(list_transform(list_filter(s.identifiers, x -> x.kind = {name_literal(n)}), x -> x.value)) AS {ident(identifier_column(n))}"
        for n in identifiers
    )
    return f"SELECT s.record_key, {', '.join('s.' + c for c in MATCH_COLUMNS)}{pivots} FROM {relation} s"

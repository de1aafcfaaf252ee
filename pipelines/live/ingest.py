"""Real-time recognition: records ingested one at a time (the API's ``ingestRecord``) or
in bulk (``unify ingest``) are matched against the published profiles at once.

A live record goes through the batch run's own steps, on just that record:
- mapping and standardization of its source (with the date formats the run read);
- candidates by the run's blocking rules, against the store and the other new records;
- scores from the run's model with splink's own arithmetic (pipelines.matching.scoring), so a
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

import dataclasses
import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.batch.ingest import SourceCounts, stage_live
from pipelines.batch.link import model_groups, provisional_marker
from pipelines.config import Config, SourceConfig
from pipelines.live.match_index import KEY_HASH, plans_of
from pipelines.live.regroup import Regrouping
from pipelines.live.report import STATUSES, IngestedRecord, IngestReport, outcomes, quarantined
from pipelines.live.stage import Prepared, Staged, Staging
from pipelines.matching.blocking import prediction_rules
from pipelines.matching.scoring import term_frequencies_relation
from pipelines.standardize.dates import DateFormats
from profiles.errors import ConfigError, NoPublishedRun, StoreError
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
    published_run,
)
from profiles.store.erasure import suppressed_records, suppressed_sql
from profiles.tuning import TUNING

#: The published run's tables a live record's profile is read from and written to (warm()).
_WARM_TABLES = ("records", "membership", "identifiers", "pairs", "profiles", "golden_fields")


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
        self.plans = plans_of(prediction_rules(model_groups(config), config.shared_identifiers()))  # the run's rules, per role
        self.queries = ProfileQueries(store)
        self.stewardship = Stewardship(store, **config.stewardship_settings())
        self.staging = Staging(store, config, self.plans, in_memory=in_memory)
        self.regrouping = Regrouping(store, config)
        self._prepared: Prepared | None = None  # what was read of the published run, once per run
        self._published: list[Any] = []  # published_run's cache

    def ingest(
        self, source_name: str, by: Steward, *, rows: Sequence[Mapping[str, Any]] | None = None, path: Path | None = None
    ) -> IngestReport:
        """Ingest ``rows`` (JSON objects keyed by the source's column names) or the file at
        ``path`` for source ``source_name``; the store reflects them when this returns."""
        started = time.perf_counter()
        source = self._source(source_name)
        with self.store.exclusive():
            run, _ = self._prepare()
            staged, suppressed = self._without_suppressed(self.staging.stage(self._state, source, rows=rows, path=path))
            if staged.records.num_rows:
                with self.store.transaction():
                    report = self._apply(run, source, staged, by)
            else:  # nothing of it to keep: every row was an erased person's or quarantined
                report = IngestReport(source.name, staged.rows, staged.quarantined, 0, quarantined(source.name, staged.quarantine))
            report.records += suppressed
            index = self._state.index
            if index is not None and staged.probes is not None:
                index.add(staged.probes)  # committed: the new rows are the records' current version
            elif index is not None:
                self._state.index = None  # a bulk file: read again when a few records come
        report.seconds = round(time.perf_counter() - started, 4)
        return report

    def _without_suppressed(self, staged: Staged) -> tuple[Staged, list[IngestedRecord]]:
        """``staged`` without the records of erased people (profiles.store.erasure: by their
        key or a standardized identifier), and those records as ``suppressed`` outcomes."""
        keys = staged.records.column("record_key").to_pylist()
        identifiers: dict[str, list[tuple[str, str]]] = {k: [] for k in keys}
        for key, kind, value in zip(*(staged.identifiers.column(c).to_pylist() for c in ("record_key", "kind", "value"))):
            identifiers.setdefault(key, []).append((kind, value))
        gone = suppressed_records(self.store, identifiers)
        if not gone:
            return staged, []

        def keep(table: pa.Table, *columns: str) -> pa.Table:
            mask = [not any(row[c] in gone for c in columns) for row in table.select(list(columns)).to_pylist()]
            return table.filter(pa.array(mask, pa.bool_()))

        issue_keys = [f"{s}:{r}" for s, r in zip(staged.issues.column("source").to_pylist(), staged.issues.column("record_id").to_pylist())]
        kept = dataclasses.replace(
            staged,
            records=keep(staged.records, "record_key"),
            identifiers=keep(staged.identifiers, "record_key"),
            pairs=keep(staged.pairs, "record_key_l", "record_key_r"),
            issues=staged.issues.filter(pa.array([k not in gone for k in issue_keys], pa.bool_())),
            probes=keep(staged.probes, "record_key") if staged.probes is not None else None,
        )
        return kept, [IngestedRecord(record_key=k, status="suppressed", profile_id=None, match_probability=None) for k in keys if k in gone]

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
        source): see pipelines.batch.link.provisional_marker."""
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
            by_key = suppressed_sql(self.store, "source || ':' || record_id")  # the batch run drops those by identifier
            if by_key is not None:
                counts.suppressed = int(self.store.scalar(f"SELECT count(*) FROM ingested WHERE {by_key[0]}", by_key[1]))
                self.store.execute(f"DELETE FROM ingested WHERE {by_key[0]}", by_key[1])
                counts.accepted -= counts.suppressed
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
                run, _ = self._prepare()
            except StoreError:  # nothing published yet: nothing to read
                return
        if index and self.in_memory:
            started = time.perf_counter()
            with self.store.exclusive():
                self.staging.index(self._state)
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
            self._prepared = Prepared(
                run=run,
                model=self.queries.published_model(),
                date_formats=self._date_formats(),
                record_columns=frozenset(self.store.columns(f"{ident(self.store.catalog)}.{ident(run)}.records")),
                term_frequencies=term_frequencies_relation(self.store),
            )
        if run is None or self._prepared is None or not self._prepared.model:
            raise NoPublishedRun()
        return run, self._prepared.model

    def _source(self, name: str) -> SourceConfig:
        for source in self.config.sources:
            if source.name == name:
                return source
        raise ConfigError(f"unknown source {name!r}; configured: {', '.join(s.name for s in self.config.sources)}")

    def _date_formats(self) -> DateFormats:
        text = self.store.scalar("SELECT max_by(summary::VARCHAR, finished_at) FROM runs WHERE status = 'published'")
        formats = json.loads(text).get("date_formats", {}) if text else {}
        return {str(k): dict(v) for k, v in formats.items()}

    @property
    def _state(self) -> Prepared:
        assert self._prepared is not None, "prepared in ingest()"
        return self._prepared

    # ---- phase 2: in one transaction on the store ----------------------------------

    def _apply(self, run: str, source: SourceConfig, staged: Staged, by: Steward) -> IngestReport:
        r = f"{ident(self.store.catalog)}.{ident(run)}"
        keys = staged.records.column("record_key").to_pylist()
        previous = self._previous(keys, staged)
        self._replace_rows(r, staged, sorted(previous))
        touched = self._touched(keys, staged, previous)
        members, current, key_hashes = self._members(touched)
        existing = {k for ks in members.values() for k in ks}
        for key, pid in previous.items():  # a profile whose only record is updated still names its group
            if not members.get(pid):
                members[pid] = [key]
        assignment, merged, links = self.regrouping.group(self._state, sorted(existing | set(keys)), members, staged, key_hashes)
        probabilities = match_probabilities(assignment, links)
        # The new rows go in with their profile ids and probabilities: an update of
        # records' indexed profile_id rewrites the whole row and its index entries
        self._insert_records(r, staged, assignment, probabilities)
        current.update({k: (assignment.get(k), probabilities.get(k)) for k in keys})
        if assignment:
            self.stewardship.reassign(touched, assignment, previous=previous, links=links, current=current)
        review = self.regrouping.queue_reviews(r, staged, assignment)
        issues: dict[str, list[str]] = {}
        for rid, name, reason in zip(*(staged.issues.column(c).to_pylist() for c in ("record_id", "field", "reason"))):
            issues.setdefault(f"{source.name}:{rid}", []).append(f"{name}: {reason}")
        outcome = outcomes(keys, assignment, previous, merged, review, existing, probabilities, issues)
        self._log(staged, by)
        report = IngestReport(
            source=source.name,
            rows=staged.rows,
            quarantined=staged.quarantined,
            field_issues=staged.issues.num_rows,
            records=outcome + quarantined(source.name, staged.quarantine),
        )
        detail = {
            "records": keys,
            "counts": report.counts(),
            "profiles": sorted({o.profile_id for o in outcome if o.profile_id} | set(touched)),
            "merged": {old: new for o in outcome for old in o.merged_profiles for new in [o.profile_id]},
            "moved": {o.record_key: [o.previous_profile_id, o.profile_id] for o in outcome if o.status == "moved"},
        }
        self.queries.append_audit([AuditEvent(actor=by.actor, role=by.role, action="ingest", subject=source.name, detail=detail)])
        return report

    def _previous(self, keys: list[str], staged: Staged) -> dict[str, str]:
        """The profile of each of ``keys`` the store holds already (an update)."""
        index = self._state.index if staged.probes is not None else None
        # keys the store holds: all that the index does not know are new (no lookup for them)
        known = (
            keys
            if index is None or staged.probes is None
            else [k for k, h in zip(keys, staged.probes.column(KEY_HASH).to_pylist()) if index.holds(k, h)]
        )
        if not known:
            return {}
        in_keys, key_params = in_list("record_key", known)
        return {str(k): str(p) for k, p in self.store.rows(f"SELECT record_key, profile_id FROM records WHERE {in_keys}", key_params)}

    def _touched(self, keys: list[str], staged: Staged, previous: Mapping[str, str]) -> list[str]:
        """The profiles the new records link to at or above the threshold, and those they were in."""
        threshold = self.config.matching.match_threshold
        pairs = zip(*(staged.pairs.column(c).to_pylist() for c in ("record_key_l", "record_key_r", "match_probability")))
        linked = sorted({k for a, b, p in pairs if p >= threshold for k in (a, b)} - set(keys))
        in_linked, linked_params = in_list("record_key", linked)
        found = self.store.rows(f"SELECT profile_id FROM records WHERE {in_linked}", linked_params) if linked else []
        return sorted({str(p) for (p,) in found if p} | set(previous.values()))

    def _members(self, touched: list[str]) -> tuple[dict[str, list[str]], dict[str, tuple[str | None, float | None]], dict[str, int]]:
        """The ``touched`` profiles' records, each record's profile and probability (what
        reassign reads otherwise) and the hash the index finds its row by, in one read."""
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
        return members, current, key_hashes

    def _log(self, staged: Staged, by: Steward) -> None:
        """The accepted rows into the ingest log, for the batch runs that follow."""
        logged = staged.records.select(["source", "record_id", "raw", "line"]).sort_by("line")
        if not logged.num_rows:
            return  # every row quarantined
        if logged.num_rows <= TUNING.live_lookup_max:  # a few: bound values (an Arrow scan costs ~1 ms more)
            self.store.execute(
                "INSERT INTO ingest_log (seq, source, record_id, raw, ingested_at, actor) VALUES "
                + ", ".join("(nextval('ingest_seq'), ?, ?, ?, now(), ?)" for _ in range(logged.num_rows)),
                [v for row in logged.to_pylist() for v in (row["source"], row["record_id"], row["raw"], by.actor)],
            )
            return
        self.store.register("_live_records", logged)
        try:
            self.store.execute(
                """INSERT INTO ingest_log (seq, source, record_id, raw, ingested_at, actor)
                   SELECT nextval('ingest_seq'), source, record_id, raw, now(), ? FROM _live_records ORDER BY line""",
                [by.actor],
            )
        finally:
            self.store.unregister("_live_records")

    def _replace_rows(self, r: str, staged: Staged, updated: list[str]) -> None:
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

    def _insert_records(self, r: str, staged: Staged, assignment: Mapping[str, str], probabilities: Mapping[str, float]) -> None:
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


__all__ = ["STATUSES", "IngestReport", "IngestedRecord", "LiveIngest"]

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
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.comparisons import blocking_rules, identifier_column, identifier_overrides, veto_sql
from pipelines.config import Config, SourceConfig
from pipelines.ingest import SourceCounts, stage_live
from pipelines.link import model_groups
from pipelines.scoring import pairs_sql, pairs_table, score_sql, term_frequencies_relation, tf_columns, tf_only_where_equal
from pipelines.standardize import MATCH_COLUMNS, DateFormats, standardize
from pipelines.standardize_rows import RECORD_TYPES, standardize_rows
from profiles.constraints import STEWARD_LINK, constrained_components
from profiles.errors import ConfigError, StoreError
from profiles.identity import mint_profile_ids
from profiles.store import (
    AuditEvent, ProfileQueries, Steward, Stewardship, Store, ensure_serving_indexes, ident, in_list, published_run,
)

#: Indexed record columns, most selective first: a blocking rule is looked up by the first of its columns here.
_SELECTIVITY = {f"o.{c}": i for i, c in enumerate(("postcode_std", "dob", "last_name_std", "first_name_std"))}
#: A rule on first and last name is looked up by ``name_key`` (first|last, indexed) instead.
_NAME_PARTS = ("o.first_name_std", "o.last_name_std")
#: Up to this many new records, candidates are looked up record by record (index scans);
#: more are joined with the stored records rule by rule (hash joins).
_LOOKUP_MAX = 50
#: Up to this many stored candidates are read by key (index scans); more by one semi-join.
_KEYS_LOOKUP_MAX = 1000
#: Up to this many values of a few new records (and their candidates, for a model whose
#: tf levels are not all exact matches), term frequencies are looked up value by value
#: (index scans); more by one semi-join.
_TF_LOOKUPS_MAX = 200
#: Term frequencies kept per run (values; the cache starts over beyond this).
_TF_CACHE_MAX = 500_000
#: A live record's quarantine table when none of its rows is quarantined (stage_live's columns).
_NO_QUARANTINE = pa.table({
    "source": pa.array([], pa.string()), "line": pa.array([], pa.int64()), "record_id": pa.array([], pa.string()),
    "reason": pa.array([], pa.string()), "content": pa.array([], pa.string()),
})
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

    def __init__(self, store: Store, config: Config):
        self.store, self.config = store, config
        self.queries = ProfileQueries(store)
        self.stewardship = Stewardship(
            store, match_threshold=config.matching.match_threshold,
            rules=config.survivorship.fields, default_rule=config.survivorship.default,
        )
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
            run = published_run(self.store, self._published)
            model = self.queries.published_model()
            if run is None or not model:
                raise StoreError("no published run with a model: run `unify run` before ingesting")
            if self._prepared is None or self._prepared.run != run:
                ensure_serving_indexes(self.store)  # once per run: keyed lookups instead of table scans
                self._prepared = _Prepared(
                    run=run, date_formats=self._date_formats(),
                    record_columns=frozenset(self.store.columns(f"{ident(self.store.catalog)}.{ident(run)}.records")),
                    term_frequencies=term_frequencies_relation(self.store),
                )
            staged = self._stage(source, model, self._prepared.date_formats, rows=rows, path=path)
            with self.store.transaction():
                report = self._apply(run, model, source, staged, by)
        report.seconds = round(time.perf_counter() - started, 4)
        return report

    # ---- phase 1: in a workspace, the batch's own steps on the new rows -------------

    def _source(self, name: str) -> SourceConfig:
        for source in self.config.sources:
            if source.name == name:
                return source
        raise ConfigError(f"unknown source {name!r}; configured: {', '.join(s.name for s in self.config.sources)}")

    def _date_formats(self) -> DateFormats:
        text = self.store.scalar(
            "SELECT max_by(summary::VARCHAR, finished_at) FROM runs WHERE status = 'published'"
        )
        formats = json.loads(text).get("date_formats", {}) if text else {}
        return {str(k): dict(v) for k, v in formats.items()}

    def _stage(
        self, source: SourceConfig, model: dict[str, Any], formats: DateFormats, *,
        rows: Sequence[Mapping[str, Any]] | None, path: Path | None,
    ) -> _Staged:
        cat = ident(self.store.catalog)
        ids = self.config.shared_identifiers()
        # records handed over one by one: standardized in Python (the same values; ~30
        # statements fewer); a file, or rows only the SQL reads alike, through the batch's SQL
        fast = standardize_rows(source, rows, formats, self.config) if rows is not None and path is None else None
        with self.store.workspace(name=f"live_{secrets.token_hex(4)}"):
            if fast is not None:
                counts = SourceCounts(rows=fast.records.num_rows, quarantined=0, accepted=fast.records.num_rows)
                quarantine = _NO_QUARANTINE
                # the model's input for the new records, as the SQL below builds it from
                # ``records`` and ``identifiers`` (an identifier column: the kind's largest value)
                types = dict(RECORD_TYPES)
                id_columns = [(n, identifier_column(n)) for n in ids]
                self.store.execute(
                    "CREATE TABLE new_linkable (record_key VARCHAR, "
                    + ", ".join([*(f"{c} {types[c]}" for c in MATCH_COLUMNS), *(f"{ident(c)} VARCHAR" for _, c in id_columns)])
                    + ")"
                )
                linkable = fast.records.select(["record_key", *MATCH_COLUMNS])
                largest: dict[tuple[str, str], str] = {}
                for key, kind, value in zip(*(fast.identifiers.column(c).to_pylist() for c in ("record_key", "kind", "value"))):
                    if value is not None and value > largest.get((key, kind), value[:0]):
                        largest[(key, kind)] = value
                keys = linkable.column("record_key").to_pylist()
                for kind, column in id_columns:
                    linkable = linkable.append_column(column, pa.array([largest.get((key, kind)) for key in keys], pa.string()))
                self.store.append("new_linkable", linkable)
            else:
                counts = stage_live(self.store, source, rows=rows, path=path)
                quarantine = self.store.arrow("SELECT * FROM quarantine")
                standardize(self.store, self.config, formats)
                pivots = "".join(
                    f", (SELECT max(i.value) FROM identifiers i WHERE i.record_key = r.record_key AND i.kind = {_literal(n)})"
                    f" AS {ident(identifier_column(n))}"
                    for n in ids
                )
                self.store.execute(
                    f"CREATE TABLE new_linkable AS SELECT r.record_key, {', '.join('r.' + c for c in MATCH_COLUMNS)}{pivots} FROM records r"
                )
            few = self._candidates(blocking_rules(model_groups(self.config), ids), ids, fast.records.num_rows if fast else None)
            pairs = self._score(model, _stored_linkable(cat, ids), few)
            if fast is not None:
                records, identifiers, issues = fast.records.sort_by("record_key"), fast.identifiers, fast.issues
            else:
                records = self.store.arrow("SELECT * FROM records ORDER BY record_key")
                identifiers = self.store.arrow("SELECT * FROM identifiers")
                issues = self.store.arrow("SELECT * FROM field_issues")
        return _Staged(counts.rows, counts.quarantined, quarantine, records, identifiers, pairs, issues)

    def _candidates(
        self, rules: list[str], identifiers: list[str], new_count: int | None
    ) -> tuple[list[str], list[tuple[str, str]]] | None:
        """``candidates(new_key, stored_key)``: for every new record, the records (stored
        or new) some blocking rule pairs it with, in either role, as splink applies the
        rules. Stored records are looked up by key (index scans), one query in all.
        For a few new records: their keys and the candidate pairs (new, other), which then
        stay in Python; for a bulk file (None) the ``candidates`` table of the workspace."""
        cat = ident(self.store.catalog)
        # rules on one identifier are looked up in ``identifiers`` (kind, value; the value
        # indexed): email and phone too, which are identifiers as standardized, so that
        # ``records`` needs no index of its own on them
        id_columns = {"o.email_std": "email", "o.phone_std": "phone", **{f"o.{identifier_column(n)}": n for n in identifiers}}
        plans: list[tuple[list[str], list[str]]] = []  # (new-side expressions, stored-side expressions) per rule and role
        for rule in rules:
            terms = [t.split(" = ") for t in rule.split(" AND ")]
            for new_side, other in (("l", "r"), ("r", "l")):
                pick = 0 if new_side == "l" else 1
                plan = (
                    [re.sub(rf"\b{new_side}\.", "n.", t[pick]) for t in terms],
                    [re.sub(rf"\b{other}\.", "o.", t[1 - pick]) for t in terms],
                )
                if plan not in plans:  # the two roles of a symmetric rule are one join
                    plans.append(plan)
        values_sql = ", ".join(f"{e} AS v{i}_{j}" for i, (news, _) in enumerate(plans) for j, e in enumerate(news))
        parts: list[str] = []
        params: list[Any] = []
        bulk = (new_count if new_count is not None else int(self.store.scalar("SELECT count(*) FROM new_linkable"))) > _LOOKUP_MAX
        if bulk:
            # bulk: one hash join per rule and role against the stored records
            for news, stored in plans:
                if len(stored) == 1 and stored[0] in id_columns:
                    parts.append(
                        f"""SELECT n.record_key AS new_key, o.record_key AS stored_key FROM new_linkable n
                            JOIN {cat}.main.identifiers o ON o.kind = {_literal(id_columns[stored[0]])} AND o.value = {news[0]}"""
                    )
                else:
                    condition = " AND ".join(f"{n} = {o}" for n, o in zip(news, stored))
                    parts.append(
                        f"SELECT n.record_key AS new_key, o.record_key AS stored_key FROM new_linkable n JOIN {cat}.main.records o ON {condition}"
                    )
        few = [] if bulk else self.store.dicts(f"SELECT n.record_key, {values_sql} FROM new_linkable n")
        for row in few:
            # DuckDB answers one equality from an index but scans for a conjunction: each
            # rule is looked up by its most selective indexed column, and the rules sharing
            # a lookup (the two roles of a symmetric rule, two rules on one surname) share it
            lookups: dict[tuple[str, Any], list[tuple[list[str], list[Any]]]] = {}
            for i, (news, stored) in enumerate(plans):
                values = [row[f"v{i}_{j}"] for j in range(len(news))]
                if any(v is None for v in values):
                    continue  # NULL never equals: the rule cannot pair this record
                if len(stored) == 1 and stored[0] in id_columns:
                    parts.append(  # by value alone (an index scan; with the kind in the filter, a scan of the table)
                        f"""SELECT * FROM (WITH c AS MATERIALIZED (SELECT kind, record_key FROM {cat}.main.identifiers WHERE value = ?)
                            SELECT ? AS new_key, record_key AS stored_key FROM c WHERE kind = ?)"""
                    )
                    params += [values[0], row["record_key"], id_columns[stored[0]]]
                    continue
                if self._name_key and all(part in stored for part in _NAME_PARTS):
                    # the name equalities stay in the filter: "jan de|vries" is also "jan|de vries"
                    key = ("name_key", "|".join(str(values[stored.index(part)]) for part in _NAME_PARTS))
                    rest = list(range(len(stored)))
                else:
                    first = min(range(len(stored)), key=lambda j: _SELECTIVITY.get(stored[j], len(_SELECTIVITY)))
                    key = (stored[first][2:], values[first])
                    rest = [j for j in range(len(stored)) if j != first]
                condition = ([stored[j] for j in rest], [values[j] for j in rest])
                if condition not in lookups.setdefault(key, []):
                    lookups[key].append(condition)
            for (column, value), conditions in lookups.items():
                needed = sorted({"record_key", *(c for exprs, _ in conditions for e in exprs for c in re.findall(r"\bo\.(\w+)", e))})
                where = " OR ".join("(" + (" AND ".join(f"{e} = ?" for e in exprs) or "true") + ")" for exprs, _ in conditions)
                parts.append(
                    f"""SELECT * FROM (WITH c AS MATERIALIZED (SELECT {', '.join(needed)} FROM {cat}.main.records WHERE {column} = ?)
                        SELECT ? AS new_key, o.record_key AS stored_key FROM c o WHERE {where})"""
                )
                params += [value, row["record_key"], *(v for _, vals in conditions for v in vals)]
        # pairs among the new records themselves
        for news, stored in plans:
            condition = " AND ".join(f"{n} = {o}" for n, o in zip(news, stored))
            parts.append(
                f"SELECT n.record_key AS new_key, o.record_key AS stored_key FROM new_linkable n JOIN new_linkable o ON {condition} AND n.record_key <> o.record_key"
            )
        if bulk:
            self.store.execute(f"CREATE TABLE candidates AS {' UNION '.join(parts)}", params, building="candidates")
            return None
        found = self.store.rows(f"SELECT * FROM ({' UNION '.join(parts)}) WHERE new_key <> stored_key", params)
        return [str(row["record_key"]) for row in few], [(str(a), str(b)) for a, b in found]

    def _score(self, model: dict[str, Any], stored: str, few: tuple[list[str], list[tuple[str, str]]] | None) -> pa.Table:
        """The candidate pairs at or above the review threshold, scored with the run's model
        and term frequencies (keys ordered l < r, as splink orders them). ``few``: the new
        records' keys and candidate pairs when they are a few; their pairs, with both records' columns
        and term frequencies, are then put together here and handed to the scoring SQL
        (which has no joins left to plan: two statements in all, not eight)."""
        columns = ["record_key", *MATCH_COLUMNS, *(identifier_column(n) for n in self.config.shared_identifiers())]
        columns_tf = tf_columns(model)
        tf = self._state.term_frequencies
        keep = f"""SELECT md5(record_key_l || '|' || record_key_r)[:16] AS pair_id, COLUMNS(c -> NOT starts_with(c, 'gamma_'))
                   FROM ({{}}) WHERE match_probability >= ?"""  # only the pairs kept: no pair id for the others
        threshold = [self.config.matching.review_threshold]
        if few is None:  # a bulk file: in the workspace, by joins
            self._side_and_pairs(columns, stored)
            if tf == "term_frequencies" and columns_tf:
                self.store.execute(f"CREATE TABLE tf_needed AS {_term_frequencies_of(self.store.catalog, 'side', columns_tf)}")
                tf = "tf_needed"
            relation = pairs_sql(model, "SELECT * FROM side", "SELECT * FROM side", candidates="SELECT * FROM candidate_pairs", term_frequencies=tf)
            return self.store.arrow(keep.format(score_sql(model, relation)), threshold)
        new_keys, found = few
        keys = sorted({b for _, b in found} - set(new_keys))
        in_stored, stored_params = in_list("s.record_key", keys)
        side = self.store.arrow(
            f"""SELECT {', '.join(columns)} FROM new_linkable
                UNION ALL
                SELECT {', '.join('s.' + c for c in columns)} FROM ({stored} WHERE {in_stored}) s""",
            stored_params,
        )
        frequencies: dict[tuple[str, str], float] = {}
        if tf == "term_frequencies" and columns_tf:
            valued = side
            if tf_only_where_equal(model):
                # a tf value counts only where a pair's two values are equal, and every pair
                # holds a new record: the new records' values are all it takes
                new = set(new_keys)
                valued = side.filter(pa.array([k in new for k in side.column("record_key").to_pylist()], pa.bool_()))
            values = sorted({str(v) for c in columns_tf for v in valued.column(c).to_pylist() if v is not None})  # as CAST AS VARCHAR
            if len(values) <= _TF_LOOKUPS_MAX:
                # the values at hand, by indexed lookups: joining the whole table (millions
                # of emails and phones at 1M records) would dominate a single ingest
                found_tf = self._term_frequencies(values)
            else:  # hundreds of values: one semi-join (one by one took 2.4 s for a record with ~300 candidates)
                self.store.register("_live_side", valued)
                try:
                    found_tf = self.store.rows(_term_frequencies_of(self.store.catalog, "_live_side", columns_tf))
                finally:
                    self.store.unregister("_live_side")
            frequencies = {(str(c), str(v)): float(t) for c, v, t in found_tf if c in columns_tf}
        pairs = pairs_table(model, side, sorted({(min(a, b), max(a, b)) for a, b in found}), frequencies)
        self.store.register("_live_pairs", pairs)
        try:
            return self.store.arrow(keep.format(score_sql(model, "_live_pairs")), threshold)
        finally:
            self.store.unregister("_live_pairs")

    def _side_and_pairs(self, columns: list[str], stored: str) -> None:
        """``side`` (the new records and their stored candidates, as the model reads them)
        and ``candidate_pairs`` of a bulk file, in the workspace."""
        stored_keys = "SELECT DISTINCT stored_key FROM candidates WHERE stored_key NOT IN (SELECT record_key FROM new_linkable)"
        keys = [k for (k,) in self.store.rows(f"{stored_keys} ORDER BY 1 LIMIT {_KEYS_LOOKUP_MAX + 1}")]
        if len(keys) > _KEYS_LOOKUP_MAX:  # one semi-join (the keys stay in the database)
            in_stored, stored_params = f"s.record_key IN ({stored_keys})", []
        else:  # a few: looked up by key (index scans)
            in_stored, stored_params = in_list("s.record_key", keys)
        self.store.execute(
            f"""CREATE TABLE side AS
                SELECT {', '.join(columns)} FROM new_linkable
                UNION ALL
                SELECT {', '.join('s.' + c for c in columns)} FROM ({stored} WHERE {in_stored}) s""",
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

    @property
    def _name_key(self) -> bool:
        """The published records have ``name_key`` (runs before it was added do not)."""
        return "name_key" in self._state.record_columns

    def _term_frequencies(self, values: list[str]) -> list[tuple[str, str, float]]:
        """The published term frequencies (column, value, tf) of ``values``, cached per run:
        each value is an indexed equality (an ``IN`` list of them scans the table)."""
        cache = self._state.tf_rows
        missing = [v for v in values if v not in cache]
        if len(cache) + len(missing) > _TF_CACHE_MAX:
            cache.clear()
        table = f"{ident(self.store.catalog)}.main.term_frequencies"
        if missing:
            found = self.store.rows(" UNION ALL ".join(f"SELECT column_name, value, tf FROM {table} WHERE value = ?" for _ in missing), missing)
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
                record_key=f"{source.name}:{rid}" if rid else f"{source.name}:line {line}", status="quarantined",
                profile_id=None, match_probability=None, problem=str(reason),
            )
            for rid, line, reason in zip(
                staged.quarantine.column("record_id").to_pylist(), staged.quarantine.column("line").to_pylist(),
                staged.quarantine.column("reason").to_pylist(),
            )
        ]
        in_keys, key_params = in_list("record_key", keys)
        previous = {str(k): str(p) for k, p in self.store.rows(f"SELECT record_key, profile_id FROM records WHERE {in_keys}", key_params)}
        self._replace_rows(r, staged, sorted(previous))
        linked = sorted({
            k for a, b, p in zip(
                staged.pairs.column("record_key_l").to_pylist(), staged.pairs.column("record_key_r").to_pylist(),
                staged.pairs.column("match_probability").to_pylist(),
            ) if p >= self.config.matching.match_threshold for k in (a, b)
        } - set(keys))
        in_linked, linked_params = in_list("record_key", linked)
        touched = sorted(
            {str(p) for (p,) in (self.store.rows(f"SELECT DISTINCT profile_id FROM records WHERE {in_linked}", linked_params) if linked else []) if p}
            | set(previous.values())
        )
        members = self.stewardship.records_of(touched) if touched else {}
        existing = {k for ks in members.values() for k in ks}
        for key, pid in previous.items():  # a profile whose only record is updated still names its group
            if not members.get(pid):
                members[pid] = [key]
        assignment, merged = self._group(model, sorted(existing | set(keys)), members, staged.records)
        # The new rows go in with their profile ids: an update of records' indexed
        # profile_id rewrites the whole row and its index entries (~1 ms a row at 1M)
        self._insert_records(r, staged, assignment)
        if assignment:
            self.stewardship.reassign(touched, assignment, previous=previous)
        review = self._queue_reviews(r, staged, assignment)
        outcome = self._outcomes(keys, assignment, previous, merged, review, existing)
        issues: dict[str, list[str]] = {}
        for rid, name, reason in zip(
            staged.issues.column("record_id").to_pylist(), staged.issues.column("field").to_pylist(),
            staged.issues.column("reason").to_pylist(),
        ):
            issues.setdefault(f"{source.name}:{rid}", []).append(f"{name}: {reason}")
        outcome = [replace(o, field_issues=issues.get(o.record_key, [])) for o in outcome]
        logged = staged.records.select(["source", "record_id", "raw", "line"]).sort_by("line")
        if not logged.num_rows:
            pass  # every row quarantined
        elif logged.num_rows <= _LOOKUP_MAX:  # a few: bound values (an Arrow scan costs ~1 ms more)
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
            source=source.name, rows=staged.rows, quarantined=staged.quarantined,
            field_issues=staged.issues.num_rows, records=outcome + quarantined,
        )
        self.queries.append_audit([
            AuditEvent(
                actor=by.actor, role=by.role, action="ingest", subject=source.name,
                detail={
                    "records": keys, "counts": report.counts(),
                    "profiles": sorted({o.profile_id for o in outcome if o.profile_id} | set(touched)),
                    "merged": {old: new for o in outcome for old in o.merged_profiles for new in [o.profile_id]},
                    "moved": {o.record_key: [o.previous_profile_id, o.profile_id] for o in outcome if o.status == "moved"},
                },
            )
        ])
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

    def _insert_records(self, r: str, staged: _Staged, assignment: Mapping[str, str]) -> None:
        """The staged records, their membership and identifiers into the run's tables,
        each with its new profile id (match probabilities are set by ``reassign``)."""
        # a run published before a column was added lacks it
        records = staged.records.select([c for c in staged.records.column_names if c in self._state.record_columns])
        profile_ids = pa.array([assignment.get(k) for k in records.column("record_key").to_pylist()], pa.string())
        identifier_profiles = pa.array([assignment.get(k) for k in staged.identifiers.column("record_key").to_pylist()], pa.string())
        self._insert_rows(r, "records", records.append_column("profile_id", profile_ids))
        self._insert_rows(r, "membership", staged.records.select(["record_key", "source", "record_id"]).append_column("profile_id", profile_ids))
        self._insert_rows(r, "identifiers", staged.identifiers.append_column("profile_id", identifier_profiles))

    def _group(
        self, model: dict[str, Any], keys: list[str], members: dict[str, list[str]], new_rows: pa.Table
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        """Profiles of ``keys`` as the batch would cluster them: links at or above the
        threshold and SAME decisions, never across a veto or a DIFFERENT decision. Each
        group keeps the id of the (oldest) profile it holds most of; the others it
        absorbs redirect to it. Returns (record -> profile id, survivor -> merged ids)."""
        in_l, params = in_list("record_key_l", keys)
        in_r, _ = in_list("record_key_r", keys)
        group = set(keys)
        links = [  # looked up by one key (an index scan; another condition in SQL makes it a scan), filtered here
            (str(a), str(b), float(p))
            for a, b, p in self.store.rows(f"SELECT record_key_l, record_key_r, match_probability FROM pairs WHERE {in_l}", params)
            if b in group and p >= self.config.matching.match_threshold
        ]
        decided = self.store.rows(
            f"SELECT record_key_l, record_key_r, kind FROM link_constraints WHERE active AND {in_l} AND {in_r}", params * 2
        )
        links += [(a, b, STEWARD_LINK) for a, b, kind in decided if kind == "same"]
        apart = [(a, b) for a, b, kind in decided if kind == "different"]
        loose = constrained_components(keys, links, [])
        apart += self._veto_conflicts(model, loose, new_rows)
        # Only the loose groups holding a kept-apart pair can be cut; the others stand
        # (a group's representative is its smallest key, whatever else is computed).
        held = {loose[k] for pair in apart for k in pair}
        inside = {k for k in keys if loose[k] in held}
        grouping = {**loose, **constrained_components(
            sorted(inside), [link for link in links if link[0] in inside], [pair for pair in apart if pair[0] in inside]
        )}
        groups: dict[str, list[str]] = {}
        for key, representative in grouping.items():
            groups.setdefault(representative, []).append(key)
        created = dict(self.store.rows(
            "SELECT profile_id, created_at FROM profile_registry WHERE profile_id IN (SELECT unnest(?::VARCHAR[]))", [list(members)]
        ))
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
        assignment: dict[str, str] = {}
        merged: dict[str, list[str]] = {}
        fresh = iter(mint_profile_ids(len(groups)))
        for g, ks in groups.items():
            held = sorted(held_by.get(g, []), key=lambda p: (-overlap[p][g], str(created.get(p, "")), p))
            name = held[0] if held else next(fresh)
            if len(held) > 1:
                merged[name] = held[1:]
            assignment.update({k: name for k in ks})
        return assignment, merged

    def _veto_conflicts(
        self, model: dict[str, Any], grouping: dict[str, str], new_rows: pa.Table
    ) -> list[tuple[str, str]]:
        """Pairs inside one loose group that a veto keeps apart (as the batch's enforce_vetoes).
        ``new_rows`` are the staged records, which the store does not hold yet."""
        groups: dict[str, list[str]] = {}
        for key, g in grouping.items():
            groups.setdefault(g, []).append(key)
        pairs = [(a, b) for ks in groups.values() if len(ks) > 1 for a in ks for b in ks if a < b]
        if not pairs:
            return []
        ids = self.config.shared_identifiers()
        condition = veto_sql(list(self.config.matching.vetoes), identifier_overrides(model, ids))
        involved = sorted({k for pair in pairs for k in pair})
        new_keys = set(new_rows.column("record_key").to_pylist())
        stored_keys = [k for k in involved if k not in new_keys]
        parts, params = [f"{_stored_linkable('', ids, source='_live_vnew')} WHERE s.record_key IN (SELECT unnest(?::VARCHAR[]))"], [
            [k for k in involved if k in new_keys]
        ]
        if stored_keys:
            in_stored, stored_params = in_list("s.record_key", stored_keys)
            parts.append(f"{_stored_linkable('', ids, source='records')} WHERE {in_stored}")
            params.extend(stored_params)
        involved_rows = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
        self.store.register("_live_vnew", new_rows)
        try:
            if len(pairs) <= _LOOKUP_MAX * 10:  # a few: one statement, the pairs as bound values
                found = self.store.rows(
                    f"""WITH v AS MATERIALIZED ({involved_rows})
                        SELECT p.a, p.b FROM (VALUES {', '.join('(?, ?)' for _ in pairs)}) p(a, b)
                        JOIN v l ON l.record_key = p.a JOIN v r ON r.record_key = p.b WHERE {condition}""",
                    [*params, *(k for pair in pairs for k in pair)],
                )
            else:
                self.store.register("_live_vpairs", pa.table({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]}))
                self.store.register("_live_vrows", self.store.arrow(involved_rows, params))
                try:
                    found = self.store.rows(
                        f"""SELECT p.a, p.b FROM _live_vpairs p JOIN _live_vrows l ON l.record_key = p.a JOIN _live_vrows r ON r.record_key = p.b
                            WHERE {condition}"""
                    )
                finally:
                    self.store.unregister("_live_vpairs")
                    self.store.unregister("_live_vrows")
        finally:
            self.store.unregister("_live_vnew")
        return [(str(a), str(b)) for a, b in found]

    def _queue_reviews(self, r: str, staged: _Staged, assignment: Mapping[str, str]) -> dict[str, list[str]]:
        """Review-band pairs of the new records that now join two profiles go to the queue."""
        threshold, midpoint = self.config.matching.match_threshold, (self.config.matching.match_threshold + self.config.matching.review_threshold) / 2
        band = [p for p in staged.pairs.to_pylist() if p["match_probability"] < threshold]
        others = sorted({k for p in band for k in (p["record_key_l"], p["record_key_r"]) if k not in assignment})
        in_others, params = in_list("record_key", others)
        profile_of = dict(assignment)
        if others:
            profile_of.update({str(k): str(v) for k, v in self.store.rows(f"SELECT record_key, profile_id FROM records WHERE {in_others}", params)})
        queued = [p for p in band if profile_of.get(p["record_key_l"]) != profile_of.get(p["record_key_r"])]
        if queued:
            self._insert_rows(r, "review_queue", pa.table({
                "pair_id": [p["pair_id"] for p in queued],
                "record_key_l": [p["record_key_l"] for p in queued],
                "record_key_r": [p["record_key_r"] for p in queued],
                "profile_id_l": [profile_of.get(p["record_key_l"]) for p in queued],
                "profile_id_r": [profile_of.get(p["record_key_r"]) for p in queued],
                "match_probability": [p["match_probability"] for p in queued],
                "match_weight": [p["match_weight"] for p in queued],
                "distance_to_boundary": [abs(p["match_probability"] - midpoint) for p in queued],
            }))
        out: dict[str, list[str]] = {}
        for p in queued:
            for key in (p["record_key_l"], p["record_key_r"]):
                out.setdefault(key, []).append(p["pair_id"])
        return out

    def _outcomes(
        self, keys: list[str], assignment: dict[str, str], previous: Mapping[str, str],
        merged: dict[str, list[str]], review: dict[str, list[str]], existing: set[str],
    ) -> list[IngestedRecord]:
        in_keys, params = in_list("record_key", keys)
        probability = dict(self.store.rows(f"SELECT record_key, match_probability FROM records WHERE {in_keys}", params))
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
            out.append(IngestedRecord(
                record_key=key, status=status, profile_id=pid,
                match_probability=float(probability[key]) if probability.get(key) is not None else None,
                previous_profile_id=before, merged_profiles=list(merged.get(pid, [])), review_pairs=review.get(key, []),
            ))
        return out


@dataclass
class _Prepared:
    """What a live ingester read of the published run (again when another is published)."""

    run: str
    date_formats: DateFormats
    record_columns: frozenset[str]
    term_frequencies: str  # the relation scoring reads them from
    tf_rows: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # value -> rows


@dataclass(frozen=True)
class _Staged:
    rows: int
    quarantined: int
    quarantine: pa.Table
    records: pa.Table
    identifiers: pa.Table
    pairs: pa.Table
    issues: pa.Table


def _term_frequencies_of(catalog: str, relation: str, columns: list[str]) -> str:
    """The published term frequencies (column_name, value, tf) of the values ``columns``
    of ``relation`` hold: one semi-join, for values too many to look up one by one."""
    values = f"SELECT DISTINCT unnest([{', '.join(f'CAST({ident(c)} AS VARCHAR)' for c in columns)}]) AS value FROM {relation}"
    return f"""SELECT column_name, value, tf FROM {ident(catalog)}.main.term_frequencies
               WHERE value IN ({values}) AND column_name IN ({', '.join(_literal(c) for c in columns)})"""


def _literal(value: str) -> str:
    """A name from validated config (identifier kinds, column names) as an SQL string."""
    ident(value)  # refuses anything but [A-Za-z_][A-Za-z0-9_]*
    return f"'{value}'"


def _stored_linkable(cat: str, identifiers: list[str], *, source: str | None = None) -> str:
    """Records as the model's input (``linkable``'s columns), aliased ``s``: the published
    ones, or those of ``source`` (a relation with the columns of ``records``)."""
    relation = source or f"{cat}.main.records"
    pivots = "".join(
        f", list_max(list_transform(list_filter(s.identifiers, x -> x.kind = {_literal(n)}), x -> x.value)) AS {ident(identifier_column(n))}"
        for n in identifiers
    )
    return f"SELECT s.record_key, {', '.join('s.' + c for c in MATCH_COLUMNS)}{pivots} FROM {relation} s"

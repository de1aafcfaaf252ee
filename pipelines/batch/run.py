"""The batch run: ingest -> standardize -> link -> cluster -> survivorship -> publish.

All intermediate work happens in an in-memory workspace; the run's tables are then
written under a schema of their own and published in one transaction, so a failed or
killed run leaves the previous run serving."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.batch.cluster import assign_profiles, enforce_vetoes
from pipelines.batch.files import check_file_columns
from pipelines.batch.ingest import SourceCounts, check_sources, guard_shrink, ingest_sources
from pipelines.batch.link import LabelReport, run_linkage
from pipelines.batch.suppression import drop_suppressed, erasure_ids
from pipelines.config import Config
from pipelines.history.events import ingest_event_files, unlinked_count
from pipelines.standardize.batch import standardize
from profiles import survivorship
from profiles.errors import UnifyError
from profiles.store import (
    RUN_TABLES,
    Steward,
    Stewardship,
    Store,
    begin_run,
    current_run,
    fail_run,
    publish_run,
    record_run_summary,
    run_table,
    write_run_table,
)
from profiles.store.connection import ident

#: How the served tables are laid out: records carry their profile id and identifiers so
#: that a profile card reads one table; identifiers carry the profile id. They are not
#: sorted: the serving indexes answer the lookups (profiles.store.runs.SERVING_INDEXES),
#: and sorting cost a run more than it saved the reads (docs/benchmarks.md, "Figures
#: behind the code's choices").
#:
#: Their rows are known once standardized, so they are written into the run while splink
#: samples pairs for u (which leaves part of a core idle), without profile ids; after
#: clustering one UPDATE per table sets the ids. Every record is in ``membership`` (clusters hold every linkable record);
#: a row the UPDATE would miss is deleted, as the join that wrote them before left it out.
EARLY_TABLES: dict[str, tuple[str, str]] = {
    "records": (
        "SELECT NULL::VARCHAR AS profile_id, NULL::DOUBLE AS match_probability, r.* FROM work.main.records r",
        "SET profile_id = m.profile_id, match_probability = m.match_probability",
    ),
    "identifiers": ("SELECT i.*, NULL::VARCHAR AS profile_id FROM work.main.identifiers i", "SET profile_id = m.profile_id"),
}


@dataclass
class RunSummary:
    run_id: str
    sources: dict[str, SourceCounts]
    records: int = 0
    profiles: int = 0
    candidate_pairs: int = 0
    review_queue: int = 0
    ids_kept: int = 0
    ids_new: int = 0
    clusters_split: int = 0
    model_trained: bool = False
    untrained_levels: list[str] = field(default_factory=list)
    vetoes: dict[str, str] = field(default_factory=dict)  # veto rule -> whether the trained model makes it active, why
    assumptions: list[str] = field(default_factory=list)  # what training had to assume (e.g. the prior's floor)
    date_formats: dict[str, dict[str, str | None]] = field(default_factory=dict)  # read per source, reused by live ingest
    suppressed: int = 0  # rows of erased people left out (the suppression list)
    live_reapplied: int = 0  # records live-ingested while the run was running, applied after it
    steward_reapplied: int = 0  # records whose profile steward actions taken during the run changed after it
    labels: LabelReport | None = None
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # per event source: rows, accepted, quarantined
    events_unlinked: int = 0  # events no profile holds the record or identifier of (yet)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


StageCallback = Callable[[str], None]


def run_pipeline(
    config: Config, *, retrain: bool = False, on_stage: StageCallback | None = None, accept_shrink: Sequence[str] = ()
) -> RunSummary:
    """Run the whole batch pipeline for ``config`` and publish the result. A source that
    arrived empty or shrank by more than ``run.max_shrink`` fails the run before anything
    is published, unless named in ``accept_shrink``."""
    if not _RUNNING.acquire(blocking=False):  # a server runs the CLI's commands side by side
        raise UnifyError("a batch run is already running on this store; run again when it has finished")
    try:
        return _run_pipeline(config, retrain, on_stage, accept_shrink)
    finally:
        _RUNNING.release()


#: One batch run at a time per process: runs share the workspace's name and the model file.
_RUNNING = threading.Lock()


def _run_pipeline(config: Config, retrain: bool, on_stage: StageCallback | None, accept_shrink: Sequence[str]) -> RunSummary:
    notify = on_stage or (lambda _stage: None)
    with Store.scratch() as scratch:
        check_sources(scratch, config)  # nothing is written when a source or an event file is unusable
        for events in config.events:
            check_file_columns(scratch, events, config.resolve(events.path), what="events")
    with Store.open(config.store_path, threads=config.store.threads, compress=config.store.compress) as store:
        run_id = begin_run(store, str(config.base_dir), str(config.model_path))
        # live ingests up to here are part of the run; later ones are applied again after it
        live_until = int(store.scalar("SELECT coalesce(max(seq), 0) FROM ingest_log"))
        erasures = erasure_ids(store)  # one made while the run works would be undone by publishing it
        summary = RunSummary(run_id=run_id, sources={})
        timer = _StageTimer(summary.seconds, notify)
        try:
            spill = config.store_path.with_name(config.store_path.name + ".tmp")
            with store.workspace(spill_dir=spill, memory_limit=config.store.memory_limit):
                with timer("ingest"):
                    summary.sources = ingest_sources(store, config, live_until)
                    guard_shrink(summary.sources, _published_counts(store), config.run.max_shrink, accept_shrink)
                with timer("standardize"):
                    issues = standardize(store, config)
                    summary.date_formats = {
                        source: {"date_of_birth": dob, "updated_at": ts}
                        for source, dob, ts in store.rows("SELECT * FROM date_formats ORDER BY source")
                    }
                    for name, per_field in issues.items():
                        summary.sources[name].field_issues = per_field
                    summary.suppressed = drop_suppressed(store, summary.sources)
                summary.records = int(store.scalar("SELECT count(*) FROM records"))
                with _written_meanwhile(store, run_id, summary.seconds) as start_writing:
                    with timer("link"):
                        outcome = run_linkage(store, config, retrain=retrain, meanwhile=start_writing)
                    with timer("cluster"):
                        # steward actions from here on are applied again after publishing
                        decided = {str(a) for (a,) in store.rows(f"SELECT action_id FROM {ident(store.catalog)}.main.steward_actions")}
                        summary.clusters_split = enforce_vetoes(store, config)
                        counts = assign_profiles(store, config, pairs=run_table(store, run_id, "pairs"))
                summary.model_trained = outcome.trained
                summary.untrained_levels = outcome.untrained_levels
                summary.vetoes, summary.assumptions = outcome.vetoes, outcome.assumed
                summary.labels = outcome.labels
                summary.candidate_pairs = outcome.candidate_pairs
                summary.seconds.update({f"link: {k}": round(v, 3) for k, v in outcome.seconds.items()})
                summary.profiles = counts["profiles"]
                summary.review_queue = counts["review_queue"]
                summary.ids_kept, summary.ids_new = counts["ids_kept"], counts["ids_new"]
                with timer("survivorship"):
                    # written straight into the run: a workspace copy would be written twice
                    rules = config.stewardship_settings()["rules"]
                    golden = survivorship.golden_fields_sql("records", "membership", rules, config.survivorship.default)
                    write_run_table(store, run_id, "golden_fields", golden)
                    run_golden = run_table(store, run_id, "golden_fields")
                    write_run_table(store, run_id, "profiles", survivorship.profiles_sql(run_golden, "records", "membership"))
                with timer("write"):
                    for table in RUN_TABLES:
                        if table in ("golden_fields", "profiles", "pairs"):  # written by their stages
                            continue
                        start = time.perf_counter()
                        if table in EARLY_TABLES:
                            target = run_table(store, run_id, table)
                            store.execute(
                                f"UPDATE {target} {EARLY_TABLES[table][1]} FROM work.main.membership m WHERE {target}.record_key = m.record_key",
                                building=target,
                            )
                            store.execute(f"DELETE FROM {target} WHERE profile_id IS NULL")
                        else:
                            write_run_table(store, run_id, table, f"SELECT * FROM work.main.{table}")
                        summary.seconds[f"write: {table}"] = round(time.perf_counter() - start, 3)
            model_json = config.model_path.read_text(encoding="utf-8") if config.model_path.exists() else None
            # Publishing and catching up hold the store: in a server (the run is its guest)
            # no live ingest or steward action falls between the switch and the catch-up.
            with store.exclusive():
                if erasure_ids(store) - erasures:
                    raise UnifyError(
                        "a person was erased while this run was working, and the run still holds them: nothing was published; run again"
                    )
                with timer("publish"):
                    publish_run(store, run_id, summary.as_dict(), model_json=model_json)
                # after publishing: the run is served, so a failure here is the live ingest's own
                with timer("reapply live ingests"):
                    summary.live_reapplied = reapply_live(store, config, live_until)
                with timer("reapply steward actions"):
                    summary.steward_reapplied = reapply_steward(store, config, decided)
            # the customers' events attach to records, not to this run: read after it is served
            with timer("events"):
                counts_by_file = ingest_event_files(store, config)
                summary.events = {name: c.as_dict() for name, c in counts_by_file.items()}
                if config.events:
                    summary.events_unlinked = unlinked_count(store, f"{ident(store.catalog)}.{ident(run_id)}")
                    record_run_summary(store, run_id, summary.as_dict())
        except BaseException as exc:
            if current_run(store) != run_id:
                fail_run(store, run_id, f"{type(exc).__name__}: {exc}")
            raise
    return summary


def _published_counts(store: Store) -> dict[str, int]:
    """Accepted records per source in the published run's summary."""
    text = store.scalar(f"SELECT max_by(summary, finished_at)::VARCHAR FROM {ident(store.catalog)}.main.runs WHERE status = 'published'")
    sources = (json.loads(text) if text else {}).get("sources") or {}
    return {name: int(c.get("accepted") or 0) for name, c in sources.items()}


@contextmanager
def _written_meanwhile(store: Store, run_id: str, seconds: dict[str, float]) -> Iterator[Callable[[], None]]:
    """Yields a function that starts writing the :data:`EARLY_TABLES` into the run, on a
    thread and a cursor of their own, while the block goes on (it is started on leaving
    at the latest). On leaving, waits for them: their failure fails the run, unless the
    block failed first."""

    def write() -> None:
        with store.cursor() as cursor:
            for table, (select_sql, _) in EARLY_TABLES.items():
                start = time.perf_counter()
                write_run_table(cursor, run_id, table, select_sql)
                seconds[f"write during link: {table}"] = round(time.perf_counter() - start, 3)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unify-early-write") as pool:
        started: list[Future[None]] = []

        def start() -> None:
            if not started:
                started.append(pool.submit(write))

        try:
            yield start
        except BaseException:
            wait(started)  # the run's schema is dropped next: not under a running write
            raise
        start()
        started[0].result()


def reapply_live(store: Store, config: Config, after: int) -> int:
    """Apply again, on the just published run, the records live-ingested since ``after``
    (the run read the log up to there), so none ingested during the run is lost."""
    pending = store.rows(
        """SELECT source, list(raw::VARCHAR ORDER BY seq) FROM (
               SELECT * FROM ingest_log WHERE seq > ? QUALIFY row_number() OVER (PARTITION BY source, record_id ORDER BY seq DESC) = 1)
           GROUP BY source ORDER BY source""",
        [after],
    )
    if not pending:
        return 0
    from pipelines.live.ingest import LiveIngest  # the live path imports the batch stages, not the reverse

    live = LiveIngest(store, config)
    by = Steward(actor="unify run", role="system")
    return sum(len(live.ingest(source, by, rows=[json.loads(r) for r in raws]).records) for source, raws in pending)


def reapply_steward(store: Store, config: Config, known: set[str]) -> int:
    """Apply to the just published run the steward actions taken while it was running
    (the run read the decisions before them): the profiles holding their records are
    regrouped with the decisions as they stand. Returns how many records moved."""
    keys = sorted(
        {
            str(k)
            for action_id, records in store.rows("SELECT action_id, records FROM steward_actions")
            if action_id not in known
            for k in records or []
        }
    )
    if not keys:
        return 0
    stewardship = Stewardship(store, **config.stewardship_settings())
    return stewardship.reconcile(keys)


@dataclass
class _StageTimer:
    seconds: dict[str, float]
    notify: StageCallback

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.notify(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.perf_counter() - start, 3)

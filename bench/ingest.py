"""Real-time ingest benchmark: single-record latency (in process and through the
``ingestRecord`` mutation) and bulk throughput of the live ingest (pipelines.live.ingest).

Why: a source system pushes a new or changed customer record and expects it matched into
the profiles at once; a nightly export of one source should go in without a batch run.
Each live ingest runs the batch's own steps (mapping, standardization, blocking, scoring,
clustering, survivorship) on the new records against the published store, so its cost
grows with the store. Targets, on 2 cores, at 1,000,000 profiles: p99 <= 50 ms per
record, and bulk ingest >= 2,000 records/s.

How:
1. Data: demo data for about ``--profiles`` profiles (2.27 records per profile); every
   ``--holdout-every``-th record of each source file is held out (as
   tests/pipelines/live/test_live.py does) and written to ``<out>/holdout/``; the pipeline
   builds the store from the rest (``run_pipeline``, in a subprocess logging to
   ``<out>/build.log``) and the store is kept as ``<out>/pristine.duckdb``. A marker file,
   ``bench-ingest-store.json``, records what is there and a digest of the code that
   builds stores (pipelines/ without pipelines/live/, profiles/): a rerun reuses data and store
   while they match, and rebuilds the store when that code changed.
2. Every measured phase starts from a fresh copy of the pristine store (the config's
   store path), so phases never see each other's records.
3. Single records: held-out rows of all sources, shuffled, converted to JSON objects keyed
   by the source's column names (rows without an id, or that no system could send, are
   skipped). In process (a child process): ``LiveIngest.warm()`` first, as the server
   does before it serves (timed and reported: the in-memory index of the records and the
   served tables' blocks), then ``LiveIngest.ingest(source, by, rows=[row])`` one at a
   time, after ``--warmup`` unmeasured ones; then ``--profile-records`` further
   ones with every SQL statement timed (``Store._run`` wrapped) and under cProfile, to show
   where the time goes. Through the mutation: the app served by uvicorn (one worker, the
   config's ``development`` off, as bench/api.py serves it; it warms before it listens,
   which its ready time includes) on another fresh copy; an
   httpx client sends the same rows as ``ingestRecord`` one at a time (concurrency 1) and
   checks every response (HTTP 200, no ``errors``, a status); the outcome counts must
   equal the in-process ones.
4. Bulk: the first ``--bulk`` held-out rows of the source with most held-out rows (and,
   to show how throughput depends on the batch, the first ``--bulk-probe`` rows too),
   written in that source's own format, each ingested with ``LiveIngest.ingest(path=...)``
   in a child process on a fresh copy (records/s from the ingest's own time); then the
   largest file that finished with ``unify ingest --source NAME FILE`` (records/s from the
   command's wall time: start-up and opening the store included; the checkpoint it leaves
   in the WAL for later, below ``[store].checkpoint_wal``, is then timed and printed
   beside it). Each of those is the
   first ingest after opening the store, which reads its indexes and tables in; the
   largest file is also measured after an untimed warm-up file (500 held-out rows of
   another source), as in a process that has ingested before. An ingest that takes
   longer than ``--bulk-timeout`` is killed and reported as such.

The machine is shared (other work runs tests at the same time): the load average before
and after each phase is recorded; compare figures of one run.

Run (from the repository root):

    .venv/bin/python bench/ingest.py                                   # 1,000,000 profiles, bench/out-ingest-1m
    .venv/bin/python bench/ingest.py --profiles 100000                 # bench/out-ingest-100k
    .venv/bin/python bench/ingest.py --profiles 20000 --singles 100 --bulk 1000   # a quick check

Results are printed and written to ``<out>/ingest-results.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api import API_KEY, Server, code_digest, cumulative_ms, remove_store, verdict  # bench/api.py (this directory is on sys.path)

SEED = 42
RECORDS_PER_PROFILE = 2.27
MARKER = "bench-ingest-store.json"
RESULTS = "ingest-results.json"
PRISTINE = "pristine.duckdb"
SINGLES = "singles.json"
CHILD = "_child"  # first argument of this script when it runs as a child process
ACTOR = "bench-ingest"
TARGET_P99_MS = 50.0
TARGET_BULK_RPS = 2000.0
#: Rows of another source ingested, untimed, before the bulk file in the warm measurement.
WARMUP_BULK_ROWS = 500
TARGET_PROFILES = 1_000_000  # the size the targets are set for
REPO = Path(__file__).resolve().parents[1]
SIDE = "graphql"  # bench/api.py's name for the real app

INGEST_MUTATION = """mutation Ingest($source: String!, $record: JSON!) {
  ingestRecord(source: $source, record: $record) {
    recordKey status matchProbability mergedProfileIds reviewPairIds fieldIssues
    profile { id recordCount }
  }
}"""

#: Functions whose cumulative time per record the profile shows: (label, file suffix, function).
PHASES: tuple[tuple[str, str, str], ...] = (
    ("LiveIngest.ingest (all)", "pipelines/live/ingest.py", "ingest"),
    ("  stage: map, standardize, candidates, score", "pipelines/live/stage.py", "stage"),
    ("    standardize_rows", "pipelines/standardize/rows.py", "standardize_rows"),
    ("    _score_few (candidates from memory, scoring)", "pipelines/live/stage.py", "_score_few"),
    ("  _apply: in the store's transaction", "pipelines/live/ingest.py", "_apply"),
    ("    _replace_rows", "pipelines/live/ingest.py", "_replace_rows"),
    ("    group", "pipelines/live/regroup.py", "group"),
    ("    Stewardship.reassign (golden records)", "store/stewardship.py", "reassign"),
    ("    queue_reviews", "pipelines/live/regroup.py", "queue_reviews"),
    ("    outcomes", "pipelines/live/report.py", "outcomes"),
    ("    append_audit", "store/queries.py", "append_audit"),
    ("  commit", "store/connection.py", "transaction"),
    ("all SQL (Store._run)", "store/connection.py", "_run"),
)


# --------------------------------------------------------------------------- small helpers


def peak_rss_mib() -> int:
    """This process's peak resident memory (MiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "over_1s": sum(m > 1000 for m in ms),
    }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
    return done.stdout.strip()


def build_digest() -> str:
    """Digest of the code that builds a store: pipelines/ (but the live ingest under test)
    and profiles/. A store built by other code is rebuilt."""
    files = sorted(
        f for package in ("pipelines", "profiles") for f in (REPO / package).rglob("*.py") if (REPO / "pipelines" / "live") not in f.parents
    )
    data = b"".join(str(f.relative_to(REPO)).encode() + f.read_bytes() for f in files)
    return hashlib.sha256(data).hexdigest()[:12]


def size_label(profiles: int) -> str:
    if profiles % 1_000_000 == 0:
        return f"{profiles // 1_000_000}m"
    if profiles % 1000 == 0:
        return f"{profiles // 1000}k"
    return str(profiles)


# --------------------------------------------------------------------------- source rows


def read_rows(path: Path) -> tuple[list[bytes], list[Any]]:
    """(header lines, records) of a demo source file, records in file order: raw lines
    for CSV/TSV/NDJSON (split on \\n only), dicts for Parquet."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [], pq.read_table(path).to_pylist()
    with path.open("rb") as f:
        lines = list(f)
    if path.suffix in (".csv", ".tsv"):
        return lines[:1], lines[1:]
    return [], lines


def write_rows(path: Path, like: Path, header: list[bytes], rows: list[Any]) -> None:
    """Write ``rows`` (as read_rows returned them from ``like``) in ``like``'s format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if like.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(like)), path)
    else:
        path.write_bytes(b"".join(header + rows))


def as_record(suffix: str, header: list[bytes], row: Any) -> dict[str, Any] | None:
    """A source row as the JSON object a system would send (keyed by the source's column
    names), or None for a row no system could send (wrong column count, not JSON)."""
    if suffix in (".csv", ".tsv"):
        text = [header[0].decode("utf-8"), row.decode("utf-8")]
        parsed = list(csv.DictReader(text, delimiter="\t" if suffix == ".tsv" else ","))
        if not parsed or None in parsed[0] or None in parsed[0].values():
            return None
        return dict(parsed[0])
    if suffix == ".ndjson":
        try:
            value = json.loads(row)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return dict(json.loads(json.dumps(row, default=str)))  # timestamps as strings, as JSON carries them


# --------------------------------------------------------------------------- child processes


def child_build(config_path: str) -> dict[str, Any]:
    """The pipeline on the kept records, as `unify run --retrain` runs it; then the store
    prepared as serving prepares it (its serving indexes, where the code has them) and
    checkpointed, so that the store file alone is the whole store."""
    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    config = load_config(config_path)
    summary = run_pipeline(config, retrain=True)
    prepared = child_prepare(str(config.store_path))
    return {
        "records": summary.records,
        "profiles": summary.profiles,
        "seconds": summary.seconds,
        "serving_indexes": prepared["serving_indexes"],
        "serving_indexes_seconds": prepared["serving_indexes_seconds"],
    }


def child_prepare(store_path: str) -> dict[str, Any]:
    """The store as serving and live ingest prepare it when they open it (the serving
    indexes the code has now; nothing when they are there), then checkpointed."""
    import profiles.store as store_module
    from profiles.store import Store

    prepare = getattr(store_module, "ensure_serving_indexes", None)
    with Store.open(store_path) as store:
        start = time.perf_counter()
        indexes = int(prepare(store)) if prepare is not None else 0
        seconds = time.perf_counter() - start
        store.execute("CHECKPOINT")
    return {"serving_indexes": indexes, "serving_indexes_seconds": round(seconds, 1)}


class StatementTimer:
    """Wraps ``Store._run`` to add up the wall time of each SQL statement, labelled by the
    function that issued it and the statement's first words (a measurement only)."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}  # label -> [calls, seconds]
        self._original: Callable[..., Any] | None = None

    @staticmethod
    def label(sql: str) -> str:
        frame = sys._getframe(2)
        while frame.f_back is not None and frame.f_code.co_filename.endswith(("store/connection.py", "bench/ingest.py")):
            frame = frame.f_back
        caller = f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"
        text = re.sub(r"\s+", " ", sql).strip()
        return f"{caller}: {text[:110]}"

    @contextmanager
    def installed(self) -> Iterator[None]:
        from profiles.store import connection

        original = connection.Store._run
        timer = self

        def timed(store: Any, sql: str, params: Any, building: str | None, **options: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(store, sql, params, building, **options)
            finally:
                entry = timer.spent.setdefault(timer.label(sql), [0.0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - start

        connection.Store._run = timed
        try:
            yield
        finally:
            connection.Store._run = original


def sql_by_caller(spent: dict[str, list[float]], records: int, limit: int = 12) -> list[tuple[str, float, float]]:
    """(issuing function, statements per record, SQL ms per record), most time first."""
    totals: dict[str, list[float]] = {}
    for label, (calls, seconds) in spent.items():
        entry = totals.setdefault(label.split(":", 1)[0], [0.0, 0.0])
        entry[0] += calls
        entry[1] += seconds
    ranked = sorted(totals.items(), key=lambda kv: kv[1][1], reverse=True)[:limit]
    return [(caller, round(c / records, 1), round(s / records * 1000, 2)) for caller, (c, s) in ranked]


def phase_times(prof_path: Path, records: int) -> dict[str, float]:
    """Cumulative ms per record of the PHASES functions in a cProfile dump."""
    return cumulative_ms(prof_path, PHASES, records, digits=2)


def child_inprocess(config_path: str, singles_path: str, warmup: str, count: str, profile_count: str, prof_path: str) -> dict[str, Any]:
    """One record at a time through ``LiveIngest``: ``warmup`` unmeasured, ``count``
    measured, then ``profile_count`` more with SQL statements timed and under cProfile."""
    from pipelines.config import load_config
    from pipelines.live.ingest import STATUSES, LiveIngest
    from profiles.store import Steward, Store

    config = load_config(config_path)
    items = json.loads(Path(singles_path).read_text(encoding="utf-8"))
    w, n, k = int(warmup), int(count), int(profile_count)
    by = Steward(ACTOR, "agent")
    counts = {s: 0 for s in STATUSES}
    statuses: list[str] = []
    seconds: list[float] = []
    inside: list[float] = []
    slowest: list[tuple[float, str, str, int]] = []  # (seconds, record key, status, profiles merged)
    opened = time.perf_counter()
    with Store.open(config.store_path, compress=config.store.compress, checkpoint_wal=config.store.checkpoint_wal) as store:
        open_seconds = time.perf_counter() - opened
        live = LiveIngest(store, config)
        warmed = time.perf_counter()
        warm_steps = live.warm()  # as the server does before it serves
        warm_seconds = time.perf_counter() - warmed
        warm_rss = peak_rss_mib()
        warmup_seconds: list[float] = []
        for item in items[:w]:
            start = time.perf_counter()
            live.ingest(item["source"], by, rows=[item["record"]])
            warmup_seconds.append(time.perf_counter() - start)
        for item in items[w : w + n]:
            start = time.perf_counter()
            report = live.ingest(item["source"], by, rows=[item["record"]])
            seconds.append(time.perf_counter() - start)
            inside.append(report.seconds)
            (outcome,) = report.records
            counts[outcome.status] += 1
            statuses.append(outcome.status)
            slowest.append((seconds[-1], outcome.record_key, outcome.status, len(outcome.merged_profiles)))
        profile: dict[str, Any] = {}
        rest = items[w + n : w + n + k]
        if rest:
            timer = StatementTimer()
            profiler = cProfile.Profile()
            start = time.perf_counter()
            with timer.installed():
                profiler.enable()
                for item in rest:
                    live.ingest(item["source"], by, rows=[item["record"]])
                profiler.disable()
            wall = time.perf_counter() - start
            profiler.dump_stats(prof_path)
            sql_seconds = sum(s for _, s in timer.spent.values())
            top = sorted(timer.spent.items(), key=lambda kv: kv[1][1], reverse=True)
            profile = {
                "records": len(rest),
                "ms_per_record_under_profiling": round(wall / len(rest) * 1000, 2),
                "sql_ms_per_record": round(sql_seconds / len(rest) * 1000, 2),
                "statements_per_record": round(sum(c for c, _ in timer.spent.values()) / len(rest), 1),
                "sql_by_caller": sql_by_caller(timer.spent, len(rest)),
                "top_statements": [
                    {
                        "statement": label,
                        "calls_per_record": round(c / len(rest), 2),
                        "ms_per_record": round(s / len(rest) * 1000, 2),
                        "share_of_sql": round(s / sql_seconds, 3),
                    }
                    for label, (c, s) in top[:15]
                ],
                "phases_ms_per_record": phase_times(Path(prof_path), len(rest)),
                "pstats": prof_path,
            }
    return {
        "latency": latency_stats(seconds),
        "latency_inside_ingest": latency_stats(inside),
        "counts": counts,
        "statuses": statuses,
        "store_open_seconds": round(open_seconds, 2),
        "warm_seconds": round(warm_seconds, 2),
        "warm_steps": warm_steps,
        "peak_rss_mib_after_warm": warm_rss,
        "first_ingest_ms": round(warmup_seconds[0] * 1000, 1) if warmup_seconds else None,
        "slowest": [
            {"ms": round(t * 1000, 1), "record_key": k, "status": st, "merged": m} for t, k, st, m in sorted(slowest, reverse=True)[:5]
        ],
        "profile": profile,
    }


def child_bulk(config_path: str, source: str, file: str, warm_source: str = "", warm_file: str = "") -> dict[str, Any]:
    """One file of one source through ``LiveIngest.ingest(path=...)``; with ``warm_file``,
    after that file of ``warm_source`` (not timed), as in a process that has ingested
    before: the first ingest after opening a store reads its indexes and tables in."""
    from pipelines.config import load_config
    from pipelines.live.ingest import LiveIngest
    from profiles.store import Steward, Store

    config = load_config(config_path)
    with Store.open(config.store_path, compress=config.store.compress, checkpoint_wal=config.store.checkpoint_wal) as store:
        live = LiveIngest(store, config)
        warm = live.ingest(warm_source, Steward(ACTOR, "admin"), path=Path(warm_file)) if warm_file else None
        report = live.ingest(source, Steward(ACTOR, "admin"), path=Path(file))
    result = {
        "rows": report.rows,
        "quarantined": report.quarantined,
        "field_issues": report.field_issues,
        "seconds": report.seconds,
        "records_per_second": round(report.rows / report.seconds, 1),
        "counts": report.counts(),
    }
    if warm is not None:
        result["warmup"] = {"source": warm_source, "rows": warm.rows, "seconds": warm.seconds}
    return result


def child_main(mode: str, args: list[str]) -> None:
    """Run one child job; its result is the last line of stdout."""
    jobs: dict[str, Callable[..., dict[str, Any]]] = {
        "build": child_build,
        "prepare": child_prepare,
        "inprocess": child_inprocess,
        "bulk": child_bulk,
    }
    start = time.perf_counter()
    result = jobs[mode](*args)
    result["work_seconds"] = round(time.perf_counter() - start, 3)
    print(json.dumps(result), flush=True)


def run_child(mode: str, *args: str, log: Path, timeout: float | None = None, fatal: bool = True) -> dict[str, Any]:
    """Run a child job, its output going to ``log``; its result is its last line. A
    child that outlives ``timeout`` seconds is killed: the result is ``{"timed_out": true}``.
    A child that fails stops the benchmark, unless not ``fatal``: then ``{"failed": why}``."""
    command = [sys.executable, str(Path(__file__).resolve()), CHILD, mode, *args]
    with log.open("w", encoding="utf-8") as sink:
        try:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=REPO, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"timed_out": True, "timeout_seconds": timeout}
    output = log.read_text(encoding="utf-8")
    if done.returncode != 0 and not fatal:
        return {"failed": f"exit code {done.returncode} (see {log.name})"}
    if done.returncode != 0:
        sys.exit(f"{mode} failed with exit code {done.returncode}; its output ({log}):\n{output[-5000:]}")
    return dict(json.loads(output.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- data and store


def _production(config_path: Path) -> None:
    """Production mode: no GraphiQL, no introspection (the demo config is a development
    one), and no published demo keys, which production refuses (the server gets
    bench/api.py's key)."""
    text = re.sub(r"(?m)^development = true$", "development = false", config_path.read_text(encoding="utf-8"))
    text = re.sub(r"(?m)^\[\[api\.keys\]\]\n(?:^(?!\[)(?!#).*\n)*", "", text)
    config_path.write_text(text, encoding="utf-8")


def ensure_data(out: Path, profiles: int, holdout_every: int) -> tuple[Path, dict[str, Any]]:
    """Demo data with every ``holdout_every``-th record of each source moved to
    ``<out>/holdout/``, unless the marker says it is there. Returns (config, marker)."""
    marker = out / MARKER
    want = {"profiles_requested": profiles, "seed": SEED, "holdout_every": holdout_every}
    if marker.exists():
        seen = json.loads(marker.read_text(encoding="utf-8"))
        if all(seen.get(k) == v for k, v in want.items()) and (out / seen["config"]).exists():
            _production(out / seen["config"])  # data made before production refused the demo keys
            return out / seen["config"], seen
    from pipelines.demo import generate

    records = round(profiles * RECORDS_PER_PROFILE)
    print(f"generating {records:,} demo records ...", flush=True)
    start = time.perf_counter()
    shutil.rmtree(out / "holdout", ignore_errors=True)
    manifest = generate(out, records=records, seed=SEED, events_per_person=0)  # the records only: as before events existed
    held: dict[str, dict[str, Any]] = {}
    for name, path in manifest.source_paths.items():
        header, rows = read_rows(path)
        kept = [r for i, r in enumerate(rows) if i % holdout_every != holdout_every - 1]
        out_rows = [r for i, r in enumerate(rows) if i % holdout_every == holdout_every - 1]
        target = out / "holdout" / path.name
        write_rows(target, path, header, out_rows)
        write_rows(path, path, header, kept)  # the store is built from the rest
        held[name] = {"file": target.relative_to(out).as_posix(), "rows": len(out_rows), "kept": len(kept)}
    _production(manifest.config_path)
    seen = {
        **want,
        "records_requested": records,
        "config": manifest.config_path.name,
        "generate_seconds": round(time.perf_counter() - start, 1),
        "holdout": held,
    }
    marker.write_text(json.dumps(seen, indent=2) + "\n", encoding="utf-8")
    return manifest.config_path, seen


def ensure_store(out: Path, config_path: Path, seen: dict[str, Any], reuse: bool) -> dict[str, Any]:
    """The pristine store built from the kept records, unless the marker says it is there
    (built by the same code, or ``reuse``: then it gets the serving indexes the code has
    now). Returns the marker's store entry."""
    from pipelines.config import load_config

    digest = build_digest()
    built = seen.get("store")
    if built and (out / PRISTINE).exists() and (built["build_digest"] == digest or reuse):
        prepared = run_child("prepare", str(out / PRISTINE), log=out / "prepare.log")
        return {
            **built,
            "reused": True,
            "built_by_other_code": built["build_digest"] != digest,
            "indexes_added_on_reuse": prepared["serving_indexes"],
        }
    store_path = load_config(config_path).store_path
    remove_store(store_path)
    (out / PRISTINE).unlink(missing_ok=True)
    print(f"running the pipeline (log: {out / 'build.log'}) ...", flush=True)
    start = time.perf_counter()
    result = run_child("build", str(config_path), log=out / "build.log")
    if store_path.with_name(store_path.name + ".wal").exists():
        sys.exit(f"{store_path} has a WAL after the build: copying the file alone would lose data")
    store_path.rename(out / PRISTINE)
    built = {
        "build_digest": digest,
        "commit": git("rev-parse", "--short", "HEAD"),
        "pipeline_seconds": round(time.perf_counter() - start, 1),
        "pipeline_stages": result["seconds"],
        "records": result["records"],
        "profiles": result["profiles"],
        "serving_indexes": result["serving_indexes"],
        "serving_indexes_seconds": result["serving_indexes_seconds"],
        "size_mib": round((out / PRISTINE).stat().st_size / 2**20, 1),
    }
    seen["store"] = built
    (out / MARKER).write_text(json.dumps(seen, indent=2) + "\n", encoding="utf-8")
    return {**built, "reused": False, "built_by_other_code": False}


def fresh_store(out: Path, config_path: Path) -> float:
    """Replace the config's store by a copy of the pristine one; returns the copy's seconds.
    The copy is flushed to disk before anything is measured: while the kernel still
    writes back its gigabytes, every commit's fsync waits behind them (commits at 1M
    took 4 ms or 13 ms depending on how long ago the copy was made)."""
    from pipelines.config import load_config

    store_path = load_config(config_path).store_path
    remove_store(store_path)
    start = time.perf_counter()
    shutil.copyfile(out / PRISTINE, store_path)
    os.sync()
    return round(time.perf_counter() - start, 1)


def pick_singles(out: Path, seen: dict[str, Any], config_path: Path, count: int) -> list[dict[str, Any]]:
    """``count`` held-out records of all sources, shuffled, as JSON objects a system could
    send (with a record id)."""
    from pipelines.config import load_config

    ids = {s.name: s.id for s in load_config(config_path).sources}
    pool: list[dict[str, Any]] = []
    for name, info in sorted(seen["holdout"].items()):
        path = out / info["file"]
        header, rows = read_rows(path)
        for row in rows:
            record = as_record(path.suffix, header, row)
            if record is not None and str(record.get(ids[name]) or "").strip():
                pool.append({"source": name, "record": record})
    random.Random(SEED).shuffle(pool)
    if len(pool) < count:
        sys.exit(f"only {len(pool):,} held-out records to ingest one at a time; {count:,} wanted (lower --singles)")
    return pool[:count]


def write_bulk(out: Path, seen: dict[str, Any], sizes: list[int]) -> tuple[str, dict[int, Path]]:
    """Files of the first n held-out rows (n in ``sizes``, at most all of them) of the
    source with most held-out rows, in its format: (source, {rows: file})."""
    name, info = max(seen["holdout"].items(), key=lambda kv: (kv[1]["rows"], kv[0]))
    path = out / info["file"]
    header, rows = read_rows(path)
    files: dict[int, Path] = {}
    for n in sorted({min(size, len(rows)) for size in sizes}):
        target = out / "bulk" / f"{path.stem}-{n}{path.suffix}"
        write_rows(target, path, header, rows[:n])
        files[n] = target
    return name, files


def write_warmup(out: Path, seen: dict[str, Any], bulk_source: str, rows: int = WARMUP_BULK_ROWS) -> tuple[str, Path]:
    """A file of the first ``rows`` held-out rows of another source than the bulk file's
    (the one with most held-out rows after it): ingested before the bulk file in the
    warm measurement, so it shares no record with it."""
    name, info = max(((k, v) for k, v in seen["holdout"].items() if k != bulk_source), key=lambda kv: (kv[1]["rows"], kv[0]))
    path = out / info["file"]
    header, data = read_rows(path)
    target = out / "bulk" / f"warmup-{path.stem}-{min(rows, len(data))}{path.suffix}"
    write_rows(target, path, header, data[:rows])
    return name, target


# --------------------------------------------------------------------------- the phases


def measure_mutation(out: Path, config_path: Path, singles: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """The singles through ``ingestRecord`` on a uvicorn server, one request at a time."""
    import httpx

    server = Server(SIDE, config_path, out)
    seconds: list[float] = []
    statuses: list[str] = []
    failures: list[str] = []
    try:
        ready = server.wait_ready()
        print(f"mutation: serving on port {server.port} (ready in {ready:.1f} s)", flush=True)
        headers = {"Authorization": f"Bearer {API_KEY}"}  # bench/api.py's Server gives this key the agent role
        with httpx.Client(headers=headers, timeout=120.0) as client:
            cpu_before = 0.0
            for i, item in enumerate(singles):
                if i == warmup:
                    cpu_before = server.cpu_seconds()
                body = {
                    "query": INGEST_MUTATION,
                    "variables": {"source": item["source"], "record": item["record"]},
                    "operationName": "Ingest",
                }
                start = time.perf_counter()
                reply = client.post(server.url, json=body)
                elapsed = time.perf_counter() - start
                data = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
                result = (data.get("data") or {}).get("ingestRecord") or {}
                if reply.status_code != 200 or data.get("errors") or not result.get("status"):
                    failures.append(f"{item['source']}: HTTP {reply.status_code}: {reply.text[:300]}")
                if i >= warmup:
                    seconds.append(elapsed)
                    statuses.append(str(result.get("status")))
            cpu = server.cpu_seconds() - cpu_before
        rss = server.rss_mib()
    finally:
        server.stop()
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return {
        "latency": latency_stats(seconds),
        "counts": counts,
        "statuses": statuses,
        "failures": len(failures),
        "failure_examples": failures[:5],
        "server_cpu_ms_per_record": round(cpu / len(seconds) * 1000, 2),
        "server_ready_seconds": round(ready, 1),
        "server_rss_mib": rss,
    }


def measure_cli(config_path: Path, source: str, file: Path, rows: int, timeout: float) -> dict[str, Any]:
    unify = Path(sys.executable).with_name("unify")
    command = [str(unify), "ingest", "--source", source, "--config", str(config_path), str(file)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rows": rows, "timed_out": True, "timeout_seconds": timeout}
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"unify ingest failed ({done.returncode}):\n{done.stdout[-3000:]}")
    text = " ".join(done.stdout.split())  # rich wraps long lines
    said = re.search(r"([\d,.]+)s \(([\d,]+) records/s\)", text)
    left = deferred_checkpoint(config_path)
    return {
        "rows": rows,
        "wall_seconds": round(wall, 2),
        "records_per_second": round(rows / wall, 1),
        "ingest_seconds_reported": float(said.group(1).replace(",", "")) if said else None,
        **left,
        "records_per_second_with_its_checkpoint": round(rows / (wall + left["checkpoint_seconds"]), 1),
        "output": text[:400],
    }


def deferred_checkpoint(config_path: Path) -> dict[str, Any]:
    """What `unify ingest` left in the WAL for a later checkpoint (it does not checkpoint
    on exit below ``[store].checkpoint_wal``): the WAL's size, and the seconds to open the
    store (replaying it) and to checkpoint it, as the next owner pays them once for all
    the ingests before."""
    import duckdb

    from pipelines.config import load_config

    store_path = load_config(config_path).store_path
    wal = store_path.with_name(store_path.name + ".wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    start = time.perf_counter()
    con = duckdb.connect(str(store_path))
    opened = time.perf_counter()
    con.execute("SET max_vacuum_tasks = 0")  # as unify's stores (profiles.store.Store.open)
    con.execute("CHECKPOINT")
    done = time.perf_counter()
    con.close()
    return {"wal_bytes": wal_bytes, "open_seconds": round(opened - start, 2), "checkpoint_seconds": round(done - opened, 2)}


@contextmanager
def phase(name: str, log: dict[str, Any]) -> Iterator[dict[str, Any]]:
    entry: dict[str, Any] = {"load_before": load_average()}
    print(f"{name} ...", flush=True)
    start = time.perf_counter()
    yield entry
    entry["phase_seconds"] = round(time.perf_counter() - start, 1)
    entry["load_after"] = load_average()
    log[name] = entry


# --------------------------------------------------------------------------- report


def print_report(results: dict[str, Any]) -> None:
    store, single, bulk = results["store"], results["single"], results["bulk"]
    print(
        f"\nstore: {store['profiles']:,} profiles from {store['records']:,} records "
        f"(commit {results['commit']}; {results['cores']} cores; load average {results['load_start']} at start)"
    )
    print(
        f"\nsingle records ({single['in_process']['latency']['n']} after {results['warmup']} warm-up)"
        f"{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}{'mean ms':>10}{'> 1 s':>7}"
    )
    for label, key in (("in process (LiveIngest.ingest)", "in_process"), ("through ingestRecord (HTTP)", "mutation")):
        s = single[key]["latency"]
        print(
            f"  {label:<41}{s['p50_ms']:10.1f}{s['p90_ms']:10.1f}{s['p99_ms']:10.1f}{s['max_ms']:10.1f}{s['mean_ms']:10.1f}"
            f"{s['over_1s']:7d}"
        )
    ip = single["in_process"]
    if "warm_seconds" in ip:
        print(
            f"  warm-up before the first record (LiveIngest.warm, as the server does): {ip['warm_seconds']:.1f} s "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in ip['warm_steps'].items())}); peak RSS then {ip['peak_rss_mib_after_warm']:,} MiB; "
            f"server ready after {single['mutation']['server_ready_seconds']:.1f} s"
        )
    counts = {k: v for k, v in single["in_process"]["counts"].items() if v}
    print(
        f"  outcomes: {', '.join(f'{k} {v}' for k, v in counts.items())}; "
        f"mutation failures {single['mutation']['failures']}; outcomes equal in both: {single['outcomes_equal']}"
    )
    print(
        f"  server CPU per record: {single['mutation']['server_cpu_ms_per_record']:.1f} ms; slowest in process: "
        + ", ".join(f"{x['record_key']} {x['status']} {x['ms']:.0f} ms" for x in single["in_process"]["slowest"][:3])
    )
    for failure in single["mutation"]["failure_examples"]:
        print(f"  failed: {failure}")
    b, c = bulk["in_process"], bulk["cli"]
    print(f"\nbulk: held-out rows of {bulk['source']}, one file each; in process (LiveIngest.ingest(path=...)):")
    for entry in bulk["in_process_by_size"]:
        if entry.get("failed"):
            print(f"  {entry['rows']:>7,} rows: failed, {entry['failed']}")
        elif entry.get("timed_out"):
            print(
                f"  {entry['rows']:>7,} rows: killed after {entry['timeout_seconds']:g} s "
                f"(< {entry['records_per_second_at_most']:,.1f} records/s)"
            )
        else:
            print(
                f"  {entry['rows']:>7,} rows: {entry['seconds']:8.2f} s, {entry['records_per_second']:8,.0f} records/s; "
                f"outcomes: {', '.join(f'{k} {v}' for k, v in entry['counts'].items() if v)}"
            )
    w = bulk.get("in_process_warm") or {}
    if "records_per_second" in w:
        print(
            f"  {w['rows']:>7,} rows after a warm-up file ({w['warmup']['rows']:,} rows of {w['warmup']['source']}, "
            f"{w['warmup']['seconds']:.2f} s, not counted): {w['seconds']:8.2f} s, {w['records_per_second']:8,.0f} records/s"
        )
    elif w:
        print(f"  after a warm-up file: failed or killed ({w.get('failed') or 'timed out'})")
    if c.get("skipped"):
        print(f"  unify ingest: skipped ({c['skipped']})")
    elif c.get("timed_out"):
        print(f"  unify ingest, {c['rows']:,} rows: killed after {c['timeout_seconds']:g} s")
    else:
        print(
            f"  unify ingest, {c['rows']:,} rows (wall time, start-up and store open included): {c['wall_seconds']:.2f} s, "
            f"{c['records_per_second']:,.0f} records/s"
        )
        print(
            f"    left in the WAL for a later checkpoint: {c['wal_bytes'] / 2**20:,.0f} MiB; opening the store then takes "
            f"{c['open_seconds']:.2f} s and the checkpoint {c['checkpoint_seconds']:.2f} s "
            f"({c['records_per_second_with_its_checkpoint']:,.0f} records/s if each file paid a checkpoint of its own)"
        )
    met, note = results["met"], results["targets"]["note"]
    print(f"\ntargets ({note}):")
    print(
        f"  p99 <= {TARGET_P99_MS:g} ms per record: through ingestRecord {single['mutation']['latency']['p99_ms']:.1f} ms "
        f"{verdict(met['p99_mutation'])}; in process {single['in_process']['latency']['p99_ms']:.1f} ms "
        f"{verdict(met['p99_in_process'])}"
    )
    cli_said = (
        f"unify ingest ({c['rows']:,} rows) {c['records_per_second']:,.0f} {verdict(met['bulk_cli'])}"
        if "records_per_second" in c
        else f"unify ingest {verdict(False)} (did not finish or did not run)"
    )
    in_said = (
        f"{b['records_per_second']:,.0f} {verdict(met['bulk_in_process'])}"
        if "records_per_second" in b
        else f"{verdict(False)} (did not finish)"
    )
    warm_said = (
        f"{w['records_per_second']:,.0f} {verdict(met['bulk_in_process_warm'])}"
        if "records_per_second" in w
        else f"{verdict(False)} (did not finish)"
    )
    print(
        f"  bulk >= {TARGET_BULK_RPS:,.0f} records/s ({bulk['rows']:,} rows): in process, first ingest after opening the "
        f"store {in_said}; in process after a warm-up file {warm_said}; {cli_said}"
    )
    prof = single["in_process"].get("profile") or {}
    if prof:
        print(
            f"\nwhere the time goes ({prof['records']} more records in process, SQL timed and under cProfile: "
            f"{prof['ms_per_record_under_profiling']:.1f} ms per record, of which SQL {prof['sql_ms_per_record']:.1f} ms "
            f"in {prof['statements_per_record']:.0f} statements):"
        )
        for label, ms in prof["phases_ms_per_record"].items():
            print(f"  {label:<58}{ms:9.2f} ms")
        print("  SQL by the function that issued it (statements and ms per record):")
        for caller, calls, ms in prof["sql_by_caller"]:
            print(f"  {caller:<58}{calls:5.0f}{ms:9.2f} ms")
        print("  top SQL statements (ms per record, share of SQL time):")
        for t in prof["top_statements"][:10]:
            print(f"  {t['ms_per_record']:8.2f} {t['share_of_sql']:6.1%}  {t['statement'][:120]}")
    for warning in results["warnings"]:
        print(f"WARNING: {warning}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profiles", type=int, default=1_000_000, help="profiles in the store (default 1,000,000)")
    parser.add_argument("--out", type=Path, default=None, help="directory for data, store and results (default bench/out-ingest-<size>)")
    parser.add_argument("--singles", type=int, default=300, help="records ingested one at a time and measured")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured single records first")
    parser.add_argument("--bulk", type=int, default=20_000, help="records in the bulk file (at most the held-out rows of its source)")
    parser.add_argument(
        "--bulk-probe",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[500, 2000],
        help="smaller bulk files also measured in process, to show how throughput depends on size (comma-separated)",
    )
    parser.add_argument("--bulk-timeout", type=float, default=900.0, help="seconds a bulk ingest may take before it is killed")
    parser.add_argument("--holdout-every", type=int, default=20, help="hold out every N-th record of each source")
    parser.add_argument("--profile-records", type=int, default=30, help="records ingested in process under profiling (0: skip)")
    parser.add_argument("--reuse-store", action="store_true", help="reuse the store even if the code that builds stores changed")
    parser.add_argument("--build-only", action="store_true", help="prepare data and store and stop")
    args = parser.parse_args(argv)
    out: Path = (args.out or REPO / "bench" / f"out-ingest-{size_label(args.profiles)}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    code = code_digest()
    commit = git("rev-parse", "--short", "HEAD")
    modified = git("status", "--porcelain", "--", "pipelines", "profiles", "resolvers").splitlines()
    load_start = load_average()

    config_path, seen = ensure_data(out, args.profiles, args.holdout_every)
    store = ensure_store(out, config_path, seen, args.reuse_store)
    print(
        f"store: {'reused' if store['reused'] else 'built'} ({store['profiles']:,} profiles from {store['records']:,} records)", flush=True
    )
    if args.build_only:
        return
    singles = pick_singles(out, seen, config_path, args.warmup + args.singles + args.profile_records)
    (out / SINGLES).write_text(json.dumps(singles), encoding="utf-8")
    measured = singles[: args.warmup + args.singles]
    bulk_source, bulk_files = write_bulk(out, seen, [*args.bulk_probe, args.bulk])

    phases: dict[str, Any] = {}
    with phase("single records, in process", phases) as p:
        p["copy_seconds"] = fresh_store(out, config_path)
        in_process = run_child(
            "inprocess",
            str(config_path),
            str(out / SINGLES),
            str(args.warmup),
            str(args.singles),
            str(args.profile_records),
            str(out / "profile-ingest.prof"),
            log=out / "inprocess.log",
        )
    with phase("single records, through ingestRecord", phases) as p:
        p["copy_seconds"] = fresh_store(out, config_path)
        mutation = measure_mutation(out, config_path, measured, args.warmup)
    by_size: list[dict[str, Any]] = []
    for n, file in bulk_files.items():
        with phase(f"bulk, in process, {n:,} rows", phases) as p:
            p["copy_seconds"] = fresh_store(out, config_path)
            result = run_child(
                "bulk", str(config_path), bulk_source, str(file), log=out / f"bulk-{n}.log", timeout=args.bulk_timeout, fatal=False
            )
        if result.get("timed_out"):
            result["records_per_second_at_most"] = round(n / args.bulk_timeout, 1)
        by_size.append({"file": file.relative_to(out).as_posix(), **result, "rows": n})
    bulk, bulk_rows = by_size[-1], max(bulk_files)
    warm_source, warm_file = write_warmup(out, seen, bulk_source)
    with phase(f"bulk, in process, {bulk_rows:,} rows after a warm-up file", phases) as p:
        p["copy_seconds"] = fresh_store(out, config_path)
        warm = run_child(
            "bulk",
            str(config_path),
            bulk_source,
            str(bulk_files[bulk_rows]),
            warm_source,
            str(warm_file),
            log=out / f"bulk-{bulk_rows}-warm.log",
            timeout=args.bulk_timeout,
            fatal=False,
        )
    completed = [b["rows"] for b in by_size if not b.get("timed_out") and not b.get("failed")]
    cli: dict[str, Any] = {"skipped": "no in-process bulk run finished"}
    if completed:
        with phase(f"bulk, unify ingest, {max(completed):,} rows", phases) as p:
            p["copy_seconds"] = fresh_store(out, config_path)
            cli = measure_cli(config_path, bulk_source, bulk_files[max(completed)], max(completed), args.bulk_timeout)

    warnings: list[str] = []
    if mutation["failures"]:
        warnings.append(f"{mutation['failures']} failed ingestRecord responses: the figures are not valid")
    equal = in_process["statuses"] == mutation["statuses"]
    if not equal:
        warnings.append("in process and through the mutation the same records had different outcomes")
    for entry in by_size:
        if entry.get("failed"):
            warnings.append(f"bulk ingest of {entry['rows']:,} rows failed: {entry['failed']}")
    if bulk.get("timed_out"):
        warnings.append(f"bulk ingest of {bulk_rows:,} rows did not finish in {args.bulk_timeout:g} s (killed)")
    if bulk_rows < args.bulk:
        warnings.append(f"the bulk file has {bulk_rows:,} rows (all held-out rows of {bulk_source}), not {args.bulk:,}")
    if store["built_by_other_code"]:
        warnings.append(
            f"the store was built by other code ({store['build_digest']}, commit {store['commit']}; "
            f"now {build_digest()}): reused as asked (--reuse-store)"
        )
    if code_digest() != code:
        warnings.append("pipelines/, profiles/ or resolvers/ changed while the benchmark ran: rerun")
    if modified:
        warnings.append(f"measured with uncommitted changes: {', '.join(line[3:] for line in modified)}")
    at_size = "at this size" if args.profiles == TARGET_PROFILES else f"set for {TARGET_PROFILES:,} profiles; this store is smaller"
    results: dict[str, Any] = {
        "profiles_requested": args.profiles,
        "commit": commit,
        "code_digest": code,
        "uncommitted": modified,
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "load_start": load_start,
        "load_end": load_average(),
        "store": store,
        "holdout": seen["holdout"],
        "holdout_every": args.holdout_every,
        "warmup": args.warmup,
        "single": {"in_process": in_process, "mutation": mutation, "outcomes_equal": equal},
        "bulk": {
            "source": bulk_source,
            "rows": bulk_rows,
            "timeout_seconds": args.bulk_timeout,
            "in_process": bulk,
            "in_process_by_size": by_size,
            "in_process_warm": warm,
            "cli": cli,
        },
        "targets": {"p99_ms": TARGET_P99_MS, "bulk_records_per_second": TARGET_BULK_RPS, "note": at_size},
        "met": {
            "p99_mutation": mutation["latency"]["p99_ms"] <= TARGET_P99_MS,
            "p99_in_process": in_process["latency"]["p99_ms"] <= TARGET_P99_MS,
            "bulk_in_process": bulk.get("records_per_second", 0) >= TARGET_BULK_RPS,
            "bulk_in_process_warm": warm.get("records_per_second", 0) >= TARGET_BULK_RPS,
            "bulk_cli": cli.get("records_per_second", 0) >= TARGET_BULK_RPS,
        },
        "phases": phases,
        "warnings": warnings,
    }
    print_report(results)
    for side in (in_process, mutation):
        side.pop("statuses")
    (out / RESULTS).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults: {out / RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child_main(sys.argv[2], sys.argv[3:])
    else:
        main()

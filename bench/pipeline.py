"""Pipeline benchmark: our whole batch run against plain splink on the same records.

Why: the pipeline wraps splink with ingest, standardisation, vetoes, survivorship and a
transactional publish. This measures what that costs end to end, against splink alone
given the very input our pipeline hands it (the standardised ``linkable`` table) and the
very same model (settings, blocking rules, training calls, thresholds). Targets: ours
within 1.5x of plain splink, peak memory within 6 GiB.

Each side runs in a fresh subprocess of its own, so wall time and peak RSS are that
process's alone. The machine is shared and noisy: compare the ratios of one run rather
than absolute seconds across runs.

Run (from the repository root):

    .venv/bin/python bench/pipeline.py                      # 1,000,000 records, bench/out
    .venv/bin/python bench/pipeline.py --records 20000 --out bench/out-20k

The demo data is generated once per output directory and record count (a marker file,
``bench-demo.json``, records what is there). Results are printed and written to
``<out>/pipeline-results.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.5
TARGET_PEAK_GIB = 6.0
SEED = 42
MARKER = "bench-demo.json"
RESULTS = "pipeline-results.json"
CHILD = "_child"  # first argument of this script when it runs as one of the measured processes
KIB_PER_GIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
CODE = ("pipelines", "profiles")  # the code under test: its digest shows whether it changed mid-benchmark

#: Rows of the report: (label, our stage key, plain splink step key).
ROWS: tuple[tuple[str, str | None, str | None], ...] = (
    ("ingest", "ingest", None),
    ("standardize", "standardize", None),
    ("load linkable.parquet", None, "load"),
    ("link: train", "link: train", "train"),
    ("link: predict", "link: predict", "predict"),
    ("link: cluster", "link: cluster", "cluster"),
    ("cluster (vetoes, profile ids)", "cluster", None),
    ("survivorship", "survivorship", None),
    ("write", "write", None),
    ("publish", "publish", None),
)


# --------------------------------------------------------------------------- measured processes


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def code_digest() -> str:
    """Digest of the code under test as it is on disk now."""
    files = sorted(f for package in CODE for f in (REPO / package).rglob("*.py"))
    return digest(b"".join(str(f.relative_to(REPO)).encode() + f.read_bytes() for f in files))


def model_digest(config: Any) -> str:
    """Digest of the splink settings (comparisons, blocking rules) for ``config``."""
    from pipelines.batch.link import model_groups
    from pipelines.matching.comparisons import settings

    wanted = settings(model_groups(config), config.shared_identifiers())
    return digest(json.dumps(wanted, sort_keys=True).encode())


@contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = round(time.perf_counter() - start, 3)


def child_ours(config_path: Path) -> dict[str, Any]:
    """Our pipeline, exactly as `unify run --config <config_path> --retrain` runs it."""
    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    config = load_config(config_path)
    summary = run_pipeline(config, retrain=True)
    counts = {"records": summary.records, "profiles": summary.profiles, "candidate_pairs": summary.candidate_pairs}
    return {"seconds": summary.seconds, "counts": counts, "model": model_digest(config)}


def child_prepare(config_path: Path, parquet: Path) -> dict[str, Any]:
    """Plain splink's input: our ``linkable`` table (ingest + standardize + pivot), as Parquet."""
    from pipelines.batch.ingest import ingest_sources
    from pipelines.batch.link import prepare_linkable
    from pipelines.config import load_config
    from pipelines.standardize.batch import standardize
    from profiles.store import Store, sql_literal_path

    config = load_config(config_path)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=parquet.parent) as tmp:  # noqa: SIM117 (the inner ones use tmp)
        with Store.open(Path(tmp) / "prepare.duckdb", threads=config.store.threads) as store:
            with store.workspace(spill_dir=Path(tmp) / "spill", memory_limit=config.store.memory_limit):
                with timed(seconds, "ingest"):
                    ingest_sources(store, config)
                with timed(seconds, "standardize"):
                    standardize(store, config)
                with timed(seconds, "prepare_linkable"):
                    prepare_linkable(store, config)
                with timed(seconds, "copy"):
                    store.execute(f"COPY linkable TO {sql_literal_path(parquet)} (FORMAT parquet)")
                rows = int(store.scalar("SELECT count(*) FROM linkable"))
    return {"seconds": seconds, "counts": {"records": rows}}


def child_splink(config_path: Path, parquet: Path) -> dict[str, Any]:
    """Plain splink on ``parquet``: same settings, training calls and thresholds as
    ``pipelines.batch.link``, written against splink's public API only."""
    import duckdb
    from splink import DuckDBAPI, Linker

    from pipelines.batch.link import model_groups
    from pipelines.config import load_config
    from pipelines.matching.blocking import deterministic_rules, em_training_rules
    from pipelines.matching.comparisons import settings

    quiet_splink()
    config = load_config(config_path)
    matching, groups, ids = config.matching, model_groups(config), config.shared_identifiers()
    con = duckdb.connect()
    if config.store.threads:
        con.execute(f"SET threads = {int(config.store.threads)}")
    if config.store.memory_limit:
        con.execute("SET memory_limit = ?", [config.store.memory_limit])
    seconds: dict[str, float] = {}
    with timed(seconds, "load"):
        con.execute("CREATE TABLE linkable AS SELECT * FROM read_parquet(?)", [str(parquet)])
    db = DuckDBAPI(connection=con)
    with timed(seconds, "train"):
        linker = Linker(db.register("linkable"), settings(groups, ids))
        prior_rules: list[Any] = list(deterministic_rules(groups, ids))
        if prior_rules:
            linker.training.estimate_probability_two_random_records_match(prior_rules, recall=0.8)
        linker.training.estimate_u_using_random_sampling(max_pairs=matching.u_max_pairs, seed=matching.seed)
        for rule in em_training_rules(groups):
            linker.training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=matching.em_max_pairs)
    with timed(seconds, "predict"):
        predictions = linker.inference.predict(threshold_match_probability=matching.review_threshold)
    with timed(seconds, "cluster"):
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=matching.match_threshold
        )

    def count(sql: str) -> int:
        return int(con.execute(sql).fetchall()[0][0])

    counts = {
        "records": count("SELECT count(*) FROM linkable"),
        "profiles": count(f'SELECT count(DISTINCT cluster_id) FROM "{clusters.physical_name}"'),
        "candidate_pairs": count(f'SELECT count(*) FROM "{predictions.physical_name}"'),
    }
    return {"seconds": seconds, "counts": counts, "model": model_digest(config)}


def quiet_splink() -> None:
    """Log splink at WARNING, as our pipeline does (it logs every EM iteration at INFO)."""
    for name in [*logging.root.manager.loggerDict, "splink"]:
        if name.startswith("splink"):
            logging.getLogger(name).setLevel(logging.WARNING)


def child_main(mode: str, args: list[str]) -> None:
    """Run one measured job and print its result, with this process's peak RSS, as the
    last line of stdout."""
    jobs: dict[str, Callable[..., dict[str, Any]]] = {"ours": child_ours, "prepare": child_prepare, "splink": child_splink}
    code = code_digest()  # before the job imports the code
    start = time.perf_counter()
    result = jobs[mode](*map(Path, args))
    result["code"] = code
    result["work_seconds"] = round(time.perf_counter() - start, 3)
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps(result))


# --------------------------------------------------------------------------- driver


@dataclass
class Measurement:
    """One measured subprocess."""

    wall_seconds: float  # interpreter start to exit, imports included
    work_seconds: float  # the job itself, imports excluded
    peak_rss_gib: float
    seconds: dict[str, float]  # per stage or step
    counts: dict[str, int]
    code: str  # digest of pipelines/ and profiles/ when the process started
    model: str | None  # digest of the splink settings it used


def measure(mode: str, *args: Path) -> Measurement:
    """Run ``mode`` of this script in a fresh Python process and collect its figures."""
    command = [sys.executable, str(Path(__file__).resolve()), CHILD, mode, *map(str, args)]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{mode} failed with exit code {done.returncode}; its output:\n{done.stdout}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(
        wall_seconds=round(wall, 3),
        work_seconds=result["work_seconds"],
        peak_rss_gib=round(result["maxrss_kib"] / KIB_PER_GIB, 3),
        seconds=result["seconds"],
        counts=result["counts"],
        code=result["code"],
        model=result.get("model"),
    )


def ensure_demo(out: Path, records: int) -> tuple[Path, float | None]:
    """The demo config in ``out``, generating the data unless the marker says it is there.
    Returns (config path, generation seconds: None when reused)."""
    marker = out / MARKER
    if marker.exists():
        seen = json.loads(marker.read_text(encoding="utf-8"))
        config = out / seen["config"]
        if seen.get("records") == records and seen.get("seed") == SEED and config.exists():
            return config, None
    from pipelines.demo import generate

    start = time.perf_counter()
    manifest = generate(out, records=records, seed=SEED, events_per_person=0)  # the records only: as before events existed
    seconds = round(time.perf_counter() - start, 1)
    marker.write_text(
        json.dumps({"records": records, "seed": SEED, "generate_seconds": seconds, "config": manifest.config_path.name}),
        encoding="utf-8",
    )
    return manifest.config_path, seconds


def fresh_store(config_path: Path) -> None:
    """Remove the store, its spill directory and the saved model: a first run from scratch."""
    from pipelines.config import load_config

    config = load_config(config_path)
    store = config.store_path
    for path in (store, store.with_name(store.name + ".wal"), config.model_path):
        path.unlink(missing_ok=True)
    shutil.rmtree(store.with_name(store.name + ".tmp"), ignore_errors=True)


def report_rows(ours: Measurement, splink: Measurement) -> list[tuple[str, float | None, float | None]]:
    rows = [(label, ours.seconds.get(o) if o else None, splink.seconds.get(s) if s else None) for label, o, s in ROWS]
    ours_rest = ours.wall_seconds - sum(v for _, v, _ in rows if v is not None)
    splink_rest = splink.wall_seconds - sum(v for _, _, v in rows if v is not None)
    rows.append(("other (start-up, imports, checks)", ours_rest, splink_rest))
    rows.append(("TOTAL (process wall)", ours.wall_seconds, splink.wall_seconds))
    return rows


def print_report(results: dict[str, Any], ours: Measurement, splink: Measurement) -> None:
    def cell(value: float | None) -> str:
        return f"{value:10.1f}" if value is not None else f"{'-':>10}"

    print(f"\nrecords {ours.counts['records']:,} (plain splink {splink.counts['records']:,})")
    print(f"profiles: ours {ours.counts['profiles']:,}, plain splink clusters {splink.counts['profiles']:,}")
    print(f"candidate pairs: ours {ours.counts['candidate_pairs']:,}, plain splink {splink.counts['candidate_pairs']:,}")
    print(f"\n{'seconds':<36}{'ours':>10}{'splink':>10}{'extra':>10}")
    for label, mine, theirs in report_rows(ours, splink):
        extra = (mine or 0.0) - (theirs or 0.0)
        print(f"{label:<36}{cell(mine)}{cell(theirs)}{cell(extra)}")
    print(f"{'peak RSS (GiB)':<36}{ours.peak_rss_gib:10.2f}{splink.peak_rss_gib:10.2f}")
    beside = {k.removeprefix("write during link: "): v for k, v in ours.seconds.items() if k.startswith("write during link: ")}
    if beside:  # on a thread of their own while splink trains: inside "link: train", not added
        written = ", ".join(f"{table} {seconds:.1f} s" for table, seconds in beside.items())
        print(f"(written into the run beside splink's training, inside link: train: {written})")
    ratio, peak = results["ratio_total"], ours.peak_rss_gib
    print(f"\nours / plain splink, end to end: {ratio:.2f}x  (target <= {TARGET_RATIO}x: {_verdict(ratio <= TARGET_RATIO)})")
    print(f"ours / plain splink, peak RSS:   {results['ratio_peak']:.2f}x")
    print(f"ours peak RSS: {peak:.2f} GiB  (target <= {TARGET_PEAK_GIB} GiB: {_verdict(peak <= TARGET_PEAK_GIB)})")
    for warning in results["warnings"]:
        print(f"WARNING: {warning}")


def consistency_warnings(ours: Measurement, prepare: Measurement, splink: Measurement) -> list[str]:
    """What makes the comparison unfair: code edited between the measured processes."""
    warnings = []
    if ours.model != splink.model:
        warnings.append(f"the splink settings differ (ours {ours.model}, plain splink {splink.model}): rerun")
    if len({ours.code, prepare.code, splink.code}) > 1:
        warnings.append("pipelines/ or profiles/ changed while the benchmark ran: rerun for comparable figures")
    return warnings


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000, help="demo records to generate (default 1,000,000)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"), help="directory for data, store and results")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    config_path, generate_seconds = ensure_demo(out, args.records)
    print(f"demo data: {config_path}" + (f" (generated in {generate_seconds:.1f} s)" if generate_seconds else " (reused)"), flush=True)
    fresh_store(config_path)
    print("measuring our pipeline ...", flush=True)
    ours = measure("ours", config_path)
    parquet = out / "linkable.parquet"
    print("preparing linkable.parquet for plain splink (not timed) ...", flush=True)
    prepare = measure("prepare", config_path, parquet)
    print("measuring plain splink ...", flush=True)
    splink = measure("splink", config_path, parquet)

    results: dict[str, Any] = {
        "records_requested": args.records,
        "generate_seconds": generate_seconds,
        "ours": asdict(ours),
        "plain_splink": asdict(splink),
        "prepare_linkable": asdict(prepare),
        "ratio_total": round(ours.wall_seconds / splink.wall_seconds, 3),
        "ratio_peak": round(ours.peak_rss_gib / splink.peak_rss_gib, 3),
        "targets": {"ratio_total": TARGET_RATIO, "peak_rss_gib": TARGET_PEAK_GIB},
        "warnings": consistency_warnings(ours, prepare, splink),
    }
    print_report(results, ours, splink)
    (out / RESULTS).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {out / RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child_main(sys.argv[2], sys.argv[3:])
    else:
        main()

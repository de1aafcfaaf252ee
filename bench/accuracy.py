"""Accuracy benchmark: unify's defaults against the plain splink script, side by side in
one run, on data we did not generate and on our demo.

Why: unify's matching was tuned on its own generator's data; the test that counts is
public data with ground truth and no shared identifier. Each data set is run through
``unify run`` with default settings and no labels, then ``bench/plain_splink.py`` links
the same standardized records; pairwise precision, recall and F1 of both against the
truth are printed and written to ``<out>/accuracy-results.json``.

    .venv/bin/python bench/accuracy.py                  # FEBRL1, FEBRL4 without SSN, FEBRL2, FEBRL3, two variants, demo 50,000
    .venv/bin/python bench/accuracy.py --demo-records 0 # the FEBRL sets only
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import plain_splink  # noqa: E402  (bench/, on the path above)
import pyarrow.parquet as pq  # noqa: E402

from pipelines.batch.run import run_pipeline  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.demo import generate  # noqa: E402
from tests.accuracy import PairwiseScores, membership, merged_hard_negatives, pairwise  # noqa: E402
from tests.febrl import with_full_names, without_fields, write_febrl1, write_febrl2, write_febrl3, write_febrl4  # noqa: E402


def _demo(records: int) -> Callable[[Path], dict[str, str]]:
    def write(out: Path) -> dict[str, str]:
        manifest = generate(out, records=records, seed=2026, events_per_person=0)  # matching only
        table = pq.read_table(manifest.truth_path)
        return {
            f"{s}:{r}": p for s, r, p in zip(table["source"].to_pylist(), table["record_id"].to_pylist(), table["person_id"].to_pylist())
        }

    return write


def _full_names(write: Callable[[Path], dict[str, str]]) -> Callable[[Path], dict[str, str]]:
    def written(out: Path) -> dict[str, str]:
        truth = write(out)
        with_full_names(out)
        return truth

    return written


def _without(write: Callable[[Path], dict[str, str]], fields: tuple[str, ...]) -> Callable[[Path], dict[str, str]]:
    def written(out: Path) -> dict[str, str]:
        truth = write(out)
        without_fields(out, fields)
        return truth

    return written


def _row(scores: PairwiseScores) -> dict[str, float]:
    return {"precision": round(scores.precision, 4), "recall": round(scores.recall, 4), "f1": round(scores.f1, 4)}


def measure(name: str, out: Path, write: Callable[[Path], dict[str, str]]) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    truth = write(out)
    start = time.perf_counter()
    summary = run_pipeline(load_config(out / "unify.toml"))
    ours_seconds = time.perf_counter() - start
    ours = membership(out / "unify.duckdb")
    start = time.perf_counter()
    plain = plain_splink.link(plain_splink.records_of(out / "unify.duckdb"))
    plain_seconds = time.perf_counter() - start
    result: dict[str, object] = {
        "data": name,
        "records": summary.records,
        "unify": {**_row(pairwise(truth, ours)), "seconds": round(ours_seconds, 1)},
        "plain splink": {**_row(pairwise(truth, plain)), "seconds": round(plain_seconds, 1)},
        "vetoes": summary.vetoes,
    }
    negatives_path = out / "hard_negatives.parquet"
    if negatives_path.exists():
        table = pq.read_table(negatives_path)
        negatives = list(zip(table["kind"].to_pylist(), table["person_a"].to_pylist(), table["person_b"].to_pylist()))
        result["merged hard negatives"] = {
            "unify": dict(merged_hard_negatives(truth, ours, negatives)),
            "plain splink": dict(merged_hard_negatives(truth, plain, negatives)),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out-accuracy")
    parser.add_argument("--demo-records", type=int, default=50_000, help="0 leaves the demo out")
    args = parser.parse_args()
    sets: list[tuple[str, Callable[[Path], dict[str, str]]]] = [
        ("FEBRL1 (one system)", write_febrl1),
        ("FEBRL4 as two systems, no shared identifier", lambda out: write_febrl4(out, social_security=False)),
        ("FEBRL2 (one system)", write_febrl2),
        ("FEBRL3 (one system, up to five records a person)", write_febrl3),
        # the same people as other companies hold them: one name column; no birth dates
        ("FEBRL4, no shared identifier, one full-name column", _full_names(lambda out: write_febrl4(out, social_security=False))),
        ("FEBRL2 without birth dates", _without(write_febrl2, ("date_of_birth",))),
    ]
    if args.demo_records:
        sets.append((f"demo, {args.demo_records:,} records", _demo(args.demo_records)))
    results = []
    for index, (name, write) in enumerate(sets):
        result = measure(name, args.out / f"set{index}", write)
        results.append(result)
        ours, plain = result["unify"], result["plain splink"]
        print(f"{name}: unify {ours}  plain splink {plain}", flush=True)
        if "merged hard negatives" in result:
            print(f"  merged hard negatives: {result['merged hard negatives']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy-results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()

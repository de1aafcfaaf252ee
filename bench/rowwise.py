"""Why a live record's few pairs are scored by pipelines.matching.rowwise: the same
scoring SQL, for the same pairs, run three ways in one process.

1. DuckDB: the pairs registered as an Arrow table and the scoring statement run on them
   (what the live path does for more than ``TUNING.rowwise_max`` pairs);
2. rowwise: the statement compiled once into a Python function (per model), then called
   on the pairs (what the live path does for a few);
3. sqlglot's executor (``sqlglot.executor.execute``), the pure-Python SQL engine that
   ships with sqlglot, on the same statement and rows.

Every way must give the same match weights (checked); the figures are the median of
``--repeat`` runs per pair count.

Run (from the repository root), on any published store:

    .venv/bin/python bench/rowwise.py --config bench/out-api/unify.toml
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlglot.executor
from sqlglot.executor.python import PythonExecutor
from sqlglot.executor.table import ensure_tables
from sqlglot.optimizer import optimize
from sqlglot.planner import Plan

from pipelines.config import load_config
from pipelines.matching import rowwise
from pipelines.matching.scoring import pairs_sql, score_sql, term_frequencies_relation
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.store import ProfileQueries, Store


def _pairs(store: Store, model: dict[str, Any], count: int) -> pa.Table:
    """``count`` stored pairs with both records' model input and term frequencies."""
    linkable = f"SELECT record_key, {', '.join(MATCH_COLUMNS)} FROM records"
    candidates = f"SELECT record_key_l, record_key_r FROM pairs ORDER BY pair_id LIMIT {count}"
    sql = pairs_sql(model, linkable, linkable, candidates=candidates, term_frequencies=term_frequencies_relation(store))
    return store.arrow(sql)


def _teach_sqlglot() -> None:
    """sqlglot's executor knows neither splink's string similarities nor greatest(),
    log() and strftime(); they are given to it here (NULL in, NULL out, as DuckDB), with rowwise's own
    implementations, so that the comparison is of the engines, not of the functions."""
    import sqlglot.executor.python as engine

    def null_safe(fn: Any) -> Any:
        return lambda *args: None if any(a is None for a in args) else fn(*args)

    engine.ENV.update(
        {
            "JAROWINKLERSIMILARITY": null_safe(rowwise._jaro_winkler),
            "JARO_WINKLER_SIMILARITY": null_safe(rowwise._jaro_winkler),
            "DAMERAU_LEVENSHTEIN": null_safe(rowwise._damerau_levenshtein),
            "LEVENSHTEIN": null_safe(rowwise._levenshtein),
            "GREATEST": rowwise._greatest,
            "LOG": null_safe(lambda base, x: __import__("math").log(x, base)),
            "POW": null_safe(pow),
            "LIST_INTERSECT": null_safe(rowwise._list_intersect),
            "ARRAY_INTERSECT": null_safe(rowwise._list_intersect),
            "TIMETOSTR": lambda value, fmt, *_: None if value is None or fmt is None else value.strftime(fmt),
        }
    )


def _median_ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("bench/out-api/unify.toml"))
    parser.add_argument("--counts", default="1,5,20,100,400,2000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    config = load_config(args.config)
    _teach_sqlglot()
    results: dict[str, Any] = {"store": str(config.store_path), "rows": []}
    with Store.open(config.store_path, read_only=True) as store:
        model = ProfileQueries(store).published_model()
        statement = score_sql(model, "_bench_pairs")
        started = time.perf_counter()
        compiled = rowwise.scorer(statement)
        assert compiled is not None, "rowwise cannot compile this model's scoring SQL"
        results["rowwise_compile_ms"] = round((time.perf_counter() - started) * 1000, 1)
        plans: dict[str, Any] = {}

        def planned(rows: list[dict[str, Any]]) -> Any:
            if "plan" not in plans:
                tables = ensure_tables({"_bench_pairs": rows}, dialect="duckdb")
                schema = {"_bench_pairs": {c: type(rows[0][c]).__name__ if rows[0][c] is not None else "text" for c in rows[0]}}
                plans["plan"] = Plan(optimize(statement, schema, leave_tables_isolated=True, dialect="duckdb"))
                del tables
            return plans["plan"]

        for count in (int(c) for c in args.counts.split(",")):
            pairs = _pairs(store, model, count)
            rows = pairs.to_pylist()

            def by_duckdb(pairs: pa.Table = pairs) -> list[float]:
                store.register("_bench_pairs", pairs)
                try:
                    return [w for (w,) in store.rows(f"SELECT match_weight FROM ({statement}) ORDER BY record_key_l, record_key_r")]
                finally:
                    store.unregister("_bench_pairs")

            def by_rowwise(rows: list[dict[str, Any]] = rows) -> list[float]:
                scored = sorted(compiled.score(rows), key=lambda r: (r["record_key_l"], r["record_key_r"]))
                return [r["match_weight"] for r in scored]

            def by_sqlglot(rows: list[dict[str, Any]] = rows) -> list[float]:
                table = sqlglot.executor.execute(statement, dialect="duckdb", tables={"_bench_pairs": rows})
                at = table.columns.index("match_weight")
                keys = (table.columns.index("record_key_l"), table.columns.index("record_key_r"))
                return [r[at] for r in sorted(table.rows, key=lambda r: (r[keys[0]], r[keys[1]]))]

            def by_sqlglot_planned(rows: list[dict[str, Any]] = rows) -> list[float]:
                """Its executor alone: the statement optimized and planned once (per model)."""
                table = PythonExecutor(tables=ensure_tables({"_bench_pairs": rows}, dialect="duckdb")).execute(planned(rows))
                at = table.columns.index("match_weight")
                keys = (table.columns.index("record_key_l"), table.columns.index("record_key_r"))
                return [r[at] for r in sorted(table.rows, key=lambda r: (r[keys[0]], r[keys[1]]))]

            row: dict[str, Any] = {"pairs": pairs.num_rows}
            expected = by_duckdb()
            assert all(abs(a - b) < 1e-9 for a, b in zip(by_rowwise(), expected, strict=True)), "rowwise differs from DuckDB"
            row["duckdb_ms"] = _median_ms(by_duckdb, args.repeat)
            row["rowwise_ms"] = _median_ms(by_rowwise, args.repeat)
            try:
                same = all(abs(a - b) < 1e-9 for a, b in zip(by_sqlglot(), expected, strict=True))
                row["sqlglot_ms"] = _median_ms(by_sqlglot, max(3, args.repeat // 10)) if count <= 400 else None
                row["sqlglot_same_weights"] = same
                row["sqlglot_planned_once_ms"] = _median_ms(by_sqlglot_planned, max(3, args.repeat // 5))
            except Exception as exc:  # what sqlglot's executor cannot run
                row["sqlglot_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

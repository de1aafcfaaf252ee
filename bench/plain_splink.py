"""The plain splink script a user of splink writes in twenty lines: every field compared on
its own, trained without labels, clustered at 0.95. ``bench/accuracy.py`` runs it beside
unify on the same records; it is the yardstick unify's defaults must not fall below.

It reads the canonical fields that unify's standardisation wrote (``records`` of a store):
the same data unify links, cleaned as a careful user would clean it (lower case, dates
parsed, phones in one format), and nothing of unify's model."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

#: record column of unify's ``records`` -> the name the script gives it
COLUMNS = {
    "first_name_std": "first_name",
    "last_name_std": "surname",
    "dob": "dob",
    "email_std": "email",
    "phone_std": "phone",
    "street_std": "street",
    "house_number_std": "house_number",
    "address_line2": "address_line2",
    "postcode_std": "postcode",
    "city_std": "city",
    "region": "region",
}


def records_of(store: Path) -> pd.DataFrame:
    """The standardized canonical fields of a store's published records; a column no
    record has is left out (the user compares only what their sources hold)."""
    with duckdb.connect(str(store), read_only=True) as con:
        select = ", ".join(f"lower(trim({c})) AS {n}" if c in ("address_line2", "region") else f"{c} AS {n}" for c, n in COLUMNS.items())
        df = con.execute(f"SELECT record_key AS unique_id, {select} FROM records ORDER BY record_key").df()
    return df[[c for c in df.columns if c == "unique_id" or df[c].notna().any()]]


def comparisons(columns: set[str]) -> list[object]:
    fuzzy = {"street", "city", "address_line2"}
    edits = {"postcode", "house_number", "region"}
    chosen: list[object] = []
    for name in ("first_name", "surname"):
        if name in columns:
            chosen.append(cl.NameComparison(name).configure(term_frequency_adjustments=True))
    if "dob" in columns:
        chosen.append(cl.DateOfBirthComparison("dob", input_is_string=False))
    for name in ("email", "phone"):
        if name in columns:
            chosen.append(cl.ExactMatch(name).configure(term_frequency_adjustments=True))
    chosen += [cl.JaroWinklerAtThresholds(n, [0.9, 0.7]) for n in sorted(fuzzy & columns)]
    chosen += [cl.LevenshteinAtThresholds(n, 1) for n in sorted(edits & columns)]
    return chosen


def link(df: pd.DataFrame, threshold: float = 0.95) -> dict[str, str]:
    """Deduplicate ``df`` (one row per record, ``unique_id``); record -> cluster id."""
    logging.getLogger("splink").setLevel(logging.ERROR)
    columns = set(df.columns)
    has = columns.__contains__
    blocking = [block_on("first_name", "surname")]
    blocking += [block_on(c) for c in ("dob", "postcode", "email", "phone") if has(c)]
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=comparisons(columns),
        blocking_rules_to_generate_predictions=blocking,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(DuckDBAPI().register(df, dataset_display_name="records"), settings)
    deterministic = [block_on("first_name", "surname", "dob")] if has("dob") else [block_on("first_name", "surname", "postcode")]
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    for rule in ([block_on("dob")] if has("dob") else [block_on("postcode")]) + [block_on("first_name", "surname")]:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
    result = clusters.as_pandas_dataframe()
    return dict(zip(result["unique_id"].astype(str), result["cluster_id"].astype(str)))

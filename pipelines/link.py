"""Link: score candidate pairs with a splink Fellegi-Sunter model on the workspace.

The model is trained unsupervised (u by random sampling, m by EM, no labels) the first
time, saved as JSON next to the store, and reused by later runs (``--retrain`` to
retrain). This module and its siblings are the only place that imports splink."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splink import DuckDBAPI, Linker
from splink.internals.exceptions import SplinkException

from pipelines.comparisons import available, deterministic_rules, em_training_rules, identifier_column, settings
from pipelines.config import Config
from pipelines.standardize import MATCH_COLUMNS
from profiles.errors import ConfigError, UnifyError
from profiles.store import Store, ident



def _quiet_splink() -> None:
    """splink logs every training step; the run summary says what matters (including
    the comparison levels training never observed, see ``untrained_levels``)."""
    for name in [*logging.root.manager.loggerDict, "splink"]:
        if name.startswith("splink"):
            logging.getLogger(name).setLevel(logging.ERROR)


def untrained_levels(model: dict[str, Any]) -> list[str]:
    """Levels without a trained m- or u-probability: splink scores them neutrally."""
    missing = []
    for comparison in model.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            if not isinstance(level.get("m_probability"), float) or not isinstance(level.get("u_probability"), float):
                missing.append(f"{comparison['output_column_name']}: {level.get('label_for_charts')}")
    return missing


@dataclass
class LinkOutcome:
    trained: bool
    candidate_pairs: int
    untrained_levels: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def prepare_linkable(store: Store, config: Config) -> None:
    """``linkable``: the model's input columns, identifiers pivoted into columns."""
    ids = config.shared_identifiers()
    pivots = "".join(
        f", (SELECT max(i.value) FROM identifiers i WHERE i.record_key = r.record_key AND i.kind = ?) AS {ident(identifier_column(n))}"
        for n in ids
    )
    store.execute(
        # ordered, so that training samples the same records in every run (reproducible models)
        f"CREATE OR REPLACE TABLE linkable AS SELECT r.record_key, {', '.join('r.' + c for c in MATCH_COLUMNS)}{pivots}"
        " FROM records r ORDER BY r.record_key",
        ids,
        building="linkable",
    )


def make_linker(store: Store, config: Config, *, retrain: bool) -> tuple[DuckDBAPI, Linker, bool]:
    """A linker with the saved model, or a freshly trained one (saved). Returns
    (database api, linker, trained)."""
    db = DuckDBAPI(connection=store.connection)
    table = db.register("linkable")
    wanted = settings(model_groups(config), config.shared_identifiers())
    model_path = config.model_path
    if model_path.exists() and not retrain:
        saved = _read_model(model_path)
        have = [c["output_column_name"] for c in saved.get("comparisons", [])]
        need = [c["output_column_name"] for c in wanted["comparisons"]]
        if have != need:
            raise ConfigError(
                f"model {model_path} compares {', '.join(have)} but the config needs {', '.join(need)}; "
                "run `unify run --retrain` to train a model for this config"
            )
        # Blocking only decides which pairs get scored, not how: a model stays valid when
        # the rules improve, so the current ones are used without retraining.
        saved["blocking_rules_to_generate_predictions"] = wanted["blocking_rules_to_generate_predictions"]
        return db, Linker(table, saved), False
    linker = Linker(table, wanted)
    try:
        train(linker, config)
    except SplinkException as exc:
        records = store.scalar("SELECT count(*) FROM linkable")
        raise UnifyError(
            f"cannot train a model on these {records:,} records: {str(exc).splitlines()[0]} "
            "Unsupervised training needs sources that overlap (thousands of records); "
            f"or point matching.model at a model trained on such data."
        ) from exc
    _save_model(linker, model_path)
    return db, linker, True


def model_groups(config: Config) -> set[str]:
    """The comparison groups this config can feed (see pipelines.comparisons)."""
    mapped = {name for source in config.sources for name in source.fields}
    groups = available(mapped)
    if "name" not in groups:
        raise ConfigError("no source maps a name (first_name, last_name or full_name): there is nothing to link people by")
    return groups


def train(linker: Linker, config: Config) -> None:
    groups, identifiers = model_groups(config), config.shared_identifiers()
    training = linker.training
    prior_rules = deterministic_rules(groups, identifiers)
    if prior_rules:
        training.estimate_probability_two_random_records_match(prior_rules, recall=0.8)
    training.estimate_u_using_random_sampling(max_pairs=config.matching.u_max_pairs, seed=config.matching.seed)
    for rule in em_training_rules(groups):
        training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=config.matching.em_max_pairs)


def predict(store: Store, linker: Linker, config: Config) -> int:
    """``predictions``: every candidate pair at or above the review threshold, with its
    probability, weight and the comparison level reached per field (gamma_*)."""
    result = linker.inference.predict(threshold_match_probability=config.matching.review_threshold)
    # Keep the level reached per comparison (gamma_*) and its weight with the term
    # frequency adjustment applied (mw_*, mw_tf_*): the evidence a steward is shown.
    gammas = [c for c in store.columns(result.physical_name) if c.startswith(("gamma_", "mw_"))]
    store.execute(
        f"""CREATE OR REPLACE TABLE predictions AS
            SELECT record_key_l, record_key_r, match_weight, match_probability{''.join(', ' + ident(g) for g in gammas)}
            FROM {ident(result.physical_name)}""",
        building="predictions",
    )
    result.drop_table_from_database_and_remove_from_cache()
    return int(store.scalar("SELECT count(*) FROM predictions"))


def cluster(store: Store, db: DuckDBAPI, linker: Linker, config: Config) -> None:
    """``clusters``: connected components of pairs at or above the match threshold."""
    df = db.register("predictions", table_name="predictions_for_clustering")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        df, threshold_match_probability=config.matching.match_threshold
    )
    store.execute(
        f"CREATE OR REPLACE TABLE clusters AS SELECT record_key, cluster_id FROM {ident(clusters.physical_name)}",
        building="clusters",
    )
    clusters.drop_table_from_database_and_remove_from_cache()


def run_linkage(store: Store, config: Config, *, retrain: bool) -> LinkOutcome:
    if config.matching.backend != "duckdb":
        raise UnifyError("matching.backend = 'spark' is not available yet; use 'duckdb'")
    _quiet_splink()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    prepare_linkable(store, config)
    db, linker, trained = make_linker(store, config, retrain=retrain)
    seconds["train" if trained else "load model"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    pairs = predict(store, linker, config)
    seconds["predict"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    cluster(store, db, linker, config)
    seconds["cluster"] = time.perf_counter() - t2
    linker.table_management.delete_tables_created_by_splink_from_db()
    untrained = untrained_levels(_read_model(config.model_path))
    return LinkOutcome(trained=trained, candidate_pairs=pairs, untrained_levels=untrained, seconds=seconds)


def _read_model(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model {path} cannot be read ({exc}); run `unify run --retrain`") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"model {path} is not a splink settings object; run `unify run --retrain`")
    return data


def _save_model(linker: Linker, path: Path) -> None:
    """Write the model next to the store atomically (a killed run leaves the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    linker.misc.save_model_to_json(str(tmp), overwrite=True)
    os.replace(tmp, path)

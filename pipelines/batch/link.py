"""Link: score candidate pairs with a splink Fellegi-Sunter model on the workspace.

The model is trained unsupervised (u by random sampling, m by EM) the first time, saved
as JSON next to the store, and reused by later runs (``--retrain`` to retrain). Steward
decisions are labels: with enough of them, training also estimates m from them, and
every run measures the model's precision and recall against them. This module and its
siblings are the only place that imports splink."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splink import DuckDBAPI, Linker
from splink.internals.exceptions import SplinkException

from pipelines.config import Config
from pipelines.matching.blocking import deterministic_rules, em_training_rules, identifier_column
from pipelines.matching.comparisons import available, settings
from pipelines.matching.scoring import term_frequencies_sql, tf_columns
from pipelines.matching.vetoes import active_vetoes
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.errors import ConfigError, UnifyError
from profiles.store import Store, ident


def _quiet_splink() -> None:
    """splink logs every training step; the run summary says what matters (including
    the comparison levels training never observed, see ``untrained_levels``)."""
    for name in [*logging.root.manager.loggerDict, "splink"]:
        if name.startswith("splink"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _untrained(level: dict[str, Any]) -> bool:
    m, u = level.get("m_probability"), level.get("u_probability")
    fixed = level.get("fix_m_probability") and level.get("fix_u_probability")  # set by the model's design, never trained
    return not level.get("is_null_level") and not fixed and (not isinstance(m, float) or not isinstance(u, float) or m == u)


def untrained_levels(model: dict[str, Any]) -> list[str]:
    """Levels training never observed (no m or no u; neutralized to m = u): scored 0."""
    return [
        f"{comparison['output_column_name']}: {level.get('label_for_charts')}"
        for comparison in model.get("comparisons", [])
        for level in comparison.get("comparison_levels", [])
        if _untrained(level)
    ]


def neutralize_untrained(model: dict[str, Any]) -> bool:
    """Give every level training never observed m = u, i.e. a match weight of 0. Left
    alone, splink scores such a level with default probabilities (measured: +12.3 for
    "postcode, other house number" without an m, more than an exact address), and search
    and the explanations would disagree with the run. Returns whether anything changed."""
    changed = False
    for comparison in model.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            m, u = level.get("m_probability"), level.get("u_probability")
            if _untrained(level) and not (isinstance(m, float) and m == u):
                value = u if isinstance(u, float) else m if isinstance(m, float) else 0.5
                level["m_probability"] = level["u_probability"] = float(value)
                changed = True
    return changed


def default_m(model: dict[str, Any]) -> None:
    """Splink's default m-probabilities, for a model that has no true matches to learn
    them from: a comparison's best level 0.95, its other levels an equal share of the
    rest (splink.internals.comparison_level._default_m_values)."""
    for comparison in model.get("comparisons", []):
        levels = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
        for index, level in enumerate(levels):
            level["m_probability"] = 0.95 if index == 0 else 0.05 / (len(levels) - 1)


@dataclass
class LabelReport:
    """Steward decisions on pairs of this run's records, used as labels: how many,
    whether training used them, and the model's precision and recall against them at
    the match threshold (None when undefined)."""

    pairs: int
    same: int
    different: int
    used_for_training: bool
    precision: float | None
    recall: float | None
    note: str


@dataclass
class LinkOutcome:
    trained: bool
    candidate_pairs: int
    labels: LabelReport
    untrained_levels: list[str] = field(default_factory=list)
    vetoes: dict[str, str] = field(default_factory=dict)  # configured rule -> active or not, and why
    assumed: list[str] = field(default_factory=list)  # what training had to assume
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


def prepare_labels(store: Store) -> None:
    """``steward_labels``: the active steward decisions on pairs of ``linkable`` records, the
    latest one per pair."""
    store.execute(
        f"""CREATE OR REPLACE TABLE steward_labels AS
            SELECT c.record_key_l, c.record_key_r, c.kind
            FROM {ident(store.catalog)}.main.link_constraints c
            JOIN linkable l ON l.record_key = c.record_key_l
            JOIN linkable r ON r.record_key = c.record_key_r
            WHERE c.active
            QUALIFY row_number() OVER (PARTITION BY c.record_key_l, c.record_key_r ORDER BY c.created_at DESC, c.constraint_id DESC) = 1""",
        building="steward_labels",
    )


def make_linker(
    store: Store, config: Config, *, retrain: bool, meanwhile: Callable[[], None] = lambda: None
) -> tuple[DuckDBAPI, Linker, bool, bool, list[str]]:
    """A linker with the saved model, or a freshly trained one (saved). Returns
    (database api, linker, trained, trained on labels, what training assumed). ``meanwhile`` is called when
    training starts sampling pairs for u (see :func:`train`), or not at all."""
    db = DuckDBAPI(connection=store.connection)
    table = db.register("linkable")
    wanted = settings(model_groups(config), config.shared_identifiers())
    model_path = config.model_path
    marker = provisional_marker(config)
    if model_path.exists() and not retrain and not marker.exists():
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
        if neutralize_untrained(saved):  # a model saved before untrained levels were neutralized
            _write_model(saved, model_path)
        return db, Linker(table, saved), False, False, []
    linker = Linker(table, wanted)
    records = int(store.scalar("SELECT count(*) FROM linkable"))
    try:
        linker, assumed = train(linker, table, records, config, meanwhile)
    except (SplinkException, ValueError, ZeroDivisionError) as exc:
        raise UnifyError(
            f"cannot train a model on these {records:,} records: {str(exc).splitlines()[0]} "
            "Unsupervised training needs sources that overlap (thousands of records); "
            f"or point matching.model at a model trained on such data."
        ) from exc
    used_labels = train_on_labels(store, db, linker, config)
    _save_model(linker, model_path)
    if assumed:  # nothing learnt of true matches: the next run trains again (see provisional_marker)
        marker.write_text("\n".join(assumed) + "\n", encoding="utf-8")
    else:
        marker.unlink(missing_ok=True)
    trained = _read_model(model_path)
    if neutralize_untrained(trained):
        _write_model(trained, model_path)
        linker = Linker(table, trained)
    return db, linker, True, used_labels, assumed


def provisional_marker(config: Config) -> Path:
    """A file beside the model while the model is provisional: trained on data with no
    true matches to learn from (one clean source), so it had to assume what it could not
    learn. A provisional model is never reused: every batch run trains again until one
    finds duplicates, and `unify ingest` of a file runs such a batch (pipelines.live.ingest)."""
    return config.model_path.with_name(config.model_path.name + ".provisional")


def model_groups(config: Config) -> set[str]:
    """The comparison groups this config can feed (see pipelines.matching.comparisons)."""
    mapped = {name for source in config.sources for name in source.fields}
    groups = available(mapped)
    if "name" not in groups:
        raise ConfigError("no source maps a name (first_name, last_name or full_name): there is nothing to link people by")
    return groups


#: The prior's floor: one true pair per this many records. Data without duplicates (one
#: clean source, the usual start before the next source arrives by ``unify ingest``)
#: gives splink a prior of 0, whose match weight is undefined.
RECORDS_PER_ASSUMED_PAIR = 100


def prior_floor(records: int) -> float:
    """The probability that two random records match when one pair in
    :data:`RECORDS_PER_ASSUMED_PAIR` records is a true match."""
    pairs = max(1, records * (records - 1) // 2)
    return min(0.5, max(1.0, records / RECORDS_PER_ASSUMED_PAIR) / pairs)


def train(
    linker: Linker, table: Any, records: int, config: Config, meanwhile: Callable[[], None] = lambda: None
) -> tuple[Linker, list[str]]:
    """Train the model unsupervised on ``records`` records. Returns the trained linker (a
    new one when the prior was raised to its floor) and what training had to assume.
    ``meanwhile`` is called just before the u sampling, which keeps 1.3 of 2 cores busy,
    so that work of the caller's can use the rest."""
    groups, identifiers = model_groups(config), config.shared_identifiers()
    assumed: list[str] = []
    prior_rules = deterministic_rules(groups, identifiers)
    if prior_rules:
        linker.training.estimate_probability_two_random_records_match(list[Any](prior_rules), recall=0.8)
        model = linker.misc.save_model_to_json()
        floor = prior_floor(records)
        if float(model["probability_two_random_records_match"]) < floor:
            model["probability_two_random_records_match"] = floor
            linker = Linker(table, model)
            assumed.append(
                f"too few certain duplicates to estimate how often two records match: assumed one true pair "
                f"per {RECORDS_PER_ASSUMED_PAIR} records (prior {floor:.3g})"
            )
    training = linker.training
    meanwhile()
    training.estimate_u_using_random_sampling(max_pairs=config.matching.u_max_pairs, seed=config.matching.seed)
    if assumed:
        # EM learns m from the true matches among its pairs: with none, it drives levels
        # to m ~ 1e-300, which splink refuses. u is learnt from random pairs all the same.
        model = linker.misc.save_model_to_json()
        default_m(model)
        assumed.append(
            "no true matches to learn m-probabilities from: splink's default m (0.95 for a comparison's best "
            "level) until a run over overlapping sources (`unify run --retrain`)"
        )
        return Linker(table, model), assumed
    for rule in em_training_rules(groups):
        training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=config.matching.em_max_pairs)
    return linker, assumed


def train_on_labels(store: Store, db: DuckDBAPI, linker: Linker, config: Config) -> bool:
    """Estimate m from the ``same`` labels when there are at least ``min_labels``; splink
    keeps the median of this and the EM estimates per level. ``different`` labels do not
    train: splink takes every labelled pair as a match (it ignores clerical_match_score)."""
    if store.scalar("SELECT count(*) FROM steward_labels WHERE kind = 'same'") < config.matching.min_labels:
        return False
    store.execute(
        """CREATE OR REPLACE TABLE training_labels AS
           SELECT record_key_l, record_key_r, 1.0 AS clerical_match_score FROM steward_labels WHERE kind = 'same'""",
        building="training_labels",
    )
    linker.training.estimate_m_from_pairwise_labels(db.register("training_labels"))  # type: ignore[no-untyped-call]
    store.execute("DROP TABLE training_labels")
    return True


def label_report(store: Store, config: Config, *, trained: bool, used: bool) -> LabelReport:
    """Compare ``steward_labels`` with ``predictions``: a labelled pair is predicted a match when
    its probability reaches the match threshold (a pair missing from ``predictions``
    scored below the review threshold)."""
    same, different, true_pos, false_pos = store.rows(
        """SELECT count(*) FILTER (kind = 'same'), count(*) FILTER (kind = 'different'),
                  count(*) FILTER (kind = 'same' AND predicted), count(*) FILTER (kind = 'different' AND predicted)
           FROM (SELECT l.kind, coalesce(p.match_probability >= ?, false) AS predicted
                 FROM steward_labels l LEFT JOIN predictions p USING (record_key_l, record_key_r))""",
        [config.matching.match_threshold],
    )[0]
    if used:
        note = f"m-probabilities estimated from {same} 'same' labels (with EM)"
    elif trained:
        note = f"{same} 'same' labels, fewer than matching.min_labels = {config.matching.min_labels}: trained without labels"
    else:
        note = "the saved model was reused: labels train only a new model (`unify run --retrain`)"
    return LabelReport(
        pairs=same + different,
        same=same,
        different=different,
        used_for_training=used,
        precision=true_pos / (true_pos + false_pos) if true_pos + false_pos else None,
        recall=true_pos / same if same else None,
        note=note,
    )


def predict(store: Store, linker: Linker, config: Config) -> int:
    """``predictions``: every candidate pair at or above the review threshold, with its
    probability, weight and the comparison level reached per field (gamma_*)."""
    result = linker.inference.predict(threshold_match_probability=config.matching.review_threshold)
    # Keep the level reached per comparison (gamma_*) and its weight with the term
    # frequency adjustment applied (mw_*, mw_tf_*): the evidence a steward is shown.
    gammas = [c for c in store.columns(result.physical_name) if c.startswith(("gamma_", "mw_"))]
    store.execute(
        f"""CREATE OR REPLACE TABLE predictions AS
            SELECT record_key_l, record_key_r, match_weight, match_probability{"".join(", " + ident(g) for g in gammas)}
            FROM {ident(result.physical_name)}""",
        building="predictions",
    )
    result.drop_table_from_database_and_remove_from_cache()
    # The term frequencies those tf adjustments used (splink's own tables, cached by
    # predict), kept with the run so that ingest scores pairs as the run did.
    model = linker.misc.save_model_to_json()
    tf_tables = {c: linker.table_management.compute_tf_table(c).physical_name for c in tf_columns(model)}
    store.execute(f"CREATE OR REPLACE TABLE term_frequencies AS {term_frequencies_sql(tf_tables)}", building="term_frequencies")
    return int(store.scalar("SELECT count(*) FROM predictions"))


def cluster(store: Store, db: DuckDBAPI, linker: Linker, config: Config) -> None:
    """``clusters``: connected components of pairs at or above the match threshold."""
    df = db.register("predictions", table_name="predictions_for_clustering")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(df, threshold_match_probability=config.matching.match_threshold)
    store.execute(
        f"CREATE OR REPLACE TABLE clusters AS SELECT record_key, cluster_id FROM {ident(clusters.physical_name)}",
        building="clusters",
    )
    clusters.drop_table_from_database_and_remove_from_cache()


@contextmanager
def _splink_step(doing: str) -> Iterator[None]:
    """A splink failure as one line that says what unify was doing (the CLI prints the
    first line of a UnifyError; ``--debug`` shows splink's traceback)."""
    try:
        yield
    except SplinkException as exc:
        raise UnifyError(f"splink failed while {doing}: {str(exc).strip().splitlines()[0]}") from exc


def run_linkage(store: Store, config: Config, *, retrain: bool, meanwhile: Callable[[], None] = lambda: None) -> LinkOutcome:
    """Link the workspace's ``records``: ``predictions`` and ``clusters``. ``meanwhile``
    (which must not touch splink's tables) is called once, where splink leaves a core
    partly idle: the u sampling of a training, or before predicting with a saved model."""
    if config.matching.backend != "duckdb":
        raise UnifyError("matching.backend = 'spark' is not available yet; use 'duckdb'")
    _quiet_splink()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    prepare_linkable(store, config)
    prepare_labels(store)
    db, linker, trained, used_labels, assumed = make_linker(store, config, retrain=retrain, meanwhile=meanwhile)
    if not trained:
        meanwhile()
    seconds["train" if trained else "load model"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with _splink_step("scoring the candidate pairs"):
        pairs = predict(store, linker, config)
    seconds["predict"] = time.perf_counter() - t1
    labels = label_report(store, config, trained=trained, used=used_labels)
    t2 = time.perf_counter()
    with _splink_step("clustering the scored pairs"):
        cluster(store, db, linker, config)
    seconds["cluster"] = time.perf_counter() - t2
    linker.table_management.delete_tables_created_by_splink_from_db()  # type: ignore[no-untyped-call]
    model = _read_model(config.model_path)
    vetoes = {d.rule: d.reason for d in active_vetoes(model, list(config.matching.vetoes))}
    return LinkOutcome(
        trained=trained,
        candidate_pairs=pairs,
        labels=labels,
        untrained_levels=untrained_levels(model),
        vetoes=vetoes,
        assumed=assumed,
        seconds=seconds,
    )


def _read_model(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model {path} cannot be read ({exc}); run `unify run --retrain`") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"model {path} is not a splink settings object; run `unify run --retrain`")
    return data


def _write_model(model: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(model, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _save_model(linker: Linker, path: Path) -> None:
    """Write the model next to the store atomically (a killed run leaves the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    linker.misc.save_model_to_json(str(tmp), overwrite=True)
    os.replace(tmp, path)

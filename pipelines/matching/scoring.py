"""Score record pairs outside splink with exactly the numbers of the batch run.

Real-time ingest scores a new record against candidates from the store; splink's own
``predict_between``/``score_pairs`` take 0.1-0.4 s per record. This module builds one
vectorized SELECT from splink's own objects and SQL fragments (the level CASE giving the
comparison vector, ``_match_weight_sql``, ``_tf_adjustment_sql`` and
``_combine_prior_and_mws``), so its literals and arithmetic are the batch run's and a
pair scores the same either way. Term frequencies come from the run's
``term_frequencies`` table: the values splink's tf tables held when the run scored."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import pyarrow as pa
import sqlglot
from splink.internals.comparison import Comparison
from splink.internals.dialects import SplinkDialect
from splink.internals.input_column import InputColumn
from splink.internals.predict import _combine_prior_and_mws
from splink.internals.settings import Settings
from splink.internals.settings_creator import SettingsCreator
from sqlglot import exp

from profiles.store import Store, ident, name_literal

#: The store's dialect: the SQL this module writes runs on DuckDB.
_DIALECT = "duckdb"

#: ``term_frequencies`` of a store whose published run predates the table: no value has
#: a term frequency, so no pair gets a tf adjustment.
_NO_TERM_FREQUENCIES = "(SELECT NULL::VARCHAR AS column_name, NULL::VARCHAR AS value, NULL::DOUBLE AS tf WHERE false)"


@lru_cache(maxsize=8)
def _settings_of(model_json: str) -> Settings:
    """The model as splink's Linker reads it (see splink.internals.linker.Linker). Cached
    per model: building splink's settings takes ~40 ms (read only afterwards)."""
    return SettingsCreator.from_path_or_dict(json.loads(model_json)).get_settings(_DIALECT)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _tf_inputs(comparisons: list[Comparison]) -> list[InputColumn]:
    """The input columns with tf adjustments, first use first."""
    seen: dict[str, InputColumn] = {}
    for comparison in comparisons:
        for column in comparison._tf_adjustment_input_columns:
            seen.setdefault(column.unquote().name, column)
    return list(seen.values())


@dataclass(frozen=True)
class _Columns:
    """A model's column names: the inputs its comparisons read, and per tf input its name
    and the names of its two tf columns. Cached per model: splink writes each name
    through sqlglot, ~8 ms of a live record's scoring when asked again for every record."""

    inputs: tuple[str, ...]
    tf: tuple[tuple[str, str, str], ...]  # (input column, tf column left, tf column right)


def _columns(model: dict[str, Any]) -> _Columns:
    return _columns_of(json.dumps(model, sort_keys=True))


@lru_cache(maxsize=8)
def _columns_of(model_json: str) -> _Columns:
    comparisons = _settings_of(model_json).comparisons
    inputs = _unique([c.unquote().name for cc in comparisons for c in cc._input_columns_used_by_case_statement])
    tf = tuple((c.name, c.tf_name_l, c.tf_name_r) for c in (column.unquote() for column in _tf_inputs(comparisons)))
    return _Columns(tuple(inputs), tf)


def input_columns(model: dict[str, Any]) -> list[str]:
    """The record columns the model's comparisons read (each as ``<col>_l``/``<col>_r``)."""
    return list(_columns(model).inputs)


def tf_columns(model: dict[str, Any]) -> list[str]:
    """The input columns with term-frequency adjustments."""
    return [name for name, _, _ in _columns(model).tf]


def term_frequencies_sql(tf_tables: Mapping[str, str]) -> str:
    """A SELECT of ``term_frequencies(column_name, value, tf)`` copied from splink's tf
    tables (input column -> physical table name). Not sorted: a live record's few values
    are looked up through the serving index on ``value``, a file's by a hash join."""
    parts = []
    for column, table in tf_tables.items():
        tf = InputColumn(column, sqlglot_dialect_str=_DIALECT)
        parts.append(
            f"SELECT {name_literal(column)} AS column_name, CAST({ident(column)} AS VARCHAR) AS value,"
            f" CAST({tf.tf_name} AS DOUBLE) AS tf FROM {ident(table)}"
        )
    if not parts:
        return f"SELECT * FROM {_NO_TERM_FREQUENCIES}"
    return " UNION ALL ".join(parts)


def term_frequencies_relation(store: Store) -> str:
    """The published ``term_frequencies``, or an empty relation when the published run
    predates it (then no pair gets a tf adjustment)."""
    return "term_frequencies" if store.table_exists("term_frequencies") else _NO_TERM_FREQUENCIES


def pairs_sql(
    model: dict[str, Any],
    left: str,
    right: str,
    *,
    candidates: str | None = None,
    term_frequencies: str = "term_frequencies",
) -> str:
    """The relation :func:`score_sql` reads, from two queries of records (``record_key``
    and the :func:`input_columns`): each left record with each right record of another
    record_key, or only the ``(record_key_l, record_key_r)`` rows of ``candidates``. The
    tf values of each side are joined from ``term_frequencies`` (NULL for a value it does
    not hold, as in splink's left join). Parameters (``?``) bind in the order left, right,
    candidates."""
    names = _columns(model)

    def side(query: str, suffix: str) -> str:
        values = [f"s.{ident(c)} AS {ident(c + suffix)}" for c in names.inputs]
        joins = []
        for i, (name, tf_l, tf_r) in enumerate(names.tf):
            tf_name = tf_l if suffix == "_l" else tf_r
            values.append(f"t{i}.tf AS {tf_name}")
            joins.append(
                f"LEFT JOIN {term_frequencies} t{i}"
                f" ON t{i}.column_name = {name_literal(name)} AND t{i}.value = CAST(s.{ident(name)} AS VARCHAR)"
            )
        return f"SELECT s.record_key AS record_key{suffix}, {', '.join(values)} FROM ({query}) s {' '.join(joins)}"

    if candidates is None:
        paired = "l JOIN r ON l.record_key_l <> r.record_key_r"
    else:
        paired = f"({candidates}) c JOIN l ON l.record_key_l = c.record_key_l JOIN r ON r.record_key_r = c.record_key_r"
    return f"(WITH l AS ({side(left, '_l')}), r AS ({side(right, '_r')}) SELECT l.*, r.* FROM {paired})"


def pairs_table(model: dict[str, Any], side: pa.Table, pairs: Sequence[tuple[str, str]], tf: Mapping[tuple[str, str], float]) -> pa.Table:
    """What :func:`pairs_sql` selects for ``pairs`` of ``side``'s records, made here for a
    few pairs: the same columns and values (each side's columns by row, the tf value of
    (column, CAST(value AS VARCHAR)) from ``tf``, None where it has none, as the left join
    gives), so that :func:`score_sql` has no joins to plan. Pairs with a key ``side``
    lacks are left out, as the inner join leaves them out."""
    names = _columns(model)
    row_of = {key: i for i, key in enumerate(side.column("record_key").to_pylist())}
    kept = [(a, b) for a, b in pairs if a in row_of and b in row_of]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for suffix, rows in (("_l", [row_of[a] for a, _ in kept]), ("_r", [row_of[b] for _, b in kept])):
        picked = side.take(pa.array(rows, pa.int64()))
        columns["record_key" + suffix] = picked.column("record_key")
        for column in names.inputs:
            columns[column + suffix] = picked.column(column)
        for name, tf_l, tf_r in names.tf:
            values = picked.column(name).to_pylist()
            columns[tf_l if suffix == "_l" else tf_r] = pa.array(
                # str() writes text and dates as CAST(... AS VARCHAR) does
                [tf.get((name, str(v))) if v is not None else None for v in values],
                pa.float64(),
            )
    return pa.table(columns)


def score_sql(model: dict[str, Any], pairs: str) -> str:
    """A SELECT scoring every row of ``pairs`` (a table name or a parenthesized query with
    ``record_key_l``/``record_key_r``, ``<col>_l``/``<col>_r`` per input column and
    ``tf_<col>_l``/``tf_<col>_r`` per tf column, see :func:`pairs_sql`) as splink's predict
    does. Returns record_key_l, record_key_r, match_weight, match_probability and per
    comparison gamma_*, mw_* and (with tf adjustments) mw_tf_adj_*. Cached per model and
    ``pairs``: writing it takes ~15 ms, ~60 ms for a model not seen before."""
    return _score_sql(json.dumps(model, sort_keys=True), pairs)


def _keys(settings: Settings) -> list[str]:
    """The pair's key columns (record_key_l, record_key_r)."""
    return _unique([name for uid in settings.column_info_settings.unique_id_input_columns for name in uid.names_l_r])


def _weight_and_probability(settings: Settings, terms: list[str]) -> tuple[str, str]:
    """splink's SQL of the match weight (the prior plus the ``terms``) and probability."""
    match_weight, match_probability = _combine_prior_and_mws(
        settings.core_model_settings.probability_two_random_records_match, terms, SplinkDialect.from_string(_DIALECT)
    )
    return match_weight, match_probability


@lru_cache(maxsize=8)
def _score_sql(model_json: str, pairs: str) -> str:
    settings = _settings_of(model_json)
    comparisons = settings.core_model_settings.comparisons
    keys = _keys(settings)
    # splink's stages: comparison vectors, then match weight parts, then the sum with the prior
    vectors = _unique([*keys, *(c for cc in comparisons for c in cc._columns_to_select_for_comparison_vector_values(False))])  # type: ignore[no-untyped-call]
    parts = _unique([*keys, *(c for cc in comparisons for c in cc._columns_to_select_for_match_weight_parts(False, False))])
    match_weight, match_probability = _weight_and_probability(
        settings, [term for cc in comparisons for term in cc._match_weight_columns_to_sum]
    )
    outputs = [*keys, f"{match_weight} AS match_weight", f"{match_probability} AS match_probability"]
    outputs += [c for cc in comparisons for c in (cc._gamma_column_name, *cc._match_weight_columns_to_sum)]
    return f"""WITH __scoring_vectors AS (SELECT {", ".join(vectors)} FROM {pairs}),
    __scoring_parts AS (SELECT {", ".join(parts)} FROM __scoring_vectors)
    SELECT {", ".join(outputs)} FROM __scoring_parts"""


#: A level whose condition calls one of these is costly to evaluate (string similarity,
#: each a loop over both strings): :func:`bound_sql` does not evaluate them.
_COSTLY = frozenset(
    {"jaro_winkler_similarity", "jarowinkler_similarity", "jaro_similarity", "damerau_levenshtein", "levenshtein", "jaccard"}
)


def _is_costly(node: exp.Expression) -> bool:
    name = node.name if isinstance(node, exp.Anonymous) else node.sql_name() if isinstance(node, exp.Func) else ""
    return name.lower() in _COSTLY


def _cheap_part(condition: str) -> str | None:
    """A condition that holds whenever ``condition`` does, without its costly calls: each
    term that holds one, under nothing but AND, OR and parentheses, taken as true
    (``house_l = house_r AND jaro_winkler_similarity(...) >= 0.9`` gives
    ``house_l = house_r AND TRUE``). None when ``condition`` calls none; ``TRUE`` when a
    costly call sits under anything else (NOT, CASE: taking it as true proves nothing)."""
    tree = sqlglot.parse_one(condition, read=_DIALECT)
    calls = [node for node in tree.walk() if _is_costly(cast(exp.Expression, node))]
    if not calls:
        return None
    for call in calls:
        term: Any = call
        while term.parent is not None and not isinstance(term.parent, (exp.And, exp.Or, exp.Paren)):
            term = term.parent
        above: Any = term.parent
        while above is not None:
            if not isinstance(above, (exp.And, exp.Or, exp.Paren)):
                return "TRUE"
            above = above.parent
        if term is tree:
            return "TRUE"
        term.replace(exp.true())
    return tree.sql(dialect=_DIALECT)


def bound_sql(model: dict[str, Any], pairs: str) -> str | None:
    """An upper bound of :func:`score_sql`'s ``match_weight`` and ``match_probability``
    for each row of ``pairs``, without the costly conditions (string similarities): per
    comparison, the weight of the level the pair gets where the levels before its first
    costly one decide (exactly, term-frequency adjustment included), and from there the
    highest weight among the levels the pair could still reach (a costly condition may
    hold or not; a cheap one is evaluated). The prior and the weights are added as
    ``score_sql`` adds them, so a pair below a threshold here is below it in
    ``score_sql`` too. Most of a bulk file's candidates share a birth date or a
    postcode and little else: of a 20,000-row file's 1,293,248 candidate pairs at 1M
    profiles, 36,391 reach the review band here and 30,488 in ``score_sql``. None when a
    level from the first costly one on has a term-frequency adjustment or no trained
    weight."""
    return _bound_sql(json.dumps(model, sort_keys=True), pairs)


@lru_cache(maxsize=8)
def _bound_sql(model_json: str, pairs: str) -> str | None:
    settings = _settings_of(model_json)
    comparisons = settings.core_model_settings.comparisons
    keys = _keys(settings)
    bounds: list[str] = []
    for comparison in comparisons:
        levels = comparison.comparison_levels
        if any(level._match_weight is None for level in levels):
            return None
        cheap = [None if level._is_else_level else _cheap_part(level.sql_condition) for level in levels]
        costly = [c is not None for c in cheap]
        cut = costly.index(True) if True in costly else len(levels)
        if any(level._has_tf_adjustments for level in levels[cut:]):
            return None

        def weight(level: Any) -> str:
            """The level's weight as score_sql adds it: splink's literal, and its tf
            adjustment (splink's CASE, with the level's own gamma in place of the column)."""
            mw = f"cast({level._match_weight} as float8)"
            if not level._has_tf_adjustments:
                return mw
            tf = "\n".join(lv._tf_adjustment_sql(str(level.comparison_vector_value), levels) for lv in levels)
            return f"({mw} + CASE\n{tf}\nEND)"

        def reachable(i: int) -> str:
            """The highest weight among the levels from ``i`` on that a pair may get."""
            level = levels[i]
            if level._is_else_level or (i == len(levels) - 1 and not costly[i]):
                return weight(level) if level._is_else_level else f"CASE WHEN {level.sql_condition} THEN {weight(level)} END"
            if costly[i]:  # the level if its cheap part holds (the costly part may), and the next ones
                this = weight(level) if cheap[i] == "TRUE" else f"CASE WHEN {cheap[i]} THEN {weight(level)} END"
                return f"greatest({this}, {reachable(i + 1)})"  # greatest() passes over a NULL
            return f"CASE WHEN {level.sql_condition} THEN {weight(level)} ELSE {reachable(i + 1)} END"

        exact = "\n".join(
            f"ELSE {weight(level)}" if level._is_else_level else f"WHEN {level.sql_condition} THEN {weight(level)}"
            for level in levels[:cut]
        )
        rest = f"ELSE {reachable(cut)}" if cut < len(levels) else ""
        bounds.append(f"CASE\n{exact}\n{rest}\nEND AS __bound_{len(bounds)}")
    match_weight, match_probability = _weight_and_probability(settings, [f"__bound_{i}" for i in range(len(bounds))])
    return f"""WITH __bounds AS (SELECT {", ".join([*keys, *bounds])} FROM {pairs})
    SELECT {", ".join(keys)}, {match_weight} AS match_weight, {match_probability} AS match_probability FROM __bounds"""

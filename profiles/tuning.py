"""The size thresholds at which unify switches between two ways of doing one step, in one
place. Each switch chooses between ways that give the same result (the tests hold each
pair equal) at different costs; where the numbers come from is in docs/benchmarks.md.
Tests lower them (``monkeypatch.setattr(TUNING, ...)``) to reach the other way on small data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Tuning:
    # ---- the live path (pipelines.live.ingest, pipelines.live.match_index) ----
    #: Up to this many new records, candidates come from the in-memory index when the
    #: ingester keeps one; more are joined with the stored records rule by rule (hash joins).
    live_lookup_max: int = 50
    #: Up to this many candidate pairs of a few records are scored row by row in Python
    #: (pipelines.matching.rowwise); more by DuckDB, which costs more to plan and less per pair.
    rowwise_max: int = 400
    #: Up to this many stored candidates of a bulk file are read by key (index scans); more by one semi-join.
    keys_lookup_max: int = 1000
    #: Term frequencies looked up in the store and kept per run (values; the cache starts over beyond this).
    tf_cache_max: int = 500_000
    #: Term frequencies of a column no blocking rule compares alone are held in memory up to this many.
    preload_tf_max: int = 500_000
    #: Keys of each serving index looked up by LiveIngest.warm(): enough to have read its nodes in.
    warm_keys: int = 20_000
    #: Rows of a table read by one statement of LiveIngest.warm(): two DuckDB row groups.
    warm_rows: int = 245_760

    # ---- stewardship and live regrouping (profiles.regrouping, profiles.store.reassignment) ----
    #: Up to this many records, a regrouping's updates take bound values and its golden
    #: records are computed in Python; more by the batch's survivorship SQL.
    few_records: int = 300
    #: Up to this many profiles, profiles.survivorship.golden_records computes them in
    #: Python (a steward's merge, a live record: the SQL costs more to plan than to run for
    #: a few); more (a bulk file's thousands) go through the SQL.
    python_max_profiles: int = 200

    # ---- the store (profiles.store.connection) ----
    #: Up to this many keys go into a query as an IN list of bound parameters, which DuckDB
    #: answers from an ART index; more are passed as one list parameter.
    in_list_max: int = 1000
    #: Values (rows x columns) up to which Store.append binds them as parameters.
    values_max: int = 2_000
    #: Parsed statements kept (statements run with parameters, again and again), and the
    #: longest text kept: an IN list of hundreds of parameters parses into a tree many times its text.
    parsed_max: int = 2_000
    parsed_text_max: int = 4_096

    # ---- the API (resolvers.projection) ----
    #: Column projections kept per distinct selection of a query.
    projections_max: int = 512


TUNING = Tuning()

__all__ = ["TUNING", "Tuning"]

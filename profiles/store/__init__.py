"""The DuckDB store: the only module of unify that imports duckdb."""

from profiles.regrouping import match_probabilities
from profiles.store.action_log import Action, Decision, Steward
from profiles.store.audit import AuditEvent, AuditVerdict, append_audit, redact_audit, verify_audit
from profiles.store.connection import (
    WORK_CATALOG,
    Cancellation,
    Store,
    cancellable,
    ident,
    in_list,
    name_literal,
    quote_column,
    sql_literal_path,
)
from profiles.store.queries import ProfileQueries, Resolved, identifiers_of, links_of_records
from profiles.store.runs import (
    SERVING_INDEXES,
    begin_run,
    current_run,
    ensure_serving_indexes,
    fail_run,
    publish_run,
    published_run,
    record_run_summary,
    run_table,
    write_run_table,
)
from profiles.store.schema import RUN_TABLES
from profiles.store.stewardship import Stewardship

__all__ = [
    "RUN_TABLES",
    "SERVING_INDEXES",
    "WORK_CATALOG",
    "Action",
    "AuditEvent",
    "AuditVerdict",
    "Cancellation",
    "Decision",
    "ProfileQueries",
    "Resolved",
    "Steward",
    "Stewardship",
    "Store",
    "append_audit",
    "begin_run",
    "cancellable",
    "current_run",
    "ensure_serving_indexes",
    "fail_run",
    "ident",
    "identifiers_of",
    "in_list",
    "links_of_records",
    "match_probabilities",
    "name_literal",
    "publish_run",
    "published_run",
    "quote_column",
    "record_run_summary",
    "redact_audit",
    "run_table",
    "sql_literal_path",
    "verify_audit",
    "write_run_table",
]

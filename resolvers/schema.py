"""The GraphQL schema: lookups by profile id or by anything a customer tells you, and the
data steward's review, decisions and audit log (resolvers.steward)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    NoSchemaIntrospectionCustomRule,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql import OperationType as CoreOperationType
from graphql import execute as graphql_execute
from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from graphql.validation import ASTValidationRule
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types import ExecutionResult, Info
from strawberry.types.graphql import OperationType
from strawberry.utils.await_maybe import await_maybe

from pipelines.config import ApiConfig
from pipelines.matching.search import parse_query, search
from pipelines.standardize.contacts import standardized_identifier
from profiles.errors import NO_PUBLISHED_RUN, NoPublishedRun, quiet_traceback
from profiles.model import BUILTIN_IDENTIFIER_KINDS, split_record_key
from profiles.store import links_of_records
from resolvers.auth import Role
from resolvers.consent import ConsentMutation, Serves
from resolvers.context import SERVICE, Context, context_of
from resolvers.errors import Ambiguous, ApiError, Forbidden
from resolvers.execution import LeanExecution, SubSelections, directive_free
from resolvers.history import HistoryMutation
from resolvers.ingest import IngestMutation
from resolvers.limits import limit_rule
from resolvers.permissions import Roles
from resolvers.projection import IDENTIFIER_COLUMNS, projection, raw_info
from resolvers.steward import PrivacyMutation, StewardMutation, StewardQuery
from resolvers.types import LEAN, Profile, declared_resolver

MAX_IDS = 100


async def _found(
    info: Info[Context, Any], lookup: Callable[[], list[str]], merged: Callable[[str], str | None] | None = None
) -> tuple[list[str], Profile | None]:
    """The profile ids ``lookup`` finds and, when it is one, that profile (or, when no
    profile has that id, the one ``merged`` says it was merged into): its row, its
    records when the query asks for them (``records``, ``identifiers``) and its events
    when it asks for its history or for contact PII that consent decides on, read in the
    same trip to a worker thread (a card takes one hand-off, not three), with only the
    columns the query asks for (``resolvers.projection``); what the events attach to is
    taken from the records when they are read anyway. Rows read whole are primed in the
    request's loaders for the rest of the request; partial ones are not."""
    ctx = context_of(info)
    plan = projection(info)
    with_records = plan.records is not None if plan else _selects(info, {"records", "identifiers"})
    with_events = plan is not None and (plan.events or (plan.consent and ctx.needs_consents((SERVICE,))))
    record_columns = plan.records if plan else None
    if with_events and record_columns is not None:  # what the events attach to: each record's identifiers
        record_columns = tuple(sorted({*record_columns, *IDENTIFIER_COLUMNS}))

    asked: list[str] = []

    def find() -> tuple[list[str], dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], list[dict[str, Any]] | None]:
        ids = lookup()
        if len(ids) != 1:
            return ids, {}, {}, None
        asked.append(ids[0])
        rows = ctx.queries.profiles(ids, plan.profile if plan else None)
        if not rows and merged is not None:  # no such profile now: where it was merged into, if it was
            now = merged(ids[0])
            if now is None:
                return [], {}, {}, None
            ids = [now]
            rows = ctx.queries.profiles(ids, plan.profile if plan else None)
        records = ctx.queries.records(ids, record_columns) if with_records and rows else {}
        if not (with_events and rows):
            return ids, rows, records, None
        keys, identifiers = links_of_records(records.get(ids[0], [])) if with_records else ctx.queries.links_of(ids[0])
        return ids, rows, records, ctx.read_events(ids[0], keys, identifiers)

    ids, rows, records, events = await asyncio.to_thread(find)
    if not rows:
        return ids, None
    pid, row = next(iter(rows.items()))
    if events is not None:
        ctx.prime_events(pid, events)
    if plan is None:
        ctx.loaders.profile_by_profile_id.prime(pid, row)
        if with_records:
            ctx.loaders.records_by_profile_id.prime(pid, records.get(pid, []))
        return ids, Profile(row=row, asked_id=asked[0])
    return ids, Profile(row=row, asked_id=asked[0], records_read=records.get(pid, []) if with_records else None)


def _selects(info: Info[Context, Any], names: set[str]) -> bool:
    """Whether the query asks, directly or in a fragment, for one of ``names`` one level
    below this field (what it asks, not what a role may see). Read from the document
    itself: strawberry's ``selected_fields`` converts the whole selection (0.1 ms)."""
    raw = raw_info(info)

    def asks(selection_set: SelectionSetNode | None) -> bool:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode) and selection.name.value in names:
                return True
            if isinstance(selection, InlineFragmentNode) and asks(selection.selection_set):
                return True
            if isinstance(selection, FragmentSpreadNode):
                fragment = raw.fragments.get(selection.name.value)
                if fragment is not None and asks(fragment.selection_set):
                    return True
        return False

    return any(asks(node.selection_set) for node in raw.field_nodes)


def standardized_lookup(kind: str, value: str, default_country: str) -> str | None:
    """The value as the pipeline standardized it for that kind (None: cannot match)."""
    return standardized_identifier(kind, value, default_country)


@strawberry.type
class ProfileMatch:
    """A search candidate: the profile, how sure the model is, and the record that matched best."""

    profile: Profile
    score: float = strawberry.field(description="Match probability of the best-matching record under the linkage model.")
    match_weight: float
    matched_record: str


MAX_FIRST = 100


@strawberry.type
class Viewer:
    """Who is asking: what a client (the web console) needs to show a key's role only what it may use."""

    role: str = strawberry.field(description="The role of the request's API key: agent, personalization, steward or admin.")
    identifier_kinds: list[str] = strawberry.field(
        description='The kinds profileByIdentifier takes besides "record" and "pseudonymous_id": email, phone and the configured identifiers.'
    )


@strawberry.type
class Query(StewardQuery):
    @strawberry.field(description="The caller's role and what it can look profiles up by.")
    def viewer(self, info: Info[Context, Any]) -> Viewer:
        ctx = context_of(info)
        return Viewer(role=ctx.principal.role.value, identifier_kinds=ctx.config.identifier_kinds())

    @strawberry.field(description="A profile by id; an id merged into another profile answers with the survivor.")
    async def profile(self, info: Info[Context, Any], id: strawberry.ID) -> Profile | None:
        queries = context_of(info).queries
        return (await _found(info, lambda: [str(id)], merged=queries.current_id))[1]

    @strawberry.field(description=f"Profiles by id (at most {MAX_IDS}), in the order asked; null for unknown ids.")
    async def profiles(self, info: Info[Context, Any], ids: list[strawberry.ID]) -> list[Profile | None]:
        if len(ids) > MAX_IDS:
            raise ApiError(f"at most {MAX_IDS} ids per request", limit=MAX_IDS)
        ctx = context_of(info)
        resolved = await asyncio.to_thread(ctx.queries.resolve, [str(i) for i in ids])
        current = [resolved[str(i)].profile_id for i in ids if str(i) in resolved]
        rows = dict(zip(current, await ctx.loaders.profile_by_profile_id.load_many(current)))  # one batch
        found = [(i, rows.get(resolved[str(i)].profile_id) if str(i) in resolved else None) for i in ids]  # repeats kept
        return [Profile(row=row, asked_id=str(i)) if row else None for i, row in found]

    @strawberry.field(
        description='By an identifier in any format: kind "email", "phone", a configured identifier name, '
        '"record" (value "source:record_id") or "pseudonymous_id" (a Profile.pseudonymousId, also of a merged '
        "profile). Unknown: null. The personalization role looks up by pseudonymous_id only."
    )
    async def profile_by_identifier(self, info: Info[Context, Any], kind: str, value: str) -> Profile | None:
        ctx = context_of(info)
        if kind == PSEUDONYMOUS:

            def named() -> list[str]:  # the profile id the pseudonymous id names (perhaps merged since)
                found = _PSEUDONYMS.profile_id(ctx, value.strip())
                return [found] if found else []

            return (await _found(info, named, merged=ctx.queries.current_id))[1]
        if not ctx.principal.role.sees_contact_pii:
            raise Forbidden(
                f"the {ctx.principal.role.value} role looks profiles up by kind {PSEUDONYMOUS!r}, not by contact data or records"
            )
        if kind == "record":
            try:
                source, record_id = split_record_key(value.strip())
            except ValueError as exc:
                raise ApiError(str(exc)) from None
            return (await _found(info, lambda: [p for p in [ctx.queries.profile_of_record(source, record_id)] if p]))[1]
        if kind not in BUILTIN_IDENTIFIER_KINDS and kind not in (kinds := ctx.config.identifier_kinds()):
            raise ApiError(f"unknown identifier kind {kind!r}; known: record, {', '.join(kinds)}")
        country = ctx.config.matching.default_country

        def find() -> list[str]:  # on the worker thread: phonenumbers is ~0.1 ms of the event loop's time
            lookup = standardized_lookup(kind, value, country)
            return [] if lookup is None else ctx.queries.profiles_with_identifier(kind, lookup)

        matches, profile = await _found(info, find)
        if len(matches) > 1:
            raise Ambiguous(
                f"{len(matches)} profiles share this {kind} (a household or shared line); ask for another identifier",
                profiles=len(matches),
            )
        return profile

    @strawberry.field(
        description='Free text ("jan de vries 1985 utrecht", "j. devries 3511"): candidates ranked by the '
        f"linkage model's own comparisons; first <= {MAX_FIRST}.",
        extensions=[Roles(Role.AGENT, Role.STEWARD, Role.ADMIN)],  # names and places in, people out: not for personalization
    )
    async def search_profiles(self, info: Info[Context, Any], query: str, first: int = 10) -> list[ProfileMatch]:
        if not 1 <= first <= MAX_FIRST:
            raise ApiError(f"first must be between 1 and {MAX_FIRST}", limit=MAX_FIRST)
        ctx = context_of(info)
        model = ctx.queries.published_model()
        parsed = parse_query(
            query,
            ctx.config.matching.default_country,
            ctx.queries.known_values("city_std"),
            ctx.queries.known_values("last_name_std"),
        )
        hits = search(ctx.queries.store, model, ctx.config.shared_identifiers(), parsed, first) if model else []
        rows = await ctx.loaders.profile_by_profile_id.load_many([h.profile_id for h in hits])
        return [
            ProfileMatch(profile=Profile(row=row), score=h.match_probability, match_weight=h.match_weight, matched_record=h.record_key)
            for h, row in zip(hits, rows)
            if row
        ]


@strawberry.type
class Mutation(StewardMutation, PrivacyMutation, IngestMutation, HistoryMutation, ConsentMutation):
    pass


PSEUDONYMOUS = "pseudonymous_id"


class _PseudonymIndex:
    """Pseudonymous id -> profile id, for every registered profile id of the served store.
    Read once (1M HMACs: about a second, on a worker thread), then only the ids
    registered since (a live ingest or a run registers new ones)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_store: dict[int, tuple[dict[str, str], Any]] = {}

    def profile_id(self, ctx: Context, pseudonymous_id: str) -> str | None:
        with self._lock:
            table, since = self._by_store.get(id(ctx.queries.store), ({}, None))
            found = table.get(pseudonymous_id)
            if found is None:  # perhaps registered since the last look
                ids, since = ctx.queries.registered_ids(since)
                table.update((ctx.pseudonymous_id(p), p) for p in ids)
                self._by_store[id(ctx.queries.store)] = (table, since)
                found = table.get(pseudonymous_id)
            return found


_PSEUDONYMS = _PseudonymIndex()


_log = logging.getLogger("unify.server")


class _Schema(strawberry.Schema):
    """strawberry's schema with a log that holds no values from requests or records: a
    client error is one line (its code, operation and path; not its message, which may
    repeat what was asked), a server fault its traceback with every message left out
    (a DuckDB error can quote a record's values)."""

    #: The prepared query texts, shared with the schema's ``_Prepared`` extension (build_schema).
    prepared: dict[str, _Document]

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """A query or mutation whose text is prepared and valid, for a request of ours,
        runs graphql-core's execution directly with what strawberry's ``execute`` would
        do around it here: log the errors (``process_errors``) and mask them as
        ``_Prepared`` does. Strawberry's per-request execution context, extension runner
        and hooks were ~15% of a card's event loop. Anything else (a new text, an invalid
        one, a subscription, a disallowed or missing operation, request extensions) goes
        through strawberry, which prepares the text or answers as it always has."""
        found = self.prepared.get(query) if query else None
        allowed = allowed_operation_types if allowed_operation_types is not None else _ALL_OPERATIONS
        operation = get_operation_ast(found[0], operation_name) if found and not found[1] else None
        kind = _DIRECT.get(operation.operation) if operation is not None else None
        if (
            found is None
            or operation is None
            or kind is None
            or kind not in allowed
            or root_value is not None
            or operation_extensions
            or not isinstance(context_value, Context)
        ):
            return await super().execute(
                query, variable_values, context_value, root_value, operation_name, allowed_operation_types, operation_extensions
            )
        document, _, context_value.sub_selections = found
        result = await await_maybe(
            graphql_execute(
                self._schema,
                document,
                context_value=context_value,
                variable_values=variable_values,
                operation_name=operation_name,
                executor_class=self.execution_context_class,
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # strawberry's, as its execute passes it
                operation_extensions=None,
            )
        )
        errors = result.errors
        if errors:
            self.process_errors(errors, _Operation(operation_name or (operation.name.value if operation.name else None)))
            errors = [_shown(e) for e in errors]
        return ExecutionResult(data=result.data, errors=errors, extensions={})

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        operation = getattr(execution_context, "operation_name", None) or "anonymous"
        for error in errors:
            original = error.original_error
            where = ".".join(str(p) for p in error.path or []) or "-"
            if isinstance(original, NoPublishedRun):  # the operator's to fix, not a fault: one line
                _log.warning("%s in operation %s at %s: the store has no published run yet", NOT_READY, operation, where)
            elif original is None or isinstance(original, (GraphQLError, ApiError)):
                code = getattr(original, "code", None) or ("BAD_REQUEST" if original is None else "ERROR")
                _log.warning("client error %s in operation %s at %s", code, operation, where)
            else:
                _log.error("server fault in operation %s at %s:\n%s", operation, where, quiet_traceback(original))


@dataclass(frozen=True)
class _Operation:
    """What ``_Schema.process_errors`` reads of an execution context."""

    operation_name: str | None


_ALL_OPERATIONS = frozenset(OperationType)
#: The operations ``_Schema.execute`` runs itself, by graphql-core's name for them.
_DIRECT = {CoreOperationType.QUERY: OperationType.QUERY, CoreOperationType.MUTATION: OperationType.MUTATION}


def _mask(error: GraphQLError) -> bool:
    """Mask unexpected exceptions; pass our coded errors and validation (limit) errors."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


UNEXPECTED = "Unexpected error."

#: A prepared query text: its document, its validation errors, and its sub-selections
#: shared by the requests that send it when that is safe (``resolvers.execution``).
_Document = tuple[DocumentNode, list[GraphQLError], SubSelections | None]


class _Prepared(SchemaExtension):
    """What strawberry's ParserCache, ValidationCache, MaxTokensLimiter, AddValidationRules
    (the limits, and no introspection outside development) and MaskErrors did, in one
    extension. A document is parsed (at most ``max_tokens`` tokens) and validated once per
    query text, kept in ``prepared`` (the schema's, most recent ``PREPARED_MAX`` texts).
    ValidationCache hashed the whole document tree on every request, and each extension's
    hooks cost the event loop on every request: together ~15% of its time for a card.

    Unexpected errors reach the client as ``UNEXPECTED`` only (``_shown``), through the
    public ``on_operation`` hook rather than MaskErrors' private ``_process_result`` and
    its runtime Protocol check of the result. ``Schema.process_errors`` has logged the
    originals by then. The schema does not enable incremental delivery (@defer/@stream),
    so there are no streamed frames to mask."""

    PREPARED_MAX = 256

    def __init__(self, prepared: dict[str, _Document], rules: tuple[type[ASTValidationRule], ...], max_tokens: int):
        super().__init__()
        self.prepared, self.rules, self.max_tokens = prepared, rules, max_tokens
        self._errors: list[GraphQLError] = []  # this request's document's, found by on_parse (one instance a request)

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [_shown(e) for e in errors]  # type: ignore[union-attr]

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query or ""
        found = self.prepared.get(query)
        if found is None:
            document = parse(query, max_tokens=self.max_tokens)  # a syntax or token-limit error: raised, not kept
            shared: SubSelections | None = {} if directive_free(document) else None
            found = (document, validate(context.schema._schema, document, self.rules), shared)
            if len(self.prepared) >= self.PREPARED_MAX:
                del self.prepared[next(iter(self.prepared))]  # the oldest
            self.prepared[query] = found
        context.graphql_document, self._errors, shared = found
        if isinstance(context.context, Context):
            context.context.sub_selections = shared
        yield

    def on_validate(self) -> Iterator[None]:
        self.execution_context.pre_execution_errors = self._errors
        yield


#: The code of an answer from a store that has no published run yet (a server started
#: before the first `unify run`): what to do, instead of an unexpected error.
NOT_READY = "NO_PUBLISHED_RUN"


def _shown(error: GraphQLError) -> GraphQLError:
    """``error`` as the client sees it: a store without a published run says what to do,
    an unexpected error says only ``UNEXPECTED``, without its cause."""
    if isinstance(error.original_error, NoPublishedRun):
        return _replaced(error, NO_PUBLISHED_RUN, {"code": NOT_READY})
    return _replaced(error, UNEXPECTED) if _mask(error) else error


def _replaced(error: GraphQLError, message: str, extensions: dict[str, Any] | None = None) -> GraphQLError:
    """``error`` where it happened, with ``message`` (and ``extensions``) and no cause."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def utc_isoformat(value: datetime) -> str:
    """A time as the API gives it: ISO 8601 in UTC with its offset ("2026-11-02T08:00:00+00:00").
    The store holds UTC without an offset; given without one, a client (a browser's
    ``new Date``) reads it as its own local time."""
    if value.tzinfo is None:  # the same text as value.replace(tzinfo=UTC).isoformat(), without a new datetime
        return value.isoformat() + "+00:00"
    return value.astimezone(UTC).isoformat()


#: strawberry's DateTime, giving every time in UTC with its offset (:func:`utc_isoformat`).
#: Times given to the API are read as strawberry reads them; one without an offset is UTC.
UTC_DATETIME = strawberry.scalar(
    name="DateTime",
    description="Date with time (ISO 8601). Given in UTC with its offset; one sent without an offset is read as UTC.",
    serialize=utc_isoformat,
    parse_value=DateTimeDefinition.parse_value,
)


def build_schema(api: ApiConfig) -> strawberry.Schema:
    # The rules and the prepared documents are made once per schema: a validation cache
    # must be keyed by the same rules, and a class per request would never hit (then
    # validation was most of a request's time).
    rules = (*specified_rules, limit_rule(api.max_depth, api.max_aliases, api.max_fields))
    if not api.development:
        rules = (*rules, NoSchemaIntrospectionCustomRule)
    prepared: dict[str, _Document] = {}
    extensions: list[Any] = [lambda: _Prepared(prepared, rules, api.max_tokens)]
    schema = _Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        execution_context_class=LeanExecution,
        config=StrawberryConfig(disable_field_suggestions=not api.development, scalar_map={datetime: UTC_DATETIME}),
    )
    schema.prepared = prepared
    _install_lean_resolvers(schema)
    return schema


def _install_lean_resolvers(schema: strawberry.Schema) -> int:
    """Give graphql-core the ``lean`` resolvers themselves (``resolvers.types.lean``): on
    a card's ~30 fields strawberry's wrapping was a quarter of the event loop's time.
    A field whose only extension is ``Serves`` gets its resolver with ``Serves`` around it;
    one with other extensions (``Roles``: who may call it) or with arguments strawberry
    must convert keeps strawberry's resolver, which runs them. Returns how many fields
    were given one. ``Schema._schema`` (the graphql-core schema) is private to strawberry:
    tests/resolvers/test_strawberry_internals.py fails when it changes shape."""
    installed = 0
    names = schema.config.name_converter
    for gql_type in schema._schema.type_map.values():
        if not isinstance(gql_type, GraphQLObjectType):
            continue
        for gql_field in gql_type.fields.values():
            definition, func = declared_resolver(gql_field)
            if definition is None or not getattr(func, LEAN, False):
                continue
            if not all(a.type in _PLAIN_ARGUMENTS and names.get_graphql_name(a) == a.python_name for a in definition.arguments):
                continue
            if not definition.extensions:
                gql_field.resolve = func
            elif len(definition.extensions) == 1 and isinstance(serves := definition.extensions[0], Serves):
                gql_field.resolve = _served(serves, func)
            else:
                continue
            installed += 1
    return installed


#: Argument types graphql-core's coerced values are already the Python values of.
_PLAIN_ARGUMENTS = (int, str, bool, float)


def _served(serves: Serves, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with ``serves`` deciding around it, as strawberry's extension chain did."""

    def resolve(source: Any, info: Any, **arguments: Any) -> Any:
        return serves.resolve(func, source, info, **arguments)

    return resolve


if __name__ == "__main__":  # python -m resolvers.schema > docs/schema.graphql
    print(build_schema(ApiConfig()).as_str())

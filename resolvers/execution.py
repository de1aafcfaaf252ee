"""graphql-core's execution with two shortcuts for what a card asks most.

At c=8 the API is bound by the interpreter lock, and most of the event loop's time for a
card is graphql-core executing its ~70 fields (docs/benchmarks.md, session 9):

- **Plain leaves.** A field with no resolver of its own (strawberry's "basic" field: an
  attribute of its object) that returns a scalar or an enum is read and coerced here,
  without the resolve info, response path, argument values and value-completion chain
  graphql-core builds for every field. Anything unusual (an exception, a null for a
  non-null field, a value the scalar refuses) goes the ordinary way, which gives the
  error exactly as before.
- **Sub-selections collected once per document.** graphql-core collects an object's
  sub-selection once per request (per list of field nodes); a document whose selections
  carry no directives (no ``@include``/``@skip`` reading variables, no ``@defer``)
  collects the same whatever its variables, so that is done once per prepared document
  (``resolvers.schema._Prepared`` keeps each query text's document) and shared by the
  requests that send it.

tests/resolvers/test_execution.py holds the results and errors equal to graphql-core's own
execution; tests/resolvers/test_strawberry_internals.py pins what this relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import CollectedFields
from graphql.language import Visitor, visit
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

#: The mark of a resolver whose value can be read without its info
#: (:func:`plain_read`): (a function of the object, or of the object and the request's
#: context, and whether it takes the context).
PLAIN_READ = "_unify_plain_read"

#: What a plain read returns when the field must go graphql-core's ordinary way (a value
#: withheld by consent, whose path the resolver notes; an error to report).
ORDINARY: Any = object()

_R = TypeVar("_R", bound=Callable[..., Any])


def plain_read(read: Callable[..., Any], *, with_context: bool = False) -> Callable[[_R], _R]:
    """Mark a ``lean`` resolver as answered by ``read(root)`` (or ``read(root, context)``),
    which gives what the resolver would, or ``ORDINARY`` to have the resolver called."""

    def mark(resolver: _R) -> _R:
        setattr(resolver, PLAIN_READ, (read, with_context))
        return resolver

    return mark


#: A plain leaf: (how its value is read, whether that takes the context, its scalar or
#: enum type, whether it is non-null, for a list: whether its items are non-null, else None).
_Leaf = tuple[Callable[..., Any], bool, GraphQLScalarType | GraphQLEnumType, bool, bool | None]

_LEAVES: dict[GraphQLObjectType, dict[str, _Leaf]] = {}


def plain_leaves(parent_type: GraphQLObjectType) -> dict[str, _Leaf]:
    """The type's fields that read their value from their object (and the context) alone
    and return a scalar, an enum or a list of them, by field name (once per type)."""
    found = _LEAVES.get(parent_type)
    if found is None:
        found = _LEAVES[parent_type] = {name: leaf for name, field in parent_type.fields.items() if (leaf := _plain_leaf(field))}
    return found


def _plain_leaf(field: GraphQLField) -> _Leaf | None:
    if field.args:
        return None
    marked = getattr(field.resolve, PLAIN_READ, None)
    if marked is None:
        definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None or not getattr(field.resolve, "_is_default", False):
            return None  # a resolver of its own: the ordinary way
        if not (definition.is_basic_field and definition.default_resolver is getattr):
            return None
        marked = attrgetter(definition.python_name), False
    read, with_context = marked
    of_type: Any = field.type
    non_null = isinstance(of_type, GraphQLNonNull)
    if non_null:
        of_type = of_type.of_type
    items_non_null = None
    if isinstance(of_type, GraphQLList):
        of_type = of_type.of_type
        items_non_null = isinstance(of_type, GraphQLNonNull)
        if items_non_null:
            of_type = of_type.of_type
    if not isinstance(of_type, (GraphQLScalarType, GraphQLEnumType)):
        return None
    return read, with_context, of_type, non_null, items_non_null


class _HasDirectives(Visitor):
    found = False

    def enter_directive(self, *_: Any) -> Any:
        self.found = True
        return self.BREAK


def directive_free(document: DocumentNode) -> bool:
    """Whether no selection, fragment or operation of ``document`` carries a directive."""
    visitor = _HasDirectives()
    visit(document, visitor)
    return not visitor.found


#: Per prepared document: its collected sub-selections, by (type, the field nodes' ids).
#: The document is held by the same entry, so the nodes' ids cannot be reused meanwhile.
SubSelections = dict[tuple[GraphQLObjectType, tuple[int, ...]], CollectedFields]


class LeanExecution(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context with the two shortcuts above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the document's shared sub-selections, set by ``_Prepared`` (through the context
        # value) when the document is directive-free
        self._shared: SubSelections | None = getattr(self.context_value, "sub_selections", None)

    def collect_subfields(self, return_type: GraphQLObjectType, field_details_list: Any) -> CollectedFields:
        shared = self._shared
        if shared is None:
            return super().collect_subfields(return_type, field_details_list)
        key = (return_type, tuple(id(d.node) for d in field_details_list))
        found = shared.get(key)
        if found is None:
            found = shared[key] = super().collect_subfields(return_type, field_details_list)
        return found

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        middleware = self.middleware_manager
        if middleware is not None and middleware.middlewares:  # an extension's resolve hook sees every field
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        leaves = plain_leaves(parent_type)
        context = self.context_value
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                leaf = leaves.get(field_details_list[0].node.name.value)
                if leaf is not None:
                    value = _leaf_value(source_value, context, leaf)
                    if value is not ORDINARY:
                        results[response_name] = value
                        continue
                result = self.execute_field(
                    parent_type, source_value, field_details_list, Path(path, response_name, parent_type.name), position_context
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results
        return self._gathered(results, awaitable_fields)

    async def _gathered(self, results: dict[str, Any], awaitable_fields: list[str]) -> dict[str, Any]:
        # as graphql-core's execute_fields does with its awaitable fields
        if len(awaitable_fields) == 1:
            field = awaitable_fields[0]
            results[field] = await results[field]
        else:
            awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
            results.update(zip(awaitable_fields, awaited, strict=True))
        return results


def _leaf_value(source: Any, context: Any, leaf: _Leaf) -> Any:
    """The leaf's coerced value, or ``ORDINARY`` when graphql-core must answer it (and say
    what is wrong, if anything is)."""
    read, with_context, leaf_type, non_null, items_non_null = leaf
    try:
        value = read(source, context) if with_context else read(source)
        if value is None:
            return ORDINARY if non_null else None
        if value is ORDINARY or isinstance(value, Exception):
            return ORDINARY
        if items_non_null is None:
            coerced = leaf_type.coerce_output_value(value)
            return ORDINARY if coerced is None or coerced is Undefined else coerced
        if not isinstance(value, (list, tuple)):
            return ORDINARY
        items = []
        for item in value:
            coerced = None if item is None else leaf_type.coerce_output_value(item)
            if coerced is Undefined or (coerced is None and (item is not None or items_non_null)):
                return ORDINARY
            items.append(coerced)
    except Exception:
        return ORDINARY
    return items

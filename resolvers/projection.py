"""Which columns of a profile and of its records a query asks for, so that a lookup reads
only those: a row's columns are most of the cost of reading it by key (at 1M, a contact
card's profile row 0.42 -> 0.31 ms and its records 0.59 -> 0.32 ms).

Each field declares what it reads (``resolvers.types.reads``). A query with a field that
declares nothing, or a fragment on another type, is read whole, as before."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLField, GraphQLResolveInfo, get_named_type
from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

from profiles.tuning import TUNING
from resolvers.types import READS, Reads, declared_resolver

#: What each record is read with whatever is asked: grouped by profile, ordered by time.
IDENTIFIER_COLUMNS = ("identifiers", "source")


@dataclass(frozen=True)
class Projection:
    profile: tuple[str, ...]
    records: tuple[str, ...] | None  # None: the query does not ask for the records
    events: bool = False  # it asks for the profile's history (timeline, traits, ...)
    consent: bool = False  # it asks for contact PII (checked against consent for some roles)


class _Whole(Exception):
    """The query asks for something without a declaration: read whole rows."""


#: Projections by the field node they were made for (kept in the value, so an id is not
#: reused while its entry lives); the parser cache hands out the same nodes for a text.
_MADE: dict[int, tuple[FieldNode, Projection | None]] = {}


def raw_info(info: Any) -> GraphQLResolveInfo[Any]:
    """graphql-core's info under strawberry's ``Info``: the field's nodes and the
    document's fragments, as parsed (and cached by the parser cache, so a projection
    can be kept by node). strawberry's public ``Info`` has neither; its
    ``selected_fields`` converts the whole selection on every call (~0.1 ms). This reads
    the private ``Info._raw_info``, here only; tests/resolvers/test_strawberry_internals.py
    fails when it changes shape."""
    raw: GraphQLResolveInfo[Any] = info._raw_info
    return raw


def projection(info: Any, type_name: str = "Profile") -> Projection | None:
    """The columns this field's selection (of ``type_name``) reads; None: whole rows."""
    raw = raw_info(info)
    nodes = raw.field_nodes
    made = _MADE.get(id(nodes[0])) if len(nodes) == 1 else None
    if made is not None and made[0] is nodes[0]:
        return made[1]
    profile: set[str] = {"profile_id"}
    records: set[str] | None = None
    asks: set[str] = set()
    try:
        for node in nodes:
            records = _read(raw, type_name, node.selection_set, profile, records, asks)
        result: Projection | None = Projection(
            tuple(sorted(profile)), None if records is None else tuple(sorted(records)), "events" in asks, "consent" in asks
        )
    except _Whole:
        result = None
    if len(nodes) == 1:
        if len(_MADE) >= TUNING.projections_max:
            _MADE.clear()
        _MADE[id(nodes[0])] = (nodes[0], result)
    return result


def _read(
    raw: GraphQLResolveInfo[Any],
    type_name: str,
    selection_set: SelectionSetNode | None,
    into: set[str],
    records: set[str] | None,
    asks: set[str],
    *,
    record_level: bool = False,
) -> set[str] | None:
    """Add the columns the selection reads of a row of ``type_name`` to ``into``, and to
    ``asks`` "events" and "consent" when a field reads the events or is contact PII;
    returns the records' columns (None while no field asks for records)."""
    fields = raw.schema.type_map[type_name].fields  # type: ignore[attr-defined]
    for node in _fields(raw, type_name, selection_set):
        name = node.name.value
        if name == "__typename":
            continue
        field = fields.get(name)
        declared = _declared(field) if field is not None else None
        if declared is None:
            raise _Whole(name)
        into.update(declared.columns)
        asks.update(word for word, on in (("events", declared.events), ("consent", declared.consent)) if on)
        if declared.nested == "row":
            records = _read(raw, get_named_type(field.type).name, node.selection_set, into, records, asks, record_level=record_level)
        elif declared.nested in ("records", "identifiers") and not record_level:
            records = set() if records is None else records
            if declared.nested == "identifiers":
                records.update(IDENTIFIER_COLUMNS)
                asks.add("consent")  # identifier values are contact PII
            else:
                _read(raw, get_named_type(field.type).name, node.selection_set, records, None, asks, record_level=True)
        elif declared.nested is not None:
            raise _Whole(name)
    return records


def _fields(raw: GraphQLResolveInfo[Any], type_name: str, selection_set: SelectionSetNode | None) -> Iterator[FieldNode]:
    """The field nodes of a selection, fragments on this type expanded."""
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            yield selection
            continue
        if isinstance(selection, InlineFragmentNode):
            condition, inner = selection.type_condition, selection.selection_set
        elif isinstance(selection, FragmentSpreadNode):
            fragment = raw.fragments.get(selection.name.value)
            if fragment is None:
                raise _Whole(selection.name.value)
            condition, inner = fragment.type_condition, fragment.selection_set
        else:
            raise _Whole(type(selection).__name__)
        if condition is not None and condition.name.value != type_name:
            raise _Whole(condition.name.value)
        yield from _fields(raw, type_name, inner)


def _declared(field: GraphQLField) -> Reads | None:
    """The field's declaration, on the function its resolver was declared with."""
    return getattr(declared_resolver(field)[1], READS, None)

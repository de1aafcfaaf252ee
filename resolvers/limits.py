"""Depth, alias and field-count limits whose cost is linear in the document.

strawberry's QueryDepthLimiter and MaxAliasesLimiter walk every fragment spread anew: a
fragment that spreads the next one eight times, nested nine levels, is 8^9 walks, and a
593-byte document held the event loop for minutes. Here each fragment's height and alias
count are computed once and reused wherever it is spread, so a document costs what its
text costs, and the answer is the same number (an alias inside a fragment spread eight
times counts eight times)."""

from __future__ import annotations

from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
)

_Owner = OperationDefinitionNode | FragmentDefinitionNode | FieldNode | InlineFragmentNode


class _Measure:
    """Height (nesting of fields that have selections), alias count and field count of
    selection sets, memoized per fragment. Each is capped one above its limit: past the limit the
    exact number does not matter, and a capped sum stays a small integer."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode], max_depth: int, max_aliases: int, max_fields: int):
        self.fragments = fragments
        self.height_cap, self.alias_cap, self.field_cap = max_depth + 1, max_aliases + 1, max_fields + 1
        self._heights: dict[str, int] = {}
        self._aliases: dict[str, int] = {}
        self._fields: dict[str, int] = {}

    def height(self, owner: _Owner) -> int:
        best = 0
        for selection in owner.selection_set.selections if owner.selection_set else ():
            if isinstance(selection, FieldNode):
                h = 1 + self.height(selection) if selection.selection_set and not selection.name.value.startswith("__") else 0
            elif isinstance(selection, InlineFragmentNode):
                h = self.height(selection)
            else:
                h = self._fragment(cast(FragmentSpreadNode, selection), self._heights, self.height)
            best = max(best, min(h, self.height_cap))
            if best >= self.height_cap:
                break
        return best

    def aliases(self, owner: _Owner) -> int:
        return self._count(owner, self._aliases, self.aliases, self.alias_cap, aliased_only=True)

    def fields(self, owner: _Owner) -> int:
        return self._count(owner, self._fields, self.fields, self.field_cap, aliased_only=False)

    def _count(self, owner: _Owner, memo: dict[str, int], again: Any, cap: int, *, aliased_only: bool) -> int:
        total = 0
        for selection in owner.selection_set.selections if owner.selection_set else ():
            if isinstance(selection, FieldNode):
                total += (1 if selection.alias or not aliased_only else 0) + again(selection)
            elif isinstance(selection, InlineFragmentNode):
                total += again(selection)
            else:
                total += self._fragment(cast(FragmentSpreadNode, selection), memo, again)
            if total >= cap:
                return cap
        return total

    def _fragment(self, spread: FragmentSpreadNode, memo: dict[str, int], measure: Any) -> int:
        name = spread.name.value
        if name not in memo:
            fragment = self.fragments.get(name)
            memo[name] = 0  # a cycle counts nothing here; NoFragmentCyclesRule reports it
            if fragment is not None:
                memo[name] = measure(fragment)
        return memo[name]


def limit_rule(max_depth: int, max_aliases: int, max_fields: int) -> type[ValidationRule]:
    """A validation rule refusing operations nested deeper than ``max_depth`` fields, using
    more than ``max_aliases`` aliases or selecting more than ``max_fields`` fields
    (fragments counted each time they are spread: a document that spreads a fragment
    eight times, nested nine levels, selects 8^9 fields however short its text)."""

    class LimitRule(ValidationRule):
        def __init__(self, context: ValidationContext):
            super().__init__(context)

        def enter_document(self, node: DocumentNode, *_: Any) -> Any:
            fragments = {d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)}
            measure = _Measure(fragments, max_depth, max_aliases, max_fields)
            for definition in node.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                name = definition.name.value if definition.name else "anonymous"
                try:
                    height, aliases, fields = measure.height(definition), measure.aliases(definition), measure.fields(definition)
                except RecursionError:  # fragments or inline fragments chained hundreds deep
                    self.report_error(GraphQLError(f"'{name}' nests fragments beyond the depth limit", definition))
                    continue
                if height > max_depth:
                    self.report_error(GraphQLError(f"'{name}' exceeds maximum operation depth of {max_depth}", definition))
                if aliases > max_aliases:
                    self.report_error(GraphQLError(f"more than {max_aliases} aliases found (allowed: {max_aliases})", definition))
                if fields > max_fields:
                    self.report_error(
                        GraphQLError(
                            f"'{name}' selects more than {max_fields} fields (fragments counted where spread): too many fields", definition
                        )
                    )
            return self.SKIP  # nothing below needs visiting: the measure has seen it all

    return LimitRule


__all__ = ["limit_rule"]

"""resolvers.execution's shortcuts give what graphql-core's ordinary execution gives: the
same data, the same errors at the same paths, and variables that still decide
``@include``/``@skip``."""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from typing import Any, NewType

import pytest
import strawberry
from graphql import GraphQLObjectType
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.auth import Role
from resolvers.execution import ORDINARY, LeanExecution, plain_leaves, plain_read
from resolvers.schema import _install_lean_resolvers, build_schema
from resolvers.types import lean
from tests.resolvers.conftest import Api


@strawberry.enum
class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


def _refuse_odd(value: int) -> int:
    if value % 2:
        raise ValueError(f"odd: {value}")
    return value


Even = NewType("Even", int)
EVEN = strawberry.scalar(name="Even", serialize=_refuse_odd, parse_value=int)

resolver_calls: Counter[str] = Counter()


@strawberry.type
class Item:
    name: str
    count: int
    tier: Tier
    note: str | None
    tags: list[str]
    maybe_tags: list[str | None]
    must: str  # given None below: an error, as graphql-core says it
    strict_tags: list[str]  # given a None item below
    even: Even
    backing: strawberry.Private[str]

    @strawberry.field
    @lean
    @plain_read(lambda root, ctx: ORDINARY if root.backing == "ask" else f"via:{root.backing}:{ctx['who']}", with_context=True)
    def via(self, info: strawberry.Info) -> str:
        resolver_calls[self.backing] += 1
        return f"via:{self.backing}:{info.context['who']}"  # what the plain read gives


def _item(i: int) -> Item:
    return Item(
        name=f"item {i}",
        count=i,
        tier=Tier.GOLD if i % 2 else Tier.SILVER,
        note=None if i % 3 else f"note {i}",
        tags=[f"t{i}", "x"],
        maybe_tags=["a", None],
        must=None if i == 2 else "here",  # type: ignore[arg-type]
        strict_tags=["a", None] if i == 3 else ["a"],  # type: ignore[list-item]
        even=Even(i),
        backing="ask" if i == 1 else f"b{i}",
    )


@strawberry.type
class ToyQuery:
    @strawberry.field
    def items(self) -> list[Item | None]:  # an item's error nulls that item only
        return [_item(i) for i in range(5)]

    @strawberry.field
    async def later(self) -> Item:
        return _item(4)


TOY_QUERY = """query Toy($withTags: Boolean!) {
  items { name count tier note tags maybeTags must strictTags even via
          ...Extra @include(if: $withTags) }
  later { name via tags }
}
fragment Extra on Item { tags @skip(if: false) extraCount: count }"""


def _run(execution: type[StrawberryGraphQLCoreExecutionContext], query: str, variables: dict[str, Any]) -> Any:
    schema = strawberry.Schema(query=ToyQuery, execution_context_class=execution, config=StrawberryConfig(scalar_map={Even: EVEN}))
    assert _install_lean_resolvers(schema) == 1  # `via`, as resolvers.schema installs a card's
    return asyncio.run(schema.execute(query, variable_values=variables, context_value={"who": "me"}))


def _shape(result: Any) -> Any:
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return result.data, errors


@pytest.mark.parametrize("with_tags", [True, False])
def test_the_shortcuts_give_graphql_cores_errors(with_tags: bool) -> None:
    ordinary = _shape(_run(StrawberryGraphQLCoreExecutionContext, TOY_QUERY, {"withTags": with_tags}))
    lean = _shape(_run(LeanExecution, TOY_QUERY, {"withTags": with_tags}))
    assert lean == ordinary
    data, errors = lean
    assert [item is None for item in data["items"]] == [False, True, True, True, False]  # 0 and 4 are fine
    assert data["items"][0]["via"] == "via:b0:me" and data["items"][4]["name"] == "item 4"
    assert ("extraCount" in data["items"][0]) is with_tags
    assert ("Cannot return null for non-nullable field Item.must.", ("items", 2, "must")) in errors
    assert ("Cannot return null for non-nullable field Item.strictTags.", ("items", 3, "strictTags", 1)) in errors
    assert any(path == ("items", 1, "even") and "odd: 1" in message for message, path in errors)
    assert len(errors) == 3  # item 3's `even` is not reached: its strictTags already nulled it


def test_the_shortcuts_give_graphql_cores_data_where_nothing_fails() -> None:
    query = "{ items { name count tier note tags maybeTags } later { name tags } }"
    ordinary = _run(StrawberryGraphQLCoreExecutionContext, query, {})
    lean = _run(LeanExecution, query, {})
    assert not ordinary.errors and not lean.errors
    assert lean.data == ordinary.data
    assert lean.data["items"][1] == {
        "name": "item 1",
        "count": 1,
        "tier": "GOLD",
        "note": None,
        "tags": ["t1", "x"],
        "maybeTags": ["a", None],
    }


def test_a_plain_read_answers_unless_it_says_ordinary() -> None:
    resolver_calls.clear()
    result = _run(LeanExecution, "{ items { via } }", {})
    assert not result.errors
    assert [i["via"] for i in result.data["items"]] == ["via:b0:me", "via:ask:me", "via:b2:me", "via:b3:me", "via:b4:me"]
    assert resolver_calls == Counter({"ask": 1})  # the others were read plainly
    resolver_calls.clear()
    assert _run(StrawberryGraphQLCoreExecutionContext, "{ items { via } }", {}).data == result.data
    assert sum(resolver_calls.values()) == 5


def test_a_card_s_leaves_take_the_shortcut(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps the shortcut from silently dying: a card's traits, effort, records and
    contact fields are answered without graphql-core's execute_field."""
    ordinary: Counter[str] = Counter()
    execute_field = LeanExecution.execute_field

    def counted(self: LeanExecution, parent_type: GraphQLObjectType, source: Any, fields: Any, path: Any, position: Any) -> Any:
        ordinary[f"{parent_type.name}.{fields[0].node.name.value}"] += 1
        return execute_field(self, parent_type, source, fields, path, position)

    monkeypatch.setattr(LeanExecution, "execute_field", counted)
    pid = api.queries.store.scalar(f"SELECT profile_id FROM {api.queries._t('profiles')} WHERE email IS NOT NULL LIMIT 1")
    result = api.run(
        """query($id: ID!) { profile(id: $id) { id fullName email phone address { city postcode } sources
             records { source recordId updatedAt } identifiers { kind value }
             traits { name value asOf eventCount } effort(days: 30) { contacts openTopics } } }""",
        variables={"id": pid},
    )
    assert not result.errors and result.data["profile"]["email"]
    assert set(ordinary) == {
        "Query.profile",
        "Profile.address",
        "Profile.records",
        "Profile.identifiers",
        "Profile.traits",
        "Profile.effort",
    }
    schema = build_schema(api.config.api)._schema
    trait = schema.type_map["Trait"]
    assert isinstance(trait, GraphQLObjectType)
    assert set(plain_leaves(trait)) == {"name", "value", "asOf", "eventCount"}  # not `definition`: a resolver of its own


def test_contact_pii_by_the_shortcut_is_still_refused_and_audited(api: Api) -> None:
    pid = api.queries.store.scalar(f"SELECT profile_id FROM {api.queries._t('profiles')} WHERE email IS NOT NULL LIMIT 1")
    query = "query($id: ID!) { profile(id: $id) { id email address { city } identifiers { kind value } } }"
    seen = api.run(query, Role.AGENT, {"id": pid})
    assert seen.data["profile"]["email"] and api.last_context is not None
    assert {"email", "city"} <= api.last_context.pii_read[pid]
    hidden = api.run(query, Role.PERSONALIZATION, {"id": pid})
    profile = hidden.data["profile"] if hidden.data else None
    if profile is not None:  # the role may not ask by id at all; where it may, nothing of it shows
        assert profile["email"] is None and profile["address"]["city"] is None
        assert all(i["value"] is None for i in profile["identifiers"])
    assert api.last_context is not None and not api.last_context.pii_read.get(pid)


def test_variables_still_decide_include_and_skip_when_a_schema_serves_a_document_again(api: Api) -> None:
    """Sub-selections are shared between requests only for documents without directives."""
    pid = api.queries.store.scalar(f"SELECT profile_id FROM {api.queries._t('profiles')} LIMIT 1")
    schema = build_schema(api.config.api)
    query = "query($id: ID!, $e: Boolean!) { profile(id: $id) { id email @include(if: $e) fullName @skip(if: $e) } }"
    plain = "query($id: ID!) { profile(id: $id) { id fullName records { source } } }"
    from resolvers.auth import Principal
    from resolvers.context import Context, make_loaders

    def run(text: str, variables: dict[str, Any]) -> tuple[Any, Context]:
        context = Context(Principal(Role.AGENT, "test:agent"), api.queries, api.config, b"k" * 32, make_loaders(api.queries))
        return asyncio.run(schema.execute(text, variable_values=variables, context_value=context)), context

    with_email, context = run(query, {"id": pid, "e": True})
    assert context.sub_selections is None  # directives: collected per request, as graphql-core does
    without, _ = run(query, {"id": pid, "e": False})
    assert set(with_email.data["profile"]) == {"id", "email"}
    assert set(without.data["profile"]) == {"id", "fullName"}

    first, context_1 = run(plain, {"id": pid})
    second, context_2 = run(plain, {"id": pid})
    assert context_1.sub_selections and context_2.sub_selections is context_1.sub_selections
    assert first.data == second.data and not first.errors


def _answer(result: Any) -> tuple[Any, list[tuple[str, tuple[Any, ...], Any]]]:
    errors = [(e.message, tuple(e.path or ()), e.extensions) for e in result.errors or []]
    return result.data, sorted(errors, key=repr)


def test_a_prepared_text_run_again_is_answered_and_logged_as_the_first_time(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first request with a text goes through strawberry's execute (which prepares
    it); the next ones run graphql-core directly (``_Schema.execute``). Same answers, the
    same masking of unexpected errors, the same log lines."""
    from resolvers import history
    from resolvers.auth import Principal
    from resolvers.context import Context, make_loaders

    schema = build_schema(api.config.api)
    pid = api.queries.store.scalar(f"SELECT profile_id FROM {api.queries._t('profiles')} LIMIT 1")

    def run(text: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        context = Context(Principal(Role.AGENT, "test:agent"), api.queries, api.config, b"k" * 32, make_loaders(api.queries))
        return asyncio.run(schema.execute(text, variable_values=variables, context_value=context, **kwargs))

    card = "query Card($id: ID!) { profile(id: $id) { id fullName traits { name value } effort(days: 30) { contacts } } }"
    refused = "query Refused($id: ID!) { profile(id: $id) { id effort(days: 0) { contacts } } }"
    unexpected = "query Broken($id: ID!) { profile(id: $id) { id traits { name } } }"
    missing = "query Missing($id: ID!) { profile(id: $id) { id } }"

    def broken(*_: Any) -> Any:
        raise RuntimeError("a fault that quotes a customer's value")

    for text, variables in ((card, {"id": pid}), (refused, {"id": pid}), (unexpected, {"id": pid}), (missing, {})):
        with monkeypatch.context() as patch:
            if text is unexpected:
                patch.setattr(history, "_traits", broken)
            caplog.clear()
            first = _answer(run(text, variables))
            first_log = [(r.levelname, r.getMessage().split("\n")[0]) for r in caplog.records]
            assert text in schema.prepared
            caplog.clear()
            again = _answer(run(text, variables))
            again_log = [(r.levelname, r.getMessage().split("\n")[0]) for r in caplog.records]
        assert again == first, text
        assert again_log == first_log, text
    assert not first[1] or first[1][0][0].startswith("Variable '$id'")  # the last: a variable left out
    strawberry_runs: list[str | None] = []
    strawberry_execute = strawberry.Schema.execute

    async def counted(self: Any, query: str | None, *args: Any, **kwargs: Any) -> Any:
        strawberry_runs.append(query)
        return await strawberry_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(strawberry.Schema, "execute", counted)
    assert _answer(run(card, {"id": pid}))[0]["profile"]["traits"]
    assert strawberry_runs == []  # prepared: run directly
    run(card.replace("Card", "Card2"), {"id": pid})
    assert len(strawberry_runs) == 1  # a new text: strawberry's, which prepares it
    refused_errors = _answer(run(refused, {"id": pid}))[1]
    assert refused_errors and refused_errors[0][0].startswith("days must be between")
    with monkeypatch.context() as patch:
        patch.setattr(history, "_traits", broken)
        masked = _answer(run(unexpected, {"id": pid}))[1]
    assert [m for m, _, _ in masked] == ["Unexpected error."]

    from strawberry.schema.exceptions import InvalidOperationTypeError
    from strawberry.types.graphql import OperationType

    mutation = 'mutation { recordEvent(events: "none", event: {}) { created } }'
    for _ in range(2):  # a mutation where only queries are allowed: strawberry's refusal, both times
        with pytest.raises(InvalidOperationTypeError):
            run(mutation, allowed_operation_types={OperationType.QUERY})

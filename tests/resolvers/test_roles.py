"""Who may call what is declared on each field and mutation (``resolvers.permissions.Roles``),
shows in the schema's descriptions, and is what the server enforces: a caller of
another role gets FORBIDDEN before any resolver runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)

from pipelines.config import ApiConfig
from resolvers.auth import Principal, Role
from resolvers.context import Context
from resolvers.permissions import declared_roles
from resolvers.schema import build_schema
from resolvers.types import LEAN, declared_resolver

A, P, S, AD = Role.AGENT, Role.PERSONALIZATION, Role.STEWARD, Role.ADMIN

#: Every restricted field and who may call it. A new restriction, or a change to one,
#: is a decision: make it here too.
RESTRICTED: dict[str, set[Role]] = {
    "Query.searchProfiles": {A, S, AD},
    "Query.reviewQueue": {S},
    "Query.explainMatch": {S},
    "Query.stewardAction": {S, AD},
    "Query.auditLog": {S, AD},
    "Profile.explanation": {S},
    "Mutation.decideCandidate": {S},
    "Mutation.mergeProfiles": {S},
    "Mutation.splitRecord": {S},
    "Mutation.splitRecords": {S},
    "Mutation.undo": {S},
    "Mutation.ingestRecord": {A, S, AD},
    "Mutation.recordEvent": {A, S, AD},
    "Mutation.recordConsent": {A, S},
    "Mutation.eraseProfile": {S, AD},
    "Mutation.unsuppress": {AD},
}


def _fields(schema: Any) -> dict[str, GraphQLField]:
    return {
        f"{gql_type.name}.{name}": gql_field
        for gql_type in schema._schema.type_map.values()
        if isinstance(gql_type, GraphQLObjectType) and not gql_type.name.startswith("__")
        for name, gql_field in gql_type.fields.items()
    }


def _roles(gql_field: GraphQLField) -> set[Role] | None:
    definition, _ = declared_resolver(gql_field)
    assert definition is not None
    roles = declared_roles(definition)
    return None if roles is None else set(roles)


def test_every_mutation_declares_who_may_call_it() -> None:
    schema = build_schema(ApiConfig())
    mutations = {name: f for name, f in _fields(schema).items() if name.startswith("Mutation.")}
    assert mutations
    undeclared = sorted(name for name, f in mutations.items() if not _roles(f))
    assert not undeclared, f"mutations without a Roles(...) declaration: {undeclared}"


def test_the_declared_roles_are_the_restrictions_we_decided() -> None:
    declared = {name: roles for name, f in _fields(build_schema(ApiConfig())).items() if (roles := _roles(f)) is not None}
    assert declared == RESTRICTED


def test_the_schema_docs_name_the_roles_once_however_often_the_schema_is_built() -> None:
    build_schema(ApiConfig())
    fields = _fields(build_schema(ApiConfig()))
    for name, roles in RESTRICTED.items():
        note = "Roles: " + ", ".join(r.value for r in Role if r in roles) + "."
        description = fields[name].description or ""
        assert description.endswith(note) and description.count("Roles:") == 1, (name, description)
    sdl = build_schema(ApiConfig()).as_str()
    assert sdl.count("Roles:") == len(RESTRICTED)


def test_a_restricted_field_keeps_the_resolver_that_checks_its_roles() -> None:
    """``lean`` resolvers skip strawberry's extensions: a restricted field must not get one."""
    fields = _fields(build_schema(ApiConfig()))
    for name in RESTRICTED:
        assert not getattr(fields[name].resolve, LEAN, False), name


class _NoStore:
    """Stands in for the store, config and loaders: any use of it says a resolver ran."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.used.append(name)
        raise AssertionError(f"a resolver ran ({name})")


def _literal(gql_type: GraphQLInputType) -> str:
    """A valid literal of an argument's type (its value does not matter here)."""
    if isinstance(gql_type, GraphQLNonNull):
        return _literal(gql_type.of_type)
    if isinstance(gql_type, GraphQLList):
        return f"[{_literal(gql_type.of_type)}]"
    if isinstance(gql_type, GraphQLEnumType):
        return next(iter(gql_type.values))
    assert isinstance(gql_type, GraphQLScalarType), gql_type
    return {"Int": "1", "Float": "1.0", "Boolean": "true", "JSON": "{}"}.get(gql_type.name, '"x"')


def _operation(name: str, gql_field: GraphQLField) -> str:
    type_name, field_name = name.split(".")
    args = ", ".join(f"{arg}: {_literal(a.type)}" for arg, a in gql_field.args.items() if isinstance(a.type, GraphQLNonNull))
    call = f"{field_name}({args})" if args else field_name
    returned = get_named_type(gql_field.type)
    selection = " { __typename }" if isinstance(returned, GraphQLObjectType) else ""
    return f"mutation {{ {call}{selection} }}" if type_name == "Mutation" else f"{{ {call}{selection} }}"


def _run(schema: Any, query: str, role: Role) -> tuple[Any, list[str]]:
    """The result, and what of the store, config and loaders the resolver used."""
    nothing: Any = _NoStore()
    context = Context(Principal(role, f"test:{role.value}"), nothing, nothing, b"k" * 32, nothing)
    return asyncio.run(schema.execute(query, context_value=context)), nothing.used


@pytest.mark.parametrize("name", sorted(n for n in RESTRICTED if n.split(".")[0] in ("Query", "Mutation")))
def test_a_forbidden_call_is_refused_with_forbidden_before_its_resolver_runs(name: str) -> None:
    schema = build_schema(ApiConfig())
    allowed = RESTRICTED[name]
    query = _operation(name, _fields(schema)[name])
    for role in Role:
        result, used = _run(schema, query, role)
        assert result.errors, (name, role)
        error = result.errors[0]
        if role in allowed:  # past the check, into the resolver, which finds no store
            assert used, (name, role, error)
            assert error.message == "Unexpected error.", (name, role, error)
        else:
            assert not used, (name, role, used)
            assert error.extensions["code"] == "FORBIDDEN", (name, role, error)
            names = " or ".join(r.value for r in Role if r in allowed)
            assert error.message == f"only the {names} role may do this (you are {role.value})", error.message

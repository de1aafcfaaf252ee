"""The strawberry internals the resolvers still rely on, where strawberry has no public
equivalent: each test fails, saying what changed, when a strawberry upgrade changes
one's shape. Keep strawberry-graphql pinned to the minor versions these pass on.

- ``Info._raw_info`` (``resolvers.projection.raw_info``): graphql-core's resolve info,
  for the field's nodes and the document's fragments. strawberry's public ``Info`` has
  neither; its ``selected_fields`` converts the whole selection on every call.
- ``Schema._schema`` (``resolvers.schema._install_lean_resolvers``): the graphql-core
  schema, to give graphql-core the ``lean`` resolvers themselves.
- ``GraphQLCoreConverter.DEFINITION_BACKREF`` and ``StrawberryResolver.wrapped_func``
  (``resolvers.types.declared_resolver``): from a graphql-core field to its strawberry
  definition and the function its resolver was declared with.

- What strawberry does with what an extension's public hooks set
  (``resolvers.schema._Prepared``): a ``graphql_document`` set in ``on_parse`` is not
  parsed again, and ``pre_execution_errors`` set in ``on_validate`` are not validated
  again, as strawberry's own ParserCache and ValidationCache rely on.

Error masking no longer overrides ``MaskErrors._process_result``: it is in our own
extension, on the public ``on_operation`` hook."""

from __future__ import annotations

import asyncio
import dataclasses
from importlib.metadata import version
from typing import Any

import pytest
import strawberry
import strawberry.schema.schema as executing
from graphql import FieldNode, FragmentDefinitionNode, GraphQLObjectType, GraphQLSchema
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info

from pipelines.config import ApiConfig
from resolvers.projection import raw_info
from resolvers.schema import _Prepared, build_schema
from resolvers.types import declared_resolver

UPGRADE = f"strawberry-graphql {version('strawberry-graphql')}: "


def _marked(root: Any, info: Info) -> str:
    return "lean"


@strawberry.type
class Pet:
    name: str = "rex"


@strawberry.type
class Probe:
    seen: strawberry.Private[list[Any]]

    @strawberry.field
    def pet(self, info: Info) -> Pet:
        self.seen.append(raw_info(info))
        return Pet()

    marked: str = strawberry.field(resolver=_marked)


def test_info_carries_graphql_cores_resolve_info_as_raw_info() -> None:
    names = {f.name for f in dataclasses.fields(Info)}
    assert "_raw_info" in names, UPGRADE + f"strawberry.types.Info has no _raw_info field any more (fields: {sorted(names)})"
    seen: list[Any] = []
    schema = strawberry.Schema(query=Probe)
    query = "query { pet { ...P } } fragment P on Pet { name }"
    result = asyncio.run(schema.execute(query, root_value=Probe(seen=seen)))
    assert result.errors is None, result.errors
    (raw,) = seen
    # strawberry's own NamedTuple with GraphQLResolveInfo's fields (0.341), or graphql-core's
    shape = {"field_nodes", "fragments", "schema"}
    missing = sorted(name for name in shape if not hasattr(raw, name))
    assert not missing, UPGRADE + f"Info._raw_info ({type(raw).__qualname__}) has no {missing}"
    assert [type(n) for n in raw.field_nodes] == [FieldNode], UPGRADE + f"Info._raw_info.field_nodes is {raw.field_nodes!r}"
    assert raw.field_nodes[0].name.value == "pet", UPGRADE + "Info._raw_info.field_nodes are not the resolved field's nodes"
    assert isinstance(raw.fragments.get("P"), FragmentDefinitionNode), UPGRADE + f"Info._raw_info.fragments is {raw.fragments!r}"
    assert isinstance(raw.schema, GraphQLSchema), UPGRADE + f"Info._raw_info.schema is a {type(raw.schema)}"
    assert isinstance(raw.schema.type_map.get("Pet"), GraphQLObjectType), UPGRADE + "Info._raw_info.schema is not the executed schema"


def test_the_strawberry_schema_holds_graphql_cores_schema_as_schema() -> None:
    schema = build_schema(ApiConfig())
    inner = getattr(schema, "_schema", None)
    assert isinstance(inner, GraphQLSchema), UPGRADE + f"strawberry.Schema._schema is {type(inner)}, not a GraphQLSchema"
    query = inner.type_map.get("Query")
    assert isinstance(query, GraphQLObjectType) and "profile" in query.fields, UPGRADE + "Schema._schema is not the served schema"


def test_a_graphql_core_field_leads_back_to_its_strawberry_definition_and_function() -> None:
    assert isinstance(getattr(GraphQLCoreConverter, "DEFINITION_BACKREF", None), str), (
        UPGRADE + "GraphQLCoreConverter.DEFINITION_BACKREF is gone"
    )
    schema = strawberry.Schema(query=Probe)
    gql_field = schema._schema.type_map["Probe"].fields["marked"]  # type: ignore[union-attr]
    definition, func = declared_resolver(gql_field)
    assert definition is not None, UPGRADE + "a graphql-core field's extensions no longer hold its strawberry field"
    assert func is _marked, UPGRADE + f"StrawberryField.base_resolver.wrapped_func is {func!r}, not the declared function"


def test_the_prepared_documents_use_only_public_extension_hooks() -> None:
    own = {name for name in vars(_Prepared) if not name.startswith("__") and callable(getattr(_Prepared, name))}
    assert own == {"on_operation", "on_parse", "on_validate"}, f"_Prepared overrides more than public hooks: {sorted(own)}"


def test_a_document_an_extension_parsed_and_validated_is_neither_parsed_nor_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = build_schema(ApiConfig())
    query = "query Probe { __typename }"
    first = asyncio.run(schema.execute(query))  # prepared here
    assert first.errors is None and first.data == {"__typename": "Query"}, first.errors

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("strawberry parsed or validated a document its extension had prepared")

    for name in ("parse", "validate_document"):
        assert hasattr(executing, name), UPGRADE + f"{executing.__name__} no longer calls {name}"
        monkeypatch.setattr(executing, name, refused)
    second = asyncio.run(schema.execute(query))
    assert (second.data, second.errors) == (first.data, first.errors)

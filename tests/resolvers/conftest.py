"""A copy of the demo store per test module, served through the real schema."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipelines.config import Config, load_config
from profiles.store import ProfileQueries, Store
from resolvers.auth import Principal, Role
from resolvers.context import Context, make_loaders
from resolvers.schema import build_schema
from tests.conftest import DemoRun


@dataclass
class Api:
    config: Config
    store: Store
    queries: ProfileQueries
    last_context: Context | None = None  # the last request's (what it withheld, what it read)

    def run(self, query: str, role: Role = Role.AGENT, variables: dict[str, Any] | None = None) -> Any:
        schema = build_schema(self.config.api)
        context = Context(Principal(role, f"test:{role.value}"), self.queries, self.config, b"k" * 32, make_loaders(self.queries))
        self.last_context = context
        result = asyncio.run(schema.execute(query, variable_values=variables, context_value=context))
        event = context.audit_event(None)
        if event:
            self.queries.append_audit([event])
        return result


@pytest.fixture(scope="module")
def api(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    target = tmp_path_factory.mktemp("api") / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    store = Store.open(config.store_path)
    yield Api(config, store, ProfileQueries(store))
    store.close()

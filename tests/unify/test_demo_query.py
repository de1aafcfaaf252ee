"""The query `unify demo` prints finds the demo caller by their phone number written as
no source has it, and shows what they did in at least two channels and how hard it was."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import load_config
from pipelines.demo import generate
from profiles.store import ProfileQueries, Store
from resolvers.auth import Principal, Role
from resolvers.context import Context, make_loaders
from resolvers.schema import build_schema
from unify.cli import demo_query

pytestmark = pytest.mark.slow  # a demo run of its own, with events up to today as `unify demo` makes them


def test_the_printed_query_shows_the_callers_timeline_across_channels_and_effort(tmp_path: Path) -> None:
    manifest = generate(tmp_path / "demo", records=3_000, seed=5, events_until=date.today())
    config = load_config(manifest.config_path)
    run_pipeline(config)
    phone, _person = manifest.demo_phone_lookup
    with Store.open(config.store_path) as store:
        queries = ProfileQueries(store)
        context = Context(Principal(Role.AGENT, "test:agent"), queries, config, b"k" * 32, make_loaders(queries))
        result = asyncio.run(build_schema(config.api).execute(demo_query(phone), context_value=context))
    assert result.errors is None, result.errors
    profile = result.data["profileByIdentifier"]
    channels = {n["channel"] for n in profile["timeline"]["nodes"] if n["channel"]}
    assert len(channels) >= 2, profile["timeline"]
    effort = profile["effort"]
    assert effort["contacts"] >= 2 and effort["repeatContacts"] >= 1 and effort["transfers"] >= 1, effort
    assert profile["traits"]

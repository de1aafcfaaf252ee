"""The schema is a contract: the committed SDL must match the code."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import ApiConfig
from resolvers.schema import build_schema

SDL = Path(__file__).resolve().parents[2] / "docs" / "schema.graphql"


def test_committed_sdl_matches_the_schema() -> None:
    assert SDL.read_text(encoding="utf-8").strip() == build_schema(ApiConfig()).as_str().strip(), (
        "docs/schema.graphql is out of date: run `python -m resolvers.schema > docs/schema.graphql`"
    )

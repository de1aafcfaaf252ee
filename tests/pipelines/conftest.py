"""Fixtures of the pipeline tests that read the published small demo run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from profiles.store import ProfileQueries, Store
from tests.conftest import DemoRun


@pytest.fixture(scope="module")
def store(small_demo: DemoRun) -> Iterator[Store]:
    """The small demo's store, read-only."""
    with Store.open(small_demo.store_path, read_only=True) as store:
        yield store


@pytest.fixture(scope="module")
def model(store: Store) -> dict[str, Any]:
    """The model the small demo's published run scored with."""
    return ProfileQueries(store).published_model()

"""No silo lost in silence: a source that arrives empty or much smaller than in the
published run stops the run before it publishes, naming the source and the counts, until
the operator accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_config
from profiles.store import Store, current_run
from tests.unify.test_cli import _unify

pytestmark = pytest.mark.slow  # real servers or larger data: `make test`, not `make test-fast`


@pytest.fixture
def demo(demo_copy: Path) -> Path:
    return demo_copy


def _crm_records(config: Path) -> tuple[str | None, int]:
    with Store.open(load_config(config).store_path, read_only=True) as store:
        return current_run(store), int(store.scalar("SELECT count(*) FROM records WHERE source = 'crm'"))


def test_a_crm_export_with_only_its_header_is_refused_until_accepted(demo: Path) -> None:
    run_before, crm_before = _crm_records(demo)
    assert crm_before > 0
    crm = demo.parent / "data" / "crm.csv"
    crm.write_text(crm.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")

    refused = _unify("run", "--config", str(demo))
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert message.startswith("error: refusing to publish: source crm has no records")
    assert f"the published run has {crm_before:,}" in message and "--accept-shrink crm" in message
    assert "Traceback" not in refused.stderr + refused.stdout
    assert _crm_records(demo) == (run_before, crm_before), "the refused run changed what is served"

    accepted = _unify("run", "--config", str(demo), "--accept-shrink", "crm")
    assert accepted.returncode == 0, accepted.stderr
    run_after, crm_after = _crm_records(demo)
    assert run_after != run_before and crm_after == 0
    assert f"{crm_before:,} (-100.0%)" in accepted.stdout  # the summary shows the count against the previous run


def test_a_source_a_third_smaller_is_refused_and_a_small_change_is_not(demo: Path) -> None:
    _, crm_before = _crm_records(demo)
    crm = demo.parent / "data" / "crm.csv"
    lines = crm.read_text(encoding="utf-8").splitlines()
    crm.write_text("\n".join(lines[: 1 + (len(lines) - 1) * 2 // 3]) + "\n", encoding="utf-8")
    refused = _unify("run", "--config", str(demo))
    assert refused.returncode == 1
    assert "source crm has" in refused.stderr and f"against {crm_before:,} in the published run" in refused.stderr
    assert "run.max_shrink" in refused.stderr

    crm.write_text("\n".join(lines[: len(lines) - 5]) + "\n", encoding="utf-8")  # five fewer: fine
    assert _unify("run", "--config", str(demo)).returncode == 0
    unknown = _unify("run", "--config", str(demo), "--accept-shrink", "nosuchsource")
    assert unknown.returncode == 1 and "names no configured source: nosuchsource" in unknown.stderr

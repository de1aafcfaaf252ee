"""A batch run on a store a server serves (the run is the server's guest): what stewards
and live ingests do while it runs is applied to the run it publishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import Config, load_config
from pipelines.live.ingest import LiveIngest
from profiles.store import Steward, Store, current_run
from tests.pipelines.batch.test_steward_reruns import _profile_of, _stewardship, _triangle

pytestmark = pytest.mark.slow  # real servers or larger data: `make test`, not `make test-fast`

BY = Steward("test-steward", "steward")


@pytest.fixture
def config(demo_copy: Path) -> Config:
    return load_config(demo_copy)


def test_steward_actions_and_live_records_during_a_run_reach_the_published_run(config: Config) -> None:
    threshold = config.matching.match_threshold
    host = Store.open(config.store_path)
    host.host()  # as `unify serve` does: the run below opens a guest of it
    try:
        before = current_run(host)
        pair_id, a, b, _ = _triangle(host, threshold)
        crm = next(s for s in config.sources if s.name == "crm")
        row = host.dicts("SELECT * FROM records WHERE record_key = ?", [a])[0]
        live_row = {crm.id: "DURING-RUN-1", crm.fields["first_name"]: "Quirijn", crm.fields["last_name"]: "Zwanenburg"}  # type: ignore[index]
        done: list[str] = []

        def meanwhile(stage: str) -> None:
            # after the run has read the decisions and the live log, before it publishes
            if stage == "survivorship" and not done:
                action = _stewardship(host, config).decide(pair_id, "different", "decided while the run ran", BY)
                done.append(action.action_id)
                report = LiveIngest(host, config).ingest("crm", BY, rows=[live_row])
                done.append(report.records[0].record_key)

        summary = run_pipeline(config, on_stage=meanwhile)
        assert len(done) == 2, "the stage callback never ran"
        assert current_run(host) == summary.run_id != before
        pa, pb = _profile_of(host, a, b)
        assert pa != pb, "the DIFFERENT decided during the run was lost by the run it published"
        assert summary.steward_reapplied >= 1
        assert summary.live_reapplied == 1
        assert host.scalar("SELECT count(*) FROM records WHERE record_key = ?", [done[1]]) == 1
        assert row["profile_id"]  # the record was served before the run
        # and the decision holds in the next run too (it is a constraint)
        run_pipeline(config)
        pa, pb = _profile_of(host, a, b)
        assert pa != pb
    finally:
        host.close()

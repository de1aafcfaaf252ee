"""The batch run as a whole: a failure at any stage leaves the previous run serving and
is recorded; the saved model is reused unless a retrain is asked for."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from pipelines.batch import run as run_module
from pipelines.batch.run import run_pipeline
from pipelines.config import load_config
from profiles.errors import ConfigError


def _profiles(store: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute("SELECT record_key, profile_id FROM membership ORDER BY 1").fetchall()


def _last_run(store: Path) -> tuple[str, str | None, int]:
    """The latest run's status and error, and how many run schemas the store holds."""
    with duckdb.connect(str(store), read_only=True) as con:
        status, error = con.execute("SELECT status, summary->>'error' FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()[0]
        schemas = {r[0] for r in con.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()}
    return status, error, sum(s.startswith("run_") for s in schemas)


def test_a_failing_stage_leaves_the_previous_run_serving(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(demo_copy)
    before = _profiles(config.store_path)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_module, "assign_profiles", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run_pipeline(config)
    assert _profiles(config.store_path) == before
    assert _last_run(config.store_path) == ("failed", "RuntimeError: disk full", 1)


def test_a_failing_early_write_fails_the_run(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records and identifiers are written while linking, on a thread of their own: their
    failure fails the run like any stage's, after linking and clustering went on."""
    config = load_config(demo_copy)
    before = _profiles(config.store_path)
    broken = dict(run_module.EARLY_TABLES)
    broken["identifiers"] = ("SELECT error('disk full') AS value", broken["identifiers"][1])
    monkeypatch.setattr(run_module, "EARLY_TABLES", broken)
    with pytest.raises(Exception, match="disk full"):
        run_pipeline(config)
    assert _profiles(config.store_path) == before
    status, error, run_schemas = _last_run(config.store_path)
    assert (status, run_schemas) == ("failed", 1) and "disk full" in str(error)


def test_served_records_and_identifiers_carry_their_profile(demo_copy: Path) -> None:
    """Written before clustering and given their profile ids after it: every served record
    and identifier row has its record's profile and match probability, none is missing."""
    config = load_config(demo_copy)
    summary = run_pipeline(config)
    assert summary.seconds["write during link: records"] > 0
    with duckdb.connect(str(config.store_path), read_only=True) as con:
        records, identifiers = con.execute(
            """SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM identifiers i JOIN records r USING (record_key))"""
        ).fetchall()[0]
        wrong = con.execute(
            """SELECT (SELECT count(*) FROM records r FULL JOIN membership m USING (record_key)
                       WHERE r.profile_id IS DISTINCT FROM m.profile_id
                          OR r.match_probability IS DISTINCT FROM m.match_probability),
                      (SELECT count(*) FROM identifiers i LEFT JOIN membership m USING (record_key)
                       WHERE i.profile_id IS DISTINCT FROM m.profile_id)"""
        ).fetchall()[0]
        listed = con.execute("SELECT sum(len(identifiers)) FROM records").fetchall()[0][0]
    assert records == summary.records
    assert identifiers == listed > 0  # every identifier of a record's list is served, none without its record
    assert wrong == (0, 0)


@pytest.mark.slow
def test_saved_model_is_reused_and_retrain_trains_again(demo_copy: Path) -> None:
    config = load_config(demo_copy)
    model = config.model_path.read_text(encoding="utf-8")
    summary = run_pipeline(config)
    assert not summary.model_trained
    assert config.model_path.read_text(encoding="utf-8") == model
    summary = run_pipeline(config, retrain=True)
    assert summary.model_trained
    with duckdb.connect(str(config.store_path), read_only=True) as con:
        kept = con.execute("SELECT model::VARCHAR FROM runs WHERE status = 'published'").fetchall()[0][0]
    assert kept is not None and '"comparisons"' in kept, "the run keeps the exact model it scored with"


def test_a_model_for_other_fields_is_refused(demo_copy: Path) -> None:
    unmapped = re.sub(r"(?m)^email = .*\n", "", demo_copy.read_text(encoding="utf-8"))
    demo_copy.write_text(unmapped, encoding="utf-8")
    with pytest.raises(ConfigError, match="run `unify run --retrain`"):
        run_pipeline(load_config(demo_copy))

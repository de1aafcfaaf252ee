"""Steward decisions stick: a batch run after them reproduces them, even when the model
still links the records (directly or through a third record)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import Config, load_config
from profiles.store import ProfileQueries, Steward, Stewardship, Store
from tests.conftest import DemoRun

BY = Steward("test-steward", "steward")


@pytest.fixture
def config(small_demo: DemoRun, tmp_path: Path) -> Config:
    target = tmp_path / "demo"
    shutil.copytree(small_demo.manifest.out_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    return load_config(target / "unify.toml")


def _stewardship(store: Store, config: Config) -> Stewardship:
    return Stewardship(store, **config.stewardship_settings())


def _profile_of(store: Store, *keys: str) -> list[str]:
    found = dict(store.rows(f"SELECT record_key, profile_id FROM records WHERE record_key IN ({', '.join('?' * len(keys))})", list(keys)))
    return [found[k] for k in keys]


def _triangle(store: Store, threshold: float) -> tuple[str, str, str, str]:
    """(pair id of a-b, a, b, c): three records of one profile, every pair linked above the threshold."""
    rows = store.rows(
        """SELECT p.pair_id, p.record_key_l, p.record_key_r, x.record_key_r
           FROM pairs p
           JOIN pairs x ON x.record_key_l = p.record_key_l AND x.record_key_r NOT IN (p.record_key_l, p.record_key_r)
           JOIN pairs y ON y.record_key_l = least(p.record_key_r, x.record_key_r) AND y.record_key_r = greatest(p.record_key_r, x.record_key_r)
           WHERE p.match_probability >= ? AND x.match_probability >= ? AND y.match_probability >= ?
             AND p.profile_id_l = p.profile_id_r
           ORDER BY p.pair_id LIMIT 1""",
        [threshold] * 3,
    )
    assert rows, "the demo has no profile of three mutually linked records"
    return rows[0]


def test_different_stays_apart_through_a_rerun_even_when_a_third_record_links_both(config: Config) -> None:
    threshold = config.matching.match_threshold
    with Store.open(config.store_path) as store:
        pair_id, a, b, c = _triangle(store, threshold)
        assert len(set(_profile_of(store, a, b, c))) == 1
        action = _stewardship(store, config).decide(pair_id, "different", "two people at one address", BY)
        pa, pb = _profile_of(store, a, b)
        assert pa != pb and len(action.profiles_after) == 2

    summary = run_pipeline(config)

    with Store.open(config.store_path) as store:
        pa, pb, pc = _profile_of(store, a, b, c)
        assert pa != pb, "a rerun joined records a steward decided are different"
        assert pc in (pa, pb)
        # the model still links c to both, strongly: only the constraint keeps them apart
        links = store.rows(
            "SELECT count(*) FROM pairs WHERE match_probability >= ? AND ((record_key_l, record_key_r) IN ((?, ?), (?, ?)))",
            [threshold, *sorted((a, c)), *sorted((b, c))],
        )
        assert links[0][0] == 2
        assert not store.rows("SELECT 1 FROM review_queue WHERE pair_id = ?", [pair_id]), "a decided pair was queued again"
    assert summary.clusters_split >= 1


def test_merge_stays_one_profile_through_a_rerun_and_the_old_id_redirects(config: Config) -> None:
    with Store.open(config.store_path) as store:
        ids = [r[0] for r in store.rows("SELECT profile_id FROM profiles WHERE record_count >= 2 ORDER BY profile_id LIMIT 2")]
        action = _stewardship(store, config).merge(ids, "same customer, two accounts", BY)
        (survivor,) = action.profiles_after
        (retired,) = [i for i in ids if i != survivor]
        members = sorted(r[0] for r in store.rows("SELECT record_key FROM records WHERE profile_id = ?", [survivor]))
        assert len(members) >= 4

    run_pipeline(config)

    with Store.open(config.store_path) as store:
        after = {r[0] for r in store.rows(f"SELECT profile_id FROM records WHERE record_key IN ({', '.join('?' * len(members))})", members)}
        assert after == {survivor}, "a rerun split a steward's merge"
        resolved = ProfileQueries(store).resolve([retired])[retired]
        assert resolved.profile_id == survivor and resolved.redirected

"""Real-time recognition on real demo files: 90% of the records by batch, the other 10%
ingested one at a time, compared with a batch run on everything; plus updates, merges,
scores equal to the batch's, and ingests during a batch run."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.batch.run import run_pipeline
from pipelines.config import Config, load_config
from pipelines.demo import DemoManifest, generate
from pipelines.live.ingest import LiveIngest
from profiles import survivorship
from profiles.store import ProfileQueries, Steward, Store
from profiles.tuning import TUNING
from tests.accuracy import membership, pairwise

pytestmark = pytest.mark.slow  # a demo split and run of its own (~1 min): `make test`, not `make test-fast`

BY = Steward("test-ingest", "agent")
HOLDOUT_EVERY = 10  # every 10th record of every source is held out of the batch


@dataclass(frozen=True)
class Split:
    manifest: DemoManifest
    batch: Config  # the batch run on 90%
    full: Config  # the batch run on 100%
    held_out: dict[str, list[dict[str, Any]]]  # source -> rows as the source wrote them
    held_files: dict[str, Path]  # source -> its held-out rows as a file in its own format
    bulk: Config  # a copy of the batch run on 90%, for bulk ingests


def _rows(path: Path) -> tuple[list[str], list[Any]]:
    """(header lines, records) of a demo source file, records in file order."""
    if path.suffix in (".csv", ".tsv"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        return lines[:1], lines[1:]
    if path.suffix == ".ndjson":
        return [], path.read_text(encoding="utf-8").splitlines(keepends=True)
    return [], pq.read_table(path).to_pylist()


def _as_dict(path: Path, header: list[str], row: Any) -> dict[str, Any] | None:
    if path.suffix in (".csv", ".tsv"):
        parsed = list(csv.DictReader([header[0], row], delimiter="\t" if path.suffix == ".tsv" else ","))
        # a row with the wrong number of columns is no record a system could send
        return dict(parsed[0]) if parsed and None not in parsed[0] and None not in parsed[0].values() else None
    if path.suffix == ".ndjson":
        try:
            value = json.loads(row)
        except json.JSONDecodeError:
            return {"_unparseable": row}
        return value if isinstance(value, dict) else None
    return dict(row)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Split:
    root = tmp_path_factory.mktemp("live")
    manifest = generate(root / "full", records=6_000, seed=23)
    shutil.copytree(manifest.out_dir, root / "batch")
    held: dict[str, list[dict[str, Any]]] = {}
    held_files: dict[str, Path] = {}
    for name, path in manifest.source_paths.items():
        target = root / "batch" / path.relative_to(manifest.out_dir)
        header, rows = _rows(path)
        kept = [r for i, r in enumerate(rows) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
        out = [r for i, r in enumerate(rows) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            pq.write_table(table.from_pylist(kept, schema=table.schema), target)
        else:
            target.write_text("".join(header + kept), encoding="utf-8")
        held[name] = [d for r in out if (d := _as_dict(path, header, r)) is not None]
        held_files[name] = root / "held" / path.name
        held_files[name].parent.mkdir(exist_ok=True)
        if path.suffix == ".parquet":
            pq.write_table(table.from_pylist(out, schema=table.schema), held_files[name])
        else:
            held_files[name].write_text("".join(header + out), encoding="utf-8")
    batch, full = load_config(root / "batch" / "unify.toml"), load_config(manifest.config_path)
    run_pipeline(batch)
    shutil.copytree(root / "batch", root / "bulk", ignore=shutil.ignore_patterns("*.tmp"))
    shutil.copy(batch.model_path, full.model_path)  # one model for both: the comparison is about clustering
    run_pipeline(full)
    return Split(manifest, batch, full, held, held_files, load_config(root / "bulk" / "unify.toml"))


def _truth(manifest: DemoManifest) -> dict[str, str]:
    table = pq.read_table(manifest.truth_path)
    return {f"{s}:{r}": p for s, r, p in zip(table["source"].to_pylist(), table["record_id"].to_pylist(), table["person_id"].to_pylist())}


def _same_profile_pairs(profiles: dict[str, str], keys: set[str]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(profiles[k], []).append(k)
    return {p for g in groups.values() for p in combinations(sorted(g), 2)}


@pytest.fixture(scope="module")
def ingested_one_by_one(split: Split) -> Iterator[Path]:
    store_path = split.batch.store_path
    with Store.open(store_path) as store:
        live = LiveIngest(store, split.batch)
        for source, rows in split.held_out.items():
            for row in rows:
                live.ingest(source, BY, rows=[row])
    yield store_path


def test_one_at_a_time_agrees_with_a_full_batch_run(split: Split, ingested_one_by_one: Path) -> None:
    truth = _truth(split.manifest)
    live, batch = membership(ingested_one_by_one), membership(split.full.store_path)
    assert set(live) == set(batch), "live ingest lost or invented records"
    keys = set(batch)
    live_pairs, batch_pairs = _same_profile_pairs(live, keys), _same_profile_pairs(batch, keys)
    agreement = len(live_pairs & batch_pairs) / len(live_pairs | batch_pairs)
    assert agreement >= 0.99, f"memberships agree on {agreement:.4f} of the pairs either run put together"
    live_scores, batch_scores = pairwise(truth, live), pairwise(truth, batch)
    print(  # the figures for docs/benchmarks.md (pytest -s)
        f"live vs batch: agreement {agreement:.4f} of {len(live_pairs | batch_pairs)} pairs; "
        f"precision {live_scores.precision:.4f} vs {batch_scores.precision:.4f}, recall {live_scores.recall:.4f} vs {batch_scores.recall:.4f}"
    )
    assert abs(live_scores.precision - batch_scores.precision) <= 0.005
    assert abs(live_scores.recall - batch_scores.recall) <= 0.005
    assert live_scores.precision >= 0.995 and live_scores.recall >= 0.98


def test_a_live_record_s_probability_is_its_strongest_link_in_its_profile(split: Split, ingested_one_by_one: Path) -> None:
    """As a batch run sets it: records and membership agree, and a record's match
    probability is its strongest model link inside its profile (NULL without one)."""
    with Store.open(ingested_one_by_one, read_only=True) as store:
        wrong = store.rows(
            """WITH best AS (
                   SELECT k AS record_key, max(p.match_probability) AS best
                   FROM pairs p, unnest([p.record_key_l, p.record_key_r]) u(k)
                   JOIN records l ON l.record_key = p.record_key_l JOIN records r ON r.record_key = p.record_key_r
                   WHERE l.profile_id = r.profile_id AND p.match_probability >= ? GROUP BY ALL)
               SELECT r.record_key, r.match_probability, m.match_probability, b.best FROM records r
               JOIN membership m USING (record_key) LEFT JOIN best b USING (record_key)
               WHERE r.match_probability IS DISTINCT FROM b.best OR m.match_probability IS DISTINCT FROM r.match_probability
                  OR m.profile_id IS DISTINCT FROM r.profile_id
               LIMIT 5""",
            [split.batch.matching.match_threshold],
        )
        live = store.scalar("SELECT count(*) FROM records WHERE record_key IN (SELECT source || ':' || record_id FROM ingest_log)")
    assert live > 100 and wrong == []


@pytest.mark.parametrize("mode", ["memory", "memory, scored by DuckDB", "store"])
def test_ingesting_a_record_again_updates_it_and_reproduces_the_batch_scores(
    split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Candidates and term frequencies from the in-memory index and pairs scored row-wise
    in Python (or by DuckDB, as a record with hundreds of candidates is), or everything
    by joins in the store: the batch's scores either way."""
    if "DuckDB" in mode:
        monkeypatch.setattr(TUNING, "rowwise_max", 0)
    target = tmp_path / "full"
    shutil.copytree(split.full.base_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    with Store.open(config.store_path) as store:
        key, pid = store.rows(
            """SELECT record_key, profile_id FROM records WHERE source = 'crm'
               AND record_key IN (SELECT record_key_l FROM pairs) ORDER BY record_key LIMIT 1"""
        )[0]
        before = store.rows(
            "SELECT record_key_l, record_key_r, match_weight, match_probability FROM pairs WHERE ? IN (record_key_l, record_key_r) ORDER BY ALL",
            [key],
        )
        records = store.scalar("SELECT count(*) FROM records")
        raw = json.loads(store.scalar("SELECT raw::VARCHAR FROM records WHERE record_key = ?", [key]))
        report = LiveIngest(store, config, in_memory=mode != "store").ingest("crm", BY, rows=[raw])
        (outcome,) = report.records
        assert outcome.status == "updated" and outcome.profile_id == pid
        assert store.scalar("SELECT count(*) FROM records") == records
        after = store.rows(
            "SELECT record_key_l, record_key_r, match_weight, match_probability FROM pairs WHERE ? IN (record_key_l, record_key_r) ORDER BY ALL",
            [key],
        )
        assert [r[:2] for r in after] == [r[:2] for r in before]
        for (_, _, w0, p0), (_, _, w1, p1) in zip(before, after):
            assert w1 == pytest.approx(w0, abs=1e-9) and p1 == pytest.approx(p0, abs=1e-9)


def test_a_record_linking_two_profiles_merges_them_and_an_identity_change_moves_it(split: Split, tmp_path: Path) -> None:
    target = tmp_path / "full"
    shutil.copytree(split.full.base_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    crm = next(s for s in config.sources if s.name == "crm")
    col = {f: c for f, c in crm.fields.items() if isinstance(c, str)}

    def record(rid: str, **values: str) -> dict[str, str]:
        return {crm.id: rid, **{col[f]: v for f, v in values.items()}}

    with Store.open(config.store_path) as store:
        live = LiveIngest(store, config)
        name = {"first_name": "Quirijn", "last_name": "Zwaanswijk"}
        (one,) = live.ingest("crm", BY, rows=[record("LIVE-1", **name, email="q.zwaanswijk@example.nl")]).records
        (two,) = live.ingest("crm", BY, rows=[record("LIVE-2", **name, phone="06-18273645")]).records
        assert one.status == two.status == "new_profile" and one.profile_id != two.profile_id  # only a name in common
        bridge = record("LIVE-3", **name, email="Q.Zwaanswijk@example.nl ", phone="+31 6 1827 3645")
        (three,) = live.ingest("crm", BY, rows=[bridge]).records
        assert three.status == "merged", three
        assert (three.profile_id, three.merged_profiles) == (one.profile_id, [two.profile_id])  # the older id survives
        assert ProfileQueries(store).resolve([two.profile_id])[two.profile_id].profile_id == one.profile_id
        assert store.scalar("SELECT record_count FROM profiles WHERE profile_id = ?", [one.profile_id]) == 3
        audit = json.loads(store.scalar("SELECT detail::VARCHAR FROM audit_log WHERE action = 'ingest' ORDER BY occurred_at DESC LIMIT 1"))
        assert audit["merged"] == {two.profile_id: one.profile_id}

        # the same record again, now with an existing customer's details: it moves there
        other = store.dicts(
            """SELECT profile_id, first_name, last_name, email, phone FROM profiles
               WHERE email IS NOT NULL AND phone IS NOT NULL AND first_name IS NOT NULL ORDER BY profile_id LIMIT 1"""
        )[0]
        moved_row = record("LIVE-3", **{f: other[f] for f in ("first_name", "last_name", "email", "phone")})
        (moved,) = live.ingest("crm", BY, rows=[moved_row]).records
        assert moved.status == "moved" and moved.previous_profile_id == one.profile_id
        assert moved.profile_id == other["profile_id"]
        assert store.scalar("SELECT count(*) FROM records WHERE record_key = 'crm:LIVE-3'") == 1
        # without the record that bridged them, the two are apart again (as a batch run would have them)
        apart = store.rows("SELECT DISTINCT profile_id FROM records WHERE record_key IN ('crm:LIVE-1', 'crm:LIVE-2')")
        assert len(apart) == 2 and (one.profile_id,) in apart


def test_records_ingested_while_a_batch_runs_are_not_lost(split: Split, tmp_path: Path) -> None:
    target = tmp_path / "full"
    shutil.copytree(split.full.base_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    crm = next(s for s in config.sources if s.name == "crm")
    row = {crm.id: "DURING-RUN", crm.fields["first_name"]: "Ingrid", crm.fields["last_name"]: "Tijdens"}  # type: ignore[index]

    def during(stage: str) -> None:
        if stage == "cluster":  # the run has read its sources; the old run still serves
            with Store.open(config.store_path) as other:
                LiveIngest(other, config).ingest("crm", BY, rows=[row])

    summary = run_pipeline(config, on_stage=during)
    assert summary.live_reapplied == 1
    with Store.open(config.store_path) as store:
        assert store.scalar("SELECT count(*) FROM records WHERE record_key = 'crm:DURING-RUN'") == 1
        assert store.scalar("SELECT profile_id FROM records WHERE record_key = 'crm:DURING-RUN'") is not None
    # and the next run takes it from the ingest log (the crm file still does not have it)
    summary = run_pipeline(config)
    assert summary.sources["crm"].live == 1 and summary.live_reapplied == 0
    with Store.open(config.store_path, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM records WHERE record_key = 'crm:DURING-RUN'") == 1


def test_live_ingest_honours_a_steward_different(split: Split, tmp_path: Path) -> None:
    from profiles.store import Stewardship

    target = tmp_path / "full"
    shutil.copytree(split.full.base_dir, target, ignore=shutil.ignore_patterns("*.tmp"))
    config = load_config(target / "unify.toml")
    with Store.open(config.store_path) as store:
        pair_id, a, b = store.rows(
            """SELECT pair_id, record_key_l, record_key_r FROM pairs
               WHERE profile_id_l = profile_id_r AND match_probability > 0.999 AND record_key_l LIKE 'crm:%' ORDER BY pair_id LIMIT 1"""
        )[0]
        Stewardship(store, match_threshold=config.matching.match_threshold, rules={}, default_rule="trust").decide(
            pair_id, "different", "two people", Steward("steward", "steward")
        )
        raw = json.loads(store.scalar("SELECT raw::VARCHAR FROM records WHERE record_key = ?", [a]))
        (again,) = LiveIngest(store, config).ingest("crm", BY, rows=[raw]).records
        assert again.status == "updated"
        pa, pb = (store.scalar("SELECT profile_id FROM records WHERE record_key = ?", [k]) for k in (a, b))
        assert pa != pb, "a live update joined records a steward decided are different"


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _assert_golden_records_are_current(store: Store, config: Config) -> None:
    """Every profile's golden fields and profile row are what survivorship makes of its
    records now: the rows a live ingest updated in place, deleted or inserted included."""
    rules = config.survivorship
    records = store.dicts(f"SELECT {', '.join(survivorship.RECORD_COLUMNS)}, profile_id AS _profile FROM records")
    golden, profile_rows = survivorship.golden_records(
        records, {r["record_key"]: r["_profile"] for r in records}, rules.fields, rules.default
    )

    def rows(table: str, expected: list[dict[str, Any]]) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        columns = store.columns(table)
        stored = {tuple(map(_hashable, r)) for r in store.rows(f"SELECT {', '.join(columns)} FROM {table}")}
        return stored, {tuple(_hashable(e.get(c)) for c in columns) for e in expected}

    for table, expected in (("golden_fields", golden), ("profiles", profile_rows)):
        stored, made = rows(table, expected)
        assert stored == made, f"{table}: {len(stored - made)} stored rows differ from the {len(made - stored)} survivorship makes"


def test_bulk_files_agree_with_records_ingested_one_at_a_time(
    split: Split, ingested_one_by_one: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source's held-out rows as one file (the bulk path: candidates by hash joins,
    stored candidates by one semi-join) give the pairs, scores and profiles that ingesting
    the same rows one at a time gives."""
    monkeypatch.setattr(TUNING, "keys_lookup_max", 20)  # the semi-join, also at this size
    monkeypatch.setattr(TUNING, "few_records", 10)  # golden records by SQL, rewritten by key
    with Store.open(split.bulk.store_path) as store:
        live = LiveIngest(store, split.bulk)
        reports = [live.ingest(source, BY, path=path) for source, path in split.held_files.items()]
        _assert_golden_records_are_current(store, split.bulk)
    ingested = {r.record_key for report in reports for r in report.records if r.status != "quarantined"}
    assert len(ingested) >= 0.95 * sum(len(rows) for rows in split.held_out.values())

    def pairs(path: Path) -> dict[tuple[str, str], float]:
        with Store.open(path, read_only=True) as store:
            rows = store.rows("SELECT record_key_l, record_key_r, match_probability FROM pairs")
        return {(a, b): p for a, b, p in rows if a in ingested or b in ingested}

    bulk, single = pairs(split.bulk.store_path), pairs(ingested_one_by_one)
    assert bulk.keys() == single.keys() and len(bulk) > len(ingested) / 2
    assert all(bulk[k] == pytest.approx(single[k], abs=1e-9) for k in bulk)
    by_bulk, by_single = membership(split.bulk.store_path), membership(ingested_one_by_one)
    assert by_bulk.keys() == by_single.keys()
    bulk_pairs, single_pairs = (_same_profile_pairs(m, set(by_bulk)) for m in (by_bulk, by_single))
    assert len(bulk_pairs & single_pairs) / len(bulk_pairs | single_pairs) >= 0.99
    truth = _truth(split.manifest)
    assert pairwise(truth, by_bulk).precision >= 0.995 and pairwise(truth, by_bulk).recall >= 0.98


def test_candidates_from_memory_agree_with_the_store_through_updates(split: Split, tmp_path: Path) -> None:
    """The same sequence of live records, with candidates from the in-memory index
    (pipelines.live.match_index) and from the store by joins, gives the same pairs, scores,
    review queue and profiles: new records alone and a few at a time (which pair with
    each other), then updates of new and of batch records, whose old values the index
    must no longer pair, and records that match their new values."""
    stores = {}
    for mode in ("memory", "store"):
        shutil.copytree(split.full.base_dir, tmp_path / mode, ignore=shutil.ignore_patterns("*.tmp"))
        stores[mode] = load_config(tmp_path / mode / "unify.toml")
    ids = {s.name: s.id for s in split.full.sources}
    new = [  # held-out people again, under ids the store does not have
        (source, {**row, ids[source]: f"NEW{i}{row[ids[source]]}"})
        for source, rows in sorted(split.held_out.items())
        for i, row in enumerate(rows[:8])
    ]
    with Store.open(stores["store"].store_path, read_only=True) as store:
        stored = [
            (source, json.loads(raw))
            for source, raw in store.rows(
                "SELECT source, raw::VARCHAR FROM records WHERE source IN ('crm', 'webshop') ORDER BY record_key LIMIT 4"
            )
        ]

    def moved(k: int, source: str, row: dict[str, Any]) -> dict[str, Any]:
        """The record under its own id with another held-out person's details."""
        return {**split.held_out[source][20 + k], ids[source]: row[ids[source]]}

    steps: list[list[tuple[str, dict[str, Any]]]] = [[item] for item in new[:20]]
    twin = [(s, {**r, ids[s]: f"TWIN{r[ids[s]]}"}) for s, r in new[24:26]]
    steps += [new[20:24], new[24:28] + twin]  # a few at a time, with two people twice
    steps += [[(s, moved(k, s, r))] for k, (s, r) in enumerate(new[:4] + stored)]  # updates that move
    steps += [[item] for item in new[5:7]]  # updates that stay
    steps += [[(s, {**r, ids[s]: f"AGAIN{r[ids[s]]}"})] for s, r in new[:4]]  # the old values of updated records
    statuses: dict[str, list[str]] = {}
    for mode, config in stores.items():
        with Store.open(config.store_path) as store:
            live = LiveIngest(store, config, in_memory=mode == "memory")
            for step in steps:
                for source in dict.fromkeys(s for s, _ in step):
                    report = live.ingest(source, BY, rows=[r for s, r in step if s == source])
                    statuses.setdefault(mode, []).extend(r.status for r in report.records)
            if mode == "memory":
                assert live._state.index is not None and len(live._state.index) == store.scalar("SELECT count(*) FROM records")

    def state(config: Config) -> tuple[dict[str, float], set[str], set[tuple[str, str]]]:
        with Store.open(config.store_path, read_only=True) as store:
            pairs = dict(store.rows("SELECT pair_id, match_probability FROM pairs"))
            review = {str(p) for (p,) in store.rows("SELECT pair_id FROM review_queue")}
        members = membership(config.store_path)
        return pairs, review, _same_profile_pairs(members, set(members))

    assert statuses["memory"] == statuses["store"]
    assert {"attached", "updated", "moved"} <= set(statuses["memory"]), sorted(set(statuses["memory"]))
    (pairs_m, review_m, together_m), (pairs_s, review_s, together_s) = state(stores["memory"]), state(stores["store"])
    assert pairs_m.keys() == pairs_s.keys()
    assert all(pairs_m[k] == pytest.approx(pairs_s[k], abs=1e-9) for k in pairs_m)
    assert review_m == review_s
    assert together_m == together_s

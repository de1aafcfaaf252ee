"""Orchestrates the demo: population -> records per source -> noise -> files, truth and manifest,
then the events of the same persons (pipelines.demo.events) and the config that reads it all.

One seed drives everything, so the same seed and size give byte-identical files; the events
draw from a stream of their own, so the sources are the same with or without them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.demo import writers
from pipelines.demo.config import config_text
from pipelines.demo.events import DEMO_UNTIL, EVENTS_PER_PERSON, EventsManifest, write_events
from pipelines.demo.noise import Noise, lookup_phone
from pipelines.demo.people import EPOCH_DAY_MAX, EPOCH_DAY_MIN, Population, build_population, unique_numbers
from pipelines.demo.places import CITIES, FOREIGN_CITIES
from pipelines.demo.records import RecordCollector, SourceRecords
from pipelines.demo.sources import SPECS, Rendered, SourceSpec, TrueView, render

SOURCE_WEIGHTS = np.array([1.0, 0.8, 0.55, 0.6])  # crm, webshop, contact_center, loyalty
SOURCES_PER_PERSON = np.array([0.22, 0.40, 0.28, 0.10])  # P(1), P(2), P(3), P(4) sources
DUPLICATE_RATE = 0.03  # persons with a second account in one source
FAMILY_EMAIL_USE = 0.5  # records of a household member that carry the family address
DOUBLE_NAME_SHARE = 0.4  # married records that use 'Partner-Birth' instead of the partner's name
ROW_ERROR_RATE = 0.00025  # per kind (empty id, malformed row)
FIELD_ERROR_RATE = 0.0005  # per field (date_of_birth, email)
_CONTACT = 2  # index of the contact center in SPECS

_ALIAS = {c.name: (c.variants[0] if c.variants else "") for c in CITIES + FOREIGN_CITIES}


@dataclass(frozen=True)
class DemoManifest:
    """What generate() wrote and what it injected, so tests and docs can check against it."""

    out_dir: Path
    config_path: Path
    truth_path: Path
    hard_negatives_path: Path
    source_paths: dict[str, Path]
    records_per_source: dict[str, int]
    persons: int
    injected_row_errors: dict[str, int]
    injected_field_errors: dict[str, dict[str, int]]
    demo_phone_lookup: tuple[str, str]
    """(a caller's mobile as people say it, their person id); with events, that person has a
    recent phone call transferred once and repeated by chat on one topic (and a survey answer
    when they have an address of their own)."""
    events: EventsManifest | None
    """The event files and their truth; None when generated with events_per_person=0."""


def _assign_sources(rng: np.random.Generator, foreign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pick 1-4 distinct sources per person (foreign persons: webshop/contact center) plus duplicates."""
    n = len(foreign)
    k = rng.choice(np.arange(1, 5), size=n, p=SOURCES_PER_PERSON)
    keys = np.log(SOURCE_WEIGHTS)[None, :] + rng.gumbel(size=(n, 4))
    keys[foreign, 0] = -np.inf
    keys[foreign, 3] = -np.inf
    k[foreign] = np.minimum(k[foreign], 2)
    order = np.argsort(-keys, axis=1, kind="stable")
    chosen = np.arange(4)[None, :] < k[:, None]
    person = np.repeat(np.arange(n), 4).reshape(n, 4)[chosen]
    source = order[chosen]
    dup = np.flatnonzero(rng.random(n) < DUPLICATE_RATE)
    person = np.concatenate([person, dup])
    source = np.concatenate([source, order[dup, 0]])
    sort = np.argsort(person, kind="stable")
    return person[sort], source[sort]


def _true_view(pop: Population, person: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> TrueView:
    """Resolve life events against each record's timestamp: old address, birth name, old phone/email."""
    day = ts.astype("datetime64[D]").astype(np.int64)
    moved = (pop.addr_old[person] >= 0) & (day < pop.move_day[person])
    addr = np.where(moved, pop.addr_old[person], pop.addr[person])
    married = day >= pop.married_day[person]
    double = rng.random(len(person)) < DOUBLE_NAME_SHARE
    new_phone = day >= pop.phone_change_day[person]
    new_email = day >= pop.email_change_day[person]
    family = rng.random(len(person)) < FAMILY_EMAIL_USE
    book = pop.addresses
    n = len(person)
    first, particle, surname, email, mobile = [], [], [], [], []
    for j in range(n):
        p = person[j]
        part, core = pop.particle[p], pop.surname[p]
        if married[j]:
            partner = pop.married[p]
            assert partner is not None
            birth = f"{part} {core}".strip()
            part, core = (partner[0], f"{partner[1]}-{birth}") if double[j] else partner
        first.append(pop.first[p])
        particle.append(part)
        surname.append(core)
        fam = pop.family_email[p]
        email.append(fam if fam and family[j] else (pop.email_new[p] if new_email[j] else pop.email[p]))
        mobile.append(pop.mobile_new[p] if new_phone[j] else pop.mobile[p])
    city = [book.city[a] for a in addr]
    # A father and son share name, address and landline: every record of theirs carries
    # the birth date, or nothing in the data could tell them apart (ground truth must be decidable).
    father_son = np.array(sorted({m for kind, a, b in pop.hard_negatives if kind == "father_son" for m in (a, b)}), dtype=np.int64)
    return TrueView(
        dob_required=np.isin(person, father_son),
        person=person,
        ts=ts,
        first=first,
        particle=particle,
        surname=surname,
        dob=pop.dob[person].astype(np.int64),
        email=email,
        calling_code=[pop.calling_code[p] for p in person],
        mobile=mobile,
        landline=[pop.landline[p] for p in person],
        street=[book.street[a] for a in addr],
        house=[book.house[a] for a in addr],
        postcode=[book.postcode[a] for a in addr],
        city=city,
        city_alias=[_ALIAS.get(c, "") for c in city],
        country=[book.country[a] for a in addr],
        addr=addr,
    )


def _ids(spec: SourceSpec, n: int, rng: np.random.Generator) -> list[Any]:
    """Record ids in each system's own shape; rows are written in id order."""
    if spec.name == "loyalty":
        return [str(x) for x in np.sort(unique_numbers(rng, n, 800_000_000_000, 899_999_999_999))]
    seq = np.cumsum(rng.integers(1, 4, size=n))
    if spec.name == "crm":
        return [f"K{x:07d}" for x in seq + 10_000]
    if spec.name == "webshop":
        return [int(x) for x in seq + 100_000]
    return [f"CC-{x:08d}" for x in seq + 1_000_000]


def _inject(spec: SourceSpec, r: Rendered, ids: list[Any], noise: Noise) -> tuple[set[int], set[int], dict[str, int], set[int]]:
    """Bad input: empty ids, malformed rows, impossible dates and invalid emails (disjoint
    rows); returns the empty-id rows, the broken rows, the counts and the invalid-email rows."""
    n = len(ids)
    order = noise.rng.permutation(n)
    pos = 0
    empty: set[int] = set()
    broken: set[int] = set()
    if spec.row_errors and n >= 10:
        k = max(1, round(n * ROW_ERROR_RATE))
        empty = set(order[:k].tolist())
        broken = set(order[k : 2 * k].tolist())
        pos = 2 * k
    for i in empty:
        ids[i] = None if spec.name == "webshop" else ""
    rest = order[pos:]
    dob_col, email_col = spec.fields["date_of_birth"], spec.fields["email"]
    kf = max(1, round(n * FIELD_ERROR_RATE))
    dob_rows = [i for i in rest[: kf * 20].tolist() if r.columns[dob_col][i]][:kf]
    taken = set(dob_rows)
    email_rows = [i for i in rest[: kf * 40].tolist() if r.columns[email_col][i] and i not in taken][:kf]
    for i in dob_rows:
        r.columns[dob_col][i] = noise.invalid_date(int(r.dob_year[i]), spec.date_format)
    for i in email_rows:
        r.columns[email_col][i] = noise.invalid_email(r.columns[email_col][i].strip())
    return empty, broken, {"date_of_birth": len(dob_rows), "email": len(email_rows)}, set(email_rows)


def generate(
    out_dir: Path,
    records: int = 20_000,
    seed: int = 42,
    events_per_person: float = EVENTS_PER_PERSON,
    events_until: dt.date = DEMO_UNTIL,
) -> DemoManifest:
    """Write four messy source files, truth, hard negatives and unify.toml; about `records` rows in all.
    With ``events_per_person`` > 0 also the event files (about that many events per person on
    average, in the three years before ``events_until``), their truth and the life-moment
    truth (pipelines.demo.events). The default day keeps the files the same for a seed; a
    served demo may pass today, so that windows ending now (traits, effort) see events."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_person = float(SOURCES_PER_PERSON @ np.arange(1, 5)) + DUPLICATE_RATE
    pop = build_population(int(records / per_person * 1.12) + 60, rng)
    person, source = _assign_sources(rng, pop.foreign)
    counts = np.bincount(person, minlength=pop.size)
    keep = max(int(np.searchsorted(np.cumsum(counts), records)) + 1, pop.grouped)
    keep = min(keep, pop.size)
    pop.truncate(keep)
    mask = person < keep
    person, source = person[mask], source[mask]
    lo, hi = EPOCH_DAY_MIN * 86_400, (EPOCH_DAY_MAX + 1) * 86_400
    ts = rng.integers(lo, hi, size=len(person)).astype("datetime64[s]")
    # the true view and the rendered rows live only in _write_sources: the events need a
    # few columns of them (SourceRecords), and memory for ten million records
    written = _write_sources(out_dir, seed, pop, source, _true_view(pop, person, ts, rng))
    hn_path = out_dir / "hard_negatives.parquet"
    writers.write_table(
        hn_path,
        {
            "kind": [h[0] for h in pop.hard_negatives],
            "person_a": [pop.person_id[h[1]] for h in pop.hard_negatives],
            "person_b": [pop.person_id[h[2]] for h in pop.hard_negatives],
        },
    )
    phone, featured = written.lookup
    events = None
    if events_per_person > 0:
        events = write_events(out_dir, pop, written.records, seed, events_per_person, featured, events_until)
    config_path = out_dir / "unify.toml"
    config_path.write_text(config_text(events=events is not None), encoding="utf-8")
    return DemoManifest(
        out_dir=out_dir,
        config_path=config_path,
        truth_path=written.truth_path,
        hard_negatives_path=hn_path,
        source_paths=written.paths,
        records_per_source=written.sizes,
        persons=written.persons,
        injected_row_errors=written.row_errors,
        injected_field_errors=written.field_errors,
        demo_phone_lookup=(phone, pop.person_id[featured]),
        events=events,
    )


@dataclass(frozen=True)
class _Written:
    """What _write_sources leaves behind."""

    truth_path: Path
    paths: dict[str, Path]
    sizes: dict[str, int]
    row_errors: dict[str, int]
    field_errors: dict[str, dict[str, int]]
    persons: int
    lookup: tuple[str, int]
    records: SourceRecords


def _write_sources(out_dir: Path, seed: int, pop: Population, source: np.ndarray, view_all: TrueView) -> _Written:
    """Render, break and write each source, and truth.parquet."""
    truth: dict[str, list[str]] = {"source": [], "record_id": [], "person_id": []}
    paths: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    row_errors: dict[str, int] = {}
    field_errors: dict[str, dict[str, int]] = {}
    phone_rows: dict[int, list[tuple[str, int]]] = {}
    collector = RecordCollector()
    for si, spec in enumerate(SPECS):
        noise = Noise(np.random.default_rng([seed, si, 7]))
        sel = np.flatnonzero(source == si)
        sel = sel[noise.rng.permutation(len(sel))]
        view = _subset(view_all, sel)
        if spec.name == "loyalty":  # the only timestamp is the join date: facts are as of that day
            view.ts = view.ts.astype("datetime64[D]").astype("datetime64[s]")
        rendered = render(spec, view, noise)
        ids = _ids(spec, len(sel), noise.rng)
        empty, broken, ferr, bad_emails = _inject(spec, rendered, ids, noise)
        collector.add(si, spec, view, rendered, ids, empty | broken, bad_emails)
        header = spec.columns
        cols = [rendered.columns[c] for c in header[1:]]
        path = out_dir / spec.file
        if spec.name == "crm":
            writers.write_delimited(path, header, ids, cols, ",", broken)
        elif spec.name == "loyalty":
            writers.write_delimited(path, header, ids, cols, "\t", broken)
        elif spec.name == "webshop":
            writers.write_ndjson(path, header, ids, cols, broken)
        else:
            writers.write_parquet(path, header, ids, cols)
        for i, p in enumerate(view.person.tolist()):
            if i in empty or i in broken:
                continue
            truth["source"].append(spec.name)
            truth["record_id"].append(str(ids[i]))
            truth["person_id"].append(pop.person_id[p])
            phone_rows.setdefault(p, []).append((rendered.phone_nsn[i], si))
        paths[spec.name] = path
        sizes[spec.name] = len(sel)
        row_errors[spec.name] = len(empty) + len(broken)
        field_errors[spec.name] = ferr
    truth_path = out_dir / "truth.parquet"
    writers.write_table(truth_path, truth)
    return _Written(
        truth_path=truth_path,
        paths=paths,
        sizes=sizes,
        row_errors=row_errors,
        field_errors=field_errors,
        persons=len(set(truth["person_id"])),
        lookup=_lookup(pop, phone_rows),
        records=collector.build(),
    )


def _subset(v: TrueView, sel: np.ndarray) -> TrueView:
    """The rows of a view that belong to one source, in that source's row order."""
    s = sel.tolist()
    kw: dict[str, Any] = {}
    for name, value in vars(v).items():
        kw[name] = value[sel] if isinstance(value, np.ndarray) else [value[i] for i in s]
    return TrueView(**kw)


def _lookup(pop: Population, phone_rows: dict[int, list[tuple[str, int]]]) -> tuple[str, int]:
    """A caller known to the contact center whose mobile every record shows, spelled as
    people say it, and their person number."""
    best: tuple[str, int] | None = None
    for p in sorted(phone_rows):
        rows = phone_rows[p]
        nsns = {nsn for nsn, _ in rows}
        if (
            len(rows) >= 2
            and pop.calling_code[p] == "31"
            and len(nsns) == 1
            and next(iter(nsns)).startswith("6")
            and any(si == _CONTACT for _, si in rows)
        ):
            return lookup_phone(next(iter(nsns))), p
        if best is None and pop.calling_code[p] == "31":
            mob = [nsn for nsn, _ in rows if nsn.startswith("6")]
            if mob:
                best = (lookup_phone(mob[0]), p)
    if best is None:
        raise ValueError("demo data set too small to pick a phone lookup example")
    return best

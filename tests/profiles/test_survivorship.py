"""Golden records: each field by its rule, lineage kept, the address as one unit."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.config import load_config
from profiles import survivorship
from profiles.model import CANONICAL_FIELDS
from profiles.store import Store
from tests.conftest import DemoRun

RECORDS = [
    # key, source, trust, updated, first_name, first_name_std, last_name, email, street, house_number, postcode, city
    ("crm:1", "crm", 3, "2020-01-01", "J.", "j", "de Vries", "jan@old.nl", "Kerkstraat", "1", "3511 AB", "Utrecht"),
    ("shop:7", "shop", 2, "2023-05-01", "Jan", "jan", "de Vries", "jan@new.nl", "Dorpsweg", "9", "1011 AA", "Amsterdam"),
    ("cc:3", "cc", 1, "2024-02-01", "Jan", "jan", "Vries", "jan@new.nl", None, None, "9999 ZZ", None),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "s.duckdb")
    extra = [f for f in CANONICAL_FIELDS if f not in ("first_name", "last_name", "email", "street", "house_number", "postcode", "city")]
    store.execute(
        "CREATE TABLE records (record_key VARCHAR, source VARCHAR, trust INT, updated_at TIMESTAMP, first_name VARCHAR,"
        " first_name_std VARCHAR, last_name VARCHAR, email VARCHAR, street VARCHAR, house_number VARCHAR, postcode VARCHAR,"
        " city VARCHAR, record_id VARCHAR" + "".join(f", {f} VARCHAR" for f in extra) + ")"
    )
    for row in RECORDS:
        store.execute(
            "INSERT INTO records (record_key, source, trust, updated_at, first_name, first_name_std, last_name, email,"
            " street, house_number, postcode, city, record_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [*row, row[0].split(":")[1]],
        )
    store.execute("CREATE TABLE membership AS SELECT record_key, 'p_1' AS profile_id FROM records")
    return store


def _golden(store: Store, rules: dict[str, str], default: str = "trust") -> dict[str, tuple[str, str, str]]:
    store.execute("CREATE OR REPLACE TABLE golden AS " + survivorship.golden_fields_sql("records", "membership", rules, default))
    return {f: (v, s, r) for f, v, s, r in store.rows("SELECT field, value, source, rule FROM golden")}


def test_trust_wins_but_a_full_first_name_beats_an_initial(store: Store) -> None:
    golden = _golden(store, {})
    assert golden["first_name"] == ("Jan", "shop", "trust")  # crm has more trust but only "J."
    assert golden["last_name"] == ("de Vries", "crm", "trust")
    assert golden["email"] == ("jan@old.nl", "crm", "trust")


def test_rules_per_field(store: Store) -> None:
    golden = _golden(store, {"email": "recent", "last_name": "frequent"})
    assert golden["email"] == ("jan@new.nl", "cc", "recent")
    assert golden["last_name"][0] == "de Vries" and golden["last_name"][2] == "frequent"


def test_the_address_survives_as_one_unit(store: Store) -> None:
    golden = _golden(store, {"address": "recent"})
    # the most recent record (cc) has only a postcode: the most complete recent address wins whole
    parts = {f: golden[f][:2] for f in ("street", "house_number", "postcode", "city")}
    assert parts == {
        "street": ("Dorpsweg", "shop"),
        "house_number": ("9", "shop"),
        "postcode": ("1011 AA", "shop"),
        "city": ("Amsterdam", "shop"),
    }


def test_wide_profile_has_golden_fields_and_summary(store: Store) -> None:
    _golden(store, {})
    store.execute("CREATE TABLE golden_fields AS SELECT * FROM golden")
    store.execute("CREATE TABLE profiles AS " + survivorship.profiles_sql("golden_fields", "records", "membership"))
    row = store.dicts("SELECT * FROM profiles")[0]
    assert row["profile_id"] == "p_1" and row["full_name"] == "Jan de Vries"
    assert row["record_count"] == 3 and row["sources"] == ["cc", "crm", "shop"]
    assert row["street"] == "Kerkstraat"


GOLDEN_TYPES = "profile_id VARCHAR, field VARCHAR, value VARCHAR, source VARCHAR, record_id VARCHAR, rule VARCHAR, updated_at TIMESTAMP"


@pytest.mark.parametrize(
    ("default", "rules"),
    [
        (None, None),  # the demo's own configuration: held to what its batch run published
        ("frequent", {"email": "recent", "address": "frequent", "phone": "trust", "first_name": "recent"}),
        ("recent", {"address": "trust", "last_name": "frequent"}),
    ],
)
def test_python_golden_records_equal_the_sql(small_demo: DemoRun, default: str | None, rules: dict[str, str] | None) -> None:
    """A steward's merge or a live record rebuilds its profiles' golden records in Python:
    for every profile of the demo they equal what the batch's SQL makes of them."""
    config = load_config(small_demo.manifest.config_path)
    default = default or config.survivorship.default
    rules = rules if rules is not None else dict(config.survivorship.fields)
    with Store.open(small_demo.store_path, read_only=True) as published:
        records = published.arrow(f"SELECT {', '.join(survivorship.RECORD_COLUMNS)} FROM records")
        membership = published.arrow("SELECT record_key, profile_id FROM membership")
    profile_of = dict(zip(membership.column("record_key").to_pylist(), membership.column("profile_id").to_pylist()))
    golden, profiles = survivorship.golden_records(records.to_pylist(), profile_of, rules, default)
    assert len(profiles) == len(set(profile_of.values())) > 1_000
    with Store.scratch() as store:
        store.register("records", records)
        store.register("membership", membership)
        store.execute("CREATE TABLE sql_golden AS " + survivorship.golden_fields_sql("records", "membership", rules, default))
        store.execute("CREATE TABLE sql_profiles AS " + survivorship.profiles_sql("sql_golden", "records", "membership"))
        store.execute(f"CREATE TABLE py_golden ({GOLDEN_TYPES})")
        store.register("g", pa.Table.from_pylist(golden))
        store.execute("INSERT INTO py_golden BY NAME SELECT * FROM g")
        store.execute("CREATE TABLE py_profiles AS SELECT * FROM sql_profiles LIMIT 0")
        store.register("p", pa.Table.from_pylist(profiles))
        store.execute("INSERT INTO py_profiles BY NAME SELECT * FROM p")
        for table in ("golden", "profiles"):
            assert store.scalar(f"SELECT count(*) FROM py_{table}") == store.scalar(f"SELECT count(*) FROM sql_{table}")
            differ = store.rows(
                f"(SELECT * FROM py_{table} EXCEPT ALL SELECT * FROM sql_{table}) UNION ALL "
                f"(SELECT * FROM sql_{table} EXCEPT ALL SELECT * FROM py_{table}) LIMIT 5"
            )
            assert differ == [], f"{table}: {differ}"
        if rules == dict(config.survivorship.fields):  # and the batch run published the same
            with Store.open(small_demo.store_path, read_only=True) as published:
                published_golden = published.arrow("SELECT * FROM golden_fields")
            store.register("published_golden", published_golden)
            assert store.scalar("SELECT count(*) FROM (SELECT * FROM py_golden EXCEPT ALL SELECT * FROM published_golden)") == 0

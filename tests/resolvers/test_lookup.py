"""Recognize a customer by anything they say, in whatever format they say it."""

from __future__ import annotations

import pytest
import strawberry

from pipelines.config import ApiConfig
from resolvers.auth import Role
from resolvers.schema import _selects, build_schema
from resolvers.types import LEAN
from tests.resolvers.conftest import Api

CARD = "{ id fullName email phone dateOfBirth sources records { source recordId } }"


def _a_record(api: Api, where: str) -> dict[str, object]:
    return api.store.dicts(f"SELECT r.*, m.profile_id FROM records r JOIN membership m USING (record_key) WHERE {where} LIMIT 1")[0]


def test_phone_in_any_format_finds_the_profile(api: Api) -> None:
    row = _a_record(
        api,
        "r.phone LIKE '+316%' AND m.profile_id IN (SELECT m2.profile_id FROM membership m2 JOIN identifiers i USING (record_key) WHERE i.kind = 'phone' GROUP BY 1 HAVING count(DISTINCT i.value) = 1) AND r.phone NOT IN (SELECT value FROM identifiers i JOIN membership m3 USING (record_key) GROUP BY value HAVING count(DISTINCT m3.profile_id) > 1)",
    )
    national = "06" + str(row["phone"])[4:]
    for written in (f"{national[:2]}-{national[2:]}", f"+31 6 {national[2:6]} {national[6:]}", "0031" + national[1:], national):
        result = api.run(f'{{ profileByIdentifier(kind: "phone", value: "{written}") {CARD} }}')
        assert result.errors is None, result.errors
        assert result.data["profileByIdentifier"]["id"] == row["profile_id"], written


def test_email_ignores_case_and_whitespace(api: Api) -> None:
    row = _a_record(api, "r.email IS NOT NULL AND r.email NOT LIKE 'fam.%'")
    result = api.run(f'{{ profileByIdentifier(kind: "email", value: "  {str(row["email"]).upper()} ") {{ id }} }}')
    assert result.data["profileByIdentifier"]["id"] == row["profile_id"]


@pytest.mark.parametrize(("kind", "source"), [("customer_number", "crm"), ("loyalty_card", "loyalty")])
def test_configured_identifiers(api: Api, kind: str, source: str) -> None:
    row = _a_record(api, f"r.source = '{source}'")
    result = api.run(f'{{ profileByIdentifier(kind: "{kind}", value: " {row["record_id"]} ") {{ id }} }}')
    assert result.data["profileByIdentifier"]["id"] == row["profile_id"]


def test_record_key(api: Api) -> None:
    row = _a_record(api, "r.source = 'webshop'")
    result = api.run(f'{{ profileByIdentifier(kind: "record", value: "webshop:{row["record_id"]}") {CARD} }}')
    profile = result.data["profileByIdentifier"]
    assert profile["id"] == row["profile_id"]
    assert {"source": "webshop", "recordId": row["record_id"]} in profile["records"]


def test_unknown_is_null_and_bad_kind_is_an_error(api: Api) -> None:
    assert api.run('{ profileByIdentifier(kind: "phone", value: "06-99999999") { id } }').data == {"profileByIdentifier": None}
    assert api.run('{ profileByIdentifier(kind: "email", value: "not an email") { id } }').data == {"profileByIdentifier": None}
    result = api.run('{ profileByIdentifier(kind: "shoe_size", value: "42") { id } }')
    assert result.errors and result.errors[0].extensions["code"] == "BAD_REQUEST"


def test_a_shared_household_phone_is_ambiguous_not_a_guess(api: Api) -> None:
    shared = api.store.rows(
        """SELECT i.value FROM identifiers i JOIN membership m USING (record_key)
           WHERE i.kind = 'phone' GROUP BY i.value HAVING count(DISTINCT m.profile_id) > 1 LIMIT 1"""
    )
    assert shared, "the demo has households sharing a landline"
    result = api.run(f'{{ profileByIdentifier(kind: "phone", value: "{shared[0][0]}") {{ id }} }}')
    assert result.errors[0].extensions["code"] == "AMBIGUOUS_IDENTIFIER"


def test_profile_card_has_lineage_identifiers_and_raw_records(api: Api) -> None:
    pid = api.store.scalar("SELECT profile_id FROM profiles WHERE record_count >= 3 ORDER BY profile_id LIMIT 1")
    result = api.run(
        f'{{ profile(id: "{pid}") {{ id recordCount fields {{ name value source recordId rule }} '
        "identifiers { kind value sources } records { source recordId raw email } } }"
    )
    profile = result.data["profile"]
    assert profile["recordCount"] == len(profile["records"]) >= 3
    assert {f["name"] for f in profile["fields"]} >= {"first_name", "last_name"}
    assert all(f["rule"] in ("trust", "recent", "frequent") for f in profile["fields"])
    assert all(isinstance(r["raw"], dict) for r in profile["records"])


def test_merged_id_answers_with_the_survivor(api: Api) -> None:
    survivor = api.store.scalar("SELECT profile_id FROM profiles ORDER BY profile_id LIMIT 1")
    api.store.execute(
        "INSERT INTO profile_registry (profile_id, created_run, created_at, retired_run, redirect_to) VALUES ('p_retiredxxxxxxxxxx', 'r', now(), 'r', ?)",
        [survivor],
    )
    result = api.run('{ profile(id: "p_retiredxxxxxxxxxx") { id redirectedFrom } }')
    assert result.data["profile"] == {"id": survivor, "redirectedFrom": "p_retiredxxxxxxxxxx"}
    assert api.run('{ profile(id: "p_neverissued00000") { id } }').data == {"profile": None}


def test_fifty_profiles_cost_a_bounded_number_of_store_queries(api: Api) -> None:
    ids = [r[0] for r in api.store.rows("SELECT profile_id FROM profiles ORDER BY profile_id LIMIT 50")]
    query = "query($ids: [ID!]!) { profiles(ids: $ids) { id fullName records { source raw } identifiers { kind value } fields { name value } } }"
    before = api.queries.query_count
    result = api.run(query, variables={"ids": ids})
    assert result.errors is None and len(result.data["profiles"]) == 50
    assert all(isinstance(r["raw"], dict) for p in result.data["profiles"] for r in p["records"])
    # resolve, profiles, records (with identifiers), golden fields, source rows
    assert api.queries.query_count - before <= 5
    before = api.queries.query_count
    result = api.run(query, variables={"ids": ids}, role=Role.PERSONALIZATION)
    assert result.errors is None and all(r["raw"] is None for p in result.data["profiles"] for r in p["records"])
    assert api.queries.query_count - before <= 4, "source rows are not even read for a role that may not see them"


def test_personalization_never_sees_contact_pii(api: Api) -> None:
    pid = api.store.scalar("SELECT profile_id FROM profiles WHERE email IS NOT NULL AND phone IS NOT NULL LIMIT 1")
    query = f"""
      fragment Contact on Profile {{ email phone dateOfBirth address {{ street postcode }} }}
      {{ a: profile(id: "{pid}") {{ pseudonymousId firstName ...Contact mail: email
           records {{ raw email phone dateOfBirth address {{ city }} }}
           identifiers {{ kind value }} fields {{ name value }} }} }}"""
    result = api.run(query, role=Role.PERSONALIZATION)
    assert result.errors is None
    p = result.data["a"]
    assert p["pseudonymousId"].startswith("u_") and p["firstName"]
    assert p["email"] is None and p["mail"] is None and p["phone"] is None and p["dateOfBirth"] is None
    assert p["address"] == {"street": None, "postcode": None}
    assert all(v is None for r in p["records"] for k, v in r.items() if k != "address")
    assert all(i["value"] is None for i in p["identifiers"] if i["kind"] in ("email", "phone"))
    assert all(f["value"] is None for f in p["fields"] if f["name"] in ("email", "phone", "date_of_birth", "street", "postcode"))
    assert api.run(query, role=Role.AGENT).data["a"]["email"] is not None


def test_pii_fields_are_resolved_by_their_own_lean_resolvers() -> None:
    """graphql-core calls the PII fields' own resolvers (``pii`` inside), without
    strawberry's wrapping; the masking and audit tests above and below run through them."""
    schema = build_schema(ApiConfig())
    for type_name, field_names in {
        "Profile": ("email", "phone", "dateOfBirth", "fullName", "records", "identifiers"),
        "SourceRecord": ("email", "phone", "dateOfBirth"),
        "Address": ("street", "postcode", "city"),
        "Identifier": ("value",),
        "GoldenField": ("value",),
    }.items():
        fields = schema._schema.type_map[type_name].fields  # type: ignore[union-attr]
        assert all(getattr(fields[name].resolve, LEAN, False) for name in field_names), type_name
    assert not getattr(schema._schema.type_map["SourceRecord"].fields["raw"].resolve, LEAN, False)  # type: ignore[union-attr]


def test_pii_reads_are_audited_without_values(api: Api) -> None:
    pid, email = api.store.rows("SELECT profile_id, email FROM profiles WHERE email IS NOT NULL LIMIT 1")[0]
    before = api.store.scalar("SELECT count(*) FROM audit_log")
    api.run(f'{{ profile(id: "{pid}") {{ fullName email }} }}')
    api.run(f'{{ profile(id: "{pid}") {{ fullName }} }}')  # no PII: no audit row
    api.run(f'{{ profile(id: "{pid}") {{ email }} }}', role=Role.PERSONALIZATION)  # nothing returned: no audit row
    rows = api.store.dicts("SELECT * EXCLUDE (occurred_at) FROM audit_log ORDER BY occurred_at DESC")
    assert len(rows) == before + 1
    event = rows[0]
    assert event["action"] == "pii.read" and event["role"] == "agent" and event["actor"] == "test:agent"
    assert pid in event["detail"] and "email" in event["detail"] and email not in event["detail"]


@pytest.mark.parametrize(
    "query",
    [
        '{ profile(id: "x") { records { source } ' + "".join(f"a{i}: fullName " for i in range(20)) + "} }",
        "{ " + " ".join(f'p{i}: profile(id: "x") {{ id }}' for i in range(16)) + " }",
    ],
)
def test_limits_answer_with_a_code(api: Api, query: str) -> None:
    result = api.run(query)
    assert result.errors and result.data is None


def test_every_record_field_shows_the_stored_value(api: Api) -> None:
    """The API reads a record's served columns only (SERVED_RECORD_COLUMNS): a field whose
    column that list misses would come back null instead of its value."""
    row = _a_record(api, "r.email IS NOT NULL AND r.phone IS NOT NULL AND r.street IS NOT NULL AND r.date_of_birth IS NOT NULL")
    fields = {
        "key": "record_key",
        "source": "source",
        "recordId": "record_id",
        "matchProbability": "match_probability",
        "firstName": "first_name",
        "lastName": "last_name",
        "fullName": "full_name",
        "email": "email",
        "phone": "phone",
        "dateOfBirth": "date_of_birth",
    }
    address = {
        "street": "street",
        "houseNumber": "house_number",
        "addressLine2": "address_line2",
        "postcode": "postcode",
        "city": "city",
        "region": "region",
        "country": "country",
    }
    result = api.run(
        f'{{ profile(id: "{row["profile_id"]}") {{ records {{ {" ".join(fields)} updatedAt address {{ {" ".join(address)} }} }} }} }}'
    )
    assert result.errors is None, result.errors
    (shown,) = [r for r in result.data["profile"]["records"] if r["key"] == row["record_key"]]
    for name, column in fields.items():
        expected = row[column].isoformat() if hasattr(row[column], "isoformat") else row[column]
        assert shown[name] == expected, name
    assert all(shown["address"][name] == row[column] for name, column in address.items())
    assert (shown["updatedAt"] is None) == (row["updated_at"] is None)


@strawberry.type
class _Inner:
    records: int = 0


@strawberry.type
class _Card:
    asked: bool
    records: int = 0
    identifiers: int = 0
    inner: _Inner = strawberry.field(default_factory=_Inner)


@strawberry.type
class _ProbeQuery:
    @strawberry.field
    def probe(self, info: strawberry.Info) -> _Card:
        return _Card(asked=_selects(info, {"records", "identifiers"}))


@pytest.mark.parametrize(
    ("selection", "asked"),
    [
        ("{ probe { records asked } }", True),
        ("{ probe { asked ... on Card { records } } }", True),
        ("fragment F on Card { identifiers } { probe { asked ...F } }", True),
        ("{ probe { asked inner { records } } }", False),  # deeper than one level down
        ("{ probe { asked } }", False),
    ],
)
def test_a_lookup_knows_whether_records_are_asked(selection: str, asked: bool) -> None:
    """A card's records are read with its row (one hand-off to a worker) only when the
    query asks for them, in whatever form."""
    result = strawberry.Schema(query=_ProbeQuery).execute_sync(selection)
    assert result.errors is None and result.data["probe"]["asked"] is asked


@pytest.mark.parametrize("role", list(Role))
def test_viewer_names_the_role_and_the_kinds_to_look_up_by(api: Api, role: Role) -> None:
    result = api.run("{ viewer { role identifierKinds } }", role)
    assert result.errors is None
    assert result.data["viewer"] == {"role": role.value, "identifierKinds": ["customer_number", "email", "loyalty_card", "phone"]}

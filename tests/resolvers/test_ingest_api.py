"""ingestRecord through the schema: the record is matched at once and the next query sees it."""

from __future__ import annotations

from typing import Any

from resolvers.auth import Role
from tests.resolvers.conftest import Api

INGEST = """mutation($source: String!, $record: JSON!) { ingestRecord(source: $source, record: $record) {
    recordKey status matchProbability mergedProfileIds reviewPairIds fieldIssues profile { id recordCount email } } }"""


def _crm_row(api: Api) -> dict[str, Any]:
    crm = next(s for s in api.config.sources if s.name == "crm")
    key = api.store.scalar("SELECT record_key FROM records WHERE source = 'crm' AND email IS NOT NULL ORDER BY record_key LIMIT 1")
    row = api.store.dicts("SELECT * FROM records WHERE record_key = ?", [key])[0]
    return {
        crm.id: "API-1",
        crm.fields["first_name"]: row["first_name"],
        crm.fields["last_name"]: row["last_name"],  # type: ignore[index]
        crm.fields["email"]: row["email"].upper(),
        "profile_id": row["profile_id"],
    }  # type: ignore[index]


def test_a_new_record_joins_its_customer_and_the_next_lookup_sees_it(api: Api) -> None:
    row = _crm_row(api)
    expected = row.pop("profile_id")
    count = api.store.scalar("SELECT record_count FROM profiles WHERE profile_id = ?", [expected])
    result = api.run(INGEST, Role.AGENT, {"source": "crm", "record": row})
    assert result.errors is None, result.errors
    data = result.data["ingestRecord"]
    assert data["recordKey"] == "crm:API-1" and data["status"] == "attached"
    assert data["profile"]["id"] == expected and data["profile"]["recordCount"] == count + 1
    found = api.run('{ profileByIdentifier(kind: "record", value: "crm:API-1") { id } }', Role.AGENT)
    assert found.data["profileByIdentifier"]["id"] == expected
    again = api.run(INGEST, Role.STEWARD, {"source": "crm", "record": row})
    assert again.data["ingestRecord"]["status"] == "updated"
    assert api.store.scalar("SELECT count(*) FROM records WHERE record_key = 'crm:API-1'") == 1


def test_ingest_refuses_other_roles_bad_records_and_unknown_sources(api: Api) -> None:
    row = _crm_row(api)
    row.pop("profile_id")
    assert api.run(INGEST, Role.PERSONALIZATION, {"source": "crm", "record": row}).errors[0].extensions["code"] == "FORBIDDEN"
    crm = next(s for s in api.config.sources if s.name == "crm")
    no_id = {k: v for k, v in row.items() if k != crm.id}
    error = api.run(INGEST, Role.AGENT, {"source": "crm", "record": no_id}).errors[0]
    assert error.extensions["code"] == "INVALID_RECORD" and crm.id in error.message
    assert api.run(INGEST, Role.AGENT, {"source": "nope", "record": row}).errors[0].extensions["code"] == "BAD_REQUEST"
    assert api.run(INGEST, Role.AGENT, {"source": "crm", "record": [1, 2]}).errors[0].extensions["code"] == "INVALID_RECORD"
    bad_email = {**row, crm.id: "API-2", crm.fields["email"]: "not-an-email"}  # type: ignore[index]
    data = api.run(INGEST, Role.AGENT, {"source": "crm", "record": bad_email}).data["ingestRecord"]
    assert data["fieldIssues"] and data["fieldIssues"][0].startswith("email:")


def test_ingest_refuses_values_of_the_wrong_type_naming_the_field(api: Api) -> None:
    crm = next(s for s in api.config.sources if s.name == "crm")
    first = crm.fields["first_name"]
    for value, what in (({"a": 1}, "an object"), (12345, "a number"), (True, "true or false"), (["x"], "an array")):
        record = {crm.id: "API-TYPE", first: value, crm.fields["last_name"]: "Jansen"}  # type: ignore[index]
        error = api.run(INGEST, Role.AGENT, {"source": "crm", "record": record}).errors[0]
        assert error.extensions["code"] == "INVALID_RECORD"
        assert f"field first_name (column {first}): {what} where text was expected" in error.message
    for record_id in ({"a": 1}, "API\x00X"):
        error = api.run(INGEST, Role.AGENT, {"source": "crm", "record": {crm.id: record_id, first: "Jan"}}).errors[0]
        assert error.extensions["code"] == "INVALID_RECORD" and "id" in error.message
    assert api.store.scalar("SELECT count(*) FROM records WHERE record_key IN ('crm:API-TYPE', 'crm:API\x00X')") == 0
    record = {crm.id: "API-SURROGATE", first: "Jan\ud800", crm.fields["last_name"]: "Jansen"}  # type: ignore[index]
    data = api.run(INGEST, Role.AGENT, {"source": "crm", "record": record}).data["ingestRecord"]
    assert data["fieldIssues"] == ["first_name: control or invisible characters removed"]

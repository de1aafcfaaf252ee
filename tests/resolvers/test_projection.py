"""A lookup reads only the columns a query asks for, and answers exactly as if it had
read whole rows, whatever the aliases, fragments and nesting."""

from __future__ import annotations

from typing import Any

import pytest

import resolvers.schema
from profiles.store.queries import PROFILE_COLUMNS, SERVED_RECORD_COLUMNS
from resolvers.auth import Role
from resolvers.projection import Projection
from tests.resolvers.conftest import Api

CARD = """profileByIdentifier(kind: "phone", value: $v) {
    id fullName email phone dateOfBirth address { street houseNumber postcode city } sources
    records { source recordId updatedAt } identifiers { kind value } }"""

QUERIES = [
    CARD,
    # aliases, a named and an inline fragment, a record's address and raw row, __typename
    """profileByIdentifier(kind: "phone", value: $v) { __typename ...Who mail: email
         ... on Profile { address { c: city country } pseudonymousId }
         records { key raw address { street } dateOfBirth matchProbability } }""",
    # everything a profile has, the steward's explanation and golden fields included
    """profileByIdentifier(kind: "phone", value: $v) { id redirectedFrom pseudonymousId firstName middleName lastName
         fullName gender email phone dateOfBirth recordCount sources updatedAt
         address { street houseNumber addressLine2 postcode city region country }
         fields { name value source recordId rule updatedAt } identifiers { kind value sources }
         explanation { recordA recordB matchWeight }
         records { key source recordId matchProbability updatedAt firstName lastName fullName email phone dateOfBirth
                   address { street houseNumber addressLine2 postcode city region country } } }""",
    # no records: they are not read at all
    """profileByIdentifier(kind: "phone", value: $v) { ...Who }""",
    # the history, read beside the row: what it attaches to taken from the records it reads anyway
    """profileByIdentifier(kind: "phone", value: $v) { id records { source } timeline(first: 5) { nodes { eventId occurredAt recordKey } }
         traits { name value asOf } effort(days: 3650) { contacts repeatContacts } lifeEvents { kind evidence }
         consents { purpose status history { eventId recordKey } } }""",
    # the history without the records: what it attaches to read beside it
    """profileByIdentifier(kind: "phone", value: $v) { timeline(first: 5) { totalCount nodes { eventId source } } }""",
]
FRAGMENT = "fragment Who on Profile { firstName lastName }"


def _document(selection: str) -> str:
    fragment = FRAGMENT if "...Who" in selection else ""
    return f"query Card($v: String!) {{ a: {selection} }} {fragment}"


@pytest.fixture(scope="module")
def phones(api: Api) -> list[str]:
    """Phones that identify one profile each, of profiles with several records."""
    return [
        value
        for (value,) in api.store.rows(
            """SELECT i.value FROM identifiers i JOIN profiles p USING (profile_id)
               WHERE i.kind = 'phone' AND p.record_count > 1 GROUP BY i.value
               HAVING count(DISTINCT i.profile_id) = 1 ORDER BY i.value LIMIT 12"""
        )
    ]


@pytest.mark.parametrize("selection", QUERIES)
@pytest.mark.parametrize("role", [Role.STEWARD, Role.PERSONALIZATION])
def test_answers_equal_whole_row_answers(api: Api, phones: list[str], selection: str, role: Role, monkeypatch: pytest.MonkeyPatch) -> None:
    if "explanation" in selection and role is not Role.STEWARD:
        selection = selection.replace("explanation { recordA recordB matchWeight }", "")
    values = phones
    if role is Role.PERSONALIZATION:  # it looks profiles up by pseudonymous id, never by contact data
        selection = selection.replace('kind: "phone"', 'kind: "pseudonymous_id"')
        ids = [api.store.scalar("SELECT profile_id FROM identifiers WHERE kind = 'phone' AND value = ?", [v]) for v in phones]
        values = [
            api.run("query($p: ID!) { profile(id: $p) { pseudonymousId } }", role=role, variables={"p": i}).data["profile"][
                "pseudonymousId"
            ]
            for i in ids
        ]
    answers: dict[str, list[Any]] = {}
    for mode in ("projected", "whole"):
        if mode == "whole":
            monkeypatch.setattr(resolvers.schema, "projection", lambda info: None)
        answers[mode] = []
        for value in values:
            result = api.run(_document(selection), role=role, variables={"v": value})
            assert result.errors is None, result.errors
            assert result.data["a"] is not None
            answers[mode].append(result.data)
    assert answers["projected"] == answers["whole"]


def test_the_card_reads_the_columns_it_shows(api: Api, phones: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Projection | None] = []
    real = resolvers.schema.projection

    def spy(info: Any) -> Projection | None:
        made.append(real(info))
        return made[-1]

    monkeypatch.setattr(resolvers.schema, "projection", spy)
    api.run(_document(CARD), variables={"v": phones[0]})
    api.run(_document(QUERIES[3]), variables={"v": phones[0]})
    card, names_only = made
    api.run(_document(QUERIES[4]), variables={"v": phones[0]})
    card, names_only, history = made
    assert card == Projection(
        profile=("city", "date_of_birth", "email", "full_name", "house_number", "phone", "postcode", "profile_id", "sources", "street"),
        records=("identifiers", "record_id", "source", "updated_at"),
        consent=True,  # contact PII: read with the events when the role reads for a purpose that needs consent
    )
    assert names_only == Projection(profile=("first_name", "last_name", "profile_id"), records=None)
    assert history == Projection(profile=("profile_id",), records=("source",), events=True)


def test_served_column_lists_match_the_published_tables(api: Api) -> None:
    assert [r[0] for r in api.store.rows("DESCRIBE profiles")] == list(PROFILE_COLUMNS)
    records = {r[0] for r in api.store.rows("DESCRIBE records")}
    assert set(SERVED_RECORD_COLUMNS) <= records


def test_a_projection_names_served_columns_only(api: Api) -> None:
    pid = api.store.scalar("SELECT profile_id FROM profiles LIMIT 1")
    with pytest.raises(ValueError, match="not a served column"):
        api.queries.profiles([pid], ["profile_id; DROP TABLE profiles"])
    assert api.queries.profiles([pid], ["email"])[pid].keys() == {"profile_id", "email"}

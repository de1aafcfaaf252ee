"""Free-text search ranks with the linkage model: tolerant of typos, initials, particle
order and glued particles, and bounded."""

from __future__ import annotations

import random

from pipelines.matching.search import parse_query
from tests.resolvers.conftest import Api

QUERY = "query($q: String!, $n: Int!) { searchProfiles(query: $q, first: $n) { score matchWeight matchedRecord profile { id } } }"


def _sample(api: Api, n: int) -> list[dict[str, object]]:
    return api.store.dicts(
        """SELECT profile_id, first_name, last_name, date_of_birth, city FROM profiles
           WHERE length(first_name) > 2 AND last_name IS NOT NULL AND date_of_birth IS NOT NULL AND city IS NOT NULL
           ORDER BY hash(profile_id) LIMIT ?""",
        [n],
    )


def _found(api: Api, text: str, profile_id: object, top: int = 3) -> bool:
    result = api.run(QUERY, variables={"q": text, "n": top})
    assert result.errors is None, result.errors
    return profile_id in [m["profile"]["id"] for m in result.data["searchProfiles"]]


def test_name_birth_year_and_city_find_the_person(api: Api) -> None:
    rows = _sample(api, 60)
    hits = sum(_found(api, f"{r['first_name']} {r['last_name']} {r['date_of_birth'].year} {r['city']}", r["profile_id"]) for r in rows)  # type: ignore[union-attr]
    assert hits / len(rows) >= 0.95


def test_typos_are_tolerated(api: Api) -> None:
    rng = random.Random(4)
    rows = _sample(api, 60)

    def swap(word: str) -> str:
        i = rng.randrange(1, len(word) - 1)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]

    hits = sum(_found(api, f"{swap(str(r['first_name']))} {r['last_name']} {r['date_of_birth'].year}", r["profile_id"]) for r in rows)  # type: ignore[union-attr]
    assert hits / len(rows) >= 0.9


def test_particles_in_any_place_or_glued(api: Api) -> None:
    surnames = {"dijk", "vries", "berg"} & api.queries.known_values("last_name_std")
    assert surnames
    parsed = parse_query("j. devries 3511", "NL", set(), {"vries"})
    assert parsed.values["last_name_std"] == "vries" and parsed.values["first_initial"] == "j"
    assert parsed.values["postcode_std"] == "3511"
    row = api.store.dicts(
        "SELECT profile_id, first_name, last_name, date_of_birth FROM profiles WHERE last_name LIKE 'van %' AND date_of_birth IS NOT NULL LIMIT 1"
    )[0]
    particle, core = str(row["last_name"]).rsplit(" ", 1)
    year = row["date_of_birth"].year  # type: ignore[union-attr]
    assert _found(api, f"{core}, {particle} {row['first_name']} {year}", row["profile_id"], top=5)


def test_cities_are_read_as_the_pipeline_keys_them() -> None:
    parsed = parse_query("Zeynep Şahin 1965 's-Gravenhage", "NL", {"s gravenhage", "den bosch"}, {"sahin"})
    assert parsed.values["city_std"] == "s gravenhage" and parsed.values["last_name_std"] == "sahin"
    parsed = parse_query("jan de vries den bosch", "NL", {"s gravenhage", "den bosch"}, {"vries"})
    assert parsed.values["city_std"] == "den bosch" and parsed.values["last_name_std"] == "vries"


def test_scores_are_ranked_and_first_is_bounded(api: Api) -> None:
    result = api.run(QUERY, variables={"q": "jan de vries", "n": 10})
    scores = [m["matchWeight"] for m in result.data["searchProfiles"]]
    assert scores == sorted(scores, reverse=True) and 0 < len(scores) <= 10
    assert all(0 <= m["score"] <= 1 for m in result.data["searchProfiles"])
    result = api.run(QUERY, variables={"q": "jan", "n": 101})
    assert result.errors and result.errors[0].extensions["code"] == "BAD_REQUEST"
    assert api.run(QUERY, variables={"q": "   ", "n": 5}).data == {"searchProfiles": []}

"""Free-text search for a person ("jan de vries 1985 utrecht", "j. devries 3511"):
the text becomes a query record, standardized like a source record, and candidates are
scored with the trained linkage model's own comparison levels and weights."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from pipelines.matching.blocking import identifier_column
from pipelines.matching.comparisons import prior_weight, weight_sql
from pipelines.standardize.batch import MATCH_COLUMNS
from pipelines.standardize.contacts import standardize_email, standardize_phone
from pipelines.standardize.names import PARTICLES, fold, parse_given_name, parse_surname, split_full_name
from profiles.store import Store

_EMAIL = re.compile(r"\S+@\S+")
_POSTCODE = re.compile(r"^(\d{4})\s?([A-Za-z]{2})?$")
_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$|^(\d{4})-(\d{2})-(\d{2})$")
_YEAR = re.compile(r"^(19|20)\d{2}$")
_PHONE = re.compile(r"^\+?[\d\s\-()]{8,}$")
CANDIDATE_LIMIT = 20_000


@dataclass(frozen=True)
class QueryRecord:
    """What the free text says, in the model's matching form."""

    values: dict[str, Any]
    birth_year: int | None
    city: str | None = None

    @property
    def empty(self) -> bool:
        return not any(v for v in self.values.values()) and self.birth_year is None


@dataclass(frozen=True)
class SearchHit:
    profile_id: str
    record_key: str
    match_weight: float
    match_probability: float


def parse_query(text: str, default_country: str, known_cities: set[str], known_surnames: set[str]) -> QueryRecord:
    values: dict[str, Any] = {c: None for c in MATCH_COLUMNS}
    words: list[str] = []
    birth_year = None
    rest = text
    for email in _EMAIL.findall(text):
        values["email_std"] = standardize_email(email)[0]
        rest = rest.replace(email, " ")
    rest, values["city_std"] = _take_city(rest, known_cities)
    for token in re.split(r"[\s,]+", rest.strip()):
        if not token:
            continue
        if _DATE.match(token):
            d = _DATE.match(token)
            assert d is not None
            with contextlib.suppress(ValueError):  # an impossible date is no date
                values["dob"] = date(int(d[3]), int(d[2]), int(d[1])) if d[3] else date(int(d[4]), int(d[5]), int(d[6]))
        elif _YEAR.match(token):
            birth_year = int(token)
        elif _POSTCODE.match(token):
            values["postcode_std"] = token.replace(" ", "").upper()
        elif _PHONE.match(token) and sum(ch.isdigit() for ch in token) >= 8:
            values["phone_std"] = standardize_phone(token, default_country)[0]
        else:
            words.append(token)
    if words:
        name = split_full_name(" ".join(words))
        given = parse_given_name(name.first) if name.first else None
        surname = parse_surname(name.last) if name.last else None
        if given:
            values["first_name_std"], values["first_initial"] = given.folded, given.initial
        if surname:
            core = _unglue(surname.core, known_surnames)
            values["last_name_std"], values["surname_tokens"] = core, [core] if core != surname.core else list(surname.tokens)
    return QueryRecord(values, birth_year, values["city_std"])


def city_key(text: str) -> str:
    """A city as the pipeline keys it (``records.city_std``): lower case, no accents,
    anything but letters and digits a single space ("'s-Gravenhage" -> "s gravenhage")."""
    return re.sub(r"[^a-z0-9]+", " ", fold(text)).strip()


def _take_city(text: str, known_cities: set[str]) -> tuple[str, str | None]:
    """Find a known city (up to three words, the rightmost longest first) and take it
    out of the text, so its words are not read as name parts."""
    tokens = text.split()
    for length in (3, 2, 1):
        for start in range(len(tokens) - length, -1, -1):
            key = city_key(" ".join(tokens[start : start + length]))
            if key in known_cities:
                return " ".join(tokens[:start] + tokens[start + length :]), key
    return text, None


_GLUED = sorted({p.replace(" ", "").replace("'", "") for p in PARTICLES}, key=len, reverse=True)


def _unglue(core: str, known_surnames: set[str]) -> str:
    """People type particles glued to the name ("devries", "vandijk"): strip one when
    what remains is a surname the store knows and the whole is not."""
    if core in known_surnames:
        return core
    for particle in _GLUED:
        rest = core[len(particle) :]
        if core.startswith(particle) and len(rest) >= 3 and rest in known_surnames:
            return rest
    return core


def search(store: Store, model: dict[str, Any], identifiers: list[str], query: QueryRecord, first: int) -> list[SearchHit]:
    """Best-scoring profiles for ``query``: candidates that share a name part, contact
    detail or postcode, scored with the model, best record per profile."""
    if query.empty:
        return []
    v = query.values
    conditions = []
    params: list[Any] = []
    if v["last_name_std"]:
        conditions.append("jaro_winkler_similarity(r.last_name_std, ?) >= 0.8")
        conditions.append("list_has_any(r.surname_tokens, ?::VARCHAR[])")
        conditions.append("jaro_winkler_similarity(r.first_name_std, ?) >= 0.92")  # names swapped
        params += [v["last_name_std"], v["surname_tokens"], v["last_name_std"]]
    for column in ("email_std", "phone_std", "dob"):
        if v[column]:
            conditions.append(f"r.{column} = ?")
            params.append(v[column])
    if v["postcode_std"]:
        conditions.append("left(r.postcode_std, 4) = left(?, 4)" + (" AND r.first_initial = ?" if v["first_initial"] else ""))
        params += [v["postcode_std"], *([v["first_initial"]] if v["first_initial"] else [])]
    if not conditions:
        return []
    total, _ = weight_sql(model)
    # identifiers are not in the text: compared as missing on both sides (weight 0)
    absent = "".join(f", NULL::VARCHAR AS {identifier_column(n)}_l, NULL::VARCHAR AS {identifier_column(n)}_r" for n in identifiers)
    query_columns = ", ".join(f"?::{_TYPES.get(c, 'VARCHAR')} AS {c}_l" for c in MATCH_COLUMNS)
    record_columns = ", ".join(f"r.{c} AS {c}_r" for c in MATCH_COLUMNS) + absent
    year = query.birth_year
    sql = f"""
        WITH candidates AS (
            SELECT r.record_key, {record_columns},
                   {"(year(r.dob) = ?)" if year else "NULL"} AS year_agrees,
                   {"(r.city_std = ?)" if query.city else "NULL"} AS city_agrees
            FROM records r WHERE {" OR ".join(f"({c})" for c in conditions)}
            LIMIT {CANDIDATE_LIMIT}),  -- a bound on pathological queries; a common surname is ~1% of records
        scored AS (
            SELECT c.record_key, c.year_agrees, c.city_agrees, {total} + ? AS match_weight
            FROM candidates c, (SELECT {query_columns}) q)
        SELECT m.profile_id, s.record_key, s.match_weight,
               1 / (1 + pow(2, -s.match_weight)) AS match_probability
        FROM scored s JOIN membership m USING (record_key)
        WHERE NOT coalesce(s.year_agrees = false, false)
        QUALIFY row_number() OVER (
            PARTITION BY m.profile_id ORDER BY s.year_agrees IS TRUE DESC, s.match_weight DESC, s.city_agrees IS TRUE DESC, s.record_key) = 1
        -- a birth year or a city in the text is not a model comparison: it orders ties
        ORDER BY s.year_agrees IS TRUE DESC, s.match_weight DESC, s.city_agrees IS TRUE DESC, m.profile_id
        LIMIT ?"""
    bound = (
        ([year] if year else [])
        + ([query.city] if query.city else [])
        + params
        + [prior_weight(model)]
        + [v[c] for c in MATCH_COLUMNS]
        + [first]
    )
    return [
        SearchHit(r["profile_id"], r["record_key"], float(r["match_weight"]), float(r["match_probability"]))
        for r in store.dicts(sql, bound)
    ]


_TYPES = {"dob": "DATE", "surname_tokens": "VARCHAR[]"}

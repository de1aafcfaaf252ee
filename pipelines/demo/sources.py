"""The four demo source systems: their columns, formats, noise profile and `[[sources]]` config.

Each system renders the same true facts differently, which is exactly what linkage must see through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.demo import noise as nz
from pipelines.demo.noise import Noise


@dataclass(frozen=True)
class SourceSpec:
    """Everything that makes one system's records look like that system's."""

    name: str
    file: str
    id_column: str
    trust: int
    updated_at: str
    updated_at_format: str | None  # None: ISO text or a native timestamp
    date_format: str
    columns: tuple[str, ...]  # output column order
    fields: dict[str, str]  # canonical field -> column
    identifiers: dict[str, str] = field(default_factory=dict)
    constant_country: str | None = None
    row_errors: bool = True
    missing: dict[str, float] = field(default_factory=dict)
    initials: float = 0.02
    name_typo: float = 0.02
    fold: float = 0.05  # diacritics stripped
    particle_styles: tuple[float, float, float, float] = (0.85, 0.12, 0.01, 0.02)
    phone_styles: tuple[float, float, float, float, float] = (0.2, 0.2, 0.2, 0.2, 0.2)
    landline_share: float = 0.25
    email_case: float = 0.05
    email_space: float = 0.02
    street_typo: float = 0.02
    street_abbrev: float = 0.0
    city_typo: float = 0.01
    city_alias: float = 0.3
    city_upper: float = 0.0
    house_styles: tuple[float, float, float] = (0.9, 0.05, 0.05)
    postcode_styles: tuple[float, float, float] = (0.85, 0.13, 0.02)
    dob_typo: float = 0.015
    dob_swap: float = 0.003


CRM = SourceSpec(
    name="crm",
    file="data/crm.csv",
    id_column="klantnummer",
    trust=3,
    updated_at="gewijzigd",
    updated_at_format="%d-%m-%Y %H:%M",
    date_format="%d-%m-%Y",
    columns=(
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
    ),
    fields={
        "first_name": "voornaam",
        "last_name": "achternaam",
        "email": "email",
        "phone": "telefoon",
        "date_of_birth": "geboortedatum",
        "street": "straat",
        "house_number": "huisnummer",
        "postcode": "postcode",
        "city": "plaats",
    },
    identifiers={"customer_number": "klantnummer"},
    constant_country="NL",
    missing={"first": 0.01, "dob": 0.03, "email": 0.08, "phone": 0.10, "street": 0.02, "house": 0.02, "postcode": 0.02, "city": 0.02},
    initials=0.03,
    fold=0.05,
    particle_styles=(0.80, 0.15, 0.02, 0.03),
    phone_styles=(0.55, 0.05, 0.05, 0.30, 0.05),
    street_abbrev=0.05,
)

WEBSHOP = SourceSpec(
    name="webshop",
    file="data/webshop.ndjson",
    id_column="customerId",
    trust=2,
    updated_at="updatedAt",
    updated_at_format=None,
    date_format="%Y-%m-%d",
    columns=(
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
    ),
    fields={
        "first_name": "firstName",
        "last_name": "lastName",
        "email": "email",
        "phone": "phone",
        "date_of_birth": "birthDate",
        "street": "street",
        "house_number": "houseNumber",
        "postcode": "zip",
        "city": "city",
        "country": "country",
    },
    missing={"first": 0.005, "dob": 0.25, "email": 0.005, "phone": 0.20, "street": 0.04, "house": 0.04, "postcode": 0.04, "city": 0.04},
    initials=0.01,
    fold=0.12,
    particle_styles=(0.90, 0.05, 0.0, 0.05),
    phone_styles=(0.05, 0.30, 0.0, 0.15, 0.50),
    landline_share=0.1,
    email_case=0.02,
    email_space=0.01,
    city_alias=0.2,
    house_styles=(0.7, 0.1, 0.2),
    postcode_styles=(0.5, 0.45, 0.05),
)

CONTACT_CENTER = SourceSpec(
    name="contact_center",
    file="data/contact_center.parquet",
    id_column="caller_id",
    trust=1,
    updated_at="last_contact",
    updated_at_format=None,
    date_format="%m/%d/%Y",
    columns=("caller_id", "full_name", "phone_number", "email_address", "dob", "postal_code", "last_contact"),
    fields={"full_name": "full_name", "email": "email_address", "phone": "phone_number", "date_of_birth": "dob", "postcode": "postal_code"},
    row_errors=False,
    missing={"dob": 0.30, "email": 0.35, "phone": 0.02, "postcode": 0.15},
    initials=0.10,
    name_typo=0.03,
    fold=0.35,
    particle_styles=(0.85, 0.10, 0.03, 0.02),
    phone_styles=(0.0, 0.0, 0.40, 0.60, 0.0),
    landline_share=0.3,
    email_case=0.10,
    email_space=0.03,
    postcode_styles=(0.2, 0.75, 0.05),
    dob_typo=0.02,
    dob_swap=0.005,
)

LOYALTY = SourceSpec(
    name="loyalty",
    file="data/loyalty.tsv",
    id_column="card_number",
    trust=2,
    updated_at="member_since",
    updated_at_format=None,
    date_format="%Y%m%d",
    columns=("card_number", "first", "surname", "birth", "mail", "mobile", "zip", "house_no", "town", "member_since"),
    fields={
        "first_name": "first",
        "last_name": "surname",
        "email": "mail",
        "phone": "mobile",
        "date_of_birth": "birth",
        "postcode": "zip",
        "house_number": "house_no",
        "city": "town",
    },
    identifiers={"loyalty_card": "card_number"},
    constant_country="NL",
    missing={"first": 0.01, "dob": 0.10, "email": 0.10, "phone": 0.15, "postcode": 0.03, "house": 0.03, "city": 0.03},
    initials=0.03,
    fold=0.5,
    particle_styles=(0.65, 0.30, 0.03, 0.02),
    phone_styles=(0.20, 0.10, 0.0, 0.70, 0.0),
    landline_share=0.0,
    city_upper=0.2,
    house_styles=(0.6, 0.4, 0.0),
    postcode_styles=(0.6, 0.2, 0.2),
)

SPECS: tuple[SourceSpec, ...] = (CRM, WEBSHOP, CONTACT_CENTER, LOYALTY)


@dataclass
class TrueView:
    """The true facts as of each record's timestamp, before the source's own noise."""

    person: np.ndarray
    dob_required: np.ndarray  # bool: never blank the birth date (see generator._true_view)
    ts: np.ndarray  # datetime64[s]
    first: list[str]
    particle: list[str]
    surname: list[str]
    dob: np.ndarray  # int days since 1970
    email: list[str]
    calling_code: list[str]
    mobile: list[str]
    landline: list[str]
    street: list[str]
    house: list[str]
    postcode: list[str]
    city: list[str]
    city_alias: list[str]  # "" when the city has no alternative name
    country: list[str]
    addr: np.ndarray  # int64: the true address (index in the population's address book)


@dataclass
class Rendered:
    """One source's rows as column lists ("" = missing), plus the phone number each row carries."""

    columns: dict[str, Any]  # column -> list[str], or datetime64 array for native timestamps
    phone_nsn: list[str]
    dob_year: np.ndarray


def _styles(nz_: Noise, n: int, probs: tuple[float, ...]) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    return nz_.rng.choice(len(p), size=n, p=p / p.sum())


def strftime(values: np.ndarray, fmt: str) -> list[str]:
    """Dates or times as text in a strptime-style format, vectorized."""
    return cast(list[str], pc.strftime(pa.array(values.astype("datetime64[s]")), format=fmt).to_pylist())


def render(spec: SourceSpec, v: TrueView, noise: Noise) -> Rendered:
    """Apply this system's formats and noise profile to the true view of its records."""
    n = len(v.first)
    miss = spec.missing
    # names
    first = list(v.first)
    noise.apply(first, spec.initials, nz.initial)
    noise.apply(first, spec.name_typo, noise.typo)
    styles = _styles(noise, n, spec.particle_styles)
    last = [nz.surname_display(v.particle[i], v.surname[i], styles[i]) for i in range(n)]
    noise.apply(last, spec.name_typo, noise.typo)
    for i in noise.pick(n, spec.fold):
        first[i] = nz.fold_diacritics(first[i])
        last[i] = nz.fold_diacritics(last[i])
    noise.blank(first, miss.get("first", 0.0))
    # birth date: typos and swaps stay valid dates; impossible dates are injected later and counted
    dob = v.dob.copy()
    for i in noise.pick(n, spec.dob_typo):
        dob[i] = noise.dob_typo(int(dob[i]))
    for i in noise.pick(n, spec.dob_swap):
        dob[i] = noise.dob_swap(int(dob[i]))
    dob_text = strftime(dob.astype("datetime64[D]"), spec.date_format)
    kept = [(i, dob_text[i]) for i in np.flatnonzero(v.dob_required)]
    noise.blank(dob_text, miss.get("dob", 0.0))
    for i, text in kept:
        dob_text[i] = text
    # email
    email = list(v.email)
    noise.apply(email, spec.email_case, noise.email_case)
    noise.apply(email, spec.email_space, noise.email_space)
    noise.blank(email, miss.get("email", 0.0))
    # phone: mobile mostly, the household landline sometimes
    use_line = noise.rng.random(n) < spec.landline_share
    nsn = [v.landline[i] if use_line[i] and v.landline[i] else v.mobile[i] for i in range(n)]
    noise.blank(nsn, miss.get("phone", 0.0))
    pstyle = _styles(noise, n, spec.phone_styles)
    phone = [nz.format_phone(v.calling_code[i], nsn[i], nz.PHONE_STYLES[pstyle[i]]) if nsn[i] else "" for i in range(n)]
    # address
    street = list(v.street)
    noise.apply(street, spec.street_abbrev, nz.street_abbrev)
    noise.apply(street, spec.street_typo, noise.typo)
    noise.blank(street, miss.get("street", 0.0))
    hstyle = _styles(noise, n, spec.house_styles)
    house = [nz.house_variant(v.house[i], hstyle[i]) for i in range(n)]
    noise.blank(house, miss.get("house", 0.0))
    pcstyle = _styles(noise, n, spec.postcode_styles)
    postcode = [nz.postcode_variant(v.postcode[i], pcstyle[i]) for i in range(n)]
    noise.blank(postcode, miss.get("postcode", 0.0))
    city = list(v.city)
    for i in noise.pick(n, spec.city_alias):
        city[i] = v.city_alias[i] or city[i]
    noise.apply(city, spec.city_typo, noise.typo)
    noise.apply(city, spec.city_upper, str.upper)
    noise.blank(city, miss.get("city", 0.0))
    ts = v.ts
    canonical: dict[str, list[str]] = {
        "first": first,
        "last": last,
        "dob": dob_text,
        "email": email,
        "phone": phone,
        "street": street,
        "house": house,
        "postcode": postcode,
        "city": city,
        "country": list(v.country),
    }
    cols = _source_columns(spec, canonical, ts, noise)
    years = dob.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    return Rendered(columns=cols, phone_nsn=nsn, dob_year=years)


def _full_names(first: list[str], last: list[str], noise: Noise) -> list[str]:
    """Contact-center agents type 'Jan de Vries', and sometimes 'de Vries, Jan'."""
    form = noise.rng.random(len(first))
    out = []
    for i, (f, s) in enumerate(zip(first, last)):
        if "," in s:  # 'Berg, van der' -> 'Berg, van der, Jan' would be odd; agents write 'Jan van der Berg'
            core, _, part = s.partition(", ")
            s = f"{part} {core}"
        if not f:
            out.append(s)
        elif form[i] < 0.12:
            out.append(f"{s}, {f}")
        else:
            out.append(f"{f} {s}")
    return out


def _source_columns(spec: SourceSpec, c: dict[str, list[str]], ts: np.ndarray, noise: Noise) -> dict[str, Any]:
    """Map canonical lists to this system's column names and timestamp representation."""
    if spec.name == "crm":
        return {
            "voornaam": c["first"],
            "achternaam": c["last"],
            "geboortedatum": c["dob"],
            "email": c["email"],
            "telefoon": c["phone"],
            "straat": c["street"],
            "huisnummer": c["house"],
            "postcode": c["postcode"],
            "plaats": c["city"],
            "gewijzigd": strftime(ts, "%d-%m-%Y %H:%M"),
        }
    if spec.name == "webshop":
        return {
            "firstName": c["first"],
            "lastName": c["last"],
            "email": c["email"],
            "phone": c["phone"],
            "birthDate": c["dob"],
            "street": c["street"],
            "houseNumber": c["house"],
            "zip": c["postcode"],
            "city": c["city"],
            "country": c["country"],
            "updatedAt": strftime(ts, "%Y-%m-%dT%H:%M:%S"),
        }
    if spec.name == "contact_center":
        return {
            "full_name": _full_names(c["first"], c["last"], noise),
            "phone_number": c["phone"],
            "email_address": c["email"],
            "dob": c["dob"],
            "postal_code": c["postcode"],
            "last_contact": ts,
        }
    return {
        "first": c["first"],
        "surname": c["last"],
        "birth": c["dob"],
        "mail": c["email"],
        "mobile": c["phone"],
        "zip": c["postcode"],
        "house_no": c["house"],
        "town": c["city"],
        "member_since": strftime(ts.astype("datetime64[D]"), "%Y-%m-%d"),
    }

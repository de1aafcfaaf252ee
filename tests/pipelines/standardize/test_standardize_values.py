"""Names, emails and phones in the forms source systems really use."""

from __future__ import annotations

import pytest

from pipelines.standardize.contacts import standardize_email, standardize_phone
from pipelines.standardize.fields import street_parts
from pipelines.standardize.names import parse_given_name, parse_surname, split_full_name


@pytest.mark.parametrize(
    ("raw", "display", "core"),
    [
        ("van der Berg", "van der Berg", "berg"),
        ("Berg, van der", "van der Berg", "berg"),
        ("v.d. Berg", "van der Berg", "berg"),
        ("BERG", "Berg", "berg"),
        ("Jansen-de Vries", "Jansen-de Vries", "jansen-vries"),
        ("Müller", "Müller", "muller"),
        ("van 't Hof", "van 't Hof", "hof"),
    ],
)
def test_surnames(raw: str, display: str, core: str) -> None:
    parsed = parse_surname(raw)
    assert parsed is not None and (parsed.display, parsed.core) == (display, core)


def test_double_name_tokens_allow_a_married_name_to_match() -> None:
    married, birth = parse_surname("Jansen-de Vries"), parse_surname("de Vries")
    assert married and birth and set(married.tokens) & set(birth.tokens) == {"vries"}


@pytest.mark.parametrize(
    ("raw", "folded", "initial"),
    [("Jan", "jan", False), ("J.", "j", True), ("josé", "jose", False), ("Jan Peter", "jan", False), ("Çelik", "celik", False)],
)
def test_given_names(raw: str, folded: str, initial: bool) -> None:
    parsed = parse_given_name(raw)
    assert parsed is not None and (parsed.folded, parsed.is_initial) == (folded, initial)


@pytest.mark.parametrize(
    ("raw", "first", "middle", "last"),
    [
        ("Jan de Vries", "Jan", None, "de Vries"),
        ("J. de Vries", "J.", None, "de Vries"),
        ("de Vries, Jan", "Jan", None, "de Vries"),
        ("Jan Peter van der Berg", "Jan", "Peter", "van der Berg"),
        ("Mohamed El Amrani", "Mohamed", None, "El Amrani"),
    ],
)
def test_full_names_are_split(raw: str, first: str, middle: str | None, last: str) -> None:
    parsed = split_full_name(raw)
    assert (parsed.first, parsed.middle, parsed.last) == (first, middle, last)


@pytest.mark.parametrize("raw", ["06-12345678", "+31 6 1234 5678", "0031612345678", "0612345678", "06 12 34 56 78"])
def test_dutch_mobile_in_any_format_is_one_e164_number(raw: str) -> None:
    assert standardize_phone(raw, "NL") == ("+31612345678", None)


def test_phone_region_and_bad_numbers() -> None:
    assert standardize_phone("0470 12 34 56", "BE")[0] == "+32470123456"
    assert standardize_phone("12", "NL")[0] is None
    assert "no digits" in (standardize_phone("n/a", "NL")[1] or "")


def test_emails_ignore_case_and_whitespace_and_reject_invalid() -> None:
    assert standardize_email("  Jan.de.Vries@Gmail.COM ") == ("jan.de.vries@gmail.com", None)
    for bad in ("jan@@example.nl", "jan.example.com", "jan@", "a..b@x.nl"):
        value, problem = standardize_email(bad)
        assert value is None and problem and problem.startswith("invalid email")


def test_sql_fast_path_for_dutch_numbers_agrees_with_phonenumbers() -> None:
    import random

    import pyarrow as pa

    from pipelines.standardize.batch import _phone_keys
    from profiles.store import Store

    rng = random.Random(7)
    shapes = ["06-{}", "+31 6 {}", "00316{}", "06{}", "+316{}", "030-{}", "+31 30 {}", "0031 20 {}"]
    phones = [rng.choice(shapes).format(f"{rng.randrange(10**8):08d}"[: 8 if "6" in s else 7]) for s in shapes for _ in range(50)]
    with Store.scratch() as store:
        store.register(
            "_in",
            pa.table(
                {
                    "source": ["s"] * len(phones),
                    "record_id": [str(i) for i in range(len(phones))],
                    "phone": phones,
                    "country": pa.array([None] * len(phones), pa.string()),
                }
            ),
        )
        store.execute("CREATE TABLE ingested AS SELECT * FROM _in")
        _phone_keys(store, "NL")
        fast = dict(store.rows("SELECT record_id, fast FROM phone_keys WHERE fast IS NOT NULL"))
    assert len(fast) > len(phones) / 2
    for record_id, e164 in fast.items():
        assert standardize_phone(phones[int(record_id)], "NL")[0] == e164, phones[int(record_id)]


def test_dutch_numbers_read_without_phonenumbers_are_what_phonenumbers_reads() -> None:
    """standardize_phone writes +31 and nine digits straight away for the unambiguous Dutch
    shapes; phonenumbers must read every such number the same way."""
    import random

    import phonenumbers

    rng = random.Random(5)
    for _ in range(3_000):
        nine = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(8))
        for written, region in (
            (f"0{nine}", "NL"),
            (f"+31{nine}", "NL"),
            (f"0031{nine}", "NL"),
            (f"+31 {nine}", "BE"),
            (f"0{nine[:1]}-{nine[1:]}", "NL"),
        ):
            parsed = phonenumbers.parse("+" + written[2:] if written.startswith("00") else written, region)
            expected = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            assert phonenumbers.is_possible_number(parsed), written
            assert standardize_phone(written, region) == (expected, None), (written, region)
    # digits other than ASCII are not the shape: phonenumbers reads them (as ASCII digits)
    assert standardize_phone("+31 6 \u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "NL") == ("+31612345678", None)
    # not the Dutch shape: phonenumbers decides (a Belgian national number, a short one)
    assert standardize_phone("0470 12 34 56", "BE")[0] == "+32470123456"
    assert standardize_phone("12", "NL")[0] is None
    assert standardize_phone("0612345678", "BE")[0] != "+31612345678"


def test_house_numbers_in_street_lines() -> None:
    assert street_parts("12 oak street", None) == ("oak street", "12")
    assert street_parts("Kerkstraat 12a", "12a") == ("kerkstraat", "12a")
    assert street_parts("Kerkstraat 12", "14") == ("kerkstraat 12", "14")  # another number: the line stays whole
    assert street_parts("2e Helmersstraat", None) == ("2e helmersstraat", None)  # a Dutch ordinal, not a number

"""Realistic corruptions applied to true values: typos, format drift, stripped diacritics, bad input.

Each corruption touches a few % of values so a good linker can still recover every true match.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import numpy as np

from pipelines.demo.names import DUTCH_PARTICLES
from pipelines.demo.people import ascii_fold

# Phone styles. The demo lookup uses "06 12 34 56 78", which no source ever writes.
DASH = "dash"  # 06-12345678 / 020-1234567
SPACED = "spaced"  # +31 6 1234 5678 / +31 20 123 4567
ZERO_ZERO = "zero_zero"  # 0031612345678
NATIONAL = "national"  # 0612345678
E164 = "e164"  # +31612345678
PHONE_STYLES = (DASH, SPACED, ZERO_ZERO, NATIONAL, E164)

# Surname display styles.
PARTICLE_FIRST = 0  # van der Berg
PARTICLE_AFTER = 1  # Berg, van der
PARTICLE_ABBREV = 2  # v.d. Berg
PARTICLE_CAPS = 3  # Van der Berg

_NEIGHBOURS = {
    "a": "sqz",
    "b": "vn",
    "c": "xv",
    "d": "sf",
    "e": "wr",
    "f": "dg",
    "g": "fh",
    "h": "gj",
    "i": "uo",
    "j": "hk",
    "k": "jl",
    "l": "k",
    "m": "n",
    "n": "bm",
    "o": "ip",
    "p": "o",
    "q": "w",
    "r": "et",
    "s": "ad",
    "t": "ry",
    "u": "yi",
    "v": "cb",
    "w": "qe",
    "x": "zc",
    "y": "tu",
    "z": "x",
}


class Noise:
    """Seeded source of corruptions; all randomness flows from one numpy Generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.r = random.Random(int(rng.integers(0, 2**62)))

    def pick(self, n: int, rate: float) -> np.ndarray:
        """Indices of the values that receive a corruption at this rate."""
        return np.flatnonzero(self.rng.random(n) < rate)

    def apply(self, values: list[str], rate: float, fn: Callable[[str], str]) -> int:
        """Replace a fraction of the non-empty values by fn(value); returns how many changed."""
        changed = 0
        for i in self.pick(len(values), rate):
            v = values[i]
            if v:
                new = fn(v)
                changed += new != v
                values[i] = new
        return changed

    def blank(self, values: list[str], rate: float) -> None:
        """Missing values: the field was never filled in."""
        for i in self.pick(len(values), rate):
            values[i] = ""

    def typo(self, text: str) -> str:
        """One keyboard edit (substitute, delete, insert or transpose), never on the first letter."""
        letters = [i for i in range(1, len(text)) if text[i].isalpha()]
        if not letters:
            return text
        i = self.r.choice(letters)
        op = self.r.random()
        c = text[i]
        if op < 0.4:
            sub = self.r.choice(_NEIGHBOURS.get(c.lower(), "e"))
            return text[:i] + (sub.upper() if c.isupper() else sub) + text[i + 1 :]
        if op < 0.65 and len(text) > 3:
            return text[:i] + text[i + 1 :]
        if op < 0.85 or i + 1 >= len(text) or text[i + 1] == c:
            return text[:i] + c + text[i:]
        return text[:i] + text[i + 1] + c + text[i + 2 :]

    def email_case(self, email: str) -> str:
        """Mixed case as typed into a form, e.g. 'Jan.de.Vries@Gmail.com'."""
        local, _, domain = email.partition("@")
        parts = local.split(".")
        local = ".".join(p[:1].upper() + p[1:] for p in parts)
        if self.r.random() < 0.5:
            domain = domain[:1].upper() + domain[1:]
        return f"{local}@{domain}"

    def email_space(self, email: str) -> str:
        """Stray whitespace copied along with the address."""
        return self.r.choice((f"{email} ", f" {email}", f"{email}  "))

    def invalid_email(self, email: str) -> str:
        """Syntactically impossible addresses that validation must reject."""
        local, _, domain = email.partition("@")
        return self.r.choice((f"{local}@@{domain}", f"{local}.{domain}", f"{local}@", f"{local}@{domain.split('.')[0]}"))

    def dob_typo(self, day: int) -> int:
        """Change one digit of YYYYMMDD to another, keeping the date valid and plausible."""
        d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        digits = d.strftime("%Y%m%d")
        for _ in range(8):
            pos = self.r.choice((2, 3, 3, 5, 6, 7, 7))
            new = digits[:pos] + str(self.r.randrange(10)) + digits[pos + 1 :]
            try:
                nd = dt.datetime.strptime(new, "%Y%m%d").date()
            except ValueError:
                continue
            if nd != d and 1920 <= nd.year <= 2010:
                return (nd - dt.date(1970, 1, 1)).days
        return day

    def dob_swap(self, day: int) -> int:
        """Day and month swapped (US/EU confusion); only where the result is a valid date."""
        d = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        if d.day > 12 or d.day == d.month:
            return day
        return (dt.date(d.year, d.day, d.month) - dt.date(1970, 1, 1)).days

    def invalid_date(self, year: int, fmt: str) -> str:
        """An impossible date written in the source's own format ("31-02-1985", "1985-13-40")."""
        y = f"{year:04d}"
        month, dd = self.r.choice((("02", "30"), ("02", "31"), ("13", "12"), ("13", "40"), ("04", "31"), ("00", "10")))
        return fmt.replace("%Y", y).replace("%m", month).replace("%d", dd)


def fold_diacritics(text: str) -> str:
    """'José Müller' -> 'Jose Muller'."""
    return ascii_fold(text)


def initial(first: str) -> str:
    """'Jan' -> 'J.'; compound names keep one initial per part ('Anne-Marie' -> 'A.M.')."""
    parts = [p for p in first.replace("-", " ").split() if p]
    return "".join(p[0] + "." for p in parts) if parts else first


def surname_display(particle: str, core: str, style: int) -> str:
    """Render a (particle, core) surname the way a particular system stores it."""
    if not particle:
        return core
    movable = particle in DUTCH_PARTICLES
    if style == PARTICLE_AFTER and movable:
        return f"{core}, {particle}"
    if style == PARTICLE_ABBREV and particle in ("van der", "van den", "van de"):
        return f"v.d. {core}"
    if style == PARTICLE_CAPS and movable:
        return f"{particle[:1].upper()}{particle[1:]} {core}"
    return f"{particle} {core}"


def format_phone(calling_code: str, nsn: str, style: str) -> str:
    """Write a national significant number ('612345678') in one of the five styles."""
    cc = calling_code
    if cc != "31":
        if style == ZERO_ZERO:
            return f"00{cc}{nsn}"
        if style == SPACED:
            return f"+{cc} {nsn[:3]} {nsn[3:5]} {nsn[5:7]} {nsn[7:]}"
        return f"+{cc}{nsn}"
    area = nsn[:1] if nsn[0] == "6" else nsn[:2]
    rest = nsn[len(area) :]
    if style == DASH:
        return f"0{area}-{rest}"
    if style == SPACED:
        return f"+31 {area} {rest[:4]} {rest[4:]}" if area == "6" else f"+31 {area} {rest[:3]} {rest[3:]}"
    if style == ZERO_ZERO:
        return f"0031{nsn}"
    if style == E164:
        return f"+31{nsn}"
    return f"0{nsn}"


def lookup_phone(nsn: str) -> str:
    """A Dutch mobile as people say it, '06 12 34 56 78' -- a style no demo source uses."""
    rest = nsn[1:]
    return f"0{nsn[0]} {rest[0:2]} {rest[2:4]} {rest[4:6]} {rest[6:8]}"


def house_variant(house: str, style: int) -> str:
    """'12A' as '12a' or '12 A'; '12-2' as '12 2' -- harmless formatting drift."""
    if style == 1 and house[-1:].isalpha():
        return house[:-1] + house[-1].lower()
    if style == 2 and house[-1:].isalpha():
        return f"{house[:-1]} {house[-1]}"
    if style == 2 and "-" in house:
        return house.replace("-", " ")
    return house


def postcode_variant(postcode: str, style: int) -> str:
    """'3511 AB' as '3511AB' (style 1) or '3511ab' (style 2)."""
    if style == 1:
        return postcode.replace(" ", "")
    if style == 2:
        return postcode.replace(" ", "").lower()
    return postcode


def street_abbrev(street: str) -> str:
    """'Kerkstraat' -> 'Kerkstr.', the classic CRM abbreviation."""
    return street[:-4] + "." if street.endswith("straat") else street

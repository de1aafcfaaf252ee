"""The true population behind the demo sources: persons, addresses, life events and hard negatives.

Everything here is ground truth; sources.py and noise.py derive the messy per-system records from it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.demo.addresses import AddressBook
from pipelines.demo.names import COMMON_NAMES, ORIGINS, Surname
from pipelines.demo.places import CITIES, EMAIL_DOMAINS

EPOCH_DAY_MIN = int(np.datetime64("2016-01-01", "D").astype(np.int64))
EPOCH_DAY_MAX = int(np.datetime64("2024-12-31", "D").astype(np.int64))
"""Window in which source records were last updated and life events (moves, marriages) happen."""

NO_EVENT = np.iinfo(np.int64).max
"""Event day for persons to whom the event never happens."""

MOVE_RATE = 0.10
PHONE_CHANGE_RATE = 0.05
EMAIL_CHANGE_RATE = 0.04
MARRIED_NAME_RATE = 0.12  # of women born before 1995 who are not in a hard-negative group
FOREIGN_RATE = 0.02
LANDLINE_RATE = 0.35  # of ungrouped persons; every hard-negative group shares one
FAMILY_EMAIL_RATE = 0.4  # of households


@dataclass
class Population:
    """Ground-truth persons as parallel columns (index = person number), plus hard-negative pairs."""

    person_id: list[str]
    gender: np.ndarray  # 1 = male
    first: list[str]
    particle: list[str]
    surname: list[str]
    married: list[Surname | None]  # partner surname adopted at married_day
    married_day: np.ndarray
    dob: np.ndarray  # datetime64[D]
    email: list[str]
    email_new: list[str]
    email_change_day: np.ndarray
    family_email: list[str]  # "" when the household has none
    mobile: list[str]  # national significant number, e.g. "612345678"
    mobile_new: list[str]
    phone_change_day: np.ndarray
    landline: list[str]  # "" when none
    calling_code: list[str]  # "31", "32", "49"
    foreign: np.ndarray  # bool: lives in BE/DE, only a webshop/contact-center customer
    addr: np.ndarray
    addr_old: np.ndarray  # -1 when never moved
    move_day: np.ndarray
    addresses: AddressBook
    hard_negatives: list[tuple[str, int, int]]
    grouped: int  # persons [0, grouped) belong to hard-negative groups

    @property
    def size(self) -> int:
        return len(self.first)

    def truncate(self, n: int) -> None:
        """Keep the first n persons (groups come first, so hard negatives survive)."""
        size = self.size
        for name, value in list(vars(self).items()):
            if isinstance(value, (list, np.ndarray)) and name != "hard_negatives" and len(value) == size:
                setattr(self, name, value[:n])
        self.hard_negatives = [h for h in self.hard_negatives if h[1] < n and h[2] < n]


def ascii_fold(text: str) -> str:
    """Strip diacritics ("Çelik" -> "Celik", "Łukasz" -> "Lukasz") the way legacy systems do."""
    text = text.translate(_FOLD)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "ı": "i", "İ": "I", "æ": "ae"})


def _zipf_pick(rng: np.random.Generator, n_options: int, size: int) -> np.ndarray:
    """Earlier list entries are more common, like real name frequencies."""
    w = 1.0 / (np.arange(n_options) + 3.0) ** 0.9
    return rng.choice(n_options, size=size, p=w / w.sum())


def _day(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


class _Builder:
    """Accumulates persons group by group; columns are converted to arrays at the end."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.cols: dict[str, list[Any]] = {
            k: [] for k in ("gender", "first", "particle", "surname", "dob", "landline", "family_email", "addr", "foreign")
        }
        self.book = AddressBook()
        self.hard: list[tuple[str, int, int]] = []

    @property
    def n(self) -> int:
        return len(self.cols["first"])

    def add(
        self,
        gender: int,
        first: str,
        surname: Surname,
        dob: int,
        addr: int,
        landline: str = "",
        family_email: str = "",
        foreign: bool = False,
    ) -> int:
        c = self.cols
        c["gender"].append(gender)
        c["first"].append(first)
        c["particle"].append(surname[0])
        c["surname"].append(surname[1])
        c["dob"].append(dob)
        c["addr"].append(addr)
        c["landline"].append(landline)
        c["family_email"].append(family_email)
        c["foreign"].append(foreign)
        return self.n - 1

    def pairs(self, kind: str, members: list[int]) -> None:
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                self.hard.append((kind, a, b))

    def landline(self, addr: int) -> str:
        return self.book.area_code[addr] + f"{int(self.rng.integers(2_000_000, 9_999_999)):07d}"


def _first_names(rng: np.random.Generator, origin_idx: int, gender: int, k: int) -> list[str]:
    """k first names with pairwise different initials, so family members stay distinguishable."""
    o = ORIGINS[origin_idx]
    pool = list(o.male if gender else o.female)
    order = rng.permutation(len(pool))
    out: list[str] = []
    for j in order:
        if pool[j][0] not in {x[0] for x in out}:
            out.append(pool[j])
        if len(out) == k:
            break
    return out


def _origin(rng: np.random.Generator) -> int:
    w = np.array([o.weight for o in ORIGINS])
    return int(rng.choice(len(ORIGINS), p=w / w.sum()))


def _surname(rng: np.random.Generator, origin_idx: int) -> Surname:
    s = ORIGINS[origin_idx].surnames
    return s[int(_zipf_pick(rng, len(s), 1)[0])]


def _build_groups(b: _Builder, n_target: int) -> None:
    """Hard negatives: households, twins, father/son namesakes and common names in one city."""
    rng = b.rng
    scale = n_target / 1000.0
    n_house = max(1, round(scale * 8))  # ~2.4% of persons
    n_twins = max(1, round(scale * 2.5))  # ~0.5%
    n_father = max(1, round(scale * 3))  # ~0.6%
    n_common = max(1, round(scale * 2.5))  # ~1.1%
    for _ in range(n_house):
        o = _origin(rng)
        sur = _surname(rng, o)
        size = int(rng.choice([2, 3, 4], p=[0.4, 0.35, 0.25]))
        addr = int(b.book.add_random(rng, 1)[0])
        line = b.landline(addr)
        fam = ""
        if rng.random() < FAMILY_EMAIL_RATE:
            dom = EMAIL_DOMAINS[int(rng.integers(0, 6))][0]
            fam = f"fam.{ascii_fold((sur[0] + sur[1]).replace(' ', '').replace(chr(39), '')).lower()}{int(rng.integers(1, 99))}@{dom}"
        parent_dob = _day("1945-01-01") + int(rng.integers(0, 25 * 365))
        genders = rng.integers(0, 2, size=size)
        names_m = _first_names(rng, o, 1, size)
        names_f = _first_names(rng, o, 0, size)
        used: set[str] = set()
        members = []
        for k in range(size):
            g = int(genders[k])
            name = next(x for x in (names_m if g else names_f) + names_m + names_f if x[0] not in used)
            used.add(name[0])
            dob = parent_dob if k == 0 else min(parent_dob + int(rng.integers(20 * 365, 32 * 365)) + k * 500, _day("2006-12-31") - k * 200)
            members.append(b.add(g, name, sur, dob, addr, line, fam))
        b.pairs("household", members)
    for _ in range(n_twins):
        o = _origin(rng)
        sur = _surname(rng, o)
        addr = int(b.book.add_random(rng, 1)[0])
        line = b.landline(addr)
        dob = _day("1960-01-01") + int(rng.integers(0, 45 * 365))
        g1, g2 = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        n1 = _first_names(rng, o, g1, 2)
        n2 = [x for x in _first_names(rng, o, g2, 3) if x[0] != n1[0][0]]
        a = b.add(g1, n1[0], sur, dob, addr, line)
        c = b.add(g2, n2[0], sur, dob, addr, line)
        b.hard.append(("twins", a, c))
    for _ in range(n_father):
        o = _origin(rng)
        sur = _surname(rng, o)
        addr = int(b.book.add_random(rng, 1)[0])
        line = b.landline(addr)
        name = _first_names(rng, o, 1, 1)[0]
        father_dob = _day("1940-01-01") + int(rng.integers(0, 40 * 365))
        son_dob = min(father_dob + int(rng.integers(20 * 365, 35 * 365)), _day("2006-12-31"))
        a = b.add(1, name, sur, father_dob, addr, line)
        c = b.add(1, name, sur, son_dob, addr, line)
        b.hard.append(("father_son", a, c))
    for gi in range(n_common):
        first, g, sur = COMMON_NAMES[gi % len(COMMON_NAMES)]
        city = CITIES[gi % 4]  # the big four cities
        size = int(rng.integers(3, 7))
        addrs = b.book.add_random(rng, size, city=city)
        dobs = rng.choice(np.arange(_day("1945-01-01"), _day("2005-01-01")), size=size, replace=False)
        members = [b.add(g, first, sur, int(dobs[k]), int(addrs[k])) for k in range(size)]
        b.pairs("common_name", members)


def _build_singles(b: _Builder, n: int) -> None:
    """Unrelated persons, drawn column-wise so a million of them stay fast."""
    rng = b.rng
    w = np.array([o.weight for o in ORIGINS])
    origin = rng.choice(len(ORIGINS), size=n, p=w / w.sum())
    gender = rng.integers(0, 2, size=n)
    dob = rng.integers(_day("1940-01-01"), _day("2006-12-31"), size=n)
    foreign = rng.random(n) < FOREIGN_RATE
    has_line = (rng.random(n) < LANDLINE_RATE) & ~foreign
    line_num = rng.integers(2_000_000, 9_999_999, size=n)
    first = np.empty(n, dtype=object)
    sur = np.empty(n, dtype=object)
    for oi, o in enumerate(ORIGINS):
        for g, pool in ((1, o.male), (0, o.female)):
            m = (origin == oi) & (gender == g)
            first[m] = np.array(pool, dtype=object)[_zipf_pick(rng, len(pool), int(m.sum()))]
        m = origin == oi
        idx = _zipf_pick(rng, len(o.surnames), int(m.sum()))
        sur_arr = np.empty(len(o.surnames), dtype=object)
        for j, s in enumerate(o.surnames):
            sur_arr[j] = s
        sur[m] = sur_arr[idx]
    addr = np.empty(n, dtype=np.int64)
    addr[~foreign] = b.book.add_random(rng, int((~foreign).sum()))
    addr[foreign] = b.book.add_random(rng, int(foreign.sum()), foreign=True)
    for i in range(n):
        a = int(addr[i])
        line = b.book.area_code[a] + f"{line_num[i]:07d}" if has_line[i] else ""
        b.add(int(gender[i]), first[i], sur[i], int(dob[i]), a, line, "", bool(foreign[i]))


def unique_numbers(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """n distinct integers in [lo, hi) in random order."""
    got = np.empty(0, dtype=np.int64)
    while len(got) < n:
        draw = np.concatenate([got, rng.integers(lo, hi, size=int((n - len(got)) * 1.1) + 16)])
        _, first_idx = np.unique(draw, return_index=True)
        got = draw[np.sort(first_idx)]
    return got[:n]


#: Namesakes (one local part at one domain) numbered below 1000 before numbers go above
#: it: the search for a free number below 1000 slows as they run out, and ends when they
#: have (the generator never finished 3M records). Small demos never reach it.
_CROWDED = 600


def _emails(
    rng: np.random.Generator, first: list[str], particle: list[str], surname: list[str], dob: np.ndarray, taken: set[str]
) -> list[str]:
    """One personal address per person, unique across the population (namesakes get digits)."""
    n = len(first)
    pattern = rng.integers(0, 6, size=n)
    dw = np.array([d[1] for d in EMAIL_DOMAINS])
    domain = rng.choice(len(EMAIL_DOMAINS), size=n, p=dw / dw.sum())
    suffix = rng.integers(1, 999, size=n)
    add_year = rng.random(n) < 0.25
    years = dob.astype("datetime64[Y]").astype(np.int64) + 1970
    out: list[str] = []
    crowd: dict[tuple[str, str], int] = {}  # namesakes given a number, per local part and domain
    beyond: dict[tuple[str, str], int] = {}  # the next number above 999 to try, per local part and domain
    for i in range(n):
        f = ascii_fold(first[i]).lower().replace(" ", "")
        s = ascii_fold(particle[i] + surname[i]).lower().replace(" ", "").replace("'", "")
        p = pattern[i]
        local = (f"{f}.{s}", f"{f[0]}.{s}", f"{f}{s}", f"{f}_{s}", f"{s}.{f}", f"{f}.{s}")[p]
        if add_year[i]:
            local += str(years[i] % 100).zfill(2)
        at = EMAIL_DOMAINS[domain[i]][0]
        addr = f"{local}@{at}"
        if addr in taken:
            base = (local, at)
            free = None
            if crowd.get(base, 0) < _CROWDED:  # a few namesakes: a number of the person's own
                crowd[base] = crowd.get(base, 0) + 1
                for k in range(1, 1001):  # other local parts ("jan.jansen85" + "@") may hold numbers too
                    candidate = f"{local}{(suffix[i] + k) % 1000}@{at}"
                    if candidate not in taken:
                        free = candidate
                        break
            if free is not None:
                addr = free
            else:  # the numbers below 1000 are running out: the next free one above
                n_next = beyond.get(base, 1000)
                while f"{local}{n_next}@{at}" in taken:
                    n_next += 1
                addr = f"{local}{n_next}@{at}"
                beyond[base] = n_next + 1
        taken.add(addr)
        out.append(addr)
    return out


def _event_days(rng: np.random.Generator, n: int, rate: float, eligible: np.ndarray) -> np.ndarray:
    days = np.full(n, NO_EVENT, dtype=np.int64)
    hit = eligible & (rng.random(n) < rate)
    days[hit] = rng.integers(EPOCH_DAY_MIN + 120, EPOCH_DAY_MAX - 120, size=int(hit.sum()))
    return days


def build_population(n: int, rng: np.random.Generator) -> Population:
    """Create about n persons: hard-negative groups first, then unrelated singles."""
    b = _Builder(rng)
    _build_groups(b, n)
    grouped = b.n
    _build_singles(b, max(n - grouped, 0))
    c = b.cols
    total = b.n
    gender = np.array(c["gender"], dtype=np.int8)
    dob = np.array(c["dob"], dtype=np.int64).astype("datetime64[D]")
    foreign = np.array(c["foreign"], dtype=bool)
    ungrouped = np.arange(total) >= grouped
    code = ["31"] * total
    mobile_num = unique_numbers(rng, 2 * total, 10_000_000, 100_000_000)
    mobile = []
    mobile_new = []
    for i in range(total):
        cc = "31"
        if foreign[i]:
            cc = "32" if b.book.country[c["addr"][i]] == "BE" else "49"
            code[i] = cc
        prefix, width = {"31": ("6", 8), "32": ("47", 7), "49": ("15", 8)}[cc]
        mobile.append(prefix + f"{mobile_num[i]:08d}"[-width:])
        mobile_new.append(prefix + f"{mobile_num[total + i]:08d}"[-width:])
    taken: set[str] = set()
    email = _emails(rng, c["first"], c["particle"], c["surname"], dob, taken)
    email_new = _emails(rng, c["first"], c["particle"], c["surname"], dob, taken)
    born_before_1995 = dob < np.datetime64("1995-01-01")
    married_day = _event_days(rng, total, MARRIED_NAME_RATE, ungrouped & (gender == 0) & born_before_1995)
    married: list[Surname | None] = [None] * total
    partner_pick = _zipf_pick(rng, len(ORIGINS[0].surnames), total)
    for i in np.flatnonzero(married_day != NO_EVENT).tolist():
        partner = ORIGINS[0].surnames[partner_pick[i]]
        if partner[1] == c["surname"][i]:
            partner = ("", "Jansen") if c["surname"][i] != "Jansen" else ("", "Bakker")
        married[i] = partner
    move_day = _event_days(rng, total, MOVE_RATE, ungrouped)
    addr = np.array(c["addr"], dtype=np.int64)
    addr_old = np.full(total, -1, dtype=np.int64)
    movers = np.flatnonzero(move_day != NO_EVENT)
    movers_nl = movers[~foreign[movers]]
    addr_old[movers_nl] = b.book.add_random(rng, len(movers_nl))
    move_day[movers[foreign[movers]]] = NO_EVENT
    pid_num = rng.permutation(total) + 1
    return Population(
        person_id=[f"P{x:07d}" for x in pid_num],
        gender=gender,
        first=c["first"],
        particle=c["particle"],
        surname=c["surname"],
        married=married,
        married_day=married_day,
        dob=dob,
        email=email,
        email_new=email_new,
        email_change_day=_event_days(rng, total, EMAIL_CHANGE_RATE, ungrouped),
        family_email=c["family_email"],
        mobile=mobile,
        mobile_new=mobile_new,
        phone_change_day=_event_days(rng, total, PHONE_CHANGE_RATE, ungrouped),
        landline=c["landline"],
        calling_code=code,
        foreign=foreign,
        addr=addr,
        addr_old=addr_old,
        move_day=move_day,
        addresses=b.book,
        hard_negatives=b.hard,
        grouped=grouped,
    )

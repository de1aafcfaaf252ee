"""Dutch (and a few Belgian/German) addresses with real-looking postcodes like "3511 AB".

Addresses live in one shared book so households can share one and movers can switch between two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.demo.places import CITIES, FOREIGN_CITIES, GERMAN_STREETS, POSTCODE_LETTERS, STREETS, City


@dataclass
class AddressBook:
    """Addresses as parallel columns so persons can share (households) or switch (moves) by index."""

    street: list[str] = field(default_factory=list)
    house: list[str] = field(default_factory=list)
    postcode: list[str] = field(default_factory=list)
    city: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    area_code: list[str] = field(default_factory=list)

    def add_random(self, rng: np.random.Generator, n: int, foreign: bool = False, city: City | None = None) -> np.ndarray:
        """Append n fresh addresses (in one city if given) and return their indices."""
        cities = FOREIGN_CITIES if foreign else CITIES
        if city is None:
            w = np.array([c.weight for c in cities])
            chosen = [cities[i] for i in rng.choice(len(cities), size=n, p=w / w.sum())]
        else:
            chosen = [city] * n
        streets_nl = rng.integers(0, len(STREETS), size=n)
        streets_de = rng.integers(0, len(GERMAN_STREETS), size=n)
        numbers = np.minimum(rng.geometric(1 / 40, size=n), 399)
        kind = rng.random(n)
        letters = rng.integers(0, 4, size=n)
        floors = rng.integers(1, 4, size=n)
        pc_letters = rng.integers(0, len(POSTCODE_LETTERS), size=(n, 2))
        pc_frac = rng.random(n)
        start = len(self.street)
        for i, c in enumerate(chosen):
            num = int(numbers[i])
            if kind[i] < 0.10:
                house = f"{num}{'ABCD'[letters[i]]}"
            elif kind[i] < 0.16 and c.country == "NL":
                house = f"{num}-{floors[i]}"
            else:
                house = str(num)
            code = c.postcode_lo + int(pc_frac[i] * (c.postcode_hi - c.postcode_lo + 1))
            if c.country == "NL":
                a, b = POSTCODE_LETTERS[pc_letters[i, 0]], POSTCODE_LETTERS[pc_letters[i, 1]]
                if a == "S" and b in "ADS":  # SA, SD and SS are not issued
                    b = "B"
                postcode = f"{code} {a}{b}"
            elif c.country == "DE":
                postcode = f"{code:05d}"
            else:
                postcode = str(code)
            self.street.append(GERMAN_STREETS[streets_de[i]] if c.country == "DE" else STREETS[streets_nl[i]])
            self.house.append(house)
            self.postcode.append(postcode)
            self.city.append(c.name)
            self.country.append(c.country)
            self.area_code.append(c.area_code)
        return np.arange(start, start + n, dtype=np.int64)

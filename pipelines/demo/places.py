"""Static vocabularies for the demo population: where people live (streets, cities,
postcodes) and the e-mail domains they use. Names are in pipelines.demo.names."""

from __future__ import annotations

from dataclasses import dataclass

STREETS: tuple[str, ...] = (
    "Kerkstraat",
    "Dorpsstraat",
    "Schoolstraat",
    "Molenweg",
    "Stationsweg",
    "Hoofdstraat",
    "Julianastraat",
    "Wilhelminastraat",
    "Beatrixlaan",
    "Prins Hendrikkade",
    "Oranjestraat",
    "Nieuwstraat",
    "Marktplein",
    "Kastanjelaan",
    "Eikenlaan",
    "Beukenlaan",
    "Lindelaan",
    "Parklaan",
    "Industrieweg",
    "Dorpsweg",
    "Vondelstraat",
    "Rembrandtlaan",
    "Van Goghstraat",
    "Spoorstraat",
    "Bloemstraat",
    "Tulpstraat",
    "Rozenstraat",
    "Zonnebloemstraat",
    "Sportlaan",
    "Havenstraat",
    "Molenstraat",
    "Burgemeester de Withstraat",
    "Koningin Julianaweg",
    "Emmastraat",
    "Brinkstraat",
    "Weverstraat",
    "Hoogstraat",
    "Lange Voorhout",
    "Oudegracht",
    "Vismarkt",
    "Ketelstraat",
    "Zuiderweg",
    "Noorderweg",
    "Westerstraat",
    "Oosterstraat",
    "Singel",
    "Herengracht",
    "Keizersgracht",
    "Prinsengracht",
    "Achterweg",
    "Steenweg",
    "Gasthuisstraat",
    "Dr. Schaepmanstraat",
    "Van Speijkstraat",
    "Tesselschadestraat",
    "Frederik Hendrikstraat",
    "Jan Steenstraat",
    "Coolsingel",
    "Acaciastraat",
    "Meidoornlaan",
    "Populierenlaan",
    "Esdoornstraat",
    "Merelstraat",
    "Lijsterstraat",
    "Zwaluwstraat",
    "Kievitlaan",
    "Reigerstraat",
    "Hobbemastraat",
    "Ruysdaelstraat",
    "Mozartlaan",
    "Beethovenstraat",
    "Händelstraat",
    "Thorbeckestraat",
    "Nassaulaan",
    "Hugo de Grootstraat",
    "Pieter de Hoochstraat",
)

GERMAN_STREETS: tuple[str, ...] = (
    "Hauptstraße",
    "Bahnhofstraße",
    "Gartenstraße",
    "Schulstraße",
    "Lindenstraße",
    "Dorfstraße",
    "Kirchstraße",
    "Bergstraße",
    "Mühlenweg",
    "Goethestraße",
)


@dataclass(frozen=True)
class City:
    """A city with its postcode number range, 2-digit area code and spelling variants."""

    name: str
    country: str
    postcode_lo: int
    postcode_hi: int
    area_code: str
    weight: float
    variants: tuple[str, ...] = ()


CITIES: tuple[City, ...] = (
    City("Amsterdam", "NL", 1011, 1109, "20", 9.0),
    City("Rotterdam", "NL", 3011, 3089, "10", 7.0),
    City("Den Haag", "NL", 2491, 2599, "70", 6.0, ("'s-Gravenhage",)),
    City("Utrecht", "NL", 3511, 3585, "30", 4.5),
    City("Eindhoven", "NL", 5611, 5658, "40", 3.0),
    City("Groningen", "NL", 9711, 9747, "50", 2.5),
    City("Tilburg", "NL", 5011, 5049, "13", 2.5),
    City("Almere", "NL", 1311, 1364, "36", 2.5),
    City("Breda", "NL", 4811, 4839, "76", 2.0),
    City("Nijmegen", "NL", 6511, 6546, "24", 2.0),
    City("'s-Hertogenbosch", "NL", 5211, 5249, "73", 1.8, ("Den Bosch",)),
    City("Haarlem", "NL", 2011, 2037, "23", 1.8),
    City("Arnhem", "NL", 6811, 6846, "26", 1.8),
    City("Leiden", "NL", 2311, 2334, "71", 1.5),
    City("Maastricht", "NL", 6211, 6229, "43", 1.5),
    City("Zwolle", "NL", 8011, 8043, "38", 1.5),
    City("Enschede", "NL", 7511, 7548, "53", 1.5),
    City("Amersfoort", "NL", 3811, 3826, "33", 1.5),
    City("Apeldoorn", "NL", 7311, 7339, "55", 1.5),
    City("Delft", "NL", 2611, 2629, "15", 1.0),
    City("Leeuwarden", "NL", 8911, 8939, "58", 1.0),
    City("Zaandam", "NL", 1501, 1509, "75", 0.8),
    City("Alkmaar", "NL", 1811, 1827, "72", 0.8),
    City("Dordrecht", "NL", 3311, 3329, "78", 0.8),
    City("Gouda", "NL", 2801, 2809, "18", 0.6),
    City("Hilversum", "NL", 1211, 1223, "35", 0.6),
)

FOREIGN_CITIES: tuple[City, ...] = (
    City("Antwerpen", "BE", 2000, 2660, "3", 1.0),
    City("Gent", "BE", 9000, 9052, "9", 0.7),
    City("Brussel", "BE", 1000, 1210, "2", 0.7, ("Bruxelles",)),
    City("Berlin", "DE", 10115, 14199, "30", 0.6),
    City("Köln", "DE", 50667, 51149, "221", 0.5, ("Koeln",)),
    City("Düsseldorf", "DE", 40210, 40629, "211", 0.4),
    City("Aachen", "DE", 52062, 52080, "241", 0.4),
)

EMAIL_DOMAINS: tuple[tuple[str, float], ...] = (
    ("gmail.com", 30.0),
    ("hotmail.com", 15.0),
    ("outlook.com", 8.0),
    ("ziggo.nl", 8.0),
    ("kpnmail.nl", 6.0),
    ("live.nl", 5.0),
    ("hotmail.nl", 5.0),
    ("yahoo.com", 4.0),
    ("xs4all.nl", 3.0),
    ("planet.nl", 3.0),
    ("icloud.com", 4.0),
    ("home.nl", 2.0),
    ("telenet.be", 1.0),
    ("web.de", 1.0),
)

POSTCODE_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"
"""Letters that occur in Dutch postcodes (F, I, O, Q, U, Y are not issued)."""

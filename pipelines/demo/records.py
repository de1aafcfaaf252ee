"""The demo's accepted source records as parallel columns: what events link to, and what
the life-moment truth reads (which address, name and birth date each record shows).

Only records the pipeline accepts are collected (truth.parquet's records): an event must
not point at a row that is quarantined, or its person could never own it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.demo.sources import Rendered, SourceSpec, TrueView, strftime


@dataclass(frozen=True)
class SourceRecords:
    """One row per accepted record, in the order the sources were rendered."""

    person: np.ndarray  # int64: person number
    source: np.ndarray  # int64: index in SPECS
    record_id: np.ndarray  # object: the record's id as text (what an event's link column holds)
    ts: np.ndarray  # datetime64[s]: the record's update time, as the record shows it
    email: np.ndarray  # object: the e-mail the record carries, standardized; "" when none or invalid
    dob_shown: np.ndarray  # bool: the record shows the true birth date
    addr: np.ndarray  # int64: the true address the record describes (index in the address book)
    street: np.ndarray  # object: as rendered ("" when missing or not in the source)
    city: np.ndarray
    postcode: np.ndarray
    name: np.ndarray  # object: the rendered last name (full name for the contact center)
    particle: np.ndarray  # object: the true surname's particle ("van der") as of the record
    surname: np.ndarray  # object: the true surname (without particle) as of the record: married or birth name

    def __len__(self) -> int:
        return len(self.person)

    def key(self, row: int, names: tuple[str, ...]) -> str:
        """The record key the store gives this record, e.g. "crm:K0001234"."""
        return f"{names[int(self.source[row])]}:{self.record_id[row]}"

    def targets(self, source: int) -> Targets:
        """The records of one source by person, to pick the record an event links to."""
        rows = np.flatnonzero(self.source == source)
        order = np.argsort(self.person[rows], kind="stable")
        return Targets(persons=self.person[rows][order], rows=rows[order])


@dataclass(frozen=True)
class Targets:
    """Records of one source sorted by person."""

    persons: np.ndarray
    rows: np.ndarray

    def members(self) -> np.ndarray:
        """Persons with at least one record in the source, sorted."""
        return np.unique(self.persons)

    def pick(self, person: np.ndarray, u: np.ndarray) -> np.ndarray:
        """For each person one of their records (u in [0, 1) chooses which), -1 when none."""
        lo = np.searchsorted(self.persons, person, side="left")
        hi = np.searchsorted(self.persons, person, side="right")
        count = hi - lo
        at = np.minimum(lo + (u * count).astype(np.int64), max(len(self.rows) - 1, 0))
        picked = self.rows[at] if len(self.rows) else np.zeros(len(person), dtype=np.int64)
        return np.where(count > 0, picked, -1)


class RecordCollector:
    """Gathers the accepted records source by source, while the generator renders them."""

    def __init__(self) -> None:
        self._parts: list[dict[str, Any]] = []

    def add(
        self, si: int, spec: SourceSpec, view: TrueView, rendered: Rendered, ids: list[Any], dropped: set[int], bad_emails: set[int]
    ) -> None:
        """The source's rows but the dropped ones (empty ids, broken rows), with what they show."""
        n = len(ids)
        keep = np.array([i not in dropped for i in range(n)], dtype=bool)
        cols = rendered.columns
        fields = spec.fields

        def shown(field: str) -> np.ndarray:
            values = cols[fields[field]] if field in fields else [""] * n
            return np.array(values, dtype=object)

        email = np.array(view.email, dtype=object)
        rendered_email = shown("email")
        email[(rendered_email == "") | np.isin(np.arange(n), sorted(bad_emails))] = ""
        true_dob = np.array(strftime(view.dob.astype("datetime64[D]"), spec.date_format), dtype=object)
        self._parts.append(
            {
                "person": view.person[keep].astype(np.int64),
                "source": np.full(int(keep.sum()), si, dtype=np.int64),
                "record_id": np.array([str(x) for x in ids], dtype=object)[keep],
                "ts": _as_shown(spec, view.ts)[keep],
                "email": email[keep],
                "dob_shown": (shown("date_of_birth") == true_dob)[keep],
                "addr": view.addr[keep].astype(np.int64),
                "street": shown("street")[keep],
                "city": shown("city")[keep],
                "postcode": shown("postcode")[keep],
                "name": shown("last_name" if "last_name" in fields else "full_name")[keep],
                "particle": np.array(view.particle, dtype=object)[keep],
                "surname": np.array(view.surname, dtype=object)[keep],
            }
        )

    def build(self) -> SourceRecords:
        """All sources' records, concatenated in the order they were added."""
        names = list(SourceRecords.__dataclass_fields__)
        return SourceRecords(**{k: np.concatenate([p[k] for p in self._parts]) for k in names})


def _as_shown(spec: SourceSpec, ts: np.ndarray) -> np.ndarray:
    """Update times at the precision the source writes them (the CRM drops the seconds)."""
    if spec.updated_at_format and "%S" not in spec.updated_at_format:
        return ts.astype("datetime64[m]").astype("datetime64[s]")
    return ts.astype("datetime64[s]")

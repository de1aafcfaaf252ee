"""What a live ingest reports: what became of each record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

STATUSES = ("attached", "new_profile", "review", "merged", "updated", "moved", "quarantined", "suppressed")


@dataclass(frozen=True)
class IngestedRecord:
    """What became of one ingested record."""

    record_key: str
    status: str  # one of STATUSES
    profile_id: str | None
    match_probability: float | None  # its strongest link inside its profile
    previous_profile_id: str | None = None  # an updated record's profile before the update
    merged_profiles: list[str] = field(default_factory=list)  # ids that now redirect to profile_id
    review_pairs: list[str] = field(default_factory=list)  # pair ids queued for a steward
    problem: str | None = None  # why a row was quarantined
    field_issues: list[str] = field(default_factory=list)  # values nulled as unreadable, "field: reason"


@dataclass
class IngestReport:
    source: str
    rows: int
    quarantined: int
    field_issues: int
    records: list[IngestedRecord]
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.records:
            out[r.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts()}


def outcomes(
    keys: list[str],
    assignment: dict[str, str],
    previous: Mapping[str, str],
    merged: dict[str, list[str]],
    review: dict[str, list[str]],
    existing: set[str],
    probability: Mapping[str, float],
    issues: Mapping[str, list[str]],
) -> list[IngestedRecord]:
    joined = {assignment[k] for k in existing if k in assignment}  # profiles holding records from before
    out = []
    for key in keys:
        pid = assignment[key]
        before = previous.get(key)
        if before is not None:
            status = "updated" if before == pid or before in merged.get(pid, []) else "moved"
        elif merged.get(pid):
            status = "merged"
        elif pid in joined:
            status = "attached"
        else:
            status = "review" if review.get(key) else "new_profile"
        out.append(
            IngestedRecord(
                record_key=key,
                status=status,
                profile_id=pid,
                match_probability=float(probability[key]) if probability.get(key) is not None else None,
                previous_profile_id=before,
                merged_profiles=list(merged.get(pid, [])),
                review_pairs=review.get(key, []),
                field_issues=issues.get(key, []),
            )
        )
    return out


def quarantined(source: str, quarantine: pa.Table) -> list[IngestedRecord]:
    """The quarantined rows of an ingest (``quarantine``: stage_live's table) as outcomes."""
    return [
        IngestedRecord(
            record_key=f"{source}:{rid}" if rid else f"{source}:line {line}",
            status="quarantined",
            profile_id=None,
            match_probability=None,
            problem=str(reason),
        )
        for rid, line, reason in zip(
            quarantine.column("record_id").to_pylist(), quarantine.column("line").to_pylist(), quarantine.column("reason").to_pylist()
        )
    ]


__all__ = ["STATUSES", "IngestReport", "IngestedRecord", "outcomes", "quarantined"]

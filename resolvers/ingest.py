"""Real-time recognition through the API: ``ingestRecord`` matches a new or changed
source record into the profiles at once (see pipelines.live.ingest)."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from pipelines.config import Config
from pipelines.live.ingest import IngestedRecord, LiveIngest
from profiles.errors import ConfigError
from profiles.store import ProfileQueries, Steward
from resolvers.auth import Role
from resolvers.context import Context, context_of
from resolvers.errors import ApiError
from resolvers.permissions import Roles
from resolvers.types import Profile

#: One live ingester per served store: it keeps what it prepared for the published run.
_LIVE: dict[int, LiveIngest] = {}


def live_ingester(queries: ProfileQueries, config: Config) -> LiveIngest:
    """The live ingester of the store ``queries`` serves (made once)."""
    live = _LIVE.get(id(queries))
    if live is None or live.store is not queries.store:
        live = _LIVE[id(queries)] = LiveIngest(queries.store, config)
    return live


class InvalidRecord(ApiError):
    code = "INVALID_RECORD"


@strawberry.type
class IngestResult:
    """What became of the record: its profile now and how it got there."""

    profile_id: strawberry.Private[str | None]
    record_key: str = strawberry.field(description='"source:record_id"')
    status: str = strawberry.field(
        description="attached (joined an existing profile), merged (and joined two or more), new_profile, "
        "review (new profile; a candidate awaits a steward), updated (same profile), moved (an update changed its profile), "
        "suppressed (an erased person's record: nothing was kept)"
    )
    match_probability: float | None = strawberry.field(description="The record's strongest model link inside its profile.")
    merged_profile_ids: list[strawberry.ID] = strawberry.field(
        description="Profiles merged into this one by the record (they redirect to it)."
    )
    previous_profile_id: strawberry.ID | None
    review_pair_ids: list[strawberry.ID] = strawberry.field(description="Candidate pairs queued for a steward.")
    field_issues: list[str] = strawberry.field(description='Values that could not be read and were left out ("email: ...").')

    @classmethod
    def of(cls, outcome: IngestedRecord) -> IngestResult:
        return cls(
            profile_id=outcome.profile_id,
            record_key=outcome.record_key,
            status=outcome.status,
            match_probability=outcome.match_probability,
            merged_profile_ids=[strawberry.ID(p) for p in outcome.merged_profiles],
            previous_profile_id=strawberry.ID(outcome.previous_profile_id) if outcome.previous_profile_id else None,
            review_pair_ids=[strawberry.ID(p) for p in outcome.review_pairs],
            field_issues=outcome.field_issues,
        )

    @strawberry.field
    async def profile(self, info: Info[Context, Any]) -> Profile | None:
        if not self.profile_id:
            return None
        row = await context_of(info).loaders.profile_by_profile_id.load(self.profile_id)
        return Profile(row=row) if row else None


@strawberry.type
class IngestMutation:
    @strawberry.mutation(
        description="Match a source record (an object keyed by the source's own column names) into the profiles "
        "now; the same source and id again updates it.",
        extensions=[Roles(Role.AGENT, Role.STEWARD, Role.ADMIN)],
    )
    def ingest_record(self, info: Info[Context, Any], source: str, record: JSON) -> IngestResult:
        ctx = context_of(info)
        if not isinstance(record, dict):
            raise InvalidRecord("record must be a JSON object keyed by the source's column names")
        by = Steward(actor=ctx.principal.actor, role=ctx.principal.role.value)
        try:
            report = live_ingester(ctx.queries, ctx.config).ingest(source, by, rows=[record])
            ctx.committed()
        except ConfigError as exc:
            raise ApiError(str(exc)) from None
        (outcome,) = report.records
        if outcome.status == "quarantined":
            raise InvalidRecord(f"source {source}: record rejected: {outcome.problem}")
        return IngestResult.of(outcome)

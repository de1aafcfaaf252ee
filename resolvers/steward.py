"""The data steward's side of the API: the review queue with explanations, decisions,
merge, split and undo, and the audit log.

Every mutation is steward-only (other roles get FORBIDDEN); a refused one (CONFLICT,
NOT_FOUND, BAD_REQUEST) is audited like a successful one, so no decision attempt is lost."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from pipelines.standardize.contacts import standardized_identifier
from profiles.errors import ConflictError, InvalidActionError, NotFoundError, UnifyError
from profiles.store import Action, AuditEvent, Steward
from profiles.store.erasure import erase_profile, unsuppress
from resolvers.auth import Role
from resolvers.context import Context, context_of
from resolvers.errors import ApiError, Conflict, NotFound
from resolvers.explanations import Decision, MatchExplanation, explain
from resolvers.ingest import live_ingester
from resolvers.permissions import Roles
from resolvers.types import Profile, SourceRecord, row_field

MAX_FIRST = 100


def _page_size(first: int) -> int:
    if not 1 <= first <= MAX_FIRST:
        raise ApiError(f"first must be between 1 and {MAX_FIRST}", limit=MAX_FIRST)
    return first


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode()


def _uncursor(cursor: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise ApiError("invalid cursor") from None
    if not isinstance(values, list) or len(values) != 2:
        raise ApiError("invalid cursor")
    return values


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


async def _record(info: Info[Context, Any], key: str) -> SourceRecord:
    row = await context_of(info).loaders.record_by_record_key.load(key)
    if row is None:
        raise NotFound(f"record {key} is no longer in the published run")
    return SourceRecord(profile_id=str(row["profile_id"]), row=row)


@strawberry.type
class CandidatePair:
    """Two records the model is unsure about, side by side."""

    row: strawberry.Private[dict[str, Any]]

    id: strawberry.ID = row_field("pair_id")
    match_probability: float = row_field("match_probability")
    match_weight: float = row_field("match_weight")
    distance_to_boundary: float = row_field(
        "distance_to_boundary", description="How close the pair is to the middle of the review band (0: the model cannot tell)."
    )

    @strawberry.field
    async def left(self, info: Info[Context, Any]) -> SourceRecord:
        return await _record(info, self.row["record_key_l"])

    @strawberry.field
    async def right(self, info: Info[Context, Any]) -> SourceRecord:
        return await _record(info, self.row["record_key_r"])

    left_profile_id: strawberry.ID = row_field("profile_id_l")
    right_profile_id: strawberry.ID = row_field("profile_id_r")

    @strawberry.field
    def explanation(self, info: Info[Context, Any]) -> MatchExplanation | None:
        ctx = context_of(info)
        cached = ctx.explanations
        pair = (self.row["record_key_l"], self.row["record_key_r"])
        if pair not in cached:  # explain the whole page at once, not pair by pair
            pending = [p for p in ctx.pending_explanations if p not in cached] or [pair]
            cached.update(zip(pending, explain(ctx, pending)))
        return cached.get(pair)


@strawberry.type
class CandidatePairEdge:
    node: CandidatePair
    cursor: str


@strawberry.type
class CandidatePairConnection:
    edges: list[CandidatePairEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class StewardAction:
    """A steward's action as recorded (and undoable through ``undo``)."""

    id: strawberry.ID
    kind: str = strawberry.field(description="same | different | merge | split | undo")
    actor: str
    role: str
    reason: str
    created_at: datetime
    profiles_before: list[strawberry.ID]
    profiles_after: list[strawberry.ID]
    records: list[str] = strawberry.field(description="Record keys whose profile the action could change.")
    undoes: strawberry.ID | None
    undone_by: strawberry.ID | None

    @classmethod
    def of(cls, action: Action) -> StewardAction:
        return cls(
            id=strawberry.ID(action.action_id),
            kind=action.kind,
            actor=action.actor,
            role=action.role,
            reason=action.reason,
            created_at=action.created_at,
            profiles_before=[strawberry.ID(p) for p in action.profiles_before],
            profiles_after=[strawberry.ID(p) for p in action.profiles_after],
            records=action.records,
            undoes=strawberry.ID(action.undoes) if action.undoes else None,
            undone_by=strawberry.ID(action.undone_by) if action.undone_by else None,
        )

    @strawberry.field(description="The profiles as they are after the action.")
    async def profiles(self, info: Info[Context, Any]) -> list[Profile]:
        rows = await context_of(info).loaders.profile_by_profile_id.load_many([str(p) for p in self.profiles_after])
        return [Profile(row=row) for row in rows if row]


@strawberry.type
class AuditEntry:
    id: strawberry.ID
    occurred_at: datetime
    actor: str
    role: str
    action: str
    subject: str | None
    detail: JSON | None


@strawberry.type
class AuditEntryEdge:
    node: AuditEntry
    cursor: str


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo


@strawberry.type
class StewardQuery:
    """Read fields of the steward's screens (mixed into Query)."""

    @strawberry.field(description=f"Open candidate pairs, most informative first; first <= {MAX_FIRST}.", extensions=[Roles(Role.STEWARD)])
    def review_queue(self, info: Info[Context, Any], first: int = 20, after: str | None = None) -> CandidatePairConnection:
        ctx = context_of(info)
        size = _page_size(first)
        key = None
        if after:
            distance, pair_id = _uncursor(after)
            key = (float(distance), str(pair_id))
        rows, total = ctx.queries.review_queue(size + 1, key)
        page = rows[:size]
        ctx.pending_explanations = [(r["record_key_l"], r["record_key_r"]) for r in page]
        edges = [CandidatePairEdge(node=CandidatePair(row=r), cursor=_cursor(r["distance_to_boundary"], r["pair_id"])) for r in page]
        return CandidatePairConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=len(rows) > size, end_cursor=edges[-1].cursor if edges else None),
            total_count=total,
        )

    @strawberry.field(
        description="Why two records (record keys) or two profiles (ids) match or not: the model's evidence "
        "per comparison with the numbers the run used; for profiles, their strongest pair.",
        extensions=[Roles(Role.STEWARD)],
    )
    def explain_match(self, info: Info[Context, Any], a: str, b: str) -> MatchExplanation | None:
        ctx = context_of(info)
        a, b = a.strip(), b.strip()
        if ":" in a and ":" in b:
            return explain(ctx, [(a, b)])[0]
        resolved = ctx.queries.resolve([a, b])
        if a not in resolved or b not in resolved:
            raise NotFound("give two record keys (source:record_id) or two profile ids")
        left, right = resolved[a].profile_id, resolved[b].profile_id
        records = ctx.queries.records([left, right])
        keys_l = [r["record_key"] for r in records.get(left, [])]
        keys_r = [r["record_key"] for r in records.get(right, [])]
        scored = ctx.queries.pairs_between(keys_l, keys_r)
        if scored:
            return explain(ctx, [scored[0][:2]])[0]
        # never compared by the run: score the combinations now and show the best
        combos = [(x, y) for x in keys_l for y in keys_r if x != y][:MAX_FIRST]
        found = [e for e in explain(ctx, combos) if e]
        return max(found, key=lambda e: e.match_weight, default=None)

    @strawberry.field(description="A steward action by id.", extensions=[Roles(Role.STEWARD, Role.ADMIN)])
    def steward_action(self, info: Info[Context, Any], id: strawberry.ID) -> StewardAction | None:
        ctx = context_of(info)
        found = ctx.stewardship().action(str(id))
        return StewardAction.of(found) if found else None

    @strawberry.field(
        description=f"Audit events, newest first, optionally about one profile; first <= {MAX_FIRST}.",
        extensions=[Roles(Role.STEWARD, Role.ADMIN)],
    )
    def audit_log(
        self, info: Info[Context, Any], profile_id: strawberry.ID | None = None, first: int = 20, after: str | None = None
    ) -> AuditEntryConnection:
        ctx = context_of(info)
        size = _page_size(first)
        key = None
        if after:
            when, event_id = _uncursor(after)
            try:
                key = (datetime.fromisoformat(str(when)), str(event_id))
            except ValueError:
                raise ApiError("invalid cursor") from None
        rows = ctx.queries.audit_log(str(profile_id) if profile_id else None, size + 1, key)
        edges = [
            AuditEntryEdge(
                node=AuditEntry(
                    id=strawberry.ID(r["event_id"]),
                    occurred_at=r["occurred_at"],
                    actor=r["actor"],
                    role=r["role"],
                    action=r["action"],
                    subject=r["subject"],
                    detail=json.loads(r["detail"]) if r["detail"] else None,
                ),
                cursor=_cursor(r["occurred_at"].isoformat(), r["event_id"]),
            )
            for r in rows[:size]
        ]
        return AuditEntryConnection(
            edges=edges, page_info=PageInfo(has_next_page=len(rows) > size, end_cursor=edges[-1].cursor if edges else None)
        )


def _act(info: Info[Context, Any], mutation: str, arguments: dict[str, Any], do: Any) -> StewardAction:
    """Run a steward action (its mutation declares who may); map refusals to coded
    errors and audit them."""
    ctx = context_of(info)
    if not str(arguments.get("reason") or "").strip():
        raise ApiError("a reason is required for every steward action")
    by = Steward(actor=ctx.principal.actor, role=ctx.principal.role.value)
    try:
        action = do(ctx.stewardship(), by)
        ctx.committed()
        return StewardAction.of(action)
    except (ConflictError, NotFoundError, InvalidActionError) as exc:
        error: ApiError = (
            Conflict(str(exc))
            if isinstance(exc, ConflictError)
            else NotFound(str(exc))
            if isinstance(exc, NotFoundError)
            else ApiError(str(exc))
        )
        ctx.queries.append_audit(
            [
                AuditEvent(
                    actor=by.actor,
                    role=by.role,
                    action="steward.refused",
                    subject=None,
                    detail={
                        "mutation": mutation,
                        "arguments": arguments,
                        "code": error.code,
                        "message": str(exc),
                        "profiles": [p for p in arguments.get("ids", []) if isinstance(p, str)],
                    },
                )
            ]
        )
        raise error from None


@strawberry.type
class StewardMutation:
    @strawberry.mutation(
        description="Decide a candidate pair: SAME merges their profiles, DIFFERENT keeps (or splits) them apart, now and in every later run.",
        extensions=[Roles(Role.STEWARD)],
    )
    def decide_candidate(self, info: Info[Context, Any], pair_id: strawberry.ID, decision: Decision, reason: str) -> StewardAction:
        return _act(
            info,
            "decideCandidate",
            {"pairId": str(pair_id), "decision": decision.name, "reason": reason},
            lambda s, by: s.decide(str(pair_id), decision.value, reason, by),
        )

    @strawberry.mutation(
        description="Merge profiles: the oldest id survives and the others redirect to it.", extensions=[Roles(Role.STEWARD)]
    )
    def merge_profiles(self, info: Info[Context, Any], ids: list[strawberry.ID], reason: str) -> StewardAction:
        if len(ids) > MAX_FIRST:
            raise ApiError(f"at most {MAX_FIRST} profiles per merge", limit=MAX_FIRST)
        names = [str(i) for i in ids]
        return _act(info, "mergeProfiles", {"ids": names, "reason": reason}, lambda s, by: s.merge(names, reason, by))

    @strawberry.mutation(
        description='Take a record ("source:record_id") out of its profile: it forms a new profile, or joins `into`; it is kept apart from the records it leaves.',
        extensions=[Roles(Role.STEWARD)],
    )
    def split_record(self, info: Info[Context, Any], record_key: str, reason: str, into: strawberry.ID | None = None) -> StewardAction:
        target = str(into) if into else None
        return _act(
            info,
            "splitRecord",
            {"recordKey": record_key, "reason": reason, "into": target},
            lambda s, by: s.split([record_key], reason, by, into=target),
        )

    @strawberry.mutation(
        description="Take several records of one profile out together (see splitRecord).", extensions=[Roles(Role.STEWARD)]
    )
    def split_records(
        self, info: Info[Context, Any], record_keys: list[str], reason: str, into: strawberry.ID | None = None
    ) -> StewardAction:
        if len(record_keys) > MAX_FIRST:
            raise ApiError(f"at most {MAX_FIRST} records per split", limit=MAX_FIRST)
        target = str(into) if into else None
        return _act(
            info,
            "splitRecords",
            {"recordKeys": record_keys, "reason": reason, "into": target},
            lambda s, by: s.split(record_keys, reason, by, into=target),
        )

    @strawberry.mutation(
        description="Restore the exact state before an action (undoing an undo redoes it).", extensions=[Roles(Role.STEWARD)]
    )
    def undo(self, info: Info[Context, Any], action_id: strawberry.ID, reason: str = "undo") -> StewardAction:
        return _act(info, "undo", {"actionId": str(action_id), "reason": reason}, lambda s, by: s.undo(str(action_id), reason, by))


@strawberry.type
class ErasureResult:
    """What an erasure did: ids and counts, no values."""

    erasure_id: strawberry.ID
    profile_id: strawberry.ID = strawberry.field(description="The profile erased (the id asked may have redirected to it).")
    counts: JSON = strawberry.field(description="Rows deleted per table.")
    redacted_events: list[strawberry.ID] = strawberry.field(description="Audit entries rewritten without the person's ids and values.")
    suppressed: int = strawberry.field(description="Record keys and identifiers put on the suppression list (as salted digests).")


@strawberry.type
class UnsuppressResult:
    lifted: int


@strawberry.type
class PrivacyMutation:
    @strawberry.mutation(
        description="Erase a person: the profile's source records, identifiers, golden fields, events, review pairs and "
        "steward actions are deleted, their values leave the audit log, and their record keys and identifiers are "
        "suppressed so that no later run or ingest brings them back. The id then answers like one never issued.",
        extensions=[Roles(Role.STEWARD, Role.ADMIN)],
    )
    def erase_profile(self, info: Info[Context, Any], id: strawberry.ID, reason: str) -> ErasureResult:
        ctx = context_of(info)
        if not reason.strip():
            raise ApiError("a reason is required for an erasure")
        by = Steward(actor=ctx.principal.actor, role=ctx.principal.role.value)
        try:
            erasure = erase_profile(ctx.queries.store, str(id), by, reason)
        except NotFoundError as exc:
            raise NotFound(str(exc)) from None
        ctx.committed()
        forget_live(ctx)
        return ErasureResult(
            erasure_id=strawberry.ID(erasure.erasure_id),
            profile_id=strawberry.ID(erasure.profile_id),
            counts=cast(JSON, erasure.counts),
            redacted_events=[strawberry.ID(e) for e in erasure.redacted_events],
            suppressed=erasure.suppressed,
        )

    @strawberry.mutation(
        description='Lift a suppression: an identifier (kind and value, standardized as lookups are) or a record key ("source:record_id") '
        "may come back in later runs and ingests. Audited with the reason.",
        extensions=[Roles(Role.ADMIN)],
    )
    def unsuppress(
        self, info: Info[Context, Any], reason: str, record_key: str | None = None, kind: str | None = None, value: str | None = None
    ) -> UnsuppressResult:
        ctx = context_of(info)
        by = Steward(actor=ctx.principal.actor, role=ctx.principal.role.value)
        identifier = None
        if kind is not None or value is not None:
            if kind is None or value is None or record_key is not None:
                raise ApiError("give recordKey, or kind and value")
            standardized = standardized_identifier(kind, value, ctx.config.matching.default_country)
            if standardized is None:
                raise ApiError(f"not a readable {kind}")
            identifier = (kind, standardized)
        try:
            lifted = unsuppress(ctx.queries.store, by, reason, record_key=record_key.strip() if record_key else None, identifier=identifier)
        except NotFoundError as exc:
            raise NotFound(str(exc)) from None
        except UnifyError as exc:
            raise ApiError(str(exc)) from None
        ctx.committed()
        return UnsuppressResult(lifted=lifted)


def forget_live(ctx: Context) -> None:
    """The served live ingester reads the published records again (its in-memory index held the erased ones)."""
    live_ingester(ctx.queries, ctx.config).forget()

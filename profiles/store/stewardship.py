"""Steward actions on the published run: decide a candidate pair, merge profiles, split
records out, and undo any of these.

Every action
- runs in one transaction that holds the store's lock, so two decisions on one profile
  are applied one after the other and the second sees the first (and is refused with a
  :class:`ConflictError` when what it was based on no longer holds);
- is recorded as constraints on record pairs (``link_constraints``: ``same`` keeps two
  records together, ``different`` keeps them apart), which every later batch run honours;
- keeps the exact rows it changed, before and after (records' profile ids, profiles,
  golden fields with lineage, id registry), in snapshot tables of the run, so that
  ``undo`` restores the state before the action exactly; an undo is an action too, so
  undoing it redoes;
- writes an audit event (actor, role, reason, profiles and records before and after; no PII).

A regrouped profile is re-partitioned the way a batch run would do it (links at or above
the match threshold, strongest first, never across a ``different`` pair), so that a
rerun on the same input reproduces what the steward sees."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import pyarrow as pa

from profiles import survivorship
from profiles.constraints import STEWARD_LINK, constrained_components
from profiles.errors import ConflictError, InvalidActionError, NotFoundError, StoreError
from profiles.identity import inherit_profile_ids, mint_profile_ids
from profiles.store.connection import Store, ident, in_list, marks
from profiles.store.queries import PROFILE_COLUMNS, AuditEvent, ProfileQueries
from profiles.store.runs import published_run
from profiles.tuning import TUNING

Decision = Literal["same", "different"]
ActionKind = Literal["same", "different", "merge", "split", "undo"]

#: Snapshot tables of a run: what an action changed, before and after.
_SNAPSHOTS: Final[dict[str, str]] = {
    "snap_records": "SELECT record_key, profile_id, match_probability FROM {run}.records",
    "snap_profiles": "SELECT * FROM {run}.profiles",
    "snap_golden_fields": "SELECT * FROM {run}.golden_fields",
    "snap_registry": "SELECT * FROM {cat}.main.profile_registry",
}


#: ``golden_fields`` and ``profiles`` rows as :func:`survivorship.golden_records` gives them.
_GOLDEN_SCHEMA = pa.schema(
    [
        *((c, pa.string()) for c in survivorship.GOLDEN_FIELD_COLUMNS if c != "updated_at"),
        ("updated_at", pa.timestamp("us")),
    ]
)
_PROFILE_TYPES = {
    "date_of_birth": pa.date32(),
    "record_count": pa.int64(),
    "sources": pa.list_(pa.string()),
    "updated_at": pa.timestamp("us"),
}
_PROFILE_SCHEMA = pa.schema([(c, _PROFILE_TYPES.get(c, pa.string())) for c in PROFILE_COLUMNS])


@dataclass(frozen=True)
class Steward:
    """Who acts (never a key: the key's name) and in which role."""

    actor: str
    role: str


@dataclass(frozen=True)
class Action:
    action_id: str
    run_id: str
    kind: str
    actor: str
    role: str
    reason: str
    created_at: datetime
    subject: dict[str, Any]
    profiles_before: list[str]
    profiles_after: list[str]
    records: list[str]
    constraints_added: list[str]
    constraints_removed: list[str]
    undoes: str | None
    undone_by: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Action:
        values = dict(row)
        values["subject"] = json.loads(values["subject"]) if values.get("subject") else {}
        for name in ("profiles_before", "profiles_after", "records", "constraints_added", "constraints_removed"):
            values[name] = list(values[name] or [])
        return cls(**values)


@dataclass(frozen=True)
class _Plan:
    """What an action will do: the new profile of each record it touches."""

    profiles_before: list[str]
    assignment: dict[str, str]  # record key -> profile id after the action
    add: list[tuple[str, str, Decision]]
    remove: list[str]  # constraint ids to deactivate
    subject: dict[str, Any]


def match_probabilities(assignment: Mapping[str, str], links: Sequence[tuple[str, str, float]]) -> dict[str, float]:
    """A record's match probability, as in a batch run: its strongest model link (of
    ``links``, the pairs at or above the match threshold) inside its profile."""
    best: dict[str, float] = {}
    for a, b, p in links:
        if assignment.get(a) is not None and assignment.get(a) == assignment.get(b):
            for key in (a, b):
                if p > best.get(key, -1.0):
                    best[key] = float(p)
    return best


class Stewardship:
    """Steward actions on the store's published run."""

    def __init__(self, store: Store, *, match_threshold: float, rules: Mapping[str, str], default_rule: str):
        self.store = store
        self.match_threshold = match_threshold
        self.rules, self.default_rule = dict(rules), default_rule
        self._cat = ident(store.catalog)
        self._published: list[Any] = []  # published_run's cache

    # ---- actions -------------------------------------------------------------------

    def decide(self, pair_id: str, decision: Decision, reason: str, by: Steward) -> Action:
        """A steward's verdict on a candidate pair, applied at once and kept as a constraint."""
        if decision not in ("same", "different"):
            raise InvalidActionError(f"decision must be same or different, not {decision!r}")
        with self.store.transaction():
            rows = self.store.rows("SELECT record_key_l, record_key_r FROM pairs WHERE pair_id = ?", [pair_id])
            if not rows:
                raise NotFoundError(f"no candidate pair {pair_id!r} in the published run")
            a, b = sorted(rows[0])
            decided = self.store.rows(
                "SELECT kind, action_id FROM link_constraints WHERE active AND record_key_l = ? AND record_key_r = ?", [a, b]
            )
            if decided:
                raise ConflictError(f"pair {pair_id} was already decided {decided[0][0].upper()} (action {decided[0][1]}); undo that first")
            members = self._members_of_records([a, b])
            pa_, pb_ = members[a], members[b]
            records = self.records_of([pa_, pb_])
            if decision == "same":
                self._refuse_if_kept_apart(records[pa_], records[pb_])
                survivor = self._oldest([pa_, pb_])
                assignment = {k: survivor for p in {pa_, pb_} for k in records[p]}
            else:
                self._refuse_if_held_together(a, b)
                assignment = (
                    self._repartition(records[pa_], pa_, apart=[(a, b)]) if pa_ == pb_ else {k: p for p in (pa_, pb_) for k in records[p]}
                )
            plan = _Plan(sorted({pa_, pb_}), assignment, [_link(a, b, decision)], [], {"pair_id": pair_id, "records": [a, b]})
            return self._apply(decision, plan, reason, by)

    def merge(self, profile_ids: Sequence[str], reason: str, by: Steward) -> Action:
        """One profile from several: the oldest id survives, the others redirect to it."""
        ids = list(dict.fromkeys(profile_ids))
        if len(ids) < 2:
            raise InvalidActionError("name at least two different profiles to merge")
        with self.store.transaction():
            self._require_current(ids)
            records = self.records_of(ids)
            for i, first in enumerate(ids):
                for second in ids[i + 1 :]:
                    self._refuse_if_kept_apart(records[first], records[second])
            survivor = self._oldest(ids)
            anchor = min(records[survivor])
            links = [_link(anchor, min(records[p]), "same") for p in ids if p != survivor]
            assignment = {k: survivor for p in ids for k in records[p]}
            plan = _Plan(sorted(ids), assignment, links, [], {"profile_ids": ids})
            return self._apply("merge", plan, reason, by)

    def split(self, record_keys: Sequence[str], reason: str, by: Steward, into: str | None = None) -> Action:
        """Take records out of their profile: they form a new profile (or join ``into``),
        and are kept apart from the records they leave behind."""
        keys = sorted(set(record_keys))
        if not keys:
            raise InvalidActionError("name at least one record to split out")
        with self.store.transaction():
            members = self._members_of_records(keys)
            sources = set(members.values())
            if len(sources) > 1:
                raise InvalidActionError(
                    f"the records belong to different profiles ({', '.join(sorted(sources))}); split them one profile at a time"
                )
            (origin,) = sources
            if into is not None:
                self._require_current([into])
                if into == origin:
                    raise InvalidActionError(f"the records are already in {into}")
            records = self.records_of([origin] + ([into] if into else []))
            rest = [k for k in records[origin] if k not in keys]
            if not rest and into is None:
                raise InvalidActionError(f"those are all the records of {origin}: nothing would be left to split from")
            if into is not None:
                self._refuse_if_kept_apart(keys, records[into])
            moved = set(keys)
            remove = [
                cid
                for cid, left, right, kind in self._constraints(records[origin])
                if kind == "same" and ((left in moved) != (right in moved))
            ]
            add = [_link(k, r, "different") for k in keys for r in rest]
            add += [_link(keys[0], k, "same") for k in keys[1:]]
            if into is not None:
                add.append(_link(keys[0], min(records[into]), "same"))
            assignment = self._repartition(rest, origin, ignore=set(remove)) if rest else {}
            target = into or self._new_ids(1)[0]
            assignment.update({k: target for k in keys})
            if into is not None:
                assignment.update({k: into for k in records[into]})
            before = sorted({origin} | ({into} if into else set()))
            plan = _Plan(before, assignment, add, remove, {"records": keys, "into": into})
            return self._apply("split", plan, reason, by)

    def undo(self, action_id: str, reason: str, by: Steward) -> Action:
        """Restore the exact state before ``action_id``; refused when the profiles it
        touched have changed since (undo the later action first)."""
        with self.store.transaction():
            found = self.store.dicts("SELECT * FROM steward_actions WHERE action_id = ?", [action_id])
            if not found:
                raise NotFoundError(f"no steward action {action_id!r}")
            target = Action.from_row(found[0])
            run = self._run()
            if target.run_id != run:
                raise ConflictError(
                    f"action {action_id} changed run {target.run_id}; a batch run has been published since, "
                    "so undo no longer applies (its decisions stay constraints: decide again to change them)"
                )
            if target.undone_by:
                raise ConflictError(f"action {action_id} was already undone by {target.undone_by}")
            if not self._state_matches(target.action_id, "after", target):
                raise ConflictError(f"the profiles of action {action_id} have changed since; undo the later actions first")
            new_id = _new_action_id()
            self._snapshot(new_id, "before", target.profiles_before + target.profiles_after, target.records)
            self._restore(target)
            self._set_active(target.constraints_added, False)
            self._set_active(target.constraints_removed, True)
            self._snapshot(new_id, "after", target.profiles_before + target.profiles_after, target.records)
            self.store.execute("UPDATE steward_actions SET undone_by = ? WHERE action_id = ?", [new_id, action_id])
            return self._record(
                new_id,
                "undo",
                by,
                reason,
                {"action_id": action_id},
                before=target.profiles_after,
                after=target.profiles_before,
                records=target.records,
                added=target.constraints_removed,
                removed=target.constraints_added,
                undoes=action_id,
            )

    # ---- reads ---------------------------------------------------------------------

    def action(self, action_id: str) -> Action | None:
        rows = self.store.dicts("SELECT * FROM steward_actions WHERE action_id = ?", [action_id])
        return Action.from_row(rows[0]) if rows else None

    def recent_actions(self, limit: int = 20) -> list[Action]:
        rows = self.store.dicts("SELECT * FROM steward_actions ORDER BY created_at DESC, action_id DESC LIMIT ?", [limit])
        return [Action.from_row(r) for r in rows]

    # ---- planning helpers ----------------------------------------------------------

    def _run(self) -> str:
        run = published_run(self.store, self._published)
        if run is None:
            raise StoreError("no published run: run `unify run` first")
        return run

    def _members_of_records(self, keys: Sequence[str]) -> dict[str, str]:
        rows = self.store.rows(f"SELECT record_key, profile_id FROM records WHERE record_key IN ({marks(keys)})", list(keys))
        found = dict((str(k), str(p)) for k, p in rows)
        missing = [k for k in keys if k not in found]
        if missing:
            raise NotFoundError(f"no record {', '.join(missing)} in the published run")
        return found

    def records_of(self, profile_ids: Sequence[str]) -> dict[str, list[str]]:
        ids = list(dict.fromkeys(profile_ids))
        grouped: dict[str, list[str]] = {p: [] for p in ids}
        for key, pid in self.store.rows(
            f"SELECT record_key, profile_id FROM records WHERE profile_id IN ({marks(ids)}) ORDER BY record_key", ids
        ):
            grouped[str(pid)].append(str(key))
        return grouped

    def _require_current(self, profile_ids: Sequence[str]) -> None:
        resolved = ProfileQueries(self.store).resolve(profile_ids)
        for pid in profile_ids:
            if pid not in resolved:
                raise NotFoundError(f"no profile {pid!r}")
            if resolved[pid].redirected:
                raise ConflictError(f"profile {pid} was merged into {resolved[pid].profile_id}; act on that profile")

    def _oldest(self, profile_ids: Sequence[str]) -> str:
        ids = list(profile_ids)
        rows = self.store.rows(
            f"SELECT profile_id FROM profile_registry WHERE profile_id IN ({marks(ids)}) ORDER BY created_at, profile_id LIMIT 1",
            ids,
        )
        return str(rows[0][0]) if rows else min(ids)

    def _constraints(self, keys: Sequence[str]) -> list[tuple[str, str, str, str]]:
        """Active constraints with both records among ``keys``: (id, left, right, kind)."""
        if not keys:
            return []
        return [
            (str(c), str(left), str(right), str(kind))
            for c, left, right, kind in self.store.rows(
                f"""SELECT constraint_id, record_key_l, record_key_r, kind FROM link_constraints
                    WHERE active AND record_key_l IN ({marks(keys)}) AND record_key_r IN ({marks(keys)})""",
                list(keys) * 2,
            )
        ]

    def _refuse_if_kept_apart(self, left: Sequence[str], right: Sequence[str]) -> None:
        rows = self.store.rows(
            f"""SELECT record_key_l, record_key_r, action_id FROM link_constraints
                WHERE active AND kind = 'different'
                  AND ((record_key_l IN ({marks(left)}) AND record_key_r IN ({marks(right)}))
                    OR (record_key_l IN ({marks(right)}) AND record_key_r IN ({marks(left)})))
                LIMIT 1""",
            [*left, *right, *right, *left],
        )
        if rows:
            a, b, action = rows[0]
            raise ConflictError(f"records {a} and {b} were decided DIFFERENT (action {action}); undo that decision first")

    def _refuse_if_held_together(self, a: str, b: str) -> None:
        """Refuse DIFFERENT on two records that steward SAME decisions chain together."""
        reached, frontier = {a}, [a]
        while frontier:
            rows = self.store.rows(
                f"""SELECT record_key_l, record_key_r FROM link_constraints WHERE active AND kind = 'same'
                    AND (record_key_l IN ({marks(frontier)}) OR record_key_r IN ({marks(frontier)}))""",
                frontier * 2,
            )
            frontier = [k for row in rows for k in row if k not in reached]
            reached.update(frontier)
        if b in reached:
            raise ConflictError(f"records {a} and {b} are held together by SAME decisions; undo those first")

    def _repartition(
        self, keys: Sequence[str], origin: str, apart: Iterable[tuple[str, str]] = (), ignore: set[str] | None = None
    ) -> dict[str, str]:
        """Group ``keys`` (records of profile ``origin``) as a batch run would: model
        links at or above the threshold and SAME decisions, never across a DIFFERENT.
        The largest group keeps ``origin``; the others get new ids (inherit_profile_ids)."""
        groups = {min(group): group for group in self._groups(keys, apart, ignore)}
        names, _ = inherit_profile_ids(groups, dict.fromkeys(keys, origin), self._new_ids)
        return {k: names[g] for g, group in groups.items() for k in group}

    def reconcile(self, record_keys: Sequence[str]) -> int:
        """Regroup the profiles that hold ``record_keys`` as a batch run would, with the
        stewards' decisions as they stand now: a decision taken while a batch run was
        running (the run had read the decisions before) is applied to that run once it is
        published. The ids groups keep: profiles.identity.inherit_profile_ids. Returns
        how many records changed profile."""
        keys = sorted(set(record_keys))
        if not keys:
            return 0
        with self.store.transaction():
            in_keys, params = in_list("record_key", keys)
            profiles = sorted({str(p) for (p,) in self.store.rows(f"SELECT DISTINCT profile_id FROM records WHERE {in_keys}", params)})
            if not profiles:
                return 0
            records = self.records_of(profiles)
            was = {k: p for p, ks in records.items() for k in ks}
            groups = {min(group): group for group in self._groups(list(was), (), None)}
            names, _ = inherit_profile_ids(groups, was, self._new_ids)
            assignment = {k: names[g] for g, group in groups.items() for k in group}
            moved = sum(1 for k, p in assignment.items() if was[k] != p)
            if moved:
                self.reassign(profiles, assignment)
            return moved

    def _groups(self, keys: Sequence[str], apart: Iterable[tuple[str, str]], ignore: set[str] | None) -> list[list[str]]:
        """``keys`` grouped by model links at or above the threshold and SAME decisions,
        never across a DIFFERENT (nor a pair of ``apart``); largest group first."""
        keys = list(keys)
        links = [
            (str(left), str(right), float(p))
            for left, right, p in self.store.rows(
                f"""SELECT record_key_l, record_key_r, match_probability FROM pairs
                    WHERE match_probability >= ? AND record_key_l IN ({marks(keys)}) AND record_key_r IN ({marks(keys)})""",
                [self.match_threshold, *keys, *keys],
            )
        ]
        kept_apart = list(apart)
        for cid, left, right, kind in self._constraints(keys):
            if ignore and cid in ignore:
                continue
            if kind == "same":
                links.append((left, right, STEWARD_LINK))
            else:
                kept_apart.append((left, right))
        groups: dict[str, list[str]] = {}
        for key, representative in constrained_components(keys, links, kept_apart).items():
            groups.setdefault(representative, []).append(key)
        return sorted(groups.values(), key=lambda g: (-len(g), min(g)))

    def _new_ids(self, count: int) -> list[str]:
        ids = mint_profile_ids(count)
        if ids and self.store.scalar(f"SELECT count(*) FROM profile_registry WHERE profile_id IN ({marks(ids)})", ids):
            return self._new_ids(count)  # 80 random bits: practically never
        return ids

    # ---- applying ------------------------------------------------------------------

    def _apply(self, kind: ActionKind, plan: _Plan, reason: str, by: Steward) -> Action:
        """Carry out a plan inside the caller's transaction: snapshot, regroup, record the
        constraints, snapshot again, record the action."""
        action_id = _new_action_id()
        records = sorted(plan.assignment)
        after = sorted(set(plan.assignment.values()))
        touched = sorted(set(plan.profiles_before) | set(after))
        self._snapshot(action_id, "before", touched, records)
        self.reassign(plan.profiles_before, plan.assignment)
        added = self._add_constraints(action_id, plan.add)
        self._set_active(plan.remove, False)
        self._snapshot(action_id, "after", touched, records)
        return self._record(
            action_id,
            kind,
            by,
            reason,
            plan.subject,
            before=plan.profiles_before,
            after=after,
            records=records,
            added=added,
            removed=plan.remove,
            undoes=None,
        )

    def reassign(
        self,
        profiles_before: Sequence[str],
        assignment: Mapping[str, str],
        previous: Mapping[str, str] | None = None,
        links: Sequence[tuple[str, str, float]] | None = None,
        current: Mapping[str, tuple[str | None, float | None]] | None = None,
    ) -> dict[str, str]:
        """Give every record of ``assignment`` its new profile (the caller's transaction):
        rebuild the golden records of the touched profiles, register new ids, and retire
        the ids no record keeps, redirecting each to the profile that took most of its
        records. ``assignment`` must cover every record of the profiles it touches;
        ``previous`` names the former profile of records the store no longer shows in one
        (a live update). ``links``: the model's pairs at or above the match threshold
        among the records of ``assignment``, and ``current``, each of its records'
        (profile, probability) as the store holds them now, when the caller has read
        them. Returns {retired id: survivor}.

        Every statement looks rows up by key (record, profile), which the serving indexes
        answer without scanning the run's tables."""
        run = self._run()
        records = sorted(assignment)
        after = set(assignment.values())
        touched = sorted(set(profiles_before) | after)
        if current is None:
            in_records, record_params = in_list("record_key", records)
            current = {  # (profile, probability) of each record as the store holds it now
                str(k): (p, q)
                for k, p, q in self.store.rows(
                    f"SELECT record_key, profile_id, match_probability FROM records WHERE {in_records}", record_params
                )
            }
        was = {k: str(p) for k, (p, _) in current.items() if p is not None}
        was.update(previous or {})  # a live update's row already carries its new profile
        self._regroup(run, assignment, touched, current, links)
        before = set(profiles_before)
        fresh = sorted(p for p in after if p not in before)
        if fresh:
            self.store.execute(
                "INSERT INTO profile_registry (profile_id, created_run, created_at) SELECT unnest(?::VARCHAR[]), ?, ?",
                [fresh, run, datetime.now(UTC)],
            )
        retired: dict[str, str] = {}
        taken_from: dict[str, dict[str, int]] = {}  # former profile -> new profile -> records it took
        for key, profile in was.items():
            if key in assignment:
                counts = taken_from.setdefault(profile, {})
                counts[assignment[key]] = counts.get(assignment[key], 0) + 1
        for old in (p for p in profiles_before if p not in after):
            taken = taken_from.get(old, {})
            survivor = min(taken, key=lambda p: (-taken[p], p)) if taken else None
            self.store.execute("UPDATE profile_registry SET retired_run = ?, redirect_to = ? WHERE profile_id = ?", [run, survivor, old])
            if survivor is not None:
                self.store.execute("UPDATE profile_registry SET redirect_to = ? WHERE redirect_to = ?", [survivor, old])
                retired[old] = survivor
        return retired

    def _regroup(
        self,
        run: str,
        assignment: Mapping[str, str],
        touched: Sequence[str],
        current: Mapping[str, tuple[str | None, float | None]],
        links: Sequence[tuple[str, str, float]] | None,
    ) -> None:
        """Move the records to their new profiles and rebuild the touched profiles'
        golden records with the batch run's own survivorship SQL. ``current`` is each
        record's (profile, probability) as the store holds it now."""
        r = f"{self._cat}.{ident(run)}"
        records = sorted(assignment)
        in_records, params = in_list("record_key", records)
        in_touched, touched_params = in_list("profile_id", touched)
        if links is None:
            # Links to records outside the assignment are in profiles it does not touch:
            # they never count. One lookup per side: an OR of the two would scan the table.
            links = list(
                dict.fromkeys(
                    (str(a), str(b), float(p))
                    for side in ("record_key_l", "record_key_r")
                    for a, b, p in self.store.rows(
                        f"SELECT record_key_l, record_key_r, match_probability FROM pairs WHERE {in_records.replace('record_key', side)}",
                        params,
                    )
                    if p >= self.match_threshold and a in assignment and b in assignment
                )
            )
        best = match_probabilities(assignment, links)
        # a few profiles: golden records in Python, the updates with bound values; more: the
        # assignment registered once for the updates and the survivorship SQL
        few = len(set(assignment.values())) <= TUNING.python_max_profiles and len(records) <= TUNING.few_records
        if not few:
            self.store.register(
                "_sw_assignment",
                pa.table(
                    {
                        "record_key": records,
                        "profile_id": [assignment[k] for k in records],
                        "match_probability": pa.array([best.get(k) for k in records], pa.float64()),
                    }
                ),
            )
        try:
            # Only rows that change are written, each by key: a record that moves gets its
            # new profile id (indexed in records, so the whole row and its index entries
            # are rewritten), one that stays only its new probability, in place.
            moved = [k for k in records if current.get(k, (None, None))[0] != assignment[k]]
            staying = set(records) - set(moved)
            reprobed = [k for k in records if k in staying and current[k][1] != best.get(k)]
            for table, keys, changes in (
                ("records", moved, "profile_id = a.profile_id, match_probability = a.match_probability"),
                ("records", reprobed, "match_probability = a.match_probability"),
                ("membership", moved + reprobed, "profile_id = a.profile_id, match_probability = a.match_probability"),
                ("identifiers", moved, "profile_id = a.profile_id"),
            ):
                if keys:
                    in_keys, key_params = in_list(f"{table}.record_key", keys)
                    if few:  # bound values (registering an Arrow table costs ~0.5 ms)
                        source = (
                            "(VALUES " + ", ".join("(?, ?, ?::DOUBLE)" for _ in keys) + ") a(record_key, profile_id, match_probability)"
                        )
                        key_params = [v for k in keys for v in (k, assignment[k], best.get(k))] + key_params
                    else:
                        source = "_sw_assignment a"
                    self.store.execute(
                        f"UPDATE {r}.{table} SET {changes} FROM {source} WHERE {table}.record_key = a.record_key AND {in_keys}",
                        key_params,
                    )
            for table in ("golden_fields", "profiles"):
                self.store.execute(f"DELETE FROM {r}.{table} WHERE {in_touched}", touched_params)
            # Read out, not CREATE TABLE AS: DuckDB 1.5.6 failed a batch insert from an index
            # scan over rows this transaction inserted ("batch index 1 is present in multiple
            # collections"), which invalidates the database.
            member_records = self.store.arrow(
                f"SELECT {', '.join(survivorship.RECORD_COLUMNS)} FROM {r}.records WHERE {in_records}", params
            )
            if few:  # the same golden records in Python (the SQL is ~15 ms to plan and run)
                golden, profiles = survivorship.golden_records(member_records.to_pylist(), assignment, self.rules, self.default_rule)
                self.store.append(f"{r}.golden_fields", pa.Table.from_pylist(golden, schema=_GOLDEN_SCHEMA))
                self.store.append(f"{r}.profiles", pa.Table.from_pylist(profiles, schema=_PROFILE_SCHEMA))
                return
            self.store.execute("CREATE OR REPLACE TEMP TABLE _sw_members AS SELECT record_key, profile_id FROM _sw_assignment")
        finally:
            if not few:
                self.store.unregister("_sw_assignment")
        self.store.register("_sw_records", member_records)
        try:
            with self.store.unordered():  # inserts after this transaction's writes (see Store.unordered)
                self.store.execute(
                    "CREATE OR REPLACE TEMP TABLE _sw_golden AS "
                    + survivorship.golden_fields_sql("_sw_records", "_sw_members", self.rules, self.default_rule)
                )
                self.store.execute(f"INSERT INTO {r}.golden_fields BY NAME SELECT * FROM _sw_golden")
                self.store.execute(
                    f"INSERT INTO {r}.profiles BY NAME " + survivorship.profiles_sql("_sw_golden", "_sw_records", "_sw_members")
                )
        finally:
            self.store.unregister("_sw_records")
        for temp in ("_sw_members", "_sw_golden"):
            self.store.execute(f"DROP TABLE temp.main.{temp}")

    def _restore(self, target: Action) -> None:
        """Put back the rows ``target`` found (its "before" snapshot)."""
        run = self._run()
        r = f"{self._cat}.{ident(run)}"
        touched = list(dict.fromkeys(target.profiles_before + target.profiles_after))
        for table in ("records", "membership"):
            self.store.execute(
                f"""UPDATE {r}.{table} SET profile_id = s.profile_id, match_probability = s.match_probability
                    FROM {r}.snap_records s WHERE s.action_id = ? AND s.phase = 'before' AND {table}.record_key = s.record_key""",
                [target.action_id],
            )
        self.store.execute(
            f"""UPDATE {r}.identifiers SET profile_id = s.profile_id FROM {r}.snap_records s
                WHERE s.action_id = ? AND s.phase = 'before' AND identifiers.record_key = s.record_key""",
            [target.action_id],
        )
        with self.store.unordered():  # inserts reading tables this transaction wrote (see Store.unordered)
            for table in ("profiles", "golden_fields"):
                self.store.execute(f"DELETE FROM {r}.{table} WHERE profile_id IN ({marks(touched)})", touched)
                self.store.execute(
                    f"INSERT INTO {r}.{table} SELECT * EXCLUDE (action_id, phase) FROM {r}.snap_{table} WHERE action_id = ? AND phase = 'before'",
                    [target.action_id],
                )
            self.store.execute(
                f"DELETE FROM profile_registry WHERE profile_id IN ({marks(touched)}) OR redirect_to IN ({marks(touched)})",
                touched * 2,
            )
            self.store.execute(
                f"INSERT INTO profile_registry SELECT * EXCLUDE (action_id, phase) FROM {r}.snap_registry WHERE action_id = ? AND phase = 'before'",
                [target.action_id],
            )

    def _state_matches(self, action_id: str, phase: str, target: Action) -> bool:
        """Whether the rows ``target`` touched are now exactly as its ``phase`` snapshot."""
        run = ident(self._run())
        pids = list(dict.fromkeys(target.profiles_before + target.profiles_after))
        keys = target.records
        for table, select in _SNAPSHOTS.items():
            source = select.format(run=run, cat=self._cat)
            where, params = self._snapshot_filter(table, pids, keys)
            differs = self.store.scalar(
                f"""SELECT count(*) FROM (
                    (SELECT * FROM ({source}) WHERE {where}
                     EXCEPT ALL SELECT * EXCLUDE (action_id, phase) FROM {run}.{table} WHERE action_id = ? AND phase = ?)
                    UNION ALL
                    (SELECT * EXCLUDE (action_id, phase) FROM {run}.{table} WHERE action_id = ? AND phase = ?
                     EXCEPT ALL SELECT * FROM ({source}) WHERE {where}))""",
                [*params, action_id, phase, action_id, phase, *params],
            )
            if differs:
                return False
        return True

    def _add_constraints(self, action_id: str, links: Sequence[tuple[str, str, Decision]]) -> list[str]:
        ids = [f"c_{secrets.token_hex(8)}" for _ in links]
        if links:
            self.store.register(
                "_sw_constraints",
                pa.table(
                    {
                        "constraint_id": ids,
                        "record_key_l": [min(a, b) for a, b, _ in links],
                        "record_key_r": [max(a, b) for a, b, _ in links],
                        "kind": [k for _, _, k in links],
                    }
                ),
            )
            try:
                self.store.execute(
                    """INSERT INTO link_constraints (constraint_id, record_key_l, record_key_r, kind, action_id, created_at, active)
                       SELECT constraint_id, record_key_l, record_key_r, kind, ?, now(), true FROM _sw_constraints""",
                    [action_id],
                )
            finally:
                self.store.unregister("_sw_constraints")
        return ids

    def _set_active(self, constraint_ids: Sequence[str], active: bool) -> None:
        if constraint_ids:
            ids = list(constraint_ids)
            self.store.execute(f"UPDATE link_constraints SET active = ? WHERE constraint_id IN ({marks(ids)})", [active, *ids])

    def _record(
        self,
        action_id: str,
        kind: ActionKind,
        by: Steward,
        reason: str,
        subject: dict[str, Any],
        *,
        before: Sequence[str],
        after: Sequence[str],
        records: Sequence[str],
        added: Sequence[str],
        removed: Sequence[str],
        undoes: str | None,
    ) -> Action:
        """The action row and its audit event (ids and record keys only, no PII values)."""
        run = ident(self._run())
        moved = {
            str(key): [str(was), str(now)]
            for key, was, now in self.store.rows(
                f"""SELECT b.record_key, b.profile_id, a.profile_id FROM {run}.snap_records b
                    JOIN {run}.snap_records a ON a.record_key = b.record_key AND a.action_id = b.action_id
                    WHERE b.action_id = ? AND b.phase = 'before' AND a.phase = 'after' AND a.profile_id <> b.profile_id
                    ORDER BY 1""",
                [action_id],
            )
        }
        self.store.execute(
            """INSERT INTO steward_actions VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, NULL)""",
            [
                action_id,
                self._run(),
                kind,
                by.actor,
                by.role,
                reason,
                json.dumps(subject),
                list(before),
                list(after),
                list(records),
                list(added),
                list(removed),
                undoes,
            ],
        )
        ProfileQueries(self.store).append_audit(
            [
                AuditEvent(
                    actor=by.actor,
                    role=by.role,
                    action=f"steward.{kind}",
                    subject=action_id,
                    detail={
                        "reason": reason,
                        "subject": subject,
                        "profiles": sorted(set(before) | set(after)),
                        "profiles_before": list(before),
                        "profiles_after": list(after),
                        "moved": moved,
                        "constraints_added": list(added),
                        "constraints_removed": list(removed),
                        "undoes": undoes,
                    },
                )
            ]
        )
        found = self.action(action_id)
        assert found is not None
        return found

    @staticmethod
    def _snapshot_filter(table: str, pids: list[str], keys: Sequence[str]) -> tuple[str, list[Any]]:
        if table == "snap_records":
            return f"record_key IN ({marks(keys)})", list(keys)
        if table == "snap_registry":
            return f"profile_id IN ({marks(pids)}) OR redirect_to IN ({marks(pids)})", pids * 2
        return f"profile_id IN ({marks(pids)})", list(pids)

    def _snapshot(self, action_id: str, phase: str, profile_ids: Sequence[str], record_keys: Sequence[str]) -> None:
        run = ident(self._run())
        pids = list(dict.fromkeys(profile_ids))
        for table, select in _SNAPSHOTS.items():
            source = select.format(run=run, cat=self._cat)
            target = f"{run}.{table}"
            self.store.execute(
                f"CREATE TABLE IF NOT EXISTS {target} AS "
                f"SELECT NULL::VARCHAR AS action_id, NULL::VARCHAR AS phase, * FROM ({source}) WHERE false"
            )
            where, params = self._snapshot_filter(table, pids, record_keys)
            with self.store.unordered():  # read by key after this transaction's writes (see Store.unordered)
                self.store.execute(f"INSERT INTO {target} SELECT ?, ?, * FROM ({source}) WHERE {where}", [action_id, phase, *params])


def _link(a: str, b: str, kind: Decision) -> tuple[str, str, Decision]:
    return (min(a, b), max(a, b), kind)


def _new_action_id() -> str:
    return f"act_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


__all__ = ["Action", "Decision", "Steward", "Stewardship"]

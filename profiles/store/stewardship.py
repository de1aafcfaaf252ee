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
  undoing it redoes (profiles.store.snapshots);
- writes an audit event (actor, role, reason, profiles and records before and after; no PII)
  (profiles.store.action_log).

A regrouped profile is re-partitioned the way a batch run would do it (links at or above
the match threshold, strongest first, never across a ``different`` pair), so that a
rerun on the same input reproduces what the steward sees. This module reads what an
action needs from the store and checks it; the regrouping itself is decided by
profiles.regrouping (pure functions) and written by profiles.store.reassignment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from profiles.errors import ConflictError, InvalidActionError, NoPublishedRun, NotFoundError
from profiles.identity import mint_profile_ids
from profiles.regrouping import Held, assign_groups, group_records, match_probabilities
from profiles.store import action_log, snapshots
from profiles.store.action_log import Action, ActionKind, Changes, Decision, Steward
from profiles.store.connection import Store, in_list, marks
from profiles.store.queries import ProfileQueries
from profiles.store.reassignment import Reassignment
from profiles.store.runs import published_run


@dataclass(frozen=True)
class _Plan:
    """What an action will do: the new profile of each record it touches."""

    profiles_before: list[str]
    assignment: dict[str, str]  # record key -> profile id after the action
    add: list[tuple[str, str, Decision]]
    remove: list[str]  # constraint ids to deactivate
    subject: dict[str, Any]


class Stewardship:
    """Steward actions on the store's published run."""

    def __init__(self, store: Store, *, match_threshold: float, rules: Mapping[str, str], default_rule: str):
        self.store = store
        self.match_threshold = match_threshold
        self.rules, self.default_rule = dict(rules), default_rule
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
            target = action_log.find_action(self.store, action_id)
            if target is None:
                raise NotFoundError(f"no steward action {action_id!r}")
            run = self._run()
            if target.run_id != run:
                raise ConflictError(
                    f"action {action_id} changed run {target.run_id}; a batch run has been published since, "
                    "so undo no longer applies (its decisions stay constraints: decide again to change them)"
                )
            if target.undone_by:
                raise ConflictError(f"action {action_id} was already undone by {target.undone_by}")
            touched = target.profiles_before + target.profiles_after
            if not snapshots.state_matches(self.store, run, target.action_id, "after", touched, target.records):
                raise ConflictError(f"the profiles of action {action_id} have changed since; undo the later actions first")
            new_id = action_log.new_action_id()
            snapshots.snapshot(self.store, run, new_id, "before", touched, target.records)
            snapshots.restore(self.store, run, target.action_id, touched)
            snapshots.set_active(self.store, target.constraints_added, False)
            snapshots.set_active(self.store, target.constraints_removed, True)
            snapshots.snapshot(self.store, run, new_id, "after", touched, target.records)
            self.store.execute("UPDATE steward_actions SET undone_by = ? WHERE action_id = ?", [new_id, action_id])
            changes = Changes(
                before=target.profiles_after,
                after=target.profiles_before,
                records=target.records,
                added=target.constraints_removed,
                removed=target.constraints_added,
                undoes=action_id,
            )
            return action_log.record_action(self.store, run, new_id, "undo", by, reason, {"action_id": action_id}, changes)

    # ---- reads ---------------------------------------------------------------------

    def action(self, action_id: str) -> Action | None:
        return action_log.find_action(self.store, action_id)

    def recent_actions(self, limit: int = 20) -> list[Action]:
        return action_log.recent_actions(self.store, limit)

    # ---- planning helpers ----------------------------------------------------------

    def _run(self) -> str:
        run = published_run(self.store, self._published)
        if run is None:
            raise NoPublishedRun()
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
        return assign_groups(self._groups(keys, apart, ignore), dict.fromkeys(keys, origin), self._new_ids)

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
            assignment = assign_groups(self._groups(list(was), (), None), was, self._new_ids)
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
        return group_records(keys, links, self._constraints(keys), apart, ignore)

    def _new_ids(self, count: int) -> list[str]:
        ids = mint_profile_ids(count)
        if ids and self.store.scalar(f"SELECT count(*) FROM profile_registry WHERE profile_id IN ({marks(ids)})", ids):
            return self._new_ids(count)  # 80 random bits: practically never
        return ids

    # ---- applying ------------------------------------------------------------------

    def _apply(self, kind: ActionKind, plan: _Plan, reason: str, by: Steward) -> Action:
        """Carry out a plan inside the caller's transaction: snapshot, regroup, record the
        constraints, snapshot again, record the action."""
        run = self._run()
        action_id = action_log.new_action_id()
        records = sorted(plan.assignment)
        after = sorted(set(plan.assignment.values()))
        touched = sorted(set(plan.profiles_before) | set(after))
        snapshots.snapshot(self.store, run, action_id, "before", touched, records)
        self._writer(run).reassign(plan.profiles_before, plan.assignment)
        added = snapshots.add_constraints(self.store, action_id, plan.add)
        snapshots.set_active(self.store, plan.remove, False)
        snapshots.snapshot(self.store, run, action_id, "after", touched, records)
        changes = Changes(before=plan.profiles_before, after=after, records=records, added=added, removed=plan.remove)
        return action_log.record_action(self.store, run, action_id, kind, by, reason, plan.subject, changes)

    def reassign(
        self,
        profiles_before: Sequence[str],
        assignment: Mapping[str, str],
        previous: Mapping[str, str] | None = None,
        links: Sequence[tuple[str, str, float]] | None = None,
        current: Mapping[str, Held] | None = None,
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
        return self._writer(self._run()).reassign(profiles_before, assignment, previous, links, current)

    def _writer(self, run: str) -> Reassignment:
        return Reassignment(self.store, run, match_threshold=self.match_threshold, rules=self.rules, default_rule=self.default_rule)


def _link(a: str, b: str, kind: Decision) -> tuple[str, str, Decision]:
    return (min(a, b), max(a, b), kind)


__all__ = ["Action", "Decision", "Steward", "Stewardship", "match_probabilities"]

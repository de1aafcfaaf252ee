"""The store writes of a regrouping: given the profile every record of the touched
profiles is in afterwards (decided by profiles.regrouping, a steward action or the live
path), move the records, rebuild the touched profiles' golden records, register the new
ids and retire the ids no record keeps.

Every statement looks rows up by key (record, profile), which the serving indexes answer
without scanning the run's tables. A few profiles get their golden records in Python and
their updates with bound values; more go through the batch run's own survivorship SQL
(profiles.regrouping.golden_in_python says which). Runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from profiles import survivorship
from profiles.regrouping import Held, changed_rows, former_profiles, golden_in_python, links_among, match_probabilities, redirects
from profiles.store.connection import Store, ident, in_list
from profiles.store.queries import PROFILE_COLUMNS

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


class Reassignment:
    """Writes regroupings into the published run ``run`` of ``store``, with the match
    threshold and survivorship rules of the configuration."""

    def __init__(self, store: Store, run: str, *, match_threshold: float, rules: Mapping[str, str], default_rule: str):
        self.store = store
        self.run = run
        self.match_threshold = match_threshold
        self.rules, self.default_rule = rules, default_rule
        self._r = f"{ident(store.catalog)}.{ident(run)}"

    def reassign(
        self,
        profiles_before: Sequence[str],
        assignment: Mapping[str, str],
        previous: Mapping[str, str] | None = None,
        links: Sequence[tuple[str, str, float]] | None = None,
        current: Mapping[str, Held] | None = None,
    ) -> dict[str, str]:
        """See profiles.store.stewardship.Stewardship.reassign. Returns {retired id: survivor}."""
        records = sorted(assignment)
        after = set(assignment.values())
        touched = sorted(set(profiles_before) | after)
        if current is None:
            current = self._current(records)
        was = former_profiles(current, previous)
        self._regroup(assignment, touched, current, links)
        before = set(profiles_before)
        self._register(sorted(p for p in after if p not in before))
        return self._retire(redirects(profiles_before, assignment, was))

    def _current(self, records: Sequence[str]) -> dict[str, Held]:
        """(profile, probability) of each record as the store holds it now."""
        in_records, record_params = in_list("record_key", records)
        return {
            str(k): (p, q)
            for k, p, q in self.store.rows(
                f"SELECT record_key, profile_id, match_probability FROM records WHERE {in_records}", record_params
            )
        }

    def _register(self, fresh: Sequence[str]) -> None:
        """Register the ids the regrouping made."""
        if fresh:
            self.store.execute(
                "INSERT INTO profile_registry (profile_id, created_run, created_at) SELECT unnest(?::VARCHAR[]), ?, ?",
                [list(fresh), self.run, datetime.now(UTC)],
            )

    def _retire(self, retiring: Mapping[str, str | None]) -> dict[str, str]:
        """Retire the ids no record keeps, each redirected (with the ids that redirected to
        it) to its survivor. Returns {retired id: survivor} of those that have one."""
        retired: dict[str, str] = {}
        for old, survivor in retiring.items():
            self.store.execute(
                "UPDATE profile_registry SET retired_run = ?, redirect_to = ? WHERE profile_id = ?", [self.run, survivor, old]
            )
            if survivor is not None:
                self.store.execute("UPDATE profile_registry SET redirect_to = ? WHERE redirect_to = ?", [survivor, old])
                retired[old] = survivor
        return retired

    def _regroup(
        self,
        assignment: Mapping[str, str],
        touched: Sequence[str],
        current: Mapping[str, Held],
        links: Sequence[tuple[str, str, float]] | None,
    ) -> None:
        """Move the records to their new profiles and rebuild the touched profiles'
        golden records with the batch run's own survivorship SQL (a few: the same in
        Python). ``current`` is each record's (profile, probability) as the store holds it now."""
        records = sorted(assignment)
        if links is None:
            links = self._links_within(records, assignment)
        best = match_probabilities(assignment, links)
        moved, reprobed = changed_rows(records, assignment, current, best)
        # a few profiles: golden records in Python, the updates with bound values; more: the
        # assignment registered once for the updates and the survivorship SQL
        if golden_in_python(assignment, records):
            self._update_rows(moved, reprobed, (assignment, best))
            member_records = self._clear_golden(records, touched)
            # the same golden records in Python (the SQL is ~15 ms to plan and run)
            golden, profiles = survivorship.golden_records(member_records.to_pylist(), assignment, self.rules, self.default_rule)
            self.store.append(f"{self._r}.golden_fields", pa.Table.from_pylist(golden, schema=_GOLDEN_SCHEMA))
            self.store.append(f"{self._r}.profiles", pa.Table.from_pylist(profiles, schema=_PROFILE_SCHEMA))
            return
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
            self._update_rows(moved, reprobed, None)
            member_records = self._clear_golden(records, touched)
            self.store.execute("CREATE OR REPLACE TEMP TABLE _sw_members AS SELECT record_key, profile_id FROM _sw_assignment")
        finally:
            self.store.unregister("_sw_assignment")
        self._golden_by_sql(member_records)

    def _links_within(self, records: Sequence[str], assignment: Mapping[str, str]) -> list[tuple[str, str, float]]:
        """The model links at or above the threshold among the records of ``assignment``."""
        in_records, params = in_list("record_key", records)
        # Links to records outside the assignment are in profiles it does not touch:
        # they never count. One lookup per side: an OR of the two would scan the table.
        rows = (
            row
            for side in ("record_key_l", "record_key_r")
            for row in self.store.rows(
                f"SELECT record_key_l, record_key_r, match_probability FROM pairs WHERE {in_records.replace('record_key', side)}",
                params,
            )
        )
        return links_among(rows, assignment.keys(), self.match_threshold)

    def _update_rows(
        self, moved: Sequence[str], reprobed: Sequence[str], bound: tuple[Mapping[str, str], Mapping[str, float]] | None
    ) -> None:
        """Write the new profile ids and probabilities: from ``bound`` (assignment, best
        probabilities) as bound values, or from the registered ``_sw_assignment``."""
        # Only rows that change are written, each by key: a record that moves gets its
        # new profile id (indexed in records, so the whole row and its index entries
        # are rewritten), one that stays only its new probability, in place.
        for table, keys, changes in (
            ("records", moved, "profile_id = a.profile_id, match_probability = a.match_probability"),
            ("records", reprobed, "match_probability = a.match_probability"),
            ("membership", [*moved, *reprobed], "profile_id = a.profile_id, match_probability = a.match_probability"),
            ("identifiers", moved, "profile_id = a.profile_id"),
        ):
            if keys:
                in_keys, key_params = in_list(f"{table}.record_key", keys)
                if bound is not None:  # bound values (registering an Arrow table costs ~0.5 ms)
                    source, values = _values_source(keys, *bound)
                    key_params = values + key_params
                else:
                    source = "_sw_assignment a"
                self.store.execute(
                    f"UPDATE {self._r}.{table} SET {changes} FROM {source} WHERE {table}.record_key = a.record_key AND {in_keys}",
                    key_params,
                )

    def _clear_golden(self, records: Sequence[str], touched: Sequence[str]) -> pa.Table:
        """Delete the touched profiles and their golden fields; returns the survivorship
        columns of the regrouped records, to build them again from."""
        in_touched, touched_params = in_list("profile_id", touched)
        for table in ("golden_fields", "profiles"):
            self.store.execute(f"DELETE FROM {self._r}.{table} WHERE {in_touched}", touched_params)
        # Read out, not CREATE TABLE AS: DuckDB 1.5.6 failed a batch insert from an index
        # scan over rows this transaction inserted ("batch index 1 is present in multiple
        # collections"), which invalidates the database.
        in_records, params = in_list("record_key", records)
        return self.store.arrow(f"SELECT {', '.join(survivorship.RECORD_COLUMNS)} FROM {self._r}.records WHERE {in_records}", params)

    def _golden_by_sql(self, member_records: pa.Table) -> None:
        """Insert the golden records of ``_sw_members`` (record -> profile) built by the
        batch run's survivorship SQL from ``member_records``."""
        self.store.register("_sw_records", member_records)
        try:
            with self.store.unordered():  # inserts after this transaction's writes (see Store.unordered)
                self.store.execute(
                    "CREATE OR REPLACE TEMP TABLE _sw_golden AS "
                    + survivorship.golden_fields_sql("_sw_records", "_sw_members", self.rules, self.default_rule)
                )
                self.store.execute(f"INSERT INTO {self._r}.golden_fields BY NAME SELECT * FROM _sw_golden")
                self.store.execute(
                    f"INSERT INTO {self._r}.profiles BY NAME " + survivorship.profiles_sql("_sw_golden", "_sw_records", "_sw_members")
                )
        finally:
            self.store.unregister("_sw_records")
        for temp in ("_sw_members", "_sw_golden"):
            self.store.execute(f"DROP TABLE temp.main.{temp}")


def _values_source(keys: Sequence[str], assignment: Mapping[str, str], best: Mapping[str, float]) -> tuple[str, list[Any]]:
    """``keys``' new (record_key, profile_id, match_probability) as a VALUES list ``a`` and its parameters."""
    source = "(VALUES " + ", ".join("(?, ?, ?::DOUBLE)" for _ in keys) + ") a(record_key, profile_id, match_probability)"
    return source, [v for k in keys for v in (k, assignment[k], best.get(k))]


__all__ = ["Reassignment"]

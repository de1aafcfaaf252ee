"""Phase 2 of a live ingest, inside the store's transaction: the profiles around the new
records as the batch would cluster them (model links at or above the threshold and SAME
decisions, never across a veto or a DIFFERENT decision; the ids they keep by
profiles.identity.inherit_profile_ids), and the review-band pairs that join two profiles
queued for a steward."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from pipelines.config import Config
from pipelines.live.stage import Prepared, Staged, stored_linkable
from pipelines.matching import rowwise
from pipelines.matching.blocking import identifier_column
from pipelines.matching.vetoes import model_veto_sql
from pipelines.standardize.batch import MATCH_COLUMNS
from profiles.constraints import STEWARD_LINK, constrained_components
from profiles.identity import inherit_profile_ids
from profiles.store import Store, in_list
from profiles.tuning import TUNING


class Regrouping:
    def __init__(self, store: Store, config: Config):
        self.store, self.config = store, config

    def group(
        self, state: Prepared, keys: list[str], members: dict[str, list[str]], staged: Staged, key_hashes: Mapping[str, int]
    ) -> tuple[dict[str, str], dict[str, list[str]], list[tuple[str, str, float]]]:
        """Profiles of ``keys`` as the batch would cluster them: links at or above the
        threshold and SAME decisions, never across a veto or a DIFFERENT decision; the ids
        they keep by profiles.identity.inherit_profile_ids. Returns (record -> profile id, survivor -> merged ids,
        the model's links among ``keys``)."""
        in_l, params = in_list("record_key_l", keys)
        in_r, _ = in_list("record_key_r", keys)
        group = set(keys)
        model_links = [  # looked up by one key (an index scan; another condition in SQL makes it a scan), filtered here
            (str(a), str(b), float(p))
            for a, b, p in self.store.rows(f"SELECT record_key_l, record_key_r, match_probability FROM pairs WHERE {in_l}", params)
            if b in group and p >= self.config.matching.match_threshold
        ]
        decided = self.store.rows(
            f"SELECT record_key_l, record_key_r, kind FROM link_constraints WHERE active AND {in_l} AND {in_r}", params * 2
        )
        links = model_links + [(a, b, STEWARD_LINK) for a, b, kind in decided if kind == "same"]
        apart = [(a, b) for a, b, kind in decided if kind == "different"]
        loose = constrained_components(keys, links, [])
        apart += self._veto_conflicts(state, loose, staged, key_hashes)
        # Only the loose groups holding a kept-apart pair can be cut; the others stand
        # (a group's representative is its smallest key, whatever else is computed).
        held = {loose[k] for pair in apart for k in pair}
        inside = {k for k in keys if loose[k] in held}
        grouping = {
            **loose,
            **constrained_components(
                sorted(inside), [link for link in links if link[0] in inside], [pair for pair in apart if pair[0] in inside]
            ),
        }
        groups: dict[str, list[str]] = {}
        for key, representative in grouping.items():
            groups.setdefault(representative, []).append(key)
        created: dict[str, Any] = {}
        if len(members) > 1:  # profiles that may merge: their ages may decide which id is kept
            created = dict(
                self.store.rows(
                    "SELECT profile_id, created_at FROM profile_registry WHERE profile_id IN (SELECT unnest(?::VARCHAR[]))", [list(members)]
                )
            )
        was = {k: pid for pid, records in members.items() for k in records}
        names, merged = inherit_profile_ids(groups, was, created=created)
        assignment = {k: names[g] for g, ks in groups.items() for k in ks}
        return assignment, merged, model_links

    def _veto_conflicts(
        self, state: Prepared, grouping: dict[str, str], staged: Staged, key_hashes: Mapping[str, int]
    ) -> list[tuple[str, str]]:
        """Pairs inside one loose group that a veto keeps apart (as the batch's enforce_vetoes).
        The staged records are not in the store yet; the stored ones are read from the
        index when the ingester holds one (and holds them all: ``key_hashes`` finds their
        rows), else from the store."""
        groups: dict[str, list[str]] = {}
        for key, g in grouping.items():
            groups.setdefault(g, []).append(key)
        pairs = [(a, b) for ks in groups.values() if len(ks) > 1 for a in ks for b in ks if a < b]
        if not pairs:
            return []
        ids = self.config.shared_identifiers()
        condition = model_veto_sql(state.model, list(self.config.matching.vetoes), ids)
        involved = sorted({k for pair in pairs for k in pair})
        new_keys = set(staged.records.column("record_key").to_pylist())
        stored_keys = [k for k in involved if k not in new_keys]
        index = state.index
        vetoes = rowwise.condition(condition)
        if index is not None and staged.probes is not None and vetoes is not None:
            held, missing = index.rows(stored_keys, [key_hashes.get(k, 0) for k in stored_keys]) if stored_keys else (None, [])
            if not missing:
                columns = ["record_key", *MATCH_COLUMNS, *(identifier_column(n) for n in ids)]
                rows = {
                    row["record_key"]: row for part in (staged.probes, held) if part is not None for row in part.select(columns).to_pylist()
                }
                return [
                    (a, b)
                    for a, b in pairs
                    if vetoes({**{f"{c}_l": rows[a][c] for c in columns}, **{f"{c}_r": rows[b][c] for c in columns}}) is True
                ]
        parts, params = (
            [f"{stored_linkable('', ids, source='_live_vnew')} WHERE s.record_key IN (SELECT unnest(?::VARCHAR[]))"],
            [[k for k in involved if k in new_keys]],
        )
        if stored_keys:
            in_stored, stored_params = in_list("s.record_key", stored_keys)
            parts.append(f"{stored_linkable('', ids, source='records')} WHERE {in_stored}")
            params.extend(stored_params)
        self.store.register("_live_vnew", staged.records)
        try:
            return self._vetoed(pairs, " UNION ALL BY NAME ".join(f"({p})" for p in parts), params, condition)
        finally:
            self.store.unregister("_live_vnew")

    def _vetoed(self, pairs: list[tuple[str, str]], involved: str, params: list[Any], condition: str) -> list[tuple[str, str]]:
        """The ``pairs`` whose records (rows of the query ``involved``) meet the veto ``condition``."""
        if len(pairs) <= TUNING.live_lookup_max * 10:  # a few: one statement, the pairs as bound values
            found = self.store.rows(
                f"""WITH v AS MATERIALIZED ({involved})
                    SELECT p.a, p.b FROM (VALUES {", ".join("(?, ?)" for _ in pairs)}) p(a, b)
                    JOIN v l ON l.record_key = p.a JOIN v r ON r.record_key = p.b WHERE {condition}""",
                [*params, *(k for pair in pairs for k in pair)],
            )
        else:
            self.store.register("_live_vpairs", pa.table({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]}))
            self.store.register("_live_vrows", self.store.arrow(involved, params))
            try:
                found = self.store.rows(
                    f"""SELECT p.a, p.b FROM _live_vpairs p JOIN _live_vrows l ON l.record_key = p.a JOIN _live_vrows r ON r.record_key = p.b
                        WHERE {condition}"""
                )
            finally:
                self.store.unregister("_live_vpairs")
                self.store.unregister("_live_vrows")
        return [(str(a), str(b)) for a, b in found]

    def queue_reviews(self, r: str, staged: Staged, assignment: Mapping[str, str]) -> dict[str, list[str]]:
        """Review-band pairs of the new records that now join two profiles go to the queue."""
        threshold, midpoint = (
            self.config.matching.match_threshold,
            (self.config.matching.match_threshold + self.config.matching.review_threshold) / 2,
        )
        band = [p for p in staged.pairs.to_pylist() if p["match_probability"] < threshold]
        others = sorted({k for p in band for k in (p["record_key_l"], p["record_key_r"]) if k not in assignment})
        in_others, params = in_list("record_key", others)
        profile_of = dict(assignment)
        if others:
            profile_of.update(
                {str(k): str(v) for k, v in self.store.rows(f"SELECT record_key, profile_id FROM records WHERE {in_others}", params)}
            )
        queued = [p for p in band if profile_of.get(p["record_key_l"]) != profile_of.get(p["record_key_r"])]
        if queued:
            self.store.append(
                f"{r}.review_queue",
                pa.table(
                    {
                        "pair_id": [p["pair_id"] for p in queued],
                        "record_key_l": [p["record_key_l"] for p in queued],
                        "record_key_r": [p["record_key_r"] for p in queued],
                        "profile_id_l": [profile_of.get(p["record_key_l"]) for p in queued],
                        "profile_id_r": [profile_of.get(p["record_key_r"]) for p in queued],
                        "match_probability": [p["match_probability"] for p in queued],
                        "match_weight": [p["match_weight"] for p in queued],
                        "distance_to_boundary": [abs(p["match_probability"] - midpoint) for p in queued],
                    }
                ),
            )
        out: dict[str, list[str]] = {}
        for p in queued:
            for key in (p["record_key_l"], p["record_key_r"]):
                out.setdefault(key, []).append(p["pair_id"])
        return out

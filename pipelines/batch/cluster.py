"""Cluster: turn connected components into profiles with stable ids, per-record
membership, and the review queue.

A new cluster inherits the id of the previous profile with which it shares the most
records (ties: the oldest profile), provided that profile shares no more records with
another new cluster; every other cluster gets a fresh id. So a rerun on the same input
keeps every id, and a profile whose records did not change keeps its id."""

from __future__ import annotations

import json

import pyarrow as pa

from pipelines.config import Config
from pipelines.matching.vetoes import model_veto_sql
from profiles.constraints import STEWARD_LINK, constrained_components
from profiles.identity import inherited_sql, mint_profile_ids
from profiles.store import Store, ident


def enforce_vetoes(store: Store, config: Config) -> int:
    """Make the clusters obey the veto rules the trained model makes active
    (comparisons.active_vetoes) and the stewards' decisions: records an active rule or a
    DIFFERENT decision keeps apart never share a cluster, not even through a chain (the
    weakest links are cut, see profiles.constraints), and records a SAME decision joins
    always do. Returns the number of clusters changed."""
    model = json.loads(config.model_path.read_text(encoding="utf-8"))
    vetoes = model_veto_sql(model, list(config.matching.vetoes), config.shared_identifiers())
    decided = _decisions(store)
    store.execute(
        f"""CREATE OR REPLACE TABLE cluster_conflicts AS
            WITH members AS (SELECT c.cluster_id, l.* FROM clusters c JOIN linkable l USING (record_key))
            SELECT l.cluster_id, l.record_key AS key_l, r.record_key AS key_r
            FROM members l JOIN members r ON l.cluster_id = r.cluster_id AND l.record_key < r.record_key
            WHERE {vetoes}
            UNION ALL
            SELECT a.cluster_id, d.record_key_l, d.record_key_r
            FROM ({decided}) d JOIN clusters a ON a.record_key = d.record_key_l JOIN clusters b ON b.record_key = d.record_key_r
            WHERE d.kind = 'different' AND a.cluster_id = b.cluster_id""",
        building="cluster_conflicts",
    )
    store.execute(
        f"""CREATE OR REPLACE TABLE cluster_joins AS
            SELECT a.cluster_id AS cluster_l, b.cluster_id AS cluster_r, d.record_key_l AS key_l, d.record_key_r AS key_r
            FROM ({decided}) d JOIN clusters a ON a.record_key = d.record_key_l JOIN clusters b ON b.record_key = d.record_key_r
            WHERE d.kind = 'same' AND a.cluster_id <> b.cluster_id""",
        building="cluster_joins",
    )
    store.execute(
        """CREATE OR REPLACE TABLE affected_clusters AS
           SELECT cluster_id FROM cluster_conflicts UNION SELECT cluster_l FROM cluster_joins UNION SELECT cluster_r FROM cluster_joins"""
    )
    affected = int(store.scalar("SELECT count(*) FROM affected_clusters"))
    if affected:
        nodes = [r[0] for r in store.rows("SELECT record_key FROM clusters WHERE cluster_id IN (SELECT cluster_id FROM affected_clusters)")]
        links = store.rows(
            """SELECT p.record_key_l, p.record_key_r, p.match_probability FROM predictions p
               JOIN clusters a ON a.record_key = p.record_key_l JOIN clusters b ON b.record_key = p.record_key_r
               WHERE a.cluster_id = b.cluster_id AND p.match_probability >= ?
                 AND a.cluster_id IN (SELECT cluster_id FROM affected_clusters)""",
            [config.matching.match_threshold],
        )
        # A steward's SAME is stronger than any model link: taken first, cut last.
        same = [
            (left, right, STEWARD_LINK)
            for left, right in store.rows(
                f"""SELECT d.record_key_l, d.record_key_r FROM ({decided}) d
                JOIN clusters a ON a.record_key = d.record_key_l JOIN clusters b ON b.record_key = d.record_key_r
                WHERE d.kind = 'same' AND a.cluster_id IN (SELECT cluster_id FROM affected_clusters)"""
            )
        ]
        apart = store.rows("SELECT key_l, key_r FROM cluster_conflicts")
        groups = constrained_components(nodes, links + same, apart)
        store.register("_regrouped", pa.table({"record_key": list(groups), "cluster_id": list(groups.values())}))
        store.execute("UPDATE clusters SET cluster_id = g.cluster_id FROM _regrouped g WHERE clusters.record_key = g.record_key")
        store.unregister("_regrouped")
    for table in ("cluster_conflicts", "cluster_joins", "affected_clusters"):
        store.execute(f"DROP TABLE {table}")
    return affected


def _decisions(store: Store) -> str:
    """The stewards' active decisions (record_key_l, record_key_r, kind) as a subquery."""
    if store.table_exists("link_constraints", catalog=store.catalog):
        return f"SELECT record_key_l, record_key_r, kind FROM {ident(store.catalog)}.main.link_constraints WHERE active"
    return "SELECT NULL::VARCHAR AS record_key_l, NULL::VARCHAR AS record_key_r, NULL::VARCHAR AS kind WHERE false"


def assign_profiles(store: Store, config: Config, pairs: str = "pairs") -> dict[str, int]:
    """Build ``membership`` and ``review_queue`` in the workspace and the table ``pairs``
    (there by default; a run writes it straight into its own schema, saving a copy of
    its 800,000 rows of evidence at 1M records) from ``clusters`` and ``predictions``.
    Returns counts for the run summary."""
    cat = ident(store.catalog)
    has_previous = store.table_exists("membership", catalog=store.catalog)
    if has_previous:
        previous = f"SELECT record_key, profile_id FROM {cat}.main.membership"
        created = f"SELECT profile_id, created_at FROM {cat}.main.profile_registry"
    else:
        previous = "SELECT NULL::VARCHAR AS record_key, NULL::VARCHAR AS profile_id WHERE false"
        created = "SELECT NULL::VARCHAR AS profile_id, NULL::TIMESTAMPTZ AS created_at WHERE false"
    store.execute(f"CREATE OR REPLACE TABLE previous_membership AS {previous}")
    store.execute(
        f"CREATE OR REPLACE TABLE inherited AS {inherited_sql('SELECT * FROM clusters', 'SELECT * FROM previous_membership', created)}",
        building="inherited",
    )
    fresh = store.rows("SELECT DISTINCT cluster_id FROM clusters WHERE cluster_id NOT IN (SELECT cluster_id FROM inherited) ORDER BY 1")
    ids = _unused_ids(store, len(fresh))
    store.register("_fresh_ids", pa.table({"cluster_id": [r[0] for r in fresh], "profile_id": ids}))
    store.execute(
        """CREATE OR REPLACE TABLE cluster_profile AS
           SELECT cluster_id, profile_id, false AS is_new FROM inherited
           UNION ALL SELECT cluster_id, profile_id, true FROM _fresh_ids"""
    )
    store.unregister("_fresh_ids")
    # A record's match probability: its strongest link inside its own profile.
    store.execute(
        f"""CREATE OR REPLACE TABLE membership AS
        WITH same AS (
            SELECT p.record_key_l, p.record_key_r, p.match_probability FROM predictions p
            JOIN clusters a ON a.record_key = p.record_key_l JOIN clusters b ON b.record_key = p.record_key_r
            WHERE p.match_probability >= {float(config.matching.match_threshold)!r} AND a.cluster_id = b.cluster_id
        ),
        best AS (
            SELECT record_key, max(match_probability) AS match_probability FROM (
                SELECT record_key_l AS record_key, match_probability FROM same
                UNION ALL SELECT record_key_r, match_probability FROM same)
            GROUP BY record_key
        )
        SELECT r.record_key, r.source, r.record_id, cp.profile_id, b.match_probability, pm.profile_id AS previous_profile_id
        FROM records r
        JOIN clusters c USING (record_key)
        JOIN cluster_profile cp USING (cluster_id)
        LEFT JOIN best b USING (record_key)
        LEFT JOIN previous_membership pm USING (record_key)""",
        building="membership",
    )
    store.execute(
        f"""CREATE OR REPLACE TABLE {pairs} AS
           SELECT md5(p.record_key_l || '|' || p.record_key_r)[:16] AS pair_id, p.*,
                  ml.profile_id AS profile_id_l, mr.profile_id AS profile_id_r
           FROM predictions p
           JOIN membership ml ON ml.record_key = p.record_key_l
           JOIN membership mr ON mr.record_key = p.record_key_r""",
        building="pairs",
    )
    midpoint = (config.matching.match_threshold + config.matching.review_threshold) / 2
    # Pairs a steward has decided are not asked again.
    store.execute(
        f"""CREATE OR REPLACE TABLE review_queue AS
           SELECT pair_id, record_key_l, record_key_r, profile_id_l, profile_id_r, match_probability, match_weight,
                  abs(match_probability - ?) AS distance_to_boundary
           FROM {pairs} p
           WHERE match_probability < ? AND profile_id_l <> profile_id_r
             AND NOT EXISTS (SELECT 1 FROM ({_decisions(store)}) d
                             WHERE d.record_key_l = least(p.record_key_l, p.record_key_r)
                               AND d.record_key_r = greatest(p.record_key_l, p.record_key_r))
           ORDER BY distance_to_boundary, pair_id""",
        [midpoint, config.matching.match_threshold],
    )
    counts = store.rows(
        """SELECT (SELECT count(DISTINCT profile_id) FROM membership),
                  (SELECT count(*) FROM cluster_profile WHERE NOT is_new),
                  (SELECT count(*) FROM cluster_profile WHERE is_new),
                  (SELECT count(*) FROM review_queue)"""
    )[0]
    for table in ("previous_membership", "inherited", "cluster_profile"):
        store.execute(f"DROP TABLE {table}")
    return {"profiles": counts[0], "ids_kept": counts[1], "ids_new": counts[2], "review_queue": counts[3]}


def _unused_ids(store: Store, count: int) -> list[str]:
    """Fresh ids that the registry has never issued (collisions are astronomically
    unlikely, but an id must never be reused)."""
    ids = mint_profile_ids(count)
    if not ids or not store.table_exists("profile_registry", catalog=store.catalog):
        return ids
    store.register("_candidate_ids", pa.table({"profile_id": ids}))
    taken = {
        r[0]
        for r in store.rows(f"SELECT profile_id FROM _candidate_ids JOIN {ident(store.catalog)}.main.profile_registry USING (profile_id)")
    }
    store.unregister("_candidate_ids")
    if len(set(ids)) != len(ids) or taken:
        unique = list(dict.fromkeys(i for i in ids if i not in taken))
        return unique + _unused_ids(store, count - len(unique))
    return ids

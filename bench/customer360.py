"""Customer 360 benchmark: a customer's history (events, traits, effort) in the batch and
through the API, on a store of 1,000,000 profiles with 10,000,000 events.

Why: issue 21 attaches events from every channel to the profiles and derives traits and
effort signals from them when they are read (docs/customer360.md). Two costs follow. The
batch: a run reads the event files after it publishes (``ingest_event_files``) and an
export derives the traits of every profile in one SQL statement; together they must stay
within 60 s on 2 cores at 10M events, next to the batch run they add to. The API: every
card with history reads the profile's events through its records and identifiers in the
published run (timeline, traits and effort each read them); targets at c=1 p99 <= 15 ms
and at c=8 >= 300 requests/s for ``timeline(first: 20)`` and for a card with traits and
effort, and p99 <= 20 ms for a live event through ``recordEvent``. The machine is shared
and noisy: the card with history is measured against the same card without it in the
same run, and that ratio matters more than absolute figures.

How:
1. Store: bench/api.py's store (demo data with 2.27 records per profile, the pipeline in
   a subprocess, its marker ``bench-api-store.json`` with the batch run's seconds) for
   ``--profiles`` profiles in ``<out>/base`` (demo data without the demo's own event
   files), or ``--store-from DIR``: a copy of an existing bench store directory (e.g.
   bench/out-api; the original is only read). Each run works on a fresh copy of the store
   in ``<out>/work`` with a config that adds ``[[events]]``, ``[[traits]]`` and
   ``[effort]`` to the store's config (the demo keys removed and development off, as
   bench/ingest.py serves it, and ``[api] resolver_timeout`` raised from 2 s to 120 s so
   that a slow request is measured instead of failing with TIMEOUT).
2. Events: ``--events`` (default 10 per profile) synthetic events with numpy, attached to
   real records and identifiers of the store, with a heavy tail of active customers,
   over the last two years: contacts (phone, chat, email, whatsapp; topics, departments,
   follow-ups within days through another channel, transfers within minutes; an effort
   score on some) linked by contact_center record id, orders and returns (amounts,
   categories) by webshop record id, store purchases by loyalty card identifier, and
   surveys (effort score, NPS) by e-mail, the last as a CSV with a ``date_format``; 0.5%
   name a record or identifier the store does not hold (unlinked) and a few survey rows
   have an impossible date (quarantined). Parquet for the others. Timed separately, each
   in a child process as the batch runs it: ``ingest_event_files`` for all files (the
   step ``unify run`` adds after it publishes; then ``unlinked_count`` and the
   checkpoint when the store closes), and the traits of every profile (``traits_sql``
   over ``profile_events_sql`` of the published run, COPY to a parquet file). Every
   batch run reads the event files again, so ``ingest_event_files`` is also timed a
   second time, in a new process, with every event already in the store (the next
   run's cost: each event is replaced).
3. API: the app served by uvicorn in a subprocess (bench/api.py's ``Server``, one worker)
   and loaded by ``wrk`` at c=1 and c=8 (bench/api.py's Lua script, every response
   checked): (a) ``timeline(first: 20)`` of profiles looked up by id, (b) the issue's
   card with traits and effort: bench/api.py's card by phone plus traits and
   ``effort(days: 30)``, (c) the same with the newest page of the timeline as well
   (``timeline(first: 20)``, the history card), (d) the card without history (the baseline), all
   against one server in one run, interleaved per concurrency, the server idle before
   each (requests wrk leaves in flight would fall into the next measurement). The
   lookups are bench/api.py's: phone numbers that identify one profile, in national
   format. The events per profile (all, and the looked-up ones) are reported with them.
4. Live events: ``--live`` events one at a time through the ``recordEvent`` mutation
   (httpx, c=1) after ``--live-warmup`` unmeasured ones, on the same server after the
   reads; every response checked (HTTP 200, no errors, status recorded, a profile), and
   the last one must head its profile's timeline.
5. Where the time goes, in child processes after the server stopped (on the store as
   serving left it, with its serving indexes): the statements the history resolvers
   run for one profile, timed one by one for ``--anatomy`` profiles, with the table scans
   of their plans (``EXPLAIN ANALYZE``, also written to ``<out>/work/explain-history.txt``);
   ``--live-anatomy`` live events recorded in process with every SQL statement timed;
   and the batch's ingest with its slowest statements.

Run (from the repository root; needs ``wrk``: ``apt-get install -y wrk``):

    .venv/bin/python bench/customer360.py                       # 1,000,000 profiles, 10M events, bench/out-c360-1m
    .venv/bin/python bench/customer360.py --store-from bench/out-api   # the same, on a copy of bench/api.py's store
    .venv/bin/python bench/customer360.py --profiles 100000     # 100,000 profiles, 1M events, bench/out-c360-100k

Results are printed and written to ``<out>/customer360-results.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api import (  # bench/api.py (this directory is on sys.path)
    API_KEY,
    CARD_QUERY,
    MARKER,
    RECORDS_PER_PROFILE,
    SEED,
    WRK_LUA,
    Server,
    code_digest,
    pick_lookups,
    remove_store,
    verdict,
    wrk,
)
from api import run_child as run_api_child
from ingest import latency_stats, load_average, peak_rss_mib, size_label  # bench/ingest.py

RESULTS = "customer360-results.json"
EVENTS_MARKER = "events.json"
CHILD = "_child"  # first argument of this script when it runs as a child process
SIDE = "graphql"  # bench/api.py's name for the real app
REPO = Path(__file__).resolve().parents[1]
TARGET_BATCH_SECONDS = 60.0
TARGET_P99_C1_MS = 15.0
TARGET_RPS_C8 = 300.0
TARGET_LIVE_P99_MS = 20.0
TARGET_PROFILES = 1_000_000  # the size the targets are set for
TRAITS_FILE = "traits.parquet"
RESOLVER_TIMEOUT = 120.0  # [api] resolver_timeout of the served config (the default, 2 s, would cut slow cards off)
#: The config sections this bench writes itself (any the store's config has are dropped).
HISTORY_SECTIONS = ("events", "traits", "effort", "life_events")

# ------------------------------------------------------------------------------ queries


def _card_fields() -> str:
    """The selection of bench/api.py's card (so that both benches ask the same card)."""
    start = CARD_QUERY.index("{", CARD_QUERY.index("profileByIdentifier")) + 1
    end = CARD_QUERY.rindex("}", 0, CARD_QUERY.rindex("}"))
    return " ".join(CARD_QUERY[start:end].split())


TRAITS_FIELDS = "traits { name value asOf eventCount } effort(days: 30) { contacts repeatContacts channelSwitches transfers openTopics }"
HISTORY_FIELDS = f"{TRAITS_FIELDS} timeline(first: 20) {{ nodes {{ occurredAt channel type topic }} }}"
PLAIN_CARD_QUERY = f'query Card($v: String!) {{ profileByIdentifier(kind: "phone", value: $v) {{ {_card_fields()} }} }}'
TRAITS_CARD_QUERY = (
    f'query TraitsCard($v: String!) {{ profileByIdentifier(kind: "phone", value: $v) {{ {_card_fields()} {TRAITS_FIELDS} }} }}'
)
HISTORY_CARD_QUERY = (
    f'query HistoryCard($v: String!) {{ profileByIdentifier(kind: "phone", value: $v) {{ {_card_fields()} {HISTORY_FIELDS} }} }}'
)
TIMELINE_QUERY = (
    "query Timeline($id: ID!) { profile(id: $id) { id timeline(first: 20) { totalCount hasNextPage endCursor "
    "nodes { id source occurredAt type channel topic department amount } } } }"
)
RECORD_EVENT = """mutation Live($events: String!, $event: JSON!) {
  recordEvent(events: $events, event: $event) { eventId status problem profileId }
}"""

#: The API measurements: name -> (operation name, query, the lookup's key it is given).
KINDS: dict[str, tuple[str, str, str]] = {
    "plain_card": ("Card", PLAIN_CARD_QUERY, "phone"),
    "traits_card": ("TraitsCard", TRAITS_CARD_QUERY, "phone"),
    "history_card": ("HistoryCard", HISTORY_CARD_QUERY, "phone"),
    "timeline": ("Timeline", TIMELINE_QUERY, "profile_id"),
}


def request_body(kind: str, lookup: dict[str, str]) -> dict[str, Any]:
    operation, query, key = KINDS[kind]
    variables = {"v": lookup["phone"]} if key == "phone" else {"id": lookup["profile_id"]}
    return {"query": query, "variables": variables, "operationName": operation}


# ------------------------------------------------------------------------------ the events

TOPICS = (
    "billing",
    "delivery",
    "returns",
    "payment",
    "account",
    "product_question",
    "complaint",
    "subscription",
    "invoice",
    "moving",
    "new_baby",
    "bereavement",
)
TOPIC_P = (0.17, 0.16, 0.12, 0.1, 0.1, 0.1, 0.07, 0.06, 0.05, 0.04, 0.015, 0.015)
DEPARTMENTS = ("customer_service", "billing", "logistics", "sales", "retention")
#: The department that usually handles each topic (an index into DEPARTMENTS).
TOPIC_DEPARTMENT = (1, 2, 2, 1, 0, 3, 0, 4, 1, 0, 0, 0)
CONTACT_CHANNELS = ("phone", "chat", "email", "whatsapp")
CONTACT_CHANNEL_P = (0.5, 0.28, 0.15, 0.07)
CATEGORIES = ("electronics", "home", "garden", "fashion", "toys", "books", "sports", "beauty")
#: Shares of the events per file.
SHARES = {"contacts": 0.40, "orders": 0.30, "store_visits": 0.15, "surveys": 0.15}
UNLINKED_SHARE = 0.005
BAD_SURVEY_ROWS = 0.0001
SURVEY_DATE_FORMAT = "%d-%m-%Y %H:%M"
SPAN_DAYS = 730

EVENTS_TOML = f"""
# ---- bench/customer360.py: synthetic events, traits and effort ----
[[events]]
name = "contacts"
path = "../events/contacts.parquet"
id = "contact_id"
timestamp = "started_at"
type = {{ value = "contact" }}
channel = "channel"
topic = "topic"
department = "department"
[events.link]
source = "contact_center"
record_id = "caller_id"
[events.attributes]
ces = "ces"
duration_s = "duration_s"

[[events]]
name = "orders"
path = "../events/orders.parquet"
id = "order_id"
timestamp = "placed_at"
type = "kind"
channel = "channel"
topic = "category"
amount = "total"
[events.link]
source = "webshop"
record_id = "customer_id"
[events.attributes]
items = "items"

[[events]]
name = "store_visits"
path = "../events/store_visits.parquet"
id = "visit_id"
timestamp = "visited_at"
type = {{ value = "purchase" }}
channel = {{ value = "store" }}
amount = "amount"
[events.link]
identifier = "loyalty_card"
column = "card_number"
[events.attributes]
store = "store"
points = "points"

[[events]]
name = "surveys"
path = "../events/surveys.csv"
id = "response_id"
timestamp = "submitted"
date_format = "{SURVEY_DATE_FORMAT}"
type = {{ value = "survey" }}
channel = {{ value = "email" }}
topic = "about"
[events.link]
identifier = "email"
column = "email"
[events.attributes]
ces = "ces"
nps = "nps"

[[traits]]
name = "orders_90d"
function = "count"
events = ["orders"]
window_days = 90
[traits.where]
type = ["order"]

[[traits]]
name = "spend_365d"
function = "sum"
events = ["orders", "store_visits"]
field = "amount"
window_days = 365
[traits.where]
type = ["order", "purchase"]

[[traits]]
name = "avg_ces"
function = "avg"
events = ["contacts", "surveys"]
field = "ces"

[[traits]]
name = "last_contact_topic"
function = "last"
events = ["contacts"]
field = "topic"

[[traits]]
name = "preferred_channel"
function = "most_frequent"
events = ["contacts", "orders"]
field = "channel"

[[traits]]
name = "days_since_last_order"
function = "days_since_last"
events = ["orders"]
[traits.where]
type = ["order"]

[effort]
repeat_days = 7
transfer_minutes = 15
contact_types = ["contact"]
ces_attribute = "ces"
"""


def _weights(rng: Any, n: int) -> Any:
    """How active each of ``n`` customers is: lognormal, a few many times the median."""
    w = rng.lognormal(0.0, 1.0, n)
    return w / w.sum()


def _links(rng: Any, ids: Any, n: int, unknown_prefix: str) -> Any:
    """``n`` values of ``ids`` (a pyarrow string array) drawn by activity; a share names
    nothing the store holds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    picked = ids.take(pa.array(rng.choice(len(ids), size=n, p=_weights(rng, len(ids)))))
    unknown = rng.random(n) < UNLINKED_SHARE
    names = pc.binary_join_element_wise(unknown_prefix, pc.cast(pa.array(np.arange(n)), pa.string()), "")
    return pc.if_else(pa.array(unknown), names, picked)


def _times(rng: Any, n: int, now_s: int) -> Any:
    """Epoch seconds over the last SPAN_DAYS days, denser towards now."""
    import numpy as np

    return now_s - (SPAN_DAYS * 86_400 * rng.random(n) ** 1.25).astype(np.int64) - 60


def _ids(prefix: str, n: int) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), width=10, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _pick(values: tuple[str, ...], index: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values)).cast(pa.string())


def _nullable_scores(rng: Any, n: int, share: float, low: int, high: int) -> Any:
    import numpy as np
    import pyarrow as pa

    values = rng.integers(low, high + 1, n)
    return pa.array(values, mask=rng.random(n) >= share) if share < 1 else pa.array(values.astype(np.int64))


def _contacts(rng: Any, ids: Any, n: int, now_s: int) -> Any:
    """Contacts: 70% first contacts, 25% follow-ups on the topic within days (the channel
    drawn again), 5% transfers within minutes to another department."""
    import numpy as np
    import pyarrow as pa

    base, follow = int(n * 0.70), int(n * 0.25)
    transfer = n - base - follow
    who = np.arange(base)
    ts = _times(rng, base, now_s)
    topic = rng.choice(len(TOPICS), size=base, p=np.array(TOPIC_P) / sum(TOPIC_P))
    dept = np.where(rng.random(base) < 0.8, np.array(TOPIC_DEPARTMENT)[topic], rng.integers(0, len(DEPARTMENTS), base))
    channel = rng.choice(len(CONTACT_CHANNELS), size=base, p=CONTACT_CHANNEL_P)
    f = rng.integers(0, base, follow)
    t = rng.integers(0, base, transfer)
    who = np.concatenate([who, f, t])
    ts = np.concatenate(
        [
            ts,
            np.minimum(ts[f] + (rng.exponential(2.0, follow) * 86_400).astype(np.int64), now_s - 60),
            ts[t] + rng.integers(60, 720, transfer),
        ]
    )
    topic = np.concatenate([topic, topic[f], topic[t]])
    dept = np.concatenate([dept, dept[f], (dept[t] + rng.integers(1, len(DEPARTMENTS), transfer)) % len(DEPARTMENTS)])
    channel = np.concatenate([channel, rng.choice(len(CONTACT_CHANNELS), size=follow, p=CONTACT_CHANNEL_P), channel[t]])
    order = np.argsort(ts, kind="stable")  # an export in time order
    callers = _links(rng, ids, base, "cc-gone-")  # a first contact's caller; its follow-ups call again
    who_links = callers.take(pa.array(who[order]))
    return pa.table(
        {
            "contact_id": _ids("C", n),
            "started_at": pa.array(ts[order], pa.timestamp("s")),
            "caller_id": who_links,
            "channel": _pick(CONTACT_CHANNELS, channel[order]),
            "topic": _pick(TOPICS, topic[order]),
            "department": _pick(DEPARTMENTS, dept[order]),
            "ces": _nullable_scores(rng, n, 0.15, 1, 7),
            "duration_s": pa.array(rng.gamma(2.0, 180.0, n).astype(np.int64)),
        }
    )


def _orders(rng: Any, ids: Any, n: int, now_s: int) -> Any:
    import numpy as np
    import pyarrow as pa

    ts = np.sort(_times(rng, n, now_s))
    return pa.table(
        {
            "order_id": _ids("O", n),
            "placed_at": pa.array(ts, pa.timestamp("s")),
            "customer_id": _links(rng, ids, n, "ws-gone-"),
            "kind": _pick(("order", "return"), (rng.random(n) < 0.07).astype(np.int64)),
            "channel": _pick(("web", "app"), (rng.random(n) < 0.4).astype(np.int64)),
            "category": _pick(CATEGORIES, rng.integers(0, len(CATEGORIES), n)),
            "total": pa.array(np.round(rng.lognormal(3.7, 0.8, n), 2)),
            "items": pa.array(1 + rng.poisson(1.2, n)),
        }
    )


def _store_visits(rng: Any, cards: Any, n: int, now_s: int) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = np.sort(_times(rng, n, now_s))
    amount = np.round(rng.lognormal(3.2, 0.7, n), 2)
    return pa.table(
        {
            "visit_id": _ids("V", n),
            "visited_at": pc.strftime(pa.array(ts, pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S"),  # ISO text
            "card_number": _links(rng, cards, n, "card-gone-"),
            "amount": pa.array(amount),
            "store": pc.binary_join_element_wise("S", pc.utf8_lpad(pc.cast(pa.array(rng.integers(1, 180, n)), pa.string()), 3, "0"), ""),
            "points": pa.array(np.floor(amount).astype(np.int64)),
        }
    )


def _surveys(rng: Any, emails: Any, n: int, now_s: int) -> Any:
    """Survey answers keyed by e-mail (some in capitals: standardized as identifiers are);
    a few rows with an impossible date."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = np.sort(_times(rng, n, now_s))
    text = pc.strftime(pa.array(ts, pa.timestamp("s")), format=SURVEY_DATE_FORMAT)
    bad = rng.random(n) < BAD_SURVEY_ROWS
    text = pc.if_else(pa.array(bad), pa.scalar("31-02-2025 10:00"), text)
    linked = _links(rng, emails, n, "gone@")
    upper = rng.random(n) < 0.1
    return pa.table(
        {
            "response_id": _ids("S", n),
            "submitted": text,
            "email": pc.if_else(pa.array(upper), pc.utf8_upper(linked), linked),
            "about": _pick(TOPICS, rng.choice(len(TOPICS), size=n, p=np.array(TOPIC_P) / sum(TOPIC_P))),
            "ces": pa.array(np.clip(np.round(rng.normal(5.0, 1.4, n)), 1, 7).astype(np.int64)),
            "nps": pa.array(rng.integers(0, 11, n)),
        }
    )


def link_targets(store_path: Path) -> dict[str, Any]:
    """What events can name (pyarrow string arrays) and the store's figures, read-only."""
    from profiles.store import ProfileQueries, Store

    with Store.open(store_path, read_only=True) as store:
        run = ProfileQueries(store).run_schema()
        if run is None:
            sys.exit(f"{store_path}: no published run")

        def values(sql: str, params: list[Any]) -> Any:
            return store.arrow(sql, params).column(0).combine_chunks()

        targets = {
            "contact_center": values("SELECT record_id FROM records WHERE source = ? ORDER BY record_id", ["contact_center"]),
            "webshop": values("SELECT record_id FROM records WHERE source = ? ORDER BY record_id", ["webshop"]),
            "loyalty_card": values("SELECT DISTINCT value FROM identifiers WHERE kind = ? ORDER BY value", ["loyalty_card"]),
            "email": values("SELECT DISTINCT value FROM identifiers WHERE kind = ? ORDER BY value", ["email"]),
        }
        facts = {
            "profiles": int(store.scalar("SELECT count(*) FROM profiles")),
            "records": int(store.scalar("SELECT count(*) FROM records")),
            "published_run": run,
            "events_before": int(store.scalar("SELECT count(*) FROM events")) if store.table_exists("events") else 0,
        }
        summary = store.scalar("SELECT max_by(summary, finished_at)::VARCHAR FROM runs WHERE status = 'published'")
    facts["run_summary_seconds"] = (json.loads(summary) if summary else {}).get("seconds")
    for name, array in targets.items():
        if len(array) == 0:
            sys.exit(f"{store_path}: no {name} records or identifiers to attach events to")
    facts["link_targets"] = {name: len(array) for name, array in targets.items()}
    return {"targets": targets, "facts": facts}


def ensure_events(out: Path, store_path: Path, events: int, base_id: str) -> dict[str, Any]:
    """The event files in ``<out>/events``, unless their marker says they are there."""
    import numpy as np
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    folder = out / "events"
    marker = folder / EVENTS_MARKER
    want = {"events": events, "seed": SEED, "base": base_id, "shares": SHARES}
    if marker.exists():
        seen = json.loads(marker.read_text(encoding="utf-8"))
        if all(seen.get(k) == v for k, v in want.items()) and all((folder / f).exists() for f in seen["files"]):
            return {**seen, "reused": True}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    read = link_targets(store_path)
    targets = read["targets"]
    rng = np.random.default_rng([SEED, 360])
    now_s = int(time.time()) // 60 * 60
    sizes = {name: int(events * share) for name, share in SHARES.items()}
    sizes["contacts"] += events - sum(sizes.values())
    print(f"generating {events:,} events: {', '.join(f'{k} {v:,}' for k, v in sizes.items())} ...", flush=True)
    tables = {
        "contacts.parquet": _contacts(rng, targets["contact_center"], sizes["contacts"], now_s),
        "orders.parquet": _orders(rng, targets["webshop"], sizes["orders"], now_s),
        "store_visits.parquet": _store_visits(rng, targets["loyalty_card"], sizes["store_visits"], now_s),
        "surveys.csv": _surveys(rng, targets["email"], sizes["surveys"], now_s),
    }
    files = {}
    for name, table in tables.items():
        path = folder / name
        if name.endswith(".csv"):
            pa_csv.write_csv(table, path)
        else:
            pq.write_table(table, path, compression="zstd")
        files[name] = {"rows": table.num_rows, "mib": round(path.stat().st_size / 2**20, 1)}
    seen = {
        **want,
        "files": files,
        "generated_at": datetime.fromtimestamp(now_s, UTC).isoformat(),
        "generate_seconds": round(time.perf_counter() - start, 1),
        "link_targets": read["facts"]["link_targets"],
        "unlinked_share": UNLINKED_SHARE,
        "bad_survey_rows_share": BAD_SURVEY_ROWS,
    }
    marker.write_text(json.dumps(seen, indent=2) + "\n", encoding="utf-8")
    return {**seen, "reused": False}


# ------------------------------------------------------------------------------ store and config


def ensure_base(out: Path, profiles: int, store_from: Path | None) -> tuple[Path, dict[str, Any]]:
    """The store the bench starts from, in ``<out>/base``: built as bench/api.py builds its
    store (demo data without the demo's own event files), or copied from ``store_from``.
    Returns (its config, its marker)."""
    base = out / "base"
    marker = base / MARKER
    seen: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}
    store_ok = bool(seen) and (base / seen.get("config", "-")).exists() and (base / seen.get("store", "-")).exists()
    if store_from is not None:
        source = store_from.resolve()
        if store_ok and seen.get("copied_from") == str(source):
            return base / seen["config"], {**seen, "reused": True}
        if not (source / MARKER).exists() and not (source / "unify.toml").exists():
            sys.exit(f"{source}: neither {MARKER} nor unify.toml: not a bench store directory")
        shutil.rmtree(base, ignore_errors=True)
        print(f"copying {source} to {base} ...", flush=True)
        start = time.perf_counter()
        ignore = shutil.ignore_patterns("*.prof", "*.tmp", "bodies-*.jsonl", "*.log", "lookups.json", "*-results.json", "bench.lua")
        shutil.copytree(source, base, ignore=ignore)
        copied = (
            json.loads((source / MARKER).read_text(encoding="utf-8"))
            if (source / MARKER).exists()
            else {"config": "unify.toml", "store": "unify.duckdb"}
        )
        seen = {**copied, "copied_from": str(source), "copy_seconds": round(time.perf_counter() - start, 1)}
        marker.write_text(json.dumps(seen, indent=2) + "\n", encoding="utf-8")
        return base / seen["config"], {**seen, "reused": False}
    if store_ok and seen.get("profiles_requested") == profiles and seen.get("seed") == SEED and "copied_from" not in seen:
        return base / seen["config"], {**seen, "reused": True}
    from pipelines.config import load_config
    from pipelines.demo import generate

    shutil.rmtree(base, ignore_errors=True)
    records = round(profiles * RECORDS_PER_PROFILE)
    print(f"generating {records:,} demo records ...", flush=True)
    start = time.perf_counter()
    # the demo's own event files are not wanted: this bench writes its own
    no_events = {"events_per_person": 0} if "events_per_person" in inspect.signature(generate).parameters else {}
    manifest = generate(base, records=records, seed=SEED, **no_events)
    generate_seconds = round(time.perf_counter() - start, 1)
    config_path = manifest.config_path
    config_path.write_text(strip_sections(config_path.read_text(encoding="utf-8"), HISTORY_SECTIONS), encoding="utf-8")
    store_path = load_config(config_path).store_path
    remove_store(store_path)
    print(f"running the pipeline (log: {base / 'build.log'}) ...", flush=True)
    start = time.perf_counter()
    built = run_api_child("build", str(config_path), log=base / "build.log")  # bench/api.py's child: run_pipeline
    seen = {
        "profiles_requested": profiles,
        "records_requested": records,
        "seed": SEED,
        "config": config_path.name,
        "store": store_path.relative_to(base).as_posix(),
        "generate_seconds": generate_seconds,
        "pipeline_seconds": round(time.perf_counter() - start, 1),
        "pipeline_stages": built["seconds"],
        "records": built["records"],
        "profiles": built["profiles"],
    }
    marker.write_text(json.dumps(seen, indent=2) + "\n", encoding="utf-8")
    return config_path, {**seen, "reused": False}


def strip_sections(text: str, names: tuple[str, ...]) -> str:
    """``text`` (TOML) without the tables ``[name]``, ``[[name]]`` and ``[name.*]`` of ``names``."""
    out, dropping = [], False
    for line in text.splitlines(keepends=True):
        header = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_\-]+)", line)
        if header:
            dropping = header.group(1) in names
        if not dropping:
            out.append(line)
    return "".join(out)


def production(text: str) -> str:
    """No GraphiQL or introspection and no published demo keys (production refuses them;
    the server gets bench/api.py's key), as bench/ingest.py serves the app. And a
    resolver timeout of RESOLVER_TIMEOUT s instead of the default 2 s: a slow request is
    measured rather than cut off with a TIMEOUT error."""
    text = re.sub(r"(?m)^development = true$", "development = false", text)
    text = re.sub(r"(?m)^resolver_timeout = .*\n", "", text)
    text = re.sub(r"(?m)^\[\[api\.keys\]\]\n(?:^(?!\[)(?!#).*\n)*", "", text)
    if re.search(r"(?m)^\[api\]$", text):
        return re.sub(r"(?m)^\[api\]$", f"[api]\nresolver_timeout = {RESOLVER_TIMEOUT}", text, count=1)
    return text.rstrip("\n") + f"\n\n[api]\nresolver_timeout = {RESOLVER_TIMEOUT}\n"


def prepare_work(out: Path, base_config: Path) -> tuple[Path, float]:
    """``<out>/work``: a fresh copy of the base store, the base's data (a link) and model,
    and the config with this bench's events, traits and effort. Returns (config, copy seconds)."""
    from pipelines.config import load_config

    base = load_config(base_config)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    text = strip_sections(base_config.read_text(encoding="utf-8"), HISTORY_SECTIONS)
    text = re.sub(r'(?m)^path = "[^"]*\.duckdb"$', 'path = "unify.duckdb"', text)
    config_path = work / "unify.toml"
    config_path.write_text(production(text).rstrip("\n") + "\n" + EVENTS_TOML, encoding="utf-8")
    config = load_config(config_path)
    for source in base.sources:  # the source files, where the config names them
        target = config.resolve(source.path)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(base.resolve(source.path).resolve())
    if base.model_path.exists():
        shutil.copyfile(base.model_path, config.model_path)
    if config.store_path.resolve() == base.store_path.resolve():
        sys.exit("the work store would be the base store")
    remove_store(config.store_path)
    start = time.perf_counter()
    shutil.copyfile(base.store_path, config.store_path)
    wal = base.store_path.with_name(base.store_path.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, config.store_path.with_name(config.store_path.name + ".wal"))
    os.sync()  # the copy on disk before anything is measured (bench/ingest.py: fsyncs wait behind it)
    return config_path, round(time.perf_counter() - start, 1)


GROWN_NEW_SHARE = 0.01  # a night's new events, of each file
GROWN_CHANGED_SHARE = 0.001  # events corrected at their source (moved to another customer)


def grow_event_files(config_path: Path) -> tuple[Path, dict[str, int]]:
    """The event files as the next night brings them: each with 1% new events (copies of
    random rows under new ids) and 0.1% of its events corrected (their link column takes
    another row's value), written beside the work config, and a config reading them.
    Returns (that config, new + changed events per file)."""
    import csv

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.config import load_config

    config = load_config(config_path)
    rng = np.random.default_rng(7)
    grown_dir = config_path.parent / "grown"
    grown_dir.mkdir(exist_ok=True)
    text = config_path.read_text(encoding="utf-8")
    touched: dict[str, int] = {}
    for events in config.events:
        source = config.resolve(events.path)
        link = str(events.link.record_id or events.link.column)
        target = grown_dir / source.name
        if source.suffix == ".parquet":
            table = pq.read_table(source)
            n = table.num_rows
            changed = rng.choice(n, size=max(1, int(n * GROWN_CHANGED_SHARE)), replace=False)
            values = table.column(link).to_pylist()
            donors = rng.integers(0, n, size=len(changed))
            for i, d in zip(changed.tolist(), donors.tolist(), strict=True):
                values[i] = values[d]
            table = table.set_column(table.schema.get_field_index(link), link, pa.array(values, table.schema.field(link).type))
            extra = table.take(pa.array(rng.choice(n, size=max(1, int(n * GROWN_NEW_SHARE)), replace=False)))
            ids = pc.binary_join_element_wise(pc.cast(extra.column(events.id), pa.string()), "-n", "")
            extra = extra.set_column(extra.schema.get_field_index(events.id), events.id, ids.cast(extra.schema.field(events.id).type))
            pq.write_table(pa.concat_tables([table, extra]), target)
        else:
            with source.open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            n = len(rows)
            for i in rng.choice(n, size=max(1, int(n * GROWN_CHANGED_SHARE)), replace=False).tolist():
                rows[i][link] = rows[int(rng.integers(0, n))][link]
            extra = [
                dict(rows[i], **{events.id: rows[i][events.id] + "-n"})
                for i in rng.choice(n, size=max(1, int(n * GROWN_NEW_SHARE)), replace=False).tolist()
            ]
            with target.open("w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows + extra)
        touched[events.name] = max(1, int(n * GROWN_NEW_SHARE)) + max(1, int(n * GROWN_CHANGED_SHARE))
        text = text.replace(f'path = "{events.path}"', f'path = "grown/{source.name}"')
    grown_config = config_path.with_name("unify-grown.toml")
    grown_config.write_text(text, encoding="utf-8")
    return grown_config, touched


# ------------------------------------------------------------------------------ child processes


def child_events(config_path: str) -> dict[str, Any]:
    """The batch's events step on the published store, as ``run_pipeline`` runs it after
    publishing: ``ingest_event_files``, then ``unlinked_count``; then the store closed
    (its checkpoint writes the events into the file)."""
    from ingest import StatementTimer  # bench/ingest.py: the wall time of each SQL statement

    import pipelines.history.events as events_module
    from pipelines.config import load_config
    from pipelines.history.events import ingest_event_files, unlinked_count
    from profiles.store import ProfileQueries, Store

    config = load_config(config_path)
    per_file: dict[str, float] = {}
    one_file = events_module.ingest_event_file

    def timed_file(store: Any, config: Any, events: Any, path: Path) -> Any:
        start = time.perf_counter()
        try:
            return one_file(store, config, events, path)
        finally:
            per_file[events.name] = round(time.perf_counter() - start, 2)

    events_module.ingest_event_file = timed_file  # ingest_event_files calls it per file
    timer = StatementTimer()
    start = time.perf_counter()
    store = Store.open(config.store_path, threads=config.store.threads, compress=config.store.compress)
    open_seconds = time.perf_counter() - start
    try:
        start = time.perf_counter()
        with timer.installed():
            counts = ingest_event_files(store, config)
        ingest_seconds = time.perf_counter() - start
        run = ProfileQueries(store).run_schema()
        start = time.perf_counter()
        unlinked = unlinked_count(store, str(run))
        unlinked_seconds = time.perf_counter() - start
        stored = int(store.scalar("SELECT count(*) FROM events"))
    finally:
        start = time.perf_counter()
        store.close()
        close_seconds = time.perf_counter() - start
    return {
        "open_seconds": round(open_seconds, 2),
        "ingest_seconds": round(ingest_seconds, 2),
        "unlinked_count_seconds": round(unlinked_seconds, 2),
        "close_checkpoint_seconds": round(close_seconds, 2),
        "files": {name: {**c.as_dict(), "seconds": per_file.get(name)} for name, c in counts.items()},
        "top_statements": top_statements(timer.spent, 8),
        "events_stored": stored,
        "unlinked": unlinked,
        "peak_rss_mib": peak_rss_mib(),
    }


def top_statements(spent: dict[str, list[float]], limit: int, per: int = 1) -> list[dict[str, Any]]:
    """The statements with most wall time (a StatementTimer's), in ms per ``per``."""
    ranked = sorted(spent.items(), key=lambda kv: kv[1][1], reverse=True)[:limit]
    return [{"statement": label, "calls": int(calls), "ms": round(seconds / per * 1000, 2)} for label, (calls, seconds) in ranked]


def scans(plan_json: str) -> list[dict[str, Any]]:
    """The table scans of an ``EXPLAIN (ANALYZE, FORMAT json)`` plan: table, scan type,
    rows out, row groups, ms."""
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        info = node.get("extra_info") or {}
        if node.get("name") == "TABLE_SCAN" or "Table" in info:
            found.append(
                {
                    "table": str(info.get("Table", "?")).rsplit(".", 1)[-1],
                    "type": info.get("Type"),
                    "rows": node.get("operator_cardinality", node.get("intermediate_rows")),
                    "row_groups": info.get("Row Groups Scanned"),
                    "ms": round(float(node.get("operator_timing", node.get("timing", 0.0))) * 1000, 2),
                }
            )
        for child in node.get("children") or []:
            walk(child)

    for node in json.loads(plan_json).get("operator") or []:
        walk(node)
    return found


def child_traits(config_path: str, target: str) -> dict[str, Any]:
    """The traits of every profile: ``traits_sql`` over ``profile_events_sql`` of the
    published run, run to completion (COPY to a parquet file)."""
    from pipelines.config import load_config
    from pipelines.history.events import profile_events_sql
    from pipelines.history.traits import traits_sql
    from profiles.store import ProfileQueries, Store, sql_literal_path

    config = load_config(config_path)
    with Store.open(config.store_path, read_only=True, threads=config.store.threads, compress=config.store.compress) as store:
        run = str(ProfileQueries(store).run_schema())
        sql, params = traits_sql(config.traits, "profile_events", datetime.now(UTC).replace(tzinfo=None))
        start = time.perf_counter()
        rows = int(
            store.scalar(
                f"COPY (WITH profile_events AS ({profile_events_sql(run)}) {sql}) TO {sql_literal_path(Path(target))} (FORMAT parquet)",
                params,
            )
        )
        seconds = time.perf_counter() - start
        per_trait = dict(store.rows(f"SELECT name, count(*) FROM read_parquet({sql_literal_path(Path(target))}) GROUP BY 1 ORDER BY 1"))
        with_traits = int(store.scalar(f"SELECT count(DISTINCT profile_id) FROM read_parquet({sql_literal_path(Path(target))})"))
    return {
        "seconds": round(seconds, 2),
        "rows": rows,
        "rows_per_trait": per_trait,
        "profiles_with_traits": with_traits,
        "traits": len(config.traits),
        "peak_rss_mib": peak_rss_mib(),
    }


def child_facts(config_path: str, lookups_path: str) -> dict[str, Any]:
    """Events per profile, over all profiles and over the looked-up ones (what a card reads)."""
    import pyarrow as pa

    from pipelines.config import load_config
    from pipelines.history.events import profile_events_sql
    from profiles.store import ProfileQueries, Store

    config = load_config(config_path)
    ids = [item["profile_id"] for item in json.loads(Path(lookups_path).read_text(encoding="utf-8"))]
    with Store.open(config.store_path, read_only=True) as store:
        run = str(ProfileQueries(store).run_schema())
        quantiles = "count(*), avg(n), quantile_disc(n, 0.5), quantile_disc(n, 0.9), quantile_disc(n, 0.99), max(n)"
        every = store.rows(
            f"""SELECT {quantiles} FROM (
                SELECT p.profile_id, count(e.event_id) AS n FROM profiles p
                LEFT JOIN ({profile_events_sql(run)}) e USING (profile_id) GROUP BY p.profile_id)"""
        )[0]
        store.register("_lookups", pa.table({"profile_id": ids}))
        looked = store.rows(
            f"""SELECT {quantiles} FROM (
                SELECT l.profile_id, count(e.event_id) AS n FROM _lookups l
                LEFT JOIN ({profile_events_sql(run)}) e USING (profile_id) GROUP BY l.profile_id)"""
        )[0]
        records = store.rows(
            f"SELECT avg(n), max(n) FROM (SELECT l.profile_id, count(*) AS n FROM _lookups l JOIN {run}.records r USING (profile_id) GROUP BY 1)"
        )[0]

    def shape(row: tuple[Any, ...]) -> dict[str, Any]:
        keys = ("profiles", "mean", "p50", "p90", "p99", "max")
        return {k: (round(float(v), 2) if k == "mean" else int(v)) for k, v in zip(keys, row)}

    return {
        "events_per_profile": shape(every),
        "events_per_looked_up_profile": shape(looked),
        "records_per_looked_up_profile": {"mean": round(float(records[0]), 2), "max": int(records[1])},
    }


def child_anatomy(config_path: str, lookups_path: str, count: str, explain_path: str) -> dict[str, Any]:
    """The steps of a card's history as resolvers/history.py takes them for one profile,
    each timed over ``count`` looked-up profiles, and the plans of its two reads."""
    from pipelines.config import load_config
    from pipelines.history.effort import effort
    from pipelines.history.events import interactions, read_profile_events
    from pipelines.history.traits import traits_python
    from profiles.store import ProfileQueries, Store, in_list

    config = load_config(config_path)
    ids = [item["profile_id"] for item in json.loads(Path(lookups_path).read_text(encoding="utf-8"))][: int(count)]
    spent: dict[str, list[float]] = {}

    def timed(name: str, keep: bool, fn: Any) -> Any:
        start = time.perf_counter()
        out = fn()
        if keep:
            spent.setdefault(name, []).append(time.perf_counter() - start)
        return out

    with Store.open(config.store_path, read_only=True) as store:
        queries = ProfileQueries(store)
        now = datetime.now(UTC).replace(tzinfo=None)
        for round_, profiles in enumerate((ids[:3], ids)):  # the first round warms the caches and is not kept
            for pid in profiles:
                keys, identifiers = timed(
                    "what the events attach to (records, by profile id)", bool(round_), lambda p=pid: queries.links_of(p)
                )
                rows = timed(
                    "the profile's events (by record key, by identifier value)",
                    bool(round_),
                    lambda p=pid, k=keys, i=identifiers: read_profile_events(store, p, k, i),
                )
                timed("traits (Python twin of the trait SQL)", bool(round_), lambda r=rows: traits_python(config.traits, r, now))
                timed(
                    "effort (Python)",
                    bool(round_),
                    lambda r=rows: effort(interactions(list(reversed(r))), days=30, now=now, settings=config.effort),
                )
        keys, identifiers = queries.links_of(ids[0])
        texts, plans = [], {}
        for name, column, values in (
            ("by record key", "record_key", keys),
            ("by identifier value", "link_value", sorted({v for _, v, _ in identifiers})),
        ):
            if not values:
                continue
            condition, params = in_list(column, values)
            text = f"SELECT * FROM events WHERE {condition}"
            plans[name] = scans(str(store.rows(f"EXPLAIN (ANALYZE, FORMAT json) {text}", params)[0][1]))
            readable = store.rows(f"EXPLAIN ANALYZE {text}", params)
            texts.append(f"==== {name} (profile {ids[0]})\n" + "\n".join(str(cell) for row in readable for cell in row[1:]))
        Path(explain_path).write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    return {
        "profiles": len(ids),
        "ms": {
            name: {"p50": round(statistics.median(v) * 1000, 3), "mean": round(statistics.fmean(v) * 1000, 3)}
            for name, v in spent.items()
            if v
        },
        "scans_of_one_profile": plans,
        "explain": explain_path,
    }


def child_live(config_path: str, events_path: str, warmup: str) -> dict[str, Any]:
    """The live events of ``events_path`` recorded in process as ``recordEvent`` records
    each (``record_event``, then ``link_owner``), every SQL statement timed: where a
    live event's time goes."""
    from ingest import StatementTimer  # bench/ingest.py

    from pipelines.config import load_config
    from pipelines.history.events import event_source, record_event
    from profiles.store import ProfileQueries, Store

    config = load_config(config_path)
    spec = event_source(config, "contacts")
    events = json.loads(Path(events_path).read_text(encoding="utf-8"))
    timer = StatementTimer()
    seconds: list[float] = []
    with Store.open(config.store_path, compress=config.store.compress, checkpoint_wal=config.store.checkpoint_wal) as store:
        queries = ProfileQueries(store)
        for i, event in enumerate(events):
            measured = i >= int(warmup)
            if i == int(warmup):
                timer.spent.clear()
            start = time.perf_counter()
            with timer.installed():
                outcome = record_event(store, config, spec, event)
                if "record_key" in outcome:  # as the recordEvent resolver finds the owner
                    owner = queries.link_owner(outcome["record_key"], outcome["link_kind"], outcome["link_value"])
                else:
                    owner = queries.event_owner("contacts", str(outcome["event_id"]))
            if measured:
                seconds.append(time.perf_counter() - start)
            if outcome["problem"] is not None or owner is None:
                raise RuntimeError(f"{event['contact_id']}: {outcome}, owner {owner}")
    return {"latency": latency_stats(seconds), "top_statements": top_statements(timer.spent, 10, per=len(seconds))}


def child_main(mode: str, args: list[str]) -> None:
    """Run one child job; its result is the last line of stdout."""
    jobs = {"events": child_events, "traits": child_traits, "facts": child_facts, "anatomy": child_anatomy, "live": child_live}
    start = time.perf_counter()
    result = jobs[mode](*args)
    result["work_seconds"] = round(time.perf_counter() - start, 3)
    print(json.dumps(result, default=str), flush=True)


def run_child(mode: str, *args: str, log: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), CHILD, mode, *args]
    with log.open("w", encoding="utf-8") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=REPO, check=False)
    output = log.read_text(encoding="utf-8")
    if done.returncode != 0:
        sys.exit(f"{mode} failed with exit code {done.returncode}; its output ({log}):\n{output[-5000:]}")
    return dict(json.loads(output.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------ the API


def write_bodies(work: Path, lookups: list[dict[str, str]]) -> dict[str, Path]:
    (work / "bench.lua").write_text(WRK_LUA, encoding="utf-8")  # bench/api.py's script: wrk() reads <out>/bench.lua
    files = {}
    for kind in KINDS:
        path = work / f"bodies-{kind}.jsonl"
        path.write_text("".join(json.dumps(request_body(kind, x)) + "\n" for x in lookups), encoding="utf-8")
        files[kind] = path
    return files


def post(client: Any, server: Server, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(server.url, json=body)
    data = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
    if reply.status_code != 200 or data.get("errors") or not data.get("data"):
        raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:500]}")
    return dict(data["data"])


def check_responses(server: Server, lookups: list[dict[str, str]], count: int, traits: int) -> dict[str, Any]:
    """The first ``count`` lookups of every kind: the right profile, the history card's
    plain fields equal to the plain card, every trait there."""
    import httpx

    checked = equal = with_events = 0
    history_keys = ("traits", "effort", "timeline")
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30.0) as client:
        for item in lookups[:count]:
            plain = post(client, server, request_body("plain_card", item))["profileByIdentifier"]
            full = post(client, server, request_body("history_card", item))["profileByIdentifier"]
            traits_card = post(client, server, request_body("traits_card", item))["profileByIdentifier"]
            if traits_card != {k: v for k, v in full.items() if k != "timeline"}:
                raise RuntimeError(f"{item['profile_id']}: the card with traits and effort is not the history card without its timeline")
            timeline = post(client, server, request_body("timeline", item))["profile"]
            if not plain or plain["id"] != item["profile_id"] or not full or full["id"] != item["profile_id"]:
                raise RuntimeError(f"{item['phone']} did not find {item['profile_id']}: {plain} / {full}")
            if not timeline or timeline["id"] != item["profile_id"]:
                raise RuntimeError(f"profile {item['profile_id']} not found by id: {timeline}")
            if len(full["traits"]) != traits:
                raise RuntimeError(f"{item['profile_id']}: {len(full['traits'])} traits, not {traits}")
            nodes = timeline["timeline"]["nodes"]
            if len(nodes) > 20 or timeline["timeline"]["totalCount"] < len(nodes):
                raise RuntimeError(f"{item['profile_id']}: a timeline page of {len(nodes)} of {timeline['timeline']['totalCount']}")
            checked += 1
            equal += {k: v for k, v in full.items() if k not in history_keys} == plain
            with_events += bool(nodes)
    return {"checked": checked, "plain_fields_equal": equal, "with_events": with_events}


def drain(server: Server, timeout: float = 120.0) -> float:
    """Wait until the server is idle (its CPU time still for half a second): the requests
    wrk left in flight when it stopped would otherwise fall into the next measurement."""
    start = time.perf_counter()
    last = server.cpu_seconds()
    while time.perf_counter() - start < timeout:
        time.sleep(0.5)
        now = server.cpu_seconds()
        if now - last < 0.02:
            break
        last = now
    return round(time.perf_counter() - start, 1)


def measure_reads(server: Server, work: Path, bodies: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """wrk at c=1 and at c=8 for every kind, interleaved (all kinds at one concurrency,
    then the next), after a warm-up of each; the server idle before each."""
    runs: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        wrk(server, bodies[kind], 8, args.warmup, work)  # warm-up, not recorded
        drain(server)
    for concurrency in (1, 8):
        for kind in KINDS:
            drained = drain(server)
            result = wrk(server, bodies[kind], concurrency, args.duration, work)
            runs[kind][f"c{concurrency}"] = {
                **asdict(result),
                "failures": result.failures,
                "drained_before_seconds": drained,
                "load_after": load_average(),
            }
            print(
                f"{kind}: c={concurrency}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"server CPU {result.server_cpu_ms_per_request:.2f} ms/req, failures {result.failures}",
                flush=True,
            )
    return runs


def live_events(targets: list[str], count: int) -> list[dict[str, Any]]:
    """``count`` contacts that happen now, keyed by the contacts file's column names."""
    import numpy as np

    rng = np.random.default_rng([SEED, 361])
    token = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    out = []
    for i in range(count):
        topic = int(rng.choice(len(TOPICS), p=np.array(TOPIC_P) / sum(TOPIC_P)))
        out.append(
            {
                "contact_id": f"live-{token}-{i:05d}",
                "started_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
                "caller_id": targets[i % len(targets)],
                "channel": CONTACT_CHANNELS[int(rng.choice(len(CONTACT_CHANNELS), p=CONTACT_CHANNEL_P))],
                "topic": TOPICS[topic],
                "department": DEPARTMENTS[TOPIC_DEPARTMENT[topic]],
                "ces": int(rng.integers(1, 8)) if rng.random() < 0.3 else None,
                "duration_s": int(rng.gamma(2.0, 180.0)),
            }
        )
    return out


def pick_callers(store_path: Path, count: int) -> list[str]:
    """Contact-center record ids of ``count`` profiles (the live events' callers), read-only."""
    from profiles.store import Store

    with Store.open(store_path, read_only=True) as store:
        rows = store.rows(
            "SELECT min(record_id) FROM records WHERE source = 'contact_center' GROUP BY profile_id ORDER BY hash(min(record_id) || ?) LIMIT ?",
            [str(SEED), count],
        )
    return [str(r[0]) for r in rows]


def measure_live(server: Server, callers: list[str], warmup: int, count: int) -> dict[str, Any]:
    """``recordEvent`` one at a time (c=1); every response checked. Then the last live
    event must head its profile's timeline."""
    import httpx

    events = live_events(callers, warmup + count)
    seconds: list[float] = []
    statuses: dict[str, int] = {}
    failures: list[str] = []
    last_profile, last_event = None, None
    cpu_before = 0.0
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120.0) as client:
        for i, event in enumerate(events):
            if i == warmup:
                cpu_before = server.cpu_seconds()
            body = {"query": RECORD_EVENT, "variables": {"events": "contacts", "event": event}, "operationName": "Live"}
            start = time.perf_counter()
            reply = client.post(server.url, json=body)
            elapsed = time.perf_counter() - start
            data = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
            result = (data.get("data") or {}).get("recordEvent") or {}
            status = f"HTTP {reply.status_code}: {result.get('status') or 'error'}"
            if reply.status_code != 200 or data.get("errors") or result.get("status") != "recorded" or not result.get("profileId"):
                failures.append(f"{event['contact_id']}: HTTP {reply.status_code}: {reply.text[:300]}")
            if i >= warmup:
                seconds.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
            last_profile, last_event = result.get("profileId"), event["contact_id"]
        cpu = server.cpu_seconds() - cpu_before
        head = None
        if last_profile:
            query = "query T($id: ID!) { profile(id: $id) { timeline(first: 1) { nodes { source eventId } } } }"
            found = post(client, server, {"query": query, "variables": {"id": last_profile}})
            nodes = found["profile"]["timeline"]["nodes"]
            head = nodes[0]["eventId"] if nodes else None
    return {
        "latency": latency_stats(seconds),
        "statuses": statuses,
        "failures": len(failures),
        "failure_examples": failures[:5],
        "server_cpu_ms_per_event": round(cpu / len(seconds) * 1000, 2),
        "last_event_heads_timeline": head == last_event,
    }


def ratios(reads: dict[str, dict[str, Any]], kind: str = "history_card") -> dict[str, float]:
    """A card with history (``kind``) against the plain card, one run."""
    h, p = reads[kind], reads["plain_card"]
    out = {}
    for c in ("c1", "c8"):
        out[f"rps_{c}"] = round(h[c]["rps"] / p[c]["rps"], 3)
        out[f"p50_{c}"] = round(h[c]["p50_ms"] / p[c]["p50_ms"], 3)
        out[f"p99_{c}"] = round(h[c]["p99_ms"] / p[c]["p99_ms"], 3)
        out[f"server_cpu_per_request_{c}"] = round(h[c]["server_cpu_ms_per_request"] / p[c]["server_cpu_ms_per_request"], 3)
    return out


# ------------------------------------------------------------------------------ report


def print_report(results: dict[str, Any]) -> None:
    store, events, batch, reads, live = results["store"], results["events"], results["batch"], results["reads"], results["live"]
    met = results["met"]
    print(
        f"\nstore: {store['profiles']:,} profiles, {store['records']:,} records; its batch run took "
        f"{store['batch_run_seconds'] if store['batch_run_seconds'] is not None else '?'} s"
    )
    print(
        f"events: {events['events_stored']:,} stored of {events['rows']:,} rows ({events['quarantined']:,} quarantined, {events['unlinked']:,} unlinked)"
    )
    per = results["facts"]["events_per_profile"]
    looked = results["facts"]["events_per_looked_up_profile"]
    print(
        f"events per profile: mean {per['mean']}, p50 {per['p50']}, p99 {per['p99']}, max {per['max']}; "
        f"of the looked-up profiles: mean {looked['mean']}, p50 {looked['p50']}, p99 {looked['p99']}, max {looked['max']}"
    )
    print("\nbatch (seconds):")
    for label, key in (
        ("ingest_event_files (all files)", "ingest_event_files"),
        ("unlinked_count", "unlinked_count"),
        ("checkpoint when the store closes", "close_checkpoint"),
        ("traits of every profile (COPY to parquet)", "traits"),
    ):
        print(f"  {label:<46}{batch[key]:9.1f}")
        if key == "ingest_event_files":
            for name, f in events["files"].items():
                print(f"    {name + ':':<44}{f['seconds']:9.1f}   {f['rows']:,} rows, {f['rows'] / f['seconds']:,.0f} rows/s")
    print(f"  {'events + traits (the target)':<46}{batch['events_and_traits']:9.1f}   {batch['events_per_second']:,.0f} events/s ingested")
    print(f"  {'all of the above':<46}{batch['all']:9.1f}")
    if batch["batch_run_seconds"] is not None:
        print(
            f"  {'the batch run it adds to':<46}{batch['batch_run_seconds']:9.1f}   (+{batch['share_of_batch_run']:.0%} with events and traits)"
        )
    print("  the ingest's slowest statements (s):")
    for t in events["ingest_top_statements"][:6]:
        print(f"    {t['ms'] / 1000:7.2f}  {t['calls']:3d}x  {t['statement'][:120]}")
    again = batch.get("again")
    if again:
        print(
            f"  {'ingest_event_files again (the next run)':<46}{again['ingest_seconds']:9.1f}   "
            f"(+ unlinked_count {again['unlinked_count_seconds']:.1f}, checkpoint {again['close_checkpoint_seconds']:.1f})"
        )
        for name, f in again["files"].items():
            print(f"    {name + ':':<44}{f['seconds']:9.1f}")
    grown = batch.get("grown")
    if grown:
        print(
            f"  {'ingest_event_files after a night (1% new, 0.1% corrected)':<46}{grown['ingest_seconds']:9.1f}   "
            f"(+ unlinked_count {grown['unlinked_count_seconds']:.1f}, checkpoint {grown['close_checkpoint_seconds']:.1f})"
        )
        for name, f in grown["files"].items():
            print(f"    {name + ':':<44}{f['seconds']:9.1f}   {grown['touched'][name]:,} new or corrected, {f['written']:,} written")
        print("  slowest statements of the ingest after a night (s):")
        for t in grown["top_statements"][:4]:
            print(f"    {t['ms'] / 1000:7.2f}  {t['calls']:3d}x  {t['statement'][:120]}")
    print(f"\n{'':<24}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'CPU ms/req':>12}{'failures':>10}")
    for kind in KINDS:
        for c in ("c1", "c8"):
            r = reads[kind][c]
            label = f"{kind} {c.replace('c', 'c=')}"
            print(
                f"{label:<24}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}{r['rps']:9.0f}{r['server_cpu_ms_per_request']:12.3f}{r['failures']:10d}"
            )
    for kind, key in (("traits card", "traits_over_plain"), ("history card", "history_over_plain")):
        ratio = results[key]
        print(
            f"{kind} / plain card: req/s {ratio['rps_c1']:.2f} (c=1), {ratio['rps_c8']:.2f} (c=8); p99 {ratio['p99_c1']:.2f}x (c=1); "
            f"server CPU per request {ratio['server_cpu_per_request_c8']:.2f}x (c=8)"
        )
    lat = live["latency"]
    print(
        f"\nrecordEvent (c=1, {lat['n']} events): p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
        f"max {lat['max_ms']:.1f} ms; server CPU {live['server_cpu_ms_per_event']:.1f} ms/event; statuses {live['statuses']}; "
        f"failures {live['failures']}"
    )
    inproc = results.get("live_in_process")
    if inproc:
        own = inproc["latency"]
        print(
            f"  in process (record_event + link_owner, {own['n']} events): p50 {own['p50_ms']:.1f} ms, p99 {own['p99_ms']:.1f} ms; "
            "slowest statements (ms per event):"
        )
        for t in inproc["top_statements"][:6]:
            print(f"    {t['ms']:7.2f}  {t['statement'][:120]}")
    anatomy = results.get("anatomy")
    if anatomy:
        print(f"\nwhere a card's history goes, in process ({anatomy['profiles']} profiles, ms per step, p50 / mean):")
        for name, ms in anatomy["ms"].items():
            print(f"  {name:<58}{ms['p50']:8.2f}{ms['mean']:8.2f}")
        print(f"  scans for one profile (rows read, ms; plans in {anatomy['explain']}):")
        for name, found in anatomy["scans_of_one_profile"].items():
            listed = "; ".join(f"{x['table']} {x['type']} {x['rows']:,} rows {x['ms']:.1f} ms" for x in found)
            print(f"    {name}: {listed}")
    t = results["targets"]
    print("\ntargets (on 2 cores, at 1,000,000 profiles and 10,000,000 events):")
    print(f"  events + traits in the batch <= {t['batch_seconds']:g} s: {batch['events_and_traits']:.1f} s {verdict(met['batch'])}")
    if batch["events_again_and_traits"] is not None:
        print(
            f"    the same in the next batch run (files unchanged): {batch['events_again_and_traits']:.1f} s {verdict(met['batch_again'])}"
        )
    if batch.get("events_grown_and_traits") is not None:
        print(
            f"    the same after a night's new and corrected events: {batch['events_grown_and_traits']:.1f} s {verdict(met['batch_grown'])}"
        )
    for kind in ("timeline", "traits_card", "history_card"):  # the issue's: timeline and the card with traits and effort
        r1, r8 = reads[kind]["c1"], reads[kind]["c8"]
        print(f"  {kind} p99 at c=1 <= {t['p99_c1_ms']:g} ms: {r1['p99_ms']:.2f} ms {verdict(met[f'{kind}_p99_c1'])}")
        print(f"  {kind} at c=8 >= {t['rps_c8']:g} req/s: {r8['rps']:,.0f} {verdict(met[f'{kind}_rps_c8'])}")
    print(f"  recordEvent p99 <= {t['live_p99_ms']:g} ms: {lat['p99_ms']:.1f} ms {verdict(met['live_p99'])}")
    if results["profiles_requested"] != TARGET_PROFILES:
        print(f"  (this store has {store['profiles']:,} profiles: the targets are set for {TARGET_PROFILES:,})")
    for warning in results["warnings"]:
        print(f"WARNING: {warning}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profiles", type=int, default=1_000_000, help="profiles in the store (default 1,000,000)")
    parser.add_argument("--events", type=int, default=None, help="events to generate (default 10 per profile)")
    parser.add_argument(
        "--store-from", type=Path, default=None, help="copy this bench store directory (e.g. bench/out-api) instead of building one"
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for store, events and results (default bench/out-c360-<size>)")
    parser.add_argument("--lookups", type=int, default=2000, help="distinct phone numbers (and their profiles) to cycle through")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up per kind of request")
    parser.add_argument("--check", type=int, default=20, help="lookups whose responses are checked before the load")
    parser.add_argument("--live", type=int, default=300, help="live events measured through recordEvent")
    parser.add_argument("--live-warmup", type=int, default=20, help="unmeasured live events first")
    parser.add_argument("--live-anatomy", type=int, default=50, help="live events recorded in process with their SQL timed (0: skip)")
    parser.add_argument("--anatomy", type=int, default=30, help="profiles whose history statements are timed in process (0: skip)")
    parser.add_argument(
        "--no-rerun", dest="rerun", action="store_false", help="skip the second ingest of the event files (the next batch run's)"
    )
    parser.add_argument("--build-only", action="store_true", help="build or copy the store, write the event files and stop")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    out: Path = (args.out or REPO / "bench" / f"out-c360-{size_label(args.profiles)}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    code = code_digest()
    wall = time.perf_counter()
    load_start = load_average()

    base_config, built = ensure_base(out, args.profiles, args.store_from)
    from pipelines.config import load_config

    base_store = load_config(base_config).store_path
    if built["reused"]:
        print(f"store: reused {base_store}", flush=True)
    elif "copied_from" in built:
        print(f"store: copied from {built['copied_from']} in {built['copy_seconds']:.0f} s", flush=True)
    else:
        print(f"store: built (generate {built['generate_seconds']:.0f} s, pipeline {built['pipeline_seconds']:.0f} s)", flush=True)
    base_id = f"{base_store.stat().st_size}:{int(base_store.stat().st_mtime)}"
    n_events = args.events if args.events is not None else 10 * args.profiles
    generated = ensure_events(out, base_store, n_events, base_id)
    print(
        f"events: {'reused' if generated['reused'] else 'generated in ' + str(generated['generate_seconds']) + ' s'}: "
        + ", ".join(f"{name} {f['rows']:,} rows ({f['mib']} MiB)" for name, f in generated["files"].items()),
        flush=True,
    )
    if args.build_only:
        return

    config_path, copy_seconds = prepare_work(out, base_config)
    print(f"work store: a fresh copy in {copy_seconds:.0f} s; config {config_path}", flush=True)
    print("batch: ingest_event_files ...", flush=True)
    load_events = load_average()
    ingested = run_child("events", str(config_path), log=work / "events.log")
    print(
        f"batch: ingest_event_files {ingested['ingest_seconds']:.1f} s, unlinked_count {ingested['unlinked_count_seconds']:.1f} s, "
        f"checkpoint on close {ingested['close_checkpoint_seconds']:.1f} s",
        flush=True,
    )
    again = grown = None
    if args.rerun:
        print("batch: ingest_event_files again (the next run, the files unchanged) ...", flush=True)
        again = run_child("events", str(config_path), log=work / "events-again.log")
        print(f"batch: ingest_event_files again {again['ingest_seconds']:.1f} s", flush=True)
        grown_config, touched = grow_event_files(config_path)
        print(f"batch: ingest_event_files after a night's new and corrected events ({sum(touched.values()):,}) ...", flush=True)
        grown = run_child("events", str(grown_config), log=work / "events-grown.log")
        grown["touched"] = touched
        print(f"batch: ingest_event_files after a night {grown['ingest_seconds']:.1f} s", flush=True)
    print("batch: traits of every profile ...", flush=True)
    traits = run_child("traits", str(config_path), str(work / TRAITS_FILE), log=work / "traits.log")
    print(f"batch: traits {traits['seconds']:.1f} s ({traits['rows']:,} rows)", flush=True)

    lookups, facts = pick_lookups(config_path, args.lookups)
    lookups_path = work / "lookups.json"
    lookups_path.write_text(json.dumps(lookups), encoding="utf-8")
    per_profile = run_child("facts", str(config_path), str(lookups_path), log=work / "facts.log")
    callers = pick_callers(load_config(config_path).store_path, args.live_warmup + args.live)
    bodies = write_bodies(work, lookups)

    server = Server(SIDE, config_path, work)
    try:
        ready = server.wait_ready()
        print(f"API: serving on port {server.port} (ready in {ready:.1f} s)", flush=True)
        load_reads = load_average()
        checked = check_responses(server, lookups, args.check, traits["traits"])
        reads = measure_reads(server, work, bodies, args)
        print(f"recordEvent: {args.live} events after {args.live_warmup} warm-ups ...", flush=True)
        drain(server)
        live = measure_live(server, callers, args.live_warmup, args.live)
        rss = server.rss_mib()
    finally:
        server.stop()
    # in process, after the server: on the store as serving leaves it (its serving indexes made)
    anatomy = None
    if args.anatomy:
        print(f"the history's statements in process: {args.anatomy} profiles ...", flush=True)
        anatomy = run_child(
            "anatomy", str(config_path), str(lookups_path), str(args.anatomy), str(work / "explain-history.txt"), log=work / "anatomy.log"
        )
    live_in_process = None
    if args.live_anatomy:
        print(f"recordEvent's work in process: {args.live_anatomy} events ...", flush=True)
        inproc = [{**e, "contact_id": "inproc-" + e["contact_id"]} for e in live_events(callers[::-1], 5 + args.live_anatomy)]
        (work / "live-inprocess.json").write_text(json.dumps(inproc), encoding="utf-8")
        live_in_process = run_child("live", str(config_path), str(work / "live-inprocess.json"), "5", log=work / "live.log")

    counts = ingested["files"]
    rows = sum(c["rows"] for c in counts.values())
    accepted = sum(c["accepted"] for c in counts.values())
    batch_run = built.get("pipeline_seconds")
    events_and_traits = ingested["ingest_seconds"] + traits["seconds"]
    everything = events_and_traits + ingested["unlinked_count_seconds"] + ingested["close_checkpoint_seconds"]
    batch = {
        "ingest_event_files": ingested["ingest_seconds"],
        "unlinked_count": ingested["unlinked_count_seconds"],
        "close_checkpoint": ingested["close_checkpoint_seconds"],
        "traits": traits["seconds"],
        "events_and_traits": round(events_and_traits, 2),
        "all": round(everything, 2),
        "events_per_second": round(accepted / ingested["ingest_seconds"], 0),
        "batch_run_seconds": batch_run,
        "batch_run_stages": built.get("pipeline_stages"),
        "share_of_batch_run": round(everything / batch_run, 3) if batch_run else None,
        "load_before": load_events,
        "ingest_event_files_again": again["ingest_seconds"] if again else None,
        "events_again_and_traits": round(again["ingest_seconds"] + traits["seconds"], 2) if again else None,
        "again": again,
        "events_grown_and_traits": round(grown["ingest_seconds"] + traits["seconds"], 2) if grown else None,
        "grown": grown,
    }
    warnings: list[str] = []
    failures = sum(r["failures"] for kind in reads.values() for r in kind.values())
    if failures:
        warnings.append(
            f"{failures} failed responses under wrk (non-200, errors such as the server's TIMEOUT after api.resolver_timeout, "
            "not found): the read figures are not valid"
        )
    if live["failures"]:
        warnings.append(f"{live['failures']} failed recordEvent responses: the live figures are not valid")
    if not live["last_event_heads_timeline"]:
        warnings.append("the last live event is not the newest in its profile's timeline")
    if checked["plain_fields_equal"] != checked["checked"]:
        warnings.append("the card with history and the plain card differ in their plain fields")
    if code_digest() != code:
        warnings.append("pipelines/, profiles/ or resolvers/ changed while the benchmark ran: rerun")
    results: dict[str, Any] = {
        "profiles_requested": args.profiles,
        "store": {
            "profiles": facts.profiles,
            "records": facts.records,
            "batch_run_seconds": batch_run,
            "base": built,
            "work_copy_seconds": copy_seconds,
        },
        "events": {
            "generated": generated,
            "files": counts,
            "rows": rows,
            "accepted": accepted,
            "quarantined": rows - accepted,
            "events_stored": ingested["events_stored"],
            "unlinked": ingested["unlinked"],
            "ingest_peak_rss_mib": ingested["peak_rss_mib"],
            "ingest_top_statements": ingested["top_statements"],
        },
        "batch": batch,
        "traits": traits,
        "facts": per_profile,
        "lookups": len(lookups),
        "duration_seconds": args.duration,
        "server": {"ready_seconds": round(ready, 1), "rss_mib": rss, "load_before_reads": load_reads, "resolver_timeout": RESOLVER_TIMEOUT},
        "checked": checked,
        "reads": reads,
        "history_over_plain": ratios(reads),
        "traits_over_plain": ratios(reads, "traits_card"),
        "live": live,
        "live_in_process": live_in_process,
        "anatomy": anatomy,
        "targets": {
            "batch_seconds": TARGET_BATCH_SECONDS,
            "p99_c1_ms": TARGET_P99_C1_MS,
            "rps_c8": TARGET_RPS_C8,
            "live_p99_ms": TARGET_LIVE_P99_MS,
        },
        "met": {
            "batch": events_and_traits <= TARGET_BATCH_SECONDS,
            "batch_again": again["ingest_seconds"] + traits["seconds"] <= TARGET_BATCH_SECONDS if again else None,
            "batch_grown": grown["ingest_seconds"] + traits["seconds"] <= TARGET_BATCH_SECONDS if grown else None,
            "timeline_p99_c1": reads["timeline"]["c1"]["p99_ms"] <= TARGET_P99_C1_MS,
            "timeline_rps_c8": reads["timeline"]["c8"]["rps"] >= TARGET_RPS_C8,
            "traits_card_p99_c1": reads["traits_card"]["c1"]["p99_ms"] <= TARGET_P99_C1_MS,
            "traits_card_rps_c8": reads["traits_card"]["c8"]["rps"] >= TARGET_RPS_C8,
            "history_card_p99_c1": reads["history_card"]["c1"]["p99_ms"] <= TARGET_P99_C1_MS,
            "history_card_rps_c8": reads["history_card"]["c8"]["rps"] >= TARGET_RPS_C8,
            "live_p99": live["latency"]["p99_ms"] <= TARGET_LIVE_P99_MS,
        },
        "load_average": {"start": load_start, "end": load_average()},
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "warnings": warnings,
    }
    print_report(results)
    (out / RESULTS).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwall time {results['wall_seconds']:.0f} s; results: {out / RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child_main(sys.argv[2], sys.argv[3:])
    else:
        main()

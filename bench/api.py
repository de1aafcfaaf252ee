"""API benchmark: the GraphQL card lookup against a bare Starlette endpoint doing the same
store work, both served by uvicorn (one worker) over one store.

Why: a contact-center agent types a phone number and gets the customer's card. The
GraphQL layer (strawberry, auth, limits, DataLoaders, PII audit) wraps a handful of
batched store reads (``ProfileQueries``). This measures what that layer costs: latency at
concurrency 1, throughput at concurrency 8, and GraphQL throughput as a share of a bare
endpoint that standardizes the phone and runs the same ``ProfileQueries`` reads.
Targets: p99 <= 10 ms at c=1, >= 500 req/s at c=8, GraphQL >= 50% of bare at c=8.
A third server, "consent", is the GraphQL app with the demo's ``[[purposes]]`` and an
agent role that reads for them (docs/privacy.md), so every contact-PII field of the card
is checked against its purpose: consent checks may cost at most 10% of the card's req/s
(issue 22: consent >= 90% of GraphQL at c=8).

How: a store with about ``--profiles`` profiles is built once (demo data with 2.27
records per profile, then the pipeline, in a subprocess logging to ``<out>/build.log``;
a marker file, ``bench-api-store.json``, records what is there). 2,000 phone numbers
that identify exactly one profile are read from the store and written in national
format (``06-12345678``) so that the API has to standardize them. Each server runs in a
subprocess of its own (DuckDB lets one process own the store, so one after the other);
load comes from ``wrk`` (another process, a Lua script cycling through the lookups):
a warm-up, then a fixed duration at c=1 and at c=8. Every response is checked (HTTP
200, no ``errors``, a profile found). Finally both request paths are run in-process under
cProfile (httpx's ASGI transport) to show where a request's time goes.

The machine is shared and noisy: compare the ratios of one run rather than absolute
figures across runs; server CPU per request (from /proc) is steadier than req/s.

Run (from the repository root; needs ``wrk``: ``apt-get install -y wrk``):

    .venv/bin/python bench/api.py                                  # 1,000,000 profiles, bench/out-api
    .venv/bin/python bench/api.py --profiles 20000 --out bench/out-api-20k

Results are printed and written to ``<out>/api-results.json``. Note that the GraphQL
server appends a PII audit row to the store's ``audit_log`` for every request.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

SEED = 42
RECORDS_PER_PROFILE = 2.27
MARKER = "bench-api-store.json"
RESULTS = "api-results.json"
LOOKUPS = "lookups.json"
CHILD = "_child"  # first argument of this script when it runs as a child process
API_KEY = "bench-key"
REGION = "NL"
TARGET_P99_C1_MS = 10.0
TARGET_RPS_C8 = 500.0
TARGET_SHARE = 0.5
REPO = Path(__file__).resolve().parents[1]
PROFILE_PASS_SECONDS = 30.0
CODE = ("pipelines", "profiles", "resolvers")  # code under test: its digest shows edits mid-benchmark

CARD_QUERY = """query Card($v: String!) {
  profileByIdentifier(kind: "phone", value: $v) {
    id fullName email phone dateOfBirth
    address { street houseNumber postcode city }
    sources
    records { source recordId updatedAt }
    identifiers { kind value }
  }
}"""

#: The two sides: (uvicorn app, its request path).
SIDES: dict[str, tuple[str, str]] = {
    "graphql": ("api:create_graphql_app", "/graphql"),  # this file, imported with --app-dir bench
    "bare": ("api:create_bare_app", "/lookup"),
    # the same GraphQL app with the demo's [[purposes]] and an agent that reads for them:
    # every contact-PII field of the card is checked against the purpose it serves
    "consent": ("api:create_graphql_app", "/graphql"),
}
#: The sides profiled in-process (the consent side is the GraphQL path with its checks).
PROFILED = ("graphql", "bare")
CONSENT_CONFIG = "unify-consent.toml"
TARGET_CONSENT_SHARE = 0.9

# wrk's Lua script: cycles through one JSON body per line of a file, checks every response
# and prints the figures as one JSON line.
WRK_LUA = r"""
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 997)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = offset % #bodies
  bad_status, errors, misses = 0, 0, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif body:find('"errors"', 1, true) then
    errors = errors + 1
  elseif not body:find('"id"', 1, true) then
    misses = misses + 1
  end
end

function done(summary, latency, requests)
  local b, e, m = 0, 0, 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad_status"); e = e + t:get("errors"); m = m + t:get("misses")
  end
  local s = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "non_200": %d, "graphql_errors": %d, "not_found": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, b, e, m, s.connect + s.read + s.write + s.timeout))
end
"""


# --------------------------------------------------------------------------- the bare baseline


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):  # the store's UTC, with its offset, as the API gives it
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def card(profile: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The card the GraphQL query asks for, with the same keys and values."""
    from profiles.store import identifiers_of

    return {
        "id": profile["profile_id"],
        "fullName": profile.get("full_name"),
        "email": profile.get("email"),
        "phone": profile.get("phone"),
        "dateOfBirth": profile.get("date_of_birth"),
        "address": {
            k: profile.get(col)
            for k, col in (("street", "street"), ("houseNumber", "house_number"), ("postcode", "postcode"), ("city", "city"))
        },
        "sources": list(profile["sources"]),
        "records": [{"source": str(r["source"]), "recordId": str(r["record_id"]), "updatedAt": r.get("updated_at")} for r in records],
        "identifiers": [{"kind": i["kind"], "value": i["value"]} for i in identifiers_of(records)],
    }


CARD_PROFILE_COLUMNS = ("full_name", "email", "phone", "date_of_birth", "street", "house_number", "postcode", "city", "sources")
CARD_RECORD_COLUMNS = ("source", "record_id", "updated_at", "identifiers")


def bare_lookup(queries: Any, phone: str) -> dict[str, Any] | None:
    """The store work of the card query for one phone number, without GraphQL."""
    from pipelines.standardize.contacts import standardize_phone

    value = standardize_phone(phone, REGION)[0]
    if value is None:
        return None
    matches = queries.profiles_with_identifier("phone", value)
    if len(matches) != 1:
        return None
    pid = matches[0]
    profile = queries.profiles([pid], CARD_PROFILE_COLUMNS).get(pid)  # the columns the card shows, as GraphQL reads them
    if profile is None:
        return None
    return card(profile, queries.records([pid], CARD_RECORD_COLUMNS).get(pid, []))


def create_graphql_app() -> Any:
    """uvicorn factory: unify's app (as `unify serve` builds it, without the control socket)."""
    from resolvers.app import create_app

    return create_app(os.environ["UNIFY_CONFIG"])


def create_bare_app(config_path: str | None = None) -> Any:
    """uvicorn factory: POST /lookup {"phone": ...} -> {"profile": card}, on the same store."""
    from contextlib import asynccontextmanager

    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from pipelines.config import load_config
    from profiles.store import ProfileQueries, Store

    config = load_config(config_path or os.environ["UNIFY_CONFIG"])
    store = Store.open(config.store_path, compress=config.store.compress)  # as the app opens it
    queries = ProfileQueries(store)

    async def lookup(request: Request) -> Response:
        body = await request.json()
        found = bare_lookup(queries, str(body["phone"]))
        # orjson, as the GraphQL app answers; times and dates through _json_default, as the API gives them
        body = orjson.dumps({"profile": found}, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
        return Response(body, media_type="application/json")

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        try:
            yield
        finally:
            store.close()

    return Starlette(routes=[Route("/healthz", health), Route("/lookup", lookup, methods=["POST"])], lifespan=lifespan)


# --------------------------------------------------------------------------- child processes


def child_build(config_path: str) -> dict[str, Any]:
    """The pipeline on the demo data, as `unify run` runs it."""
    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    summary = run_pipeline(load_config(config_path))
    return {"records": summary.records, "profiles": summary.profiles, "seconds": summary.seconds}


def request_body(side: str, phone: str) -> dict[str, Any]:
    if side in ("graphql", "consent"):
        return {"query": CARD_QUERY, "variables": {"v": phone}, "operationName": "Card"}
    return {"phone": phone}


STORE_METHODS = ("resolve", "profiles_with_identifier", "profiles", "records", "append_audit")


def time_store_methods(spent: dict[str, float]) -> None:
    """Wrap the ProfileQueries methods so that their wall time adds up in ``spent``."""
    import functools

    from profiles.store import ProfileQueries

    def timed(name: str, method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    for name in STORE_METHODS:
        setattr(ProfileQueries, name, timed(name, getattr(ProfileQueries, name)))


def child_profile(side: str, config_path: str, lookups_path: str, count: str, prof_path: str) -> dict[str, Any]:
    """``count`` sequential requests of ``side``, in-process through httpx's ASGI
    transport: once timed (with the wall time of each store method), once under cProfile
    (dumped to ``prof_path``)."""
    import asyncio

    import httpx

    os.environ["UNIFY_API_KEYS"] = f"agent={API_KEY}"
    phones = [item["phone"] for item in json.loads(Path(lookups_path).read_text(encoding="utf-8"))]
    spent: dict[str, float] = {}
    time_store_methods(spent)
    if side == "graphql":
        from resolvers.app import create_app

        app = create_app(config_path)
    else:
        app = create_bare_app(config_path)
    n = int(count)  # at most: fewer when a pass would take over PROFILE_PASS_SECONDS

    async def run(client: httpx.AsyncClient, first: int, k: int) -> None:
        for j in range(first, first + k):
            reply = await client.post(SIDES[side][1], json=request_body(side, phones[j % len(phones)]))
            reply.raise_for_status()

    async def main() -> float:
        nonlocal n
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
            start = time.perf_counter()
            await run(client, 0, 10)  # warm-up, and how long a request takes
            n = max(10, min(n, int(PROFILE_PASS_SECONDS / ((time.perf_counter() - start) / 10))))
            spent.clear()
            start = time.perf_counter()
            await run(client, 20, n)
            seconds = time.perf_counter() - start
            timed_spent.update(spent)
            profiler = cProfile.Profile()
            profiler.enable()
            await run(client, 20 + n, n)
            profiler.disable()
            profiler.dump_stats(prof_path)
            return seconds

    timed_spent: dict[str, float] = {}
    seconds = asyncio.run(main())
    store_ms = {name: round(timed_spent[name] / n * 1000, 3) for name in STORE_METHODS if name in timed_spent}
    total_ms = seconds / n * 1000
    return {
        "requests": n,
        "ms_per_request": round(total_ms, 3),
        "store_ms_per_request": store_ms,
        "outside_store_ms_per_request": round(total_ms - sum(store_ms.values()), 3),
    }


def child_main(mode: str, args: list[str]) -> None:
    """Run one child job; its result is the last line of stdout."""
    jobs: dict[str, Callable[..., dict[str, Any]]] = {"build": child_build, "profile": child_profile}
    start = time.perf_counter()
    result = jobs[mode](*args)
    result["work_seconds"] = round(time.perf_counter() - start, 3)
    print(json.dumps(result), flush=True)


def run_child(mode: str, *args: str, log: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), CHILD, mode, *args]
    if log is None:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO, check=False)
        output = done.stdout
    else:
        with log.open("w", encoding="utf-8") as sink:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=REPO, check=False)
        output = log.read_text(encoding="utf-8")
    if done.returncode != 0:
        sys.exit(f"{mode} failed with exit code {done.returncode}; its output:\n{output[-5000:]}")
    return dict(json.loads(output.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- the store and the lookups


def code_digest() -> str:
    files = sorted(f for package in CODE for f in (REPO / package).rglob("*.py"))
    data = b"".join(str(f.relative_to(REPO)).encode() + f.read_bytes() for f in files)
    return hashlib.sha256(data).hexdigest()[:12]


def ensure_store(out: Path, profiles: int) -> tuple[Path, dict[str, Any]]:
    """Demo data and a published store for about ``profiles`` profiles, built unless the
    marker says they are there. Returns (config path, marker contents)."""
    marker = out / MARKER
    if marker.exists():
        seen = json.loads(marker.read_text(encoding="utf-8"))
        config = out / seen["config"]
        if seen.get("profiles_requested") == profiles and seen.get("seed") == SEED and (out / seen["store"]).exists():
            seen["reused"] = True
            return config, seen
    from pipelines.config import load_config
    from pipelines.demo import generate

    records = round(profiles * RECORDS_PER_PROFILE)
    print(f"generating {records:,} demo records ...", flush=True)
    start = time.perf_counter()
    manifest = generate(out, records=records, seed=SEED, events_per_person=0)  # the records only: as before events existed
    generate_seconds = round(time.perf_counter() - start, 1)
    config = load_config(manifest.config_path)
    remove_store(config.store_path)
    print(f"running the pipeline (log: {out / 'build.log'}) ...", flush=True)
    start = time.perf_counter()
    built = run_child("build", str(manifest.config_path), log=out / "build.log")
    seen = {
        "profiles_requested": profiles,
        "records_requested": records,
        "seed": SEED,
        "config": manifest.config_path.name,
        "store": config.store_path.relative_to(out).as_posix(),
        "generate_seconds": generate_seconds,
        "pipeline_seconds": round(time.perf_counter() - start, 1),
        "pipeline_stages": built["seconds"],
        "records": built["records"],
        "profiles": built["profiles"],
    }
    marker.write_text(json.dumps(seen, indent=2) + "\n", encoding="utf-8")
    seen["reused"] = False
    return manifest.config_path, seen


def remove_store(store: Path) -> None:
    for path in (store, store.with_name(store.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(store.with_name(store.name + ".tmp"), ignore_errors=True)


def national(e164: str) -> str:
    """+31612345678 -> 06-12345678 (a Dutch mobile number as people write it)."""
    return f"0{e164[3]}-{e164[4:]}"


@dataclass
class StoreFacts:
    profiles: int
    records: int
    audit_rows: int


def pick_lookups(config_path: Path, count: int) -> tuple[list[dict[str, str]], StoreFacts]:
    """``count`` Dutch mobile numbers that identify exactly one profile, in national
    format, with the profile each must find (read-only; closed before serving)."""
    from pipelines.config import load_config
    from pipelines.standardize.contacts import standardize_phone
    from profiles.store import Store

    with Store.open(load_config(config_path).store_path, read_only=True) as store:
        rows = store.rows(
            """SELECT i.value, min(m.profile_id) FROM identifiers i JOIN membership m USING (record_key)
               WHERE i.kind = 'phone' AND i.value LIKE '+316%' AND length(i.value) = 12
               GROUP BY i.value HAVING count(DISTINCT m.profile_id) = 1
               ORDER BY hash(i.value || ?) LIMIT ?""",
            [str(SEED), count],
        )
        facts = StoreFacts(
            profiles=int(store.scalar("SELECT count(*) FROM profiles")),
            records=int(store.scalar("SELECT count(*) FROM records")),
            audit_rows=int(store.scalar("SELECT count(*) FROM audit_log")),
        )
    lookups = [{"phone": national(v), "e164": v, "profile_id": pid} for v, pid in rows]
    for item in lookups:
        if standardize_phone(item["phone"], REGION)[0] != item["e164"]:
            sys.exit(f"{item['phone']} does not standardize to {item['e164']}")
    return lookups, facts


# --------------------------------------------------------------------------- servers and load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One uvicorn server (one worker) in a subprocess, on a free loopback port."""

    def __init__(self, side: str, config_path: Path, out: Path):
        self.side, self.port = side, free_port()
        app = SIDES[side][0]
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        command += ["--app-dir", str(REPO / "bench")]
        env = {**os.environ, "UNIFY_CONFIG": str(config_path), "UNIFY_API_KEYS": f"agent={API_KEY}"}
        self.log = (out / f"server-{side}.log").open("w", encoding="utf-8")
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}{SIDES[side][1]}"

    def wait_ready(self, timeout: float = 180.0) -> float:
        import httpx

        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.side} server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.side} server not ready after {timeout} s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non_200: int
    graphql_errors: int
    not_found: int
    socket_errors: int
    server_cpu_ms_per_request: float

    @property
    def failures(self) -> int:
        return self.non_200 + self.graphql_errors + self.not_found + self.socket_errors


def write_wrk_files(out: Path, lookups: list[dict[str, str]]) -> dict[str, Path]:
    (out / "bench.lua").write_text(WRK_LUA, encoding="utf-8")
    files = {}
    for side in SIDES:
        path = out / f"bodies-{side}.jsonl"
        path.write_text("".join(json.dumps(request_body(side, x["phone"])) + "\n" for x in lookups), encoding="utf-8")
        files[side] = path
    return files


def wrk(server: Server, bodies: Path, concurrency: int, seconds: int, out: Path) -> LoadResult:
    """One bounded wrk run against ``server``: ``seconds`` long, ``concurrency`` connections."""
    threads = min(concurrency, 2)
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(concurrency),
        "-d",
        f"{seconds}s",
        "--timeout",
        "60s",
        "-s",
        str(out / "bench.lua"),
        server.url,
        "--",
        str(bodies),
        API_KEY,
    ]
    cpu_before = server.cpu_seconds()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 120, check=False)
    cpu = server.cpu_seconds() - cpu_before
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}")
    raw = json.loads(lines[-1][len("WRKJSON ") :])
    duration = raw["duration_us"] / 1e6
    n = raw["requests"]
    return LoadResult(
        concurrency=concurrency,
        seconds=round(duration, 2),
        requests=n,
        rps=round(n / duration, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        non_200=raw["non_200"],
        graphql_errors=raw["graphql_errors"],
        not_found=raw["not_found"],
        socket_errors=raw["socket_errors"],
        server_cpu_ms_per_request=round(cpu / max(n, 1) * 1000, 3),
    )


def sample_cards(server: Server, lookups: list[dict[str, str]], count: int) -> list[Any]:
    """The cards the first ``count`` lookups return (to check both sides agree)."""
    import httpx

    cards = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(headers=headers, timeout=10.0) as client:
        for item in lookups[:count]:
            reply = client.post(server.url, json=request_body(server.side, item["phone"]))
            reply.raise_for_status()
            data = reply.json()
            found = data["profile"] if server.side == "bare" else data["data"]["profileByIdentifier"]
            if "extensions" in data:
                raise RuntimeError(f"{server.side}: {item['phone']}: fields withheld: {data['extensions']}")
            if not found or found["id"] != item["profile_id"]:
                raise RuntimeError(f"{server.side}: {item['phone']} did not find {item['profile_id']}: {data}")
            cards.append(found)
    return cards


def measure_side(
    side: str, config_path: Path, out: Path, bodies: Path, lookups: list[dict[str, str]], args: argparse.Namespace
) -> dict[str, Any]:
    server = Server(side, config_path, out)
    try:
        ready = server.wait_ready()
        print(f"{side}: serving on port {server.port} (ready in {ready:.1f} s)", flush=True)
        cards = sample_cards(server, lookups, args.check)
        wrk(server, bodies, 8, args.warmup, out)  # warm-up, not recorded
        runs = {}
        for concurrency in (1, 8):
            result = wrk(server, bodies, concurrency, args.duration, out)
            runs[f"c{concurrency}"] = {**asdict(result), "failures": result.failures}
            print(
                f"{side}: c={concurrency}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms, failures {result.failures}",
                flush=True,
            )
        rss = server.rss_mib()
    finally:
        server.stop()
    return {"ready_seconds": round(ready, 2), "rss_mib": rss, "runs": runs, "cards": cards}


# --------------------------------------------------------------------------- profiles

#: Synchronous functions whose cumulative time per request the report shows (cProfile
#: attributes coroutine time poorly, so none of these is async): (label, file suffix, function).
HOTSPOTS: tuple[tuple[str, str, str], ...] = (
    ("graphql-core: parse", "graphql/language/parser.py", "parse"),
    ("graphql-core: validate (with limiter rules)", "graphql/validation/validate.py", "validate"),
    ("auth: Keyring.authenticate", "resolvers/auth.py", "authenticate"),
    ("standardize_phone", "pipelines/contacts.py", "standardize_phone"),
    ("store: all SQL (Store._run)", "store/connection.py", "_run"),
    ("store: fetch + dict rows (Store.dicts)", "store/connection.py", "dicts"),
    ("json.loads of records.raw and bodies", "json/decoder.py", "decode"),
    ("JSON encoding", "json/encoder.py", "encode"),
)


def cumulative_ms(prof_path: Path, functions: tuple[tuple[str, str, str], ...], count: int, digits: int = 3) -> dict[str, float]:
    """Cumulative ms per request (or record) of ``functions`` (label, file suffix, function
    name) in a cProfile dump of ``count`` of them."""
    stats = pstats.Stats(str(prof_path)).stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for label, suffix, name in functions:
        total = sum(ct for (file, _, func), (_, _, _, ct, _) in stats.items() if func == name and file.endswith(suffix))
        if total:
            found[label] = round(total / count * 1000, digits)
    return found


def hotspots(prof_path: Path, requests: int) -> dict[str, float]:
    """Cumulative ms per request of the HOTSPOTS functions in a cProfile dump."""
    return cumulative_ms(prof_path, HOTSPOTS, requests)


def top_functions(prof_path: Path, requests: int, limit: int = 15) -> list[tuple[str, float]]:
    """The functions with most own time (ms per request)."""
    stats = pstats.Stats(str(prof_path)).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    return [(f"{Path(file).name}:{line}({func})", round(tt / requests * 1000, 3)) for (file, line, func), (_, _, tt, _, _) in rows]


def consent_config(config_path: Path) -> Path:
    """The store's config with the demo's purposes, and the agent reading for them."""
    from pipelines.demo.config import PRIVACY

    path = config_path.with_name(CONSENT_CONFIG)
    path.write_text(config_path.read_text(encoding="utf-8") + "\n".join(PRIVACY) + "\n", encoding="utf-8")
    return path


def profile_sides(config_path: Path, out: Path, requests: int) -> dict[str, Any]:
    profiled: dict[str, Any] = {}
    for side in PROFILED:
        prof = out / f"profile-{side}.prof"
        result = run_child("profile", side, str(config_path), str(out / LOOKUPS), str(requests), str(prof))
        n = result["requests"]
        profiled[side] = {
            **result,
            "hotspots_ms_per_request": hotspots(prof, n),
            "top_own_time_ms_per_request": top_functions(prof, n),
            "pstats": str(prof),
        }
    return profiled


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def summarize(graphql: dict[str, Any], bare: dict[str, Any], consent: dict[str, Any]) -> dict[str, Any]:
    g1, g8, b1, b8 = graphql["runs"]["c1"], graphql["runs"]["c8"], bare["runs"]["c1"], bare["runs"]["c8"]
    share = g8["rps"] / b8["rps"]
    consent_share = consent["runs"]["c8"]["rps"] / g8["rps"]
    return {
        "ratio_rps_c8": round(share, 3),
        "ratio_consent_rps_c8": round(consent_share, 3),
        "ratio_consent_rps_c1": round(consent["runs"]["c1"]["rps"] / g1["rps"], 3),
        "ratio_rps_c1": round(g1["rps"] / b1["rps"], 3),
        "ratio_cpu_per_request_c8": round(g8["server_cpu_ms_per_request"] / b8["server_cpu_ms_per_request"], 3),
        "targets": {
            "graphql_p99_c1_ms": TARGET_P99_C1_MS,
            "graphql_rps_c8": TARGET_RPS_C8,
            "graphql_share_of_bare_c8": TARGET_SHARE,
            "consent_share_of_graphql_c8": TARGET_CONSENT_SHARE,
        },
        "met": {
            "graphql_p99_c1_ms": g1["p99_ms"] <= TARGET_P99_C1_MS,
            "graphql_rps_c8": g8["rps"] >= TARGET_RPS_C8,
            "graphql_share_of_bare_c8": share >= TARGET_SHARE,
            "consent_share_of_graphql_c8": consent_share >= TARGET_CONSENT_SHARE,
        },
    }


def print_report(results: dict[str, Any]) -> None:
    store, sides, summary = results["store"], results["sides"], results["summary"]
    print(
        f"\nprofiles in store {store['profiles']:,} (records {store['records']:,}); "
        f"{results['lookups']:,} phone lookups; {results['duration_seconds']} s per measurement"
    )
    print(f"\n{'':<22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'CPU ms/req':>12}{'failures':>10}")
    for side in SIDES:
        for c in ("c1", "c8"):
            r = sides[side]["runs"][c]
            label = f"{side} {c.replace('c', 'c=')}"
            print(
                f"{label:<22}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}{r['rps']:9.0f}{r['server_cpu_ms_per_request']:12.3f}{r['failures']:10d}"
            )
    g1, g8 = sides["graphql"]["runs"]["c1"], sides["graphql"]["runs"]["c8"]
    met = summary["met"]
    print(f"\nGraphQL p99 at c=1: {g1['p99_ms']:.2f} ms  (target <= {TARGET_P99_C1_MS:g} ms: {verdict(met['graphql_p99_c1_ms'])})")
    print(f"GraphQL req/s at c=8: {g8['rps']:,.0f}  (target >= {TARGET_RPS_C8:g}: {verdict(met['graphql_rps_c8'])})")
    print(
        f"GraphQL / bare req/s at c=8: {summary['ratio_rps_c8']:.2f}  "
        f"(target >= {TARGET_SHARE:.2f}: {verdict(met['graphql_share_of_bare_c8'])}); "
        f"at c=1: {summary['ratio_rps_c1']:.2f}; server CPU per request at c=8: {summary['ratio_cpu_per_request_c8']:.2f}x bare"
    )
    print(
        f"with consent checks / without, req/s at c=8: {summary['ratio_consent_rps_c8']:.2f} "
        f"(target >= {TARGET_CONSENT_SHARE:.2f}: {verdict(met['consent_share_of_graphql_c8'])}); at c=1: {summary['ratio_consent_rps_c1']:.2f}"
    )
    print(f"cards checked equal on all sides: {results['cards_equal']}/{results['cards_checked']}")
    for side, prof in results.get("profile", {}).items():
        print(
            f"\n{side}, in-process ({prof['requests']} sequential requests, httpx ASGI transport): "
            f"{prof['ms_per_request']:.2f} ms per request, of which store methods (wall ms per request):"
        )
        for name, ms in prof["store_ms_per_request"].items():
            print(f"  {name:<46}{ms:8.3f}")
        print(f"  {'everything outside the store':<46}{prof['outside_store_ms_per_request']:8.3f}")
        print("  under cProfile (inflated by profiling overhead), cumulative ms per request:")
        for label, ms in prof["hotspots_ms_per_request"].items():
            print(f"    {label:<44}{ms:8.3f}")
    for warning in results["warnings"]:
        print(f"WARNING: {warning}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profiles", type=int, default=1_000_000, help="profiles in the store (default 1,000,000)")
    parser.add_argument("--out", type=Path, default=Path("bench/out-api"), help="directory for data, store and results")
    parser.add_argument("--lookups", type=int, default=2000, help="distinct phone numbers to cycle through")
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--check", type=int, default=20, help="lookups whose cards must be equal on both sides")
    parser.add_argument("--profile-requests", type=int, default=400, help="requests per side under cProfile (0: skip)")
    parser.add_argument("--build-only", action="store_true", help="build the store and stop")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    code = code_digest()

    config_path, built = ensure_store(out, args.profiles)
    if built["reused"]:
        print(f"store: reused ({built['profiles']:,} profiles from {built['records']:,} records)", flush=True)
    else:
        print(
            f"store: built in {built['generate_seconds'] + built['pipeline_seconds']:.0f} s "
            f"(generate {built['generate_seconds']:.0f} s, pipeline {built['pipeline_seconds']:.0f} s)",
            flush=True,
        )
    lookups, facts = pick_lookups(config_path, args.lookups)
    print(f"profiles in store: {facts.profiles:,} (records {facts.records:,}); {len(lookups):,} lookups", flush=True)
    if args.build_only:
        return
    (out / LOOKUPS).write_text(json.dumps(lookups), encoding="utf-8")
    bodies = write_wrk_files(out, lookups)

    configs = {"graphql": config_path, "bare": config_path, "consent": consent_config(config_path)}
    sides = {side: measure_side(side, configs[side], out, bodies[side], lookups, args) for side in SIDES}
    cards = {side: sides[side].pop("cards") for side in SIDES}
    equal = sum(
        json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True, default=_json_default) == json.dumps(c, sort_keys=True)
        for a, b, c in zip(cards["graphql"], cards["bare"], cards["consent"])
    )
    results: dict[str, Any] = {
        "profiles_requested": args.profiles,
        "store": {**asdict(facts), "build": built},
        "lookups": len(lookups),
        "duration_seconds": args.duration,
        "sides": sides,
        "summary": summarize(sides["graphql"], sides["bare"], sides["consent"]),
        "cards_checked": len(cards["graphql"]),
        "cards_equal": equal,
        "warnings": [],
    }
    if args.profile_requests:
        print("profiling both request paths in-process ...", flush=True)
        results["profile"] = profile_sides(config_path, out, args.profile_requests)
    failures = sum(r["failures"] for s in sides.values() for r in s["runs"].values())
    if failures:
        results["warnings"].append(f"{failures} failed responses (non-200, errors, not found): the figures are not valid")
    if equal != len(cards["graphql"]):
        results["warnings"].append("the cards differ between sides: they do not do the same work")
    if code_digest() != code:
        results["warnings"].append("pipelines/, profiles/ or resolvers/ changed while the benchmark ran: rerun")
    print_report(results)
    (out / RESULTS).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults: {out / RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child_main(sys.argv[2], sys.argv[3:])
    else:
        main()

"""The nightly refresh as an operator runs it: `unify run` in a process of its own while
a real `unify serve` answers lookups and live ingests. No request fails, the new run is
served without a restart, and every acknowledged ingest is in it."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.config import load_config
from profiles.store import Store
from tests.conftest import DemoRun
from tests.e2e.serving import KEYS, UNIFY, copy_demo, unify_serve

pytestmark = pytest.mark.slow  # real servers or larger data: `make test`, not `make test-fast`

INGEST = 'mutation($record: JSON!) { ingestRecord(source: "crm", record: $record) { recordKey status } }'
BY_RECORD = 'query($key: String!) { profileByIdentifier(kind: "record", value: $key) { id } }'


def _unify_run(config_path: Path) -> subprocess.CompletedProcess[str]:
    """`unify run --config CONFIG` as an operator types it (the server runs it when one serves the store)."""
    return subprocess.run([UNIFY, "run", "--config", str(config_path)], capture_output=True, text=True, timeout=300)


def _started_run(config_path: Path) -> subprocess.Popen[str]:
    """`unify run --retrain --config CONFIG` started as from a terminal, its output piped: a
    test run started in the background (`make test &`) has SIGINT ignored, which its
    children inherit, and then Ctrl+C would do nothing."""
    return subprocess.Popen(
        [UNIFY, "run", "--retrain", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _gql(client: httpx.Client, base: str, query: str, variables: dict[str, Any] | None = None, role: str = "agent") -> httpx.Response:
    return client.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {KEYS[role]}"},
        timeout=30,
    )


def test_a_batch_run_beside_a_serving_server_loses_nothing(small_demo: DemoRun, tmp_path: Path) -> None:
    config_path = copy_demo(small_demo, tmp_path / "demo")
    config = load_config(config_path)
    crm = next(s for s in config.sources if s.name == "crm")
    fields = crm.fields
    # the nightly file brings a customer the served run does not know yet
    crm_file = config.base_dir / crm.path
    header = crm_file.read_text(encoding="utf-8").splitlines()[0].split(",")
    row = {fields["first_name"]: "Ysbrand", fields["last_name"]: "Quakernaat", crm.id: "K0999001"}
    with crm_file.open("a", encoding="utf-8") as f:
        f.write(",".join(row.get(column, "") for column in header) + "\n")
    phone, _ = small_demo.manifest.demo_phone_lookup
    lookup = f'{{ profileByIdentifier(kind: "phone", value: "{phone}") {{ id fullName }} }}'

    with unify_serve(config_path) as (base, _server), httpx.Client() as client:
        assert _gql(client, base, BY_RECORD, {"key": "crm:K0999001"}).json()["data"]["profileByIdentifier"] is None
        stop = threading.Event()
        failures: list[str] = []
        acknowledged: list[str] = []
        answered = [0]

        def load(worker: int) -> None:
            with httpx.Client() as own:
                n = 0
                while not stop.is_set():
                    n += 1
                    if n % 4 == 0:
                        record = {crm.id: f"LIVE-{worker}-{n}", fields["first_name"]: "Live", fields["last_name"]: f"Caller{worker}x{n}"}
                        response = _gql(own, base, INGEST, {"record": record})
                    else:
                        response = _gql(own, base, lookup)
                    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
                    if response.status_code != 200 or body.get("errors") or not body.get("data"):
                        failures.append(f"{response.status_code} {response.text[:300]}")
                    elif n % 4 == 0:
                        acknowledged.append(body["data"]["ingestRecord"]["recordKey"])
                    answered[0] += 1

        workers = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        try:
            time.sleep(1.0)
            before = answered[0]
            run = _unify_run(config_path)
            during = answered[0] - before
            review = subprocess.run(
                [UNIFY, "review", "--config", str(config_path), "--limit", "3"], capture_output=True, text=True, timeout=60
            )
            export = subprocess.run(
                [UNIFY, "export", "--config", str(config_path), "--out", str(tmp_path / "export")],
                capture_output=True,
                text=True,
                timeout=60,
            )
            time.sleep(1.0)
        finally:
            stop.set()
            for w in workers:
                w.join()

        assert run.returncode == 0, run.stdout + run.stderr
        assert "records ->" in run.stdout and "profiles" in run.stdout
        assert review.returncode == 0 and "review queue" in review.stdout, review.stdout + review.stderr
        assert export.returncode == 0 and (tmp_path / "export" / "profiles.parquet").exists(), export.stdout + export.stderr
        assert not failures, f"{len(failures)} of {answered[0]} requests failed: {failures[:3]}"
        assert during > 0, "no request was answered while the run ran"
        assert acknowledged
        # the new run is served without a restart, and no acknowledged live record is lost
        assert _gql(client, base, BY_RECORD, {"key": "crm:K0999001"}).json()["data"]["profileByIdentifier"] is not None
        missing = [k for k in acknowledged if _gql(client, base, BY_RECORD, {"key": k}).json()["data"]["profileByIdentifier"] is None]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged ingests are gone: {missing[:5]}"
        # the requests', live ingests' and the run's audit entries made one chain
        verified = subprocess.run([UNIFY, "audit", "verify", "--config", str(config_path)], capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0 and verified.stdout.startswith("audit chain intact: "), verified.stdout + verified.stderr


def test_records_the_cli_ingests_meet_the_next_live_record(small_demo: DemoRun, tmp_path: Path) -> None:
    """`unify ingest` run by the server beside its own live path: the server's records in
    memory learn of them, so the next live record of that person joins their profile."""
    config_path = copy_demo(small_demo, tmp_path / "demo")
    config = load_config(config_path)
    crm = next(s for s in config.sources if s.name == "crm")
    shop = next(s for s in config.sources if s.name == "webshop")
    person = {"first_name": "Ysolde", "last_name": "Brandsma", "email": "ysolde.brandsma@example.nl", "phone": "0612093847"}
    crm_file = config.base_dir / crm.path
    header = crm_file.read_text(encoding="utf-8").splitlines()[0].split(",")
    row = {crm.id: "K0999002", **{crm.fields[f]: v for f, v in person.items()}}
    new_file = tmp_path / "crm-new.csv"
    new_file.write_text(",".join(header) + "\n" + ",".join(row.get(c, "") for c in header) + "\n", encoding="utf-8")
    with unify_serve(config_path) as (base, _server), httpx.Client() as client:
        warm = {crm.id: "WARM-1", crm.fields["first_name"]: "Warm", crm.fields["last_name"]: "Up"}
        assert _gql(client, base, INGEST, {"record": warm}).json()["data"]["ingestRecord"]  # the server reads its index
        done = subprocess.run(
            [UNIFY, "ingest", str(new_file), "--source", "crm", "--config", str(config_path)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and "1 rows" in done.stdout, done.stdout + done.stderr
        owner = _gql(client, base, BY_RECORD, {"key": "crm:K0999002"}).json()["data"]["profileByIdentifier"]
        assert owner is not None
        live = {shop.id: "SHOP-YB-1", **{shop.fields[f]: v for f, v in person.items() if f in shop.fields}}
        mutation = 'mutation($record: JSON!) { ingestRecord(source: "webshop", record: $record) { status profile { id } } }'
        outcome = _gql(client, base, mutation, {"record": live}).json()["data"]["ingestRecord"]
        assert outcome["status"] == "attached" and outcome["profile"]["id"] == owner["id"], outcome


def test_ctrl_c_on_a_run_the_server_runs_for_the_cli_cancels_it(small_demo: DemoRun, tmp_path: Path) -> None:
    """Ctrl+C on `unify run` while a server runs it: the server cancels the run (nothing
    published, one line in its log, no traceback), goes on serving, and the next run
    publishes. Before, the run went on to publish and every line of its output after the
    CLI had gone logged a traceback."""
    config_path = copy_demo(small_demo, tmp_path / "demo")
    with unify_serve(config_path) as server, httpx.Client() as client:
        cli = _started_run(config_path)
        server.wait_for_log("running `unify run` for the CLI")
        time.sleep(1.0)  # into the training, long before it publishes
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=60)
        assert cli.returncode == 130 and "interrupted: the server cancels `unify run`" in err, err
        server.wait_for_log("the CLI that asked for `unify run` went away: cancelling it")
        server.wait_for_log("`unify run` for the CLI ended with exit code 1")
        assert client.get(f"{server.base}/healthz", timeout=5).status_code == 200
        again = _unify_run(config_path)
        assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in server.stopped_log()
    with Store.open(load_config(config_path).store_path, read_only=True) as store:
        runs = store.rows("SELECT status FROM runs ORDER BY started_at")
    assert [status for (status,) in runs[-2:]] == ["failed", "published"], runs


def test_a_second_server_on_a_served_store_says_why_and_never_that_it_serves(small_demo: DemoRun, tmp_path: Path) -> None:
    """`unify serve` on a store another server holds: exit 1 with one line naming the
    lock, and no "Console on ..." first (it used to announce itself, then fail)."""
    config_path = copy_demo(small_demo, tmp_path / "demo")
    with unify_serve(config_path):
        second = subprocess.run([UNIFY, "serve", "--config", str(config_path), "--port", "1"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Console on" not in second.stdout, second.stdout
    assert "Only one process may own the store" in " ".join(second.stderr.split()), second.stderr


def test_a_run_with_another_config_than_the_server_serves_with_is_refused(small_demo: DemoRun, tmp_path: Path) -> None:
    """A run the server runs for the CLI publishes what the server's live path and API then
    serve, with the server's config: a config edited since the server started (here a
    threshold) is refused in one line, naming what differs, and nothing is published.
    Before, such a run published a model the server's live ingest did not know, and every
    `ingestRecord` failed with INTERNAL until a restart."""
    config_path = copy_demo(small_demo, tmp_path / "demo")
    with unify_serve(config_path) as server:
        text = config_path.read_text(encoding="utf-8")
        config_path.write_text(text.replace("review_threshold = 0.60", "review_threshold = 0.55"), encoding="utf-8")
        refused = _unify_run(config_path)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        said = " ".join(refused.stderr.split())
        assert "differs from the config this server serves with (matching)" in said and "restart `unify serve`" in said, said
        config_path.write_text(text, encoding="utf-8")  # the served config again: the run goes ahead
        again = _unify_run(config_path)
        assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in server.stopped_log()


def test_a_server_killed_under_a_cli_command_is_one_line_of_the_cli(small_demo: DemoRun, tmp_path: Path) -> None:
    """`kill -9` of the server while it runs `unify run` for the CLI: the CLI says in one
    line that the server went away (it printed a traceback of a ConnectionError), and the
    next `unify run`, with no server, opens the store itself and publishes."""
    config_path = copy_demo(small_demo, tmp_path / "demo")
    with unify_serve(config_path) as server:
        cli = _started_run(config_path)
        server.wait_for_log("running `unify run` for the CLI")
        server.process.kill()
        server.process.wait(timeout=30)
        _, err = cli.communicate(timeout=60)
    said = " ".join(err.split())
    assert cli.returncode == 1 and "went away before `unify run` finished" in said and "Traceback" not in err, err
    again = _unify_run(config_path)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_server_started_before_the_first_run_says_so_then_serves_what_the_run_publishes(small_demo: DemoRun, tmp_path: Path) -> None:
    """`unify serve` on a store that has no run yet (the first deployment: serve, then load):
    reads and live ingests answer NO_PUBLISHED_RUN with what to do (they were INTERNAL with
    a server traceback each); `unify run` through the server publishes, and they answer."""
    config_path = copy_demo(small_demo, tmp_path / "demo")
    store_path = load_config(config_path).store_path
    store_path.unlink()
    with unify_serve(config_path) as server, httpx.Client() as client:
        asked = _gql(client, server.base, BY_RECORD, {"key": "crm:K0000001"}).json()
        assert asked["errors"][0]["extensions"]["code"] == "NO_PUBLISHED_RUN", asked
        assert "run `unify run`" in asked["errors"][0]["message"]
        record = {"klantnummer": "FIRST-1", "voornaam": "Eerste", "achternaam": "Klant"}
        ingested = _gql(client, server.base, INGEST, {"record": record}).json()
        assert ingested["errors"][0]["extensions"]["code"] == "NO_PUBLISHED_RUN", ingested
        run = _unify_run(config_path)
        assert run.returncode == 0, run.stdout + run.stderr
        ingested = _gql(client, server.base, INGEST, {"record": record}).json()
        assert ingested["data"]["ingestRecord"]["status"], ingested
    assert "Traceback" not in server.stopped_log()

"""The web console in a real headless Chromium (Debian's package, driven by Playwright)
against a real `unify serve` on a copy of the small demo: one server and one browser for
the module, a fresh page (tab, so a fresh sessionStorage) per test.

The screenshots in docs/ (console-agent.png, console-steward.png) are made here: into docs/
with UNIFY_SCREENSHOTS=1 (`make screenshots`), else into the test's temporary directory, so
that a test run leaves the work tree as it was."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DemoRun
from tests.e2e.serving import KEYS, Server, copy_demo, unify_serve

pytestmark = pytest.mark.slow

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extras (make install)")

#: Debian's chromium (the Makefile installs it); Playwright never downloads a browser here.
CHROMIUM = os.environ.get("UNIFY_TEST_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (docs/ when asked for)."""
    return DOCS if os.environ.get("UNIFY_SCREENSHOTS") == "1" else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server(small_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = copy_demo(small_demo, tmp_path_factory.mktemp("console") / "demo")
    with unify_serve(config) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.problems = []  # script errors and CSP violations: none expected
    opened.on("pageerror", lambda e: opened.problems.append(str(e)))
    opened.on("console", lambda m: m.type == "error" and opened.problems.append(m.text))
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def sign_in(page: Any, server: Server, role: str) -> None:
    page.goto(f"{server.base}/")
    page.fill("#key", KEYS[role])
    page.press("#key", "Enter")
    page.wait_for_selector(f"#who:has-text('signed in as {role}')")


def until(condition: Callable[[], bool], seconds: float = 15) -> None:
    """Wait for a condition on the page (the console's CSP forbids Playwright's string-evaluating wait_for_function)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the page never got there"
        time.sleep(0.05)


def graphql(server: Server, role: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {KEYS[role]}"},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body
    return body["data"]


def caller(server: Server, small_demo: DemoRun) -> dict[str, Any]:
    phone, _person = small_demo.manifest.demo_phone_lookup
    query = 'query($v: String!) { profileByIdentifier(kind: "phone", value: $v) { id pseudonymousId fullName email phone recordCount } }'
    found: dict[str, Any] = graphql(server, "agent", query, {"v": phone})["profileByIdentifier"]
    return found


def test_agent_finds_the_demo_caller_by_their_number_written_another_way(
    page: Any, server: Server, small_demo: DemoRun, shots: Path
) -> None:
    phone, _person = small_demo.manifest.demo_phone_lookup
    expected = caller(server, small_demo)
    urls: list[str] = []
    bearer: list[str | None] = []
    page.on("request", lambda r: (urls.append(r.url), r.url.endswith("/graphql") and bearer.append(r.headers.get("authorization"))))
    sign_in(page, server, "agent")
    page.fill("#lookup", phone)
    page.press("#lookup", "Enter")
    page.wait_for_selector("#card-name")
    assert page.inner_text("#card-name") == expected["fullName"]
    assert expected["id"] in page.inner_text("#card")
    assert "Found by phone" in page.inner_text("#lookup-status")
    rows = page.locator("table.timeline tbody tr")
    assert rows.count() > 0, "the caller's timeline"
    channels = sorted({c for c in page.locator("table.timeline tbody tr").evaluate_all("rs => rs.map(r => r.dataset.channel)") if c})
    assert len(channels) >= 2, channels  # across channels
    page.select_option("#timeline-channel", channels[0])
    shown = page.locator("table.timeline tbody tr").evaluate_all("rs => rs.map(r => r.dataset.channel)")
    assert shown and set(shown) == {channels[0]}
    page.select_option("#timeline-channel", "")
    page.screenshot(path=str(shots / "console-agent.png"), full_page=True)
    # the key goes as a Bearer header, never in an address, and never into the server's log
    assert bearer and set(bearer) == {f"Bearer {KEYS['agent']}"}
    assert not [u for u in urls if KEYS["agent"] in u]
    assert KEYS["agent"] not in "".join(server.log)
    assert page.problems == []


def test_the_key_is_kept_for_the_tab_only_and_a_wrong_one_is_refused(page: Any, server: Server) -> None:
    page.goto(f"{server.base}/")
    page.fill("#key", "not-a-key")
    page.press("#key", "Enter")
    page.wait_for_selector("#message:has-text('UNAUTHENTICATED')")
    assert page.is_visible("#signin") and page.evaluate("() => sessionStorage.length") == 0
    sign_in(page, server, "agent")
    assert page.evaluate("() => sessionStorage.getItem('unify.key')") == KEYS["agent"]
    assert page.evaluate("() => localStorage.length + document.cookie.length") == 0
    page.reload()  # the same tab keeps it
    page.wait_for_selector("#who:has-text('signed in as agent')")
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.problems == [] or all("401" in p for p in page.problems)


def test_the_search_box_reads_what_a_caller_says(page: Any, server: Server) -> None:
    sign_in(page, server, "agent")
    how = page.evaluate(
        """async (typed) => {
          const { classify } = await import("/console/agent.js");
          const viewer = { role: "agent", identifierKinds: ["customer_number", "email", "loyalty_card", "phone"] };
          return Object.fromEntries(typed.map((t) => [t, classify(t, viewer)]));
        }""",
        [
            "Jan.de.Vries@Example.nl",
            "crm:K0010003",
            "+31 (0)6-1234 5678",
            "06 12 34 56 78",
            "K0010003",
            "800090218374",
            "jan de vries 1985 utrecht",
            "j. devries 3511",
        ],
    )
    identifiers = {"kinds": ["customer_number", "loyalty_card", "phone"]}
    assert how == {
        "Jan.de.Vries@Example.nl": {"kinds": ["email"]},
        "crm:K0010003": {"record": True},
        "+31 (0)6-1234 5678": identifiers,
        "06 12 34 56 78": identifiers,
        "K0010003": identifiers,
        "800090218374": identifiers,
        "jan de vries 1985 utrecht": {"search": True},
        "j. devries 3511": {"search": True},
    }


def test_free_text_lists_candidates_and_opens_a_card(page: Any, server: Server, small_demo: DemoRun) -> None:
    expected = caller(server, small_demo)
    sign_in(page, server, "agent")
    page.fill("#lookup", expected["fullName"])
    page.press("#lookup", "Enter")
    page.wait_for_selector("#matches li button")
    page.locator("#matches li button").first.click()
    page.wait_for_selector("#card-name")
    assert page.problems == []


def test_steward_decides_a_pair_splits_a_record_undoes_it_and_sees_the_audit(
    page: Any, server: Server, small_demo: DemoRun, shots: Path
) -> None:
    sign_in(page, server, "steward")
    page.wait_for_selector(".pair-body")
    first = page.get_attribute(".pair-body", "data-pair")
    # the evidence: prior, one bar per comparison, the total
    comparisons = page.locator(".waterfall g.step").count()
    assert comparisons >= 4
    assert page.locator(".compare tr.diff").count() >= 1  # differences highlighted
    page.screenshot(path=str(shots / "console-steward.png"), full_page=True)

    # keyboard: next pair, back, decide DIFFERENT with a reason
    page.keyboard.press("j")
    assert page.get_attribute(".pair-body", "data-pair") != first
    page.keyboard.press("k")
    assert page.get_attribute(".pair-body", "data-pair") == first
    page.fill("#reason", "different first names and e-mails")
    page.press("#reason", "Escape")
    page.keyboard.press("d")
    page.wait_for_selector("#message:has-text('Decided DIFFERENT')")
    assert page.get_attribute(".pair-body", "data-pair") != first

    # a pair someone else decided meanwhile: CONFLICT, shown, and the reason stays in the box
    taken = page.get_attribute(".pair-body", "data-pair")
    decide = 'mutation($id: ID!) { decideCandidate(pairId: $id, decision: DIFFERENT, reason: "by another steward") { id } }'
    graphql(server, "steward", decide, {"id": taken})
    page.keyboard.press("s")
    page.wait_for_selector("#message:has-text('CONFLICT')")
    assert page.input_value("#reason") == "different first names and e-mails"

    # past the pairs loaded, j loads the next page of the queue
    loaded = page.locator("#queue li button").count()
    for _ in range(loaded):
        page.keyboard.press("j")
    until(lambda: page.locator("#queue li button").count() > loaded)

    # split a record out of the demo caller's profile, then undo it, from the audit log
    profile = caller(server, small_demo)
    assert profile["recordCount"] >= 2
    page.click("#nav-profile")
    page.fill("#profile-id", profile["id"])
    page.press("#profile-id", "Enter")
    page.wait_for_selector(f".profile-tools[data-profile='{profile['id']}']")
    page.locator(".records tbody input[type=checkbox]").last.check()
    page.fill("#profile-reason", "two people under one card")
    page.click("#split")
    page.wait_for_selector("#message:has-text('Split 1 record')")
    page.wait_for_selector(".audit li[data-action='steward.split']")
    assert page.locator(".records tbody tr").count() == profile["recordCount"] - 1
    page.locator(".audit li[data-action='steward.split'] button.undo").first.click()
    page.wait_for_selector("#message:has-text('Undid')")
    page.wait_for_selector(".audit li[data-action='steward.undo']")
    assert page.locator(".records tbody tr").count() == profile["recordCount"]
    assert "two people under one card" in page.inner_text(".audit")

    # merge another profile into it, then undo the merge
    queue = graphql(server, "steward", "{ reviewQueue(first: 1) { edges { node { rightProfileId } } } }")["reviewQueue"]["edges"]
    other = queue[0]["node"]["rightProfileId"]
    page.fill("#merge-with", other)
    page.click("#merge")
    page.wait_for_selector("#message:has-text('Merged')")
    page.wait_for_selector(".audit li[data-action='steward.merge']")
    merged = page.locator(".records tbody tr").count()
    assert merged > profile["recordCount"]
    page.locator(".audit li[data-action='steward.merge'] button.undo").first.click()
    page.wait_for_selector("#message:has-text('Undid')")
    until(lambda: page.locator(".records tbody tr").count() < merged)
    assert page.problems == []


def test_personalization_sees_no_contact_pii(page: Any, server: Server, small_demo: DemoRun) -> None:
    expected = caller(server, small_demo)
    sign_in(page, server, "personalization")
    assert page.is_hidden("#nav-steward")
    page.fill("#lookup", expected["pseudonymousId"])
    page.press("#lookup", "Enter")
    page.wait_for_selector("#card .card-body")
    shown = page.inner_text("#card")
    assert expected["id"] in shown
    for pii in (expected["email"], expected["phone"]):  # contact PII (names are not)
        assert pii and pii not in shown, pii
    assert page.problems == []


def test_markup_in_a_name_is_shown_as_text(page: Any, server: Server) -> None:
    record = {
        "customerId": "console-xss-1",
        "firstName": "<img src=x onerror=alert(1)>",
        "lastName": "<script>alert(2)</script>",
        "city": "Utrecht",
    }
    ingest = 'mutation($r: JSON!) { ingestRecord(source: "webshop", record: $r) { recordKey profile { fullName } } }'
    ingested = graphql(server, "agent", ingest, {"r": record})["ingestRecord"]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, server, "agent")
    page.fill("#lookup", ingested["recordKey"])
    page.press("#lookup", "Enter")
    page.wait_for_selector("#card-name")
    assert page.inner_text("#card-name") == ingested["profile"]["fullName"]
    assert "<img" in page.inner_text("#card-name") and "<script>alert(2)</script>" in page.inner_text("#card-name")
    assert page.locator("#card img, #card script").count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []
    assert page.problems == []


def test_pages_carry_a_strict_policy_and_graphiql_is_not_served_in_production(server: Server) -> None:
    for path in ("/", "/console/app.js", "/console/style.css"):
        response = httpx.get(f"{server.base}{path}")
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{server.base}/graphiql").status_code == 404
    assert httpx.post(f"{server.base}/graphql", json={"query": "{ viewer { role } }"}).status_code == 401  # the API keeps its guard


def test_graphiql_only_with_dev_and_with_a_policy_of_its_own(small_demo: DemoRun, tmp_path: Path) -> None:
    config = copy_demo(small_demo, tmp_path / "demo")  # production keys, development off: --dev turns it on
    with unify_serve(config, args=("--dev",)) as dev:
        page = httpx.get(f"{dev.base}/graphiql")
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        assert "https://unpkg.com" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "unsafe-inline" not in httpx.get(f"{dev.base}/").headers["content-security-policy"]  # the console stays strict
        # GraphiQL posts to its own address, behind the same key guard
        assert httpx.post(f"{dev.base}/graphiql", json={"query": "{ viewer { role } }"}).status_code == 401
        answer = httpx.post(
            f"{dev.base}/graphiql", json={"query": "{ viewer { role } }"}, headers={"Authorization": f"Bearer {KEYS['steward']}"}
        )
        assert answer.json() == {"data": {"viewer": {"role": "steward"}}}
        introspection = httpx.post(
            f"{dev.base}/graphql",
            json={"query": "{ __schema { queryType { name } } }"},
            headers={"Authorization": f"Bearer {KEYS['agent']}"},
        )
        assert introspection.json()["data"]["__schema"]["queryType"]["name"] == "Query"

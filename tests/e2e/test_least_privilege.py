"""Least privilege and quiet logs, as clients and operators meet them: the
personalization role gets no identifier values, no record keys and no profile from
contact data; the server log holds no values from requests or records; a production
config refuses the published demo keys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.conftest import DemoRun
from tests.e2e.serving import KEYS, UNIFY, copy_demo, unify_serve

pytestmark = pytest.mark.slow  # real servers or larger data: `make test`, not `make test-fast`

CARD = """query($kind: String!, $value: String!) { profileByIdentifier(kind: $kind, value: $value) {
  id pseudonymousId firstName identifiers { kind value } records { key recordId source } fields { name source recordId } } }"""


def _post(base: str, query: str, role: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {KEYS[role]}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_personalization_sees_no_identifiers_record_keys_or_lookups_by_contact_data(small_demo: DemoRun, tmp_path: Path) -> None:
    config = copy_demo(small_demo, tmp_path / "demo")
    phone, _ = small_demo.manifest.demo_phone_lookup
    digits = re.sub(r"\D", "", phone)[-6:]
    with unify_serve(config) as server:
        base = server.base
        agent = _post(base, CARD, "agent", {"kind": "phone", "value": phone})["data"]["profileByIdentifier"]
        assert agent["identifiers"] and all(i["value"] for i in agent["identifiers"])
        assert all(r["key"] and r["recordId"] for r in agent["records"])
        # personalization: by contact data or record, refused; by pseudonymous id, found
        for kind, value in (("phone", phone), ("record", agent["records"][0]["key"]), ("email", "x@example.com")):
            errors = _post(base, CARD, "personalization", {"kind": kind, "value": value})["errors"]
            assert errors[0]["extensions"]["code"] == "FORBIDDEN", errors
        search = _post(base, '{ searchProfiles(query: "jan utrecht") { score } }', "personalization")
        assert search["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        card = _post(base, CARD, "personalization", {"kind": "pseudonymous_id", "value": agent["pseudonymousId"]})["data"][
            "profileByIdentifier"
        ]
        assert card["id"] == agent["id"] and card["firstName"] == agent["firstName"]
        assert card["identifiers"] and all(i["value"] is None for i in card["identifiers"])
        assert card["records"] and all(r["key"] is None and r["recordId"] is None and r["source"] for r in card["records"])
        assert card["fields"] and all(f["recordId"] is None and f["source"] for f in card["fields"])
        assert _post(base, CARD, "personalization", {"kind": "pseudonymous_id", "value": "u_nobody"})["data"]["profileByIdentifier"] is None

        # client errors, each with values in it: one line each in the log, no values, no traceback
        errors_sent = 0
        for query, variables in (
            (CARD, {"kind": "no_such_kind", "value": phone}),
            ('{ profileByIdentifier(kind: "phone", value: "' + phone + '") { id ', None),  # syntax error quoting the phone
            ('{ profile(id: "' + phone + '") { id nosuchfield } }', None),
            ('mutation { decideCandidate(pairId: "' + phone + '", decision: SAME, reason: "r") { id } }', None),
        ):
            body = _post(base, query, "steward" if "decide" in query else "agent", variables)
            assert body.get("errors"), body
            errors_sent += 1
    log = server.stopped_log()
    assert digits not in log, log
    assert "Traceback" not in log
    assert len(re.findall(r"^client error ", log, flags=re.M)) >= errors_sent, log


def test_a_production_config_refuses_the_published_demo_keys(small_demo: DemoRun, tmp_path: Path) -> None:
    config = copy_demo(small_demo, tmp_path / "demo", production=False)
    config.write_text(config.read_text(encoding="utf-8").replace("development = true", "development = false"), encoding="utf-8")
    refused = subprocess.run([UNIFY, "serve", "--config", str(config), "--port", "1"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and "published demo key of role admin, agent, personalization, steward" in refused.stderr
    assert "Traceback" not in refused.stderr


TRAITS = """query($id: ID!) { profile(id: $id) { id traits { name value } consents { purpose status allowed } } }"""


def test_over_http_withheld_fields_are_named_in_the_extensions_until_consent_is_recorded(small_demo: DemoRun, tmp_path: Path) -> None:
    config = copy_demo(small_demo, tmp_path / "demo")
    with duckdb.connect(str(config.with_name("unify.duckdb")), read_only=True) as con:
        candidates = [str(p) for (p,) in con.execute("SELECT DISTINCT profile_id FROM records ORDER BY 1 LIMIT 100").fetchall()]
    with unify_serve(config) as server:
        base = server.base

        def personalization(profile_id: str) -> str:
            consents = _post(base, TRAITS, "steward", {"id": profile_id})["data"]["profile"]["consents"]
            return str(next(c["status"] for c in consents if c["purpose"] == "personalization"))

        profile_id = next(p for p in candidates if personalization(p) == "unknown")  # nobody asked them anything
        before = _post(base, TRAITS, "personalization", {"id": profile_id})
        assert before["data"]["profile"]["traits"] is None
        assert before["extensions"]["withheld"] == [
            {"path": "profile.traits", "purposes": ["personalization"], "reason": "personalization: unknown (consent)"}
        ]
        grant = """mutation($id: ID!) { recordConsent(profileId: $id, purpose: "personalization", status: GRANTED, source: "app") { allowed } }"""
        assert _post(base, grant, "agent", {"id": profile_id})["data"]["recordConsent"]["allowed"] is True
        after = _post(base, TRAITS, "personalization", {"id": profile_id})
        assert after["data"]["profile"]["traits"] and "extensions" not in after

"""Consent derived from history (pipelines.history.consent): the latest statement wins,
at one moment the more restrictive one; grants lapse; the legal basis decides what a
statement can stop; and a consent event file's bad rows are quarantined with the reason."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipelines.config import PurposeConfig, load_config
from pipelines.history.consent import ConsentStatement, consent_state, consent_states, statements
from pipelines.history.events import ingest_event_file
from profiles.errors import ConfigError
from profiles.store import Store

NOW = datetime(2026, 12, 1, 12, 0)


def _said(status: str, days_ago: float, purpose: str = "marketing", source: str = "web") -> ConsentStatement:
    at = NOW - timedelta(days=days_ago)
    return ConsentStatement(purpose, status, at, source, "consents", f"{status}{days_ago}", "crm:1", f"{status}{days_ago}")


def _state(basis: str, *said: ConsentStatement, **settings: object) -> tuple[str, bool]:
    purpose = PurposeConfig(name="marketing", legal_basis=basis, **settings)  # type: ignore[arg-type]
    ordered = sorted(said, key=lambda s: s.occurred_at, reverse=True)
    state = consent_state(purpose, ordered, NOW)
    return state.status, state.allowed


def test_the_latest_statement_wins_and_a_withdrawal_from_another_source_beats_an_older_grant() -> None:
    assert _state("consent", _said("granted", 10), _said("withdrawn", 5, source="call")) == ("withdrawn", False)
    assert _state("consent", _said("withdrawn", 10), _said("granted", 5)) == ("granted", True)
    assert _state("consent", _said("denied", 3)) == ("denied", False)


def test_at_one_moment_the_more_restrictive_statement_wins() -> None:
    purpose = PurposeConfig(name="marketing", legal_basis="consent")
    events = [
        {"event_source": "consents", "event_id": "a", "occurred_at": NOW, "attributes": {"purpose": "marketing", "status": "granted"}},
        {"event_source": "consents", "event_id": "b", "occurred_at": NOW, "attributes": {"purpose": "marketing", "status": "withdrawn"}},
    ]
    said = statements(events, frozenset({"consents"}))
    assert consent_state(purpose, said, NOW).status == "withdrawn"


def test_a_grant_lapses_after_max_age_days() -> None:
    assert _state("consent", _said("granted", 800), max_age_days=730) == ("expired", False)
    assert _state("consent", _said("granted", 700), max_age_days=730) == ("granted", True)


def test_the_legal_basis_decides_what_a_statement_can_stop() -> None:
    assert _state("contract", _said("withdrawn", 1)) == ("withdrawn", True)  # needed for the contract: kept, not stopped
    assert _state("legitimate_interest") == ("unknown", True)
    assert _state("legitimate_interest", _said("denied", 1)) == ("denied", False)  # an objection
    assert _state("consent") == ("unknown", False)
    assert _state("consent", default="granted") == ("unknown", True)


CONFIG = """
[[sources]]
name = "crm"
path = "crm.csv"
id = "nr"
[sources.fields]
email = "mail"

[[purposes]]
name = "marketing"
legal_basis = "consent"

[[events]]
name = "prefs"
path = "prefs.csv"
id = "id"
timestamp = "at"
type = { value = "consent" }
[events.link]
source = "crm"
record_id = "nr"
[events.consent]
purpose = "purpose"
status = "choice"
"""


def test_consent_rows_with_an_undeclared_purpose_or_status_are_quarantined(tmp_path: Path) -> None:
    (tmp_path / "unify.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "crm.csv").write_text("nr,mail\n1,a@example.com\n", encoding="utf-8")
    (tmp_path / "prefs.csv").write_text(
        "id,at,nr,purpose,choice\n"
        "e1,2026-11-01 10:00:00,1,Marketing,GRANTED\n"
        "e2,2026-11-02 10:00:00,1,telepathy,granted\n"
        "e3,2026-11-03 10:00:00,1,marketing,maybe\n"
        "e4,2026-11-04 10:00:00,1,marketing,\n",
        encoding="utf-8",
    )
    config = load_config(tmp_path / "unify.toml")
    with Store.open(tmp_path / "unify.duckdb") as store:
        counts = ingest_event_file(store, config, config.events[0], tmp_path / "prefs.csv")
        assert (counts.accepted, counts.quarantined) == (1, 3)
        reasons = store.rows("SELECT line, reason FROM event_quarantine ORDER BY line")
        assert [line for line, _ in reasons] == [3, 4, 5]
        assert "not a declared purpose (marketing; value telepathy)" in reasons[0][1]
        assert "status is not one of granted, denied, withdrawn (column 'choice', value maybe)" in reasons[1][1]
        assert "value empty" in reasons[2][1]
        (attributes,) = store.rows("SELECT attributes::VARCHAR FROM events")[0]
        states = consent_states(
            config,
            [{"event_source": "prefs", "event_id": "e1", "occurred_at": NOW, "attributes": json.loads(attributes)}],
            NOW,
        )
        assert (states["marketing"].status, states["marketing"].allowed) == ("granted", True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[api.roles.agent]\npurposes = ["nope"]\n', "api.roles.agent: purpose 'nope' is not a \\[\\[purposes\\]\\] name"),
        ('[[purposes]]\nname = "marketing"\nlegal_basis = "consent"\n', "purpose name 'marketing' is used twice"),
    ],
)
def test_purposes_named_must_be_declared_once(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "unify.toml").write_text(CONFIG + "\n" + extra, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "unify.toml")


def test_consent_events_need_purposes(tmp_path: Path) -> None:
    text = CONFIG.replace('[[purposes]]\nname = "marketing"\nlegal_basis = "consent"\n', "")
    (tmp_path / "unify.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="needs \\[\\[purposes\\]\\]"):
        load_config(tmp_path / "unify.toml")

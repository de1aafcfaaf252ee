"""What the server writes to its log about a fault, and which keys a production config
refuses: no values from records or requests, no published demo key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.demo.config import DEMO_API_KEYS
from profiles.errors import ConfigError, quiet_traceback
from resolvers.auth import Keyring
from resolvers.schema import build_schema
from tests.conftest import DemoRun


def test_a_fault_is_logged_with_its_traceback_and_without_its_messages() -> None:
    try:
        try:
            raise ValueError("Could not convert string 'Jansen 0612345678' to INT32")
        except ValueError as inner:
            raise RuntimeError("SQL failed: ... value 'jan.jansen@example.nl'") from inner
    except RuntimeError as exc:
        text = quiet_traceback(exc)
    assert "builtins.ValueError (message withheld)" in text and "builtins.RuntimeError (message withheld)" in text
    assert "test_quiet_logs_and_keys.py" in text  # where it happened
    assert "0612345678" not in text and "jansen" not in text.lower()


def test_client_errors_are_one_line_without_the_query(caplog: pytest.LogCaptureFixture) -> None:
    from pipelines.config import ApiConfig

    schema = build_schema(ApiConfig())
    with caplog.at_level(logging.INFO, logger="unify.server"):
        result = schema.execute_sync('query Q { profileByIdentifier(kind: "phone", value: "0612345678") { id ')  # syntax error
    assert result.errors
    lines = [r.getMessage() for r in caplog.records if r.name == "unify.server"]
    assert lines == ["client error BAD_REQUEST in operation anonymous at -"]
    assert not any(r.exc_info for r in caplog.records if r.name == "unify.server")


def test_production_refuses_demo_keys_from_the_environment_too(small_demo: DemoRun, tmp_path: Path) -> None:
    config = load_config(small_demo.manifest.config_path)
    production = config.model_copy(update={"api": config.api.model_copy(update={"development": False, "keys": []})})
    with pytest.raises(ConfigError, match="published demo key of role steward"):
        Keyring.from_config(production, {"UNIFY_API_KEYS": f"steward={DEMO_API_KEYS['steward']}"})
    assert len(Keyring.from_config(production, {"UNIFY_API_KEYS": "steward=a-key-of-our-own"})) == 1
    with pytest.raises(ConfigError, match="published demo key"):
        Keyring.from_config(config.model_copy(update={"api": config.api.model_copy(update={"development": False})}), {})
    assert len(Keyring.from_config(config, {})) == len(DEMO_API_KEYS)  # a development config may use them

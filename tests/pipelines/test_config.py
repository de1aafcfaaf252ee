"""The config contract: strict validation with errors that name key and line, and a
reference (docs/config.md) that documents every key."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipelines.config import Config, load_config
from profiles.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"

MINIMAL = """
[matching]
match_threshold = 0.9

[[sources]]
name = "crm"
path = "crm.csv"
id = "nr"
[sources.fields]
first_name = "voornaam"
"""


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        keys.append(key)
        for inner in _models_in(field.annotation):
            keys.extend(_keys(inner, prefix=f"{key}."))
    return keys


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def test_every_config_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    keys = _keys(Config)
    assert "sources.fields" in keys and "matching.vetoes" in keys and "sources.fields.value" in keys
    missing = [k for k in keys if not any(f"`{form}`" in text for form in (k, f"[{k}]", f"[[{k}]]"))]
    assert not missing, f"not documented in docs/config.md: {missing}"


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "unify.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    config = load_config(path)
    assert config.matching.match_threshold == 0.9
    assert config.matching.review_threshold == 0.6
    assert config.store_path == tmp_path / "unify.duckdb"
    assert config.sources[0].format == "csv"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('first_name = "voornaam"', 'first_name = "voornaam"\nfrist_name = "x"'), r"sources\.fields\.frist_name \(line 11\): unknown key"),
        (("[matching]", "[matching]\nthreshold = 1"), r"matching\.threshold \(line 3\): unknown key"),
        (('name = "crm"', 'name = "CRM!"'), r"sources\.name \(line 6\)"),
        (("match_threshold = 0.9", "match_threshold = 0.9\nreview_threshold = 0.95"), r"review_threshold must be below match_threshold"),
        (('path = "crm.csv"', 'path = "crm.xlsx"'), r"unsupported file type '\.xlsx'"),
    ],
)
def test_invalid_config_names_key_and_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "unify.toml"
    path.write_text(MINIMAL.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unify.toml"
    block = MINIMAL.split("[[sources]]")[1]
    path.write_text(MINIMAL + "\n[[sources]]" + block, encoding="utf-8")
    with pytest.raises(ConfigError, match="source name 'crm' is used twice"):
        load_config(path)


def test_missing_config_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unify demo"):
        load_config(tmp_path / "nope.toml")


def test_serving_differences_name_what_a_server_serves_with(tmp_path: Path) -> None:
    """What a run the server runs for the CLI must share with the server's config
    (unify.cli's refusal): everything but the server's own [api] and a run's [run] guards."""
    served = tmp_path / "served.toml"
    served.write_text(MINIMAL, encoding="utf-8")
    edited = tmp_path / "edited.toml"

    def differences(text: str) -> list[str]:
        edited.write_text(text, encoding="utf-8")
        return load_config(edited).serving_differences(load_config(served))

    assert differences(MINIMAL) == []
    assert differences(MINIMAL + "\n[run]\nmax_shrink = 0.5\n") == []
    assert differences("[api]\nmax_depth = 9\n" + MINIMAL) == []
    assert differences(MINIMAL.replace("match_threshold = 0.9", "match_threshold = 0.8")) == ["matching"]
    assert differences(MINIMAL + 'last_name = "achternaam"\n') == ["sources"]

"""`unify backup`, `compact`, `restore` and `audit verify` on a store no server holds:
their one-line reports and exit codes (the served case: tests/e2e/test_backup_while_serving.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipelines.config import load_config
from profiles.store import Store, verify_audit
from unify.cli import app


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_backup_compact_restore_and_verify_on_an_unserved_store(demo_copy: Path, tmp_path: Path) -> None:
    config = str(demo_copy)
    store_path = load_config(demo_copy).store_path
    with Store.open(store_path, read_only=True) as store:
        profiles = store.scalar("SELECT count(*) FROM profiles")
        head = verify_audit(store)

    code, output = _invoke("backup", "--config", config, "--out", str(tmp_path / "b.duckdb"))
    assert code == 0 and "written to" in output, output
    code, output = _invoke("compact", "--config", config)
    assert code == 0 and output.startswith(f"compacted {store_path}: "), output
    with Store.open(store_path) as store:
        store.execute("DELETE FROM steward_actions")
    code, output = _invoke("restore", "--config", config, "--from", str(tmp_path / "b.duckdb"))
    assert code == 0 and "the store it replaced is" in output, output
    assert len(list(store_path.parent.glob(f"{store_path.name}.before-restore-*"))) == 1

    code, output = _invoke("audit", "verify", "--config", config)
    assert code == 0 and output.startswith(f"audit chain intact: {head.entries:,} entries"), output
    assert str(head.head_hash) in output.replace("\n", "")
    with Store.open(store_path, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM profiles") == profiles

    code, output = _invoke("restore", "--config", config, "--from", str(tmp_path / "missing.duckdb"))
    assert code == 1 and "no backup at" in output

"""A real `unify serve` in a process of its own, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from pipelines.demo.config import DEMO_API_KEYS
from resolvers.auth import digest
from tests.conftest import DemoRun, copy_demo_dir

#: The `unify` command of the environment the tests run in.
UNIFY = str(Path(sys.executable).with_name("unify"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Keys of the tests' production configs: a production config refuses the published demo keys.
KEYS = {role: f"e2e-{role}-key-{role[::-1]}" for role in DEMO_API_KEYS}


def production_config(config: Path) -> None:
    """Make a demo config a production one: development off, the demo keys replaced by :data:`KEYS`."""
    text = config.read_text(encoding="utf-8").replace("development = true", "development = false")
    for role, key in DEMO_API_KEYS.items():
        text = text.replace(digest(key), digest(KEYS[role]))
    config.write_text(text, encoding="utf-8")


def copy_demo(run: DemoRun, target: Path, *, production: bool = True) -> Path:
    """A copy of a demo run's directory; returns its config (``production``: see :func:`production_config`)."""
    config = copy_demo_dir(run, target)
    if production:
        production_config(config)
    return config


def wait_healthy(base: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {process.stdout.read().decode() if process.stdout else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


class Server:
    """A running `unify serve`: its URL, its process and the lines of its log so far."""

    def __init__(self, base: str, process: subprocess.Popen[bytes]):
        self.base, self.process = base, process
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.decode("utf-8", errors="replace"))

    def wait_for_log(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not any(text in line for line in self.log):
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never logged {text!r}: {self.log}")
            time.sleep(0.05)

    def stopped_log(self) -> str:
        """The whole log, once the process has ended."""
        self._reader.join(timeout=10)
        return "".join(self.log)

    # (base, process) unpacking, as the tests that need no more use it
    def __iter__(self) -> Iterator[Any]:
        return iter((self.base, self.process))


@contextmanager
def unify_serve(config: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[Server]:
    """`unify serve --config CONFIG [ARGS]` on a free port; stopped on leaving."""
    port = free_port()
    process = subprocess.Popen(
        [UNIFY, "serve", "--config", str(config), "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield Server(base, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

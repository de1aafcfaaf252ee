"""The server's side of pipelines.control: while `unify serve` owns the store, it runs the
CLI's `run`, `ingest`, `export` and `review` for it, beside the requests it serves.

A batch run works on a guest connection of the server's database (profiles.store's
hosting), in an in-memory workspace of its own; it holds the store only to publish and
to apply again what live ingests and stewards did meanwhile. Requests go on throughout
and are answered from the published run, then from the new one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pipelines import cli
from pipelines.control import decode_params, frame
from profiles.store import Store
from resolvers.schema import quiet_traceback

_log = logging.getLogger("unify.server")

#: The commands a CLI may ask for (the ones that need the store).
COMMANDS = frozenset({"run", "ingest", "export", "review"})
#: Longest request line (the command and its parameters).
_REQUEST_MAX = 64 * 1024


class _Lines:
    """A text file for rich's Console that sends each finished line to the CLI."""

    def __init__(self, emit: Callable[[bytes], None], *, stderr: bool):
        self.emit, self.stderr = emit, stderr
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.emit(frame({"stderr": line + "\n"}) if self.stderr else (line + "\n").encode("utf-8", errors="replace"))
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.write("\n")


class ControlServer:
    """Listens on the store's control socket (mode 0600) while the server runs."""

    def __init__(self, store: Store, path: Path, on_changed: Callable[[str], None] = lambda command: None):
        """``on_changed(command)``: called after a command that may have changed the
        store (run, ingest) has ended, on the thread that ran it."""
        self.store, self.path, self.on_changed = store, path, on_changed
        self._server: asyncio.AbstractServer | None = None
        # threads of their own: the default executor's are the requests' store readers
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="unify-control")
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # One process owns the store (DuckDB's lock), so a socket left here is a killed server's.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)  # created 0600: no moment in which others may connect
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=str(self.path), limit=_REQUEST_MAX)
        finally:
            os.umask(old)

    async def close(self, grace: float) -> None:
        """Stop listening; interrupt the commands under way and wait up to ``grace`` s for them."""
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._tasks:
            self.store.interrupt_guests()
            await asyncio.wait(list(self._tasks), timeout=grace)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the CLI went away; its command (if any) ran to its end
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            command, params = request["command"], decode_params(request.get("params") or {})
            if command not in COMMANDS or not isinstance(params, dict):
                raise ValueError(command)
        except (ValueError, KeyError, TypeError, asyncio.LimitOverrunError):
            writer.write(frame({"stderr": "error: not a unify command request\n"}) + frame({"exit": 2}))
            await writer.drain()
            return
        loop = asyncio.get_running_loop()

        def emit(data: bytes) -> None:
            loop.call_soon_threadsafe(writer.write, data)

        _log.warning("running `unify %s` for the CLI", command)
        code = await loop.run_in_executor(self._pool, self._execute, command, params, emit)
        _log.warning("`unify %s` for the CLI ended with exit code %d", command, code)
        writer.write(frame({"exit": code}))
        await writer.drain()

    def _execute(self, command: str, params: dict[str, Any], emit: Callable[[bytes], None]) -> int:
        out = Console(file=_Lines(emit, stderr=False), width=120, no_color=True, force_terminal=False)  # type: ignore[arg-type]
        err = Console(file=_Lines(emit, stderr=True), width=120, no_color=True, force_terminal=False)  # type: ignore[arg-type]
        try:
            with cli.output_to(out, err):
                getattr(cli, command)(**params)
            return 0
        except typer.Exit as exc:
            return int(exc.exit_code)
        except Exception as exc:  # a server fault: the traceback is the server log's (no values), one line is the CLI's
            _log.error("`unify %s` for the CLI failed:\n%s", command, quiet_traceback(exc))
            err.print(f"error: {type(exc).__name__} in the server while running `unify {command}` (see the server's log)")
            return 1
        finally:
            out.file.flush()
            err.file.flush()
            if command in ("run", "ingest"):
                self.on_changed(command)


__all__ = ["COMMANDS", "ControlServer"]

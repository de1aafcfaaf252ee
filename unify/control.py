"""The CLI's way into a served store.

DuckDB lets one process own a store file. While `unify serve` owns it, the commands that
need the store (`unify run`, `ingest`, `export`, `review`, `audit verify`, `backup`, `compact`;
`restore` only to be refused) are run by the server for the
CLI: it listens on a Unix socket next to the store (mode 0600: whoever may write the
store may ask), runs the command on its own database beside the requests it serves, and
streams the command's output back. The protocol is one JSON line each way to start, then
the output as text lines, then one JSON line with the exit code:

    client -> {"command": "run", "params": {"config": {"path": "/abs/unify.toml"}, "retrain": false}}
    server -> {"accepted": true}
    server -> ...output lines...
    server -> {"exit": 0}

A client that closes the socket before the exit line (Ctrl+C) cancels the command
(profiles.store's ``Cancellation``: its statements fail from the next one on, except while
it holds the store, so a run publishes all or nothing).

Both sides are here: the client (``delegate``, called by the CLI's commands) and the
server (``ControlServer``, started beside the API by `unify serve`). A batch run the
server runs works on a guest connection of the server's database (profiles.store's
hosting), in an in-memory workspace of its own; it holds the store only to publish and to
apply again what live ingests and stewards did meanwhile. Requests go on throughout and
are answered from the published run, then from the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from profiles.errors import StoreError, quiet_traceback
from profiles.store import Cancellation, Store, cancellable

#: Runs one CLI command (by name, with its parameters) writing to the two consoles.
Execute = Callable[[str, dict[str, Any], Console, Console], None]

_log = logging.getLogger("unify.server")

#: AF_UNIX paths are limited to 107 bytes (Linux); longer store paths get a socket in the
#: temp directory named by a hash of the store's path.
_SUN_PATH_MAX = 100

#: The marker a line of the protocol carries to set it apart from output.
_MARK = "\x1e"


def socket_path(store_path: Path) -> Path:
    """Where a server serving ``store_path`` listens for the CLI."""
    beside = Path(os.path.abspath(store_path)).with_name(Path(store_path).name + ".sock")
    if len(os.fsencode(beside)) <= _SUN_PATH_MAX:
        return beside
    digest = hashlib.sha256(os.fsencode(beside)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"unify-{os.getuid()}-{digest}.sock"


def encode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Command parameters as JSON: paths made absolute (the server has its own working
    directory), enums by value."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, Path):
            out[name] = {"path": os.path.abspath(value)}
        elif hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
            out[name] = value.value
        elif isinstance(value, (list, tuple)):
            out[name] = list(value)
        else:
            out[name] = value
    return out


def decode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: Path(v["path"]) if isinstance(v, dict) and set(v) == {"path"} else v for k, v in params.items()}


def frame(message: Mapping[str, Any]) -> bytes:
    return (_MARK + json.dumps(message) + "\n").encode()


def delegate(store_path: Path, command: str, params: Mapping[str, Any], write: Callable[[str, bool], None]) -> int | None:
    """Run ``command`` in the server that serves ``store_path``, passing its output to
    ``write`` line by line (with True for its error output). Returns the command's exit
    code, or None when no server listens (the caller opens the store itself)."""
    path = socket_path(store_path)
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):  # a server that was killed left it
        sock.close()
        return None
    with sock, sock.makefile("rwb") as stream:
        stream.write(frame({"command": command, "params": encode_params(params)})[1:])
        stream.flush()
        try:
            code = _relay(stream, write)
        except KeyboardInterrupt:  # the socket closes with this block: the server cancels the command
            write(f"interrupted: the server cancels `unify {command}` (a run already publishing finishes first)\n", True)
            return 130
        except OSError:  # the connection reset: the server died
            code = None
    if code is None:
        raise StoreError(
            f"the server serving {store_path} went away before `unify {command}` finished (stopped or killed): "
            "a run it had not published is not published; run the command again"
        )
    return code


def _relay(stream: Any, write: Callable[[str, bool], None]) -> int | None:
    """The command's output from ``stream`` to ``write``; its exit code (None: the stream
    ended before it)."""
    for raw in stream:
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(_MARK):
            message = json.loads(line[1:])
            if "exit" in message:
                return int(message["exit"])
            if "stderr" in message:
                write(str(message["stderr"]), True)
            continue
        write(line, False)
    return None


#: The commands a CLI may ask for (the ones that need the store).
COMMANDS = frozenset({"run", "ingest", "export", "review", "erase", "unsuppress", "audit_verify", "backup", "restore", "compact"})
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


async def _closed(reader: asyncio.StreamReader) -> None:
    """Until the CLI closes its end (it sends nothing after its request)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


class ControlServer:
    """Listens on the store's control socket (mode 0600) while the server runs."""

    def __init__(self, store: Store, path: Path, execute: Execute, on_changed: Callable[[str], None] = lambda command: None):
        """``execute``: runs a command (the CLI's own functions); ``on_changed(command)``:
        called after a command that may have changed the store (run, ingest) has ended,
        on the thread that ran it."""
        self.store, self.path, self.execute, self.on_changed = store, path, execute, on_changed
        self._server: asyncio.AbstractServer | None = None
        # threads of their own: the default executor's are the requests' store readers
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="unify-control")
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def running(self, grace: float = 1.5) -> AsyncIterator[None]:
        """Listening while inside; on the way out, the commands under way get ``grace`` s."""
        await self.start()
        try:
            yield
        finally:
            await self.close(grace)

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
            pass  # the CLI went away before its command started, or after it ended
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

        def send(data: bytes) -> None:
            if not writer.is_closing():  # a CLI that went away gets nothing more
                writer.write(data)

        def emit(data: bytes) -> None:
            loop.call_soon_threadsafe(send, data)

        _log.warning("running `unify %s` for the CLI", command)
        cancellation = Cancellation()
        ran = loop.run_in_executor(self._pool, self._execute, command, params, emit, cancellation)
        gone = asyncio.ensure_future(_closed(reader))  # the CLI sends nothing more: EOF is its Ctrl+C
        await asyncio.wait((ran, gone), return_when=asyncio.FIRST_COMPLETED)
        if not ran.done():
            _log.warning("the CLI that asked for `unify %s` went away: cancelling it", command)
            self.store.cancel_guests(cancellation)
        code = await ran
        gone.cancel()
        _log.warning("`unify %s` for the CLI ended with exit code %d", command, code)
        if not writer.is_closing():
            writer.write(frame({"exit": code}))
            await writer.drain()

    def _execute(self, command: str, params: dict[str, Any], emit: Callable[[bytes], None], cancellation: Cancellation) -> int:
        out = Console(file=_Lines(emit, stderr=False), width=120, no_color=True, force_terminal=False)  # type: ignore[arg-type]
        err = Console(file=_Lines(emit, stderr=True), width=120, no_color=True, force_terminal=False)  # type: ignore[arg-type]
        try:
            with cancellable(cancellation):
                self.execute(command, params, out, err)
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
            if command in ("run", "ingest", "erase", "unsuppress"):
                self.on_changed(command)


__all__ = ["COMMANDS", "ControlServer", "Execute", "decode_params", "delegate", "encode_params", "frame", "socket_path"]

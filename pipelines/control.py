"""The CLI's way into a served store.

DuckDB lets one process own a store file. While `unify serve` owns it, the commands that
need the store (`unify run`, `ingest`, `export`, `review`) are run by the server for the
CLI: it listens on a Unix socket next to the store (mode 0600: whoever may write the
store may ask), runs the command on its own database beside the requests it serves, and
streams the command's output back. The protocol is one JSON line each way to start, then
the output as text lines, then one JSON line with the exit code:

    client -> {"command": "run", "params": {"config": {"path": "/abs/unify.toml"}, "retrain": false}}
    server -> {"accepted": true}
    server -> ...output lines...
    server -> {"exit": 0}
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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
    raise ConnectionError(f"the server at {path} closed the connection before {command} finished")


__all__ = ["decode_params", "delegate", "encode_params", "frame", "socket_path"]

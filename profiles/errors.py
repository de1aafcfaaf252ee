"""One error family for unify, so the CLI and the API can tell expected failures
(bad config, bad input, a store problem) from bugs."""

from __future__ import annotations

import traceback


class UnifyError(Exception):
    """Base of every expected unify failure; its message is meant for the user."""


class ConfigError(UnifyError):
    """The configuration file is invalid (names the key and, where known, the line)."""


class SourceSchemaError(UnifyError):
    """A source file does not have the shape its mapping promises (names file and column)."""


class StoreError(UnifyError):
    """The store is missing, locked, or not in the state an operation needs."""


NO_PUBLISHED_RUN = "the store has no published run yet: run `unify run` (while `unify serve` serves the store, it runs it)"


class NoPublishedRun(StoreError):
    """The store has no published run yet: nothing to serve, or to match live records against."""

    def __init__(self, message: str = NO_PUBLISHED_RUN):
        super().__init__(message)


class NotFoundError(UnifyError):
    """What an operation names (a pair, a profile, a record, an action) does not exist."""


class ConflictError(UnifyError):
    """The state an operation was based on has changed (another decision came first)."""


class InvalidActionError(UnifyError):
    """A steward action that cannot be carried out as asked (e.g. splitting a whole profile)."""


def quiet_traceback(exc: BaseException) -> str:
    """``exc``'s traceback (its causes first): the frames and exception types, without the
    messages or source lines, which may carry values."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    parts = []
    for e in reversed(chain):
        frames = "".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in traceback.extract_tb(e.__traceback__))
        parts.append(frames + f"{type(e).__module__}.{type(e).__qualname__} (message withheld)\n")
    return "caused:\n".join(parts)

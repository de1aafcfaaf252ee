"""The ASGI app: one process owns the store; every request is authenticated by API key,
bounded in size and time, and audited when it returns PII.

`unify serve` (unify.cli) builds it with ``create_app`` and serves it with uvicorn; the
server's control socket, through which the CLI's commands run here, is its sidecar."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from pipelines.config import Config, load_config
from pipelines.live.ingest import LiveIngest
from profiles.errors import StoreError
from profiles.store import AuditEvent, ProfileQueries, Store
from profiles.store.runs import publish_count
from resolvers.auth import Keyring, Principal
from resolvers.console import console_routes
from resolvers.context import Context, make_loaders
from resolvers.ingest import live_ingester
from resolvers.schema import build_schema

_log = logging.getLogger("unify.server")
#: Most withheld fields a response names (a page of profiles can withhold many).
MAX_WITHHELD_NOTES = 200

#: Runs beside the server while it serves: given the store and a function that says which
#: command changed the store's records ("run", "ingest"), an async context manager
#: (unify.control's ControlServer.running).
Sidecar = Callable[[Store, Callable[[str], None]], AbstractAsyncContextManager[None]]


class _AuditWriter:
    """Writes the PII-read events of requests in groups. A request's event is in the store
    before its response goes out; the events of requests that finish while a write is
    under way go in together with the next one (one INSERT and one commit for them all:
    a commit of the audit log costs about a millisecond, more than the reads it records)."""

    GROUP_MAX = 256  # events per INSERT

    def __init__(self, queries: ProfileQueries):
        self.queries = queries
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, event: AuditEvent) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even when no request waits for it
        self._pending.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        # a request given up on (time limit) stops waiting; its event is written all the same
        await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = self._pending[: self.GROUP_MAX], self._pending[self.GROUP_MAX :]
            try:
                await asyncio.to_thread(self.queries.append_audit, [event for event, _ in group])
            except Exception as exc:  # each waiting request fails with it: no response without its audit
                for _, done in group:
                    done.set_exception(exc)
            else:
                for _, done in group:
                    done.set_result(None)


_POST_OPERATIONS = OperationType.from_http("POST")


class _GraphQL(GraphQL[Context, None]):
    def __init__(self, config: Config, queries: ProfileQueries, pseudonym_key: bytes, graphiql: bool = False):
        super().__init__(
            build_schema(config.api),
            graphql_ide="graphiql" if graphiql else None,  # served by resolvers.console at /graphiql, not here
            allow_queries_via_get=False,
        )
        self.config, self.queries, self.pseudonym_key = config, queries, pseudonym_key
        self.audit = _AuditWriter(queries)

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return self.context(request.scope["unify.principal"], request.scope.get("unify.state", {}))

    def context(self, principal: Principal, state: dict[str, Any]) -> Context:
        return Context(principal, self.queries, self.config, self.pseudonym_key, make_loaders(self.queries), request_state=state)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        for error in cast(list[dict[str, Any]], response.get("errors") or []):
            extensions = error.setdefault("extensions", {})
            if "code" not in extensions:
                message = error.get("message", "")
                limit = any(word in message for word in ("depth", "token", "aliases", "too many fields"))
                extensions["code"] = "LIMIT_EXCEEDED" if limit else ("INTERNAL" if message == "Unexpected error." else "BAD_REQUEST")
        return response

    async def execute_operation(
        self, request: Any, request_adapter: Any, request_data: Any, context: Context, root_value: Any, sub_response: Any
    ) -> Any:
        result = await super().execute_operation(request, request_adapter, request_data, context, root_value, sub_response)
        return await self._audited(context, getattr(request_data, "operation_name", None), result)

    async def _audited(self, context: Context, operation: str | None, result: Any) -> Any:
        """The request's PII reads in the audit log (before its response goes out), and
        the fields consent withheld named in the result."""
        event = context.audit_event(operation)
        if event is not None:
            await self.audit.write(event)
        if context.withheld and isinstance(result, ExecutionResult):  # which fields consent kept back, and why
            result.extensions = {**(result.extensions or {}), "withheld": context.withheld[:MAX_WITHHELD_NOTES]}
        return result

    async def respond(self, principal: Principal, state: dict[str, Any], request: dict[str, Any], send: Send) -> None:
        """Answer one GraphQL request given as a JSON object (what ``POST /graphql``
        with ``application/json`` carries, already read and checked by the guard), as
        strawberry's view answers it, without its request parsing and response
        plumbing: they were a quarter of the event loop's time a request."""
        context = self.context(principal, state)
        operation = request.get("operationName")
        try:
            result = await self.schema.execute(
                request["query"],
                variable_values=request.get("variables"),
                context_value=context,
                operation_name=operation,
                allowed_operation_types=_POST_OPERATIONS,
                operation_extensions=request.get("extensions"),
            )
        except CannotGetOperationTypeError as exc:  # strawberry's view answers these the same
            await _plain(send, 400, exc.as_http_error_reason())
            return
        except InvalidOperationTypeError as exc:
            await _plain(send, 400, exc.as_http_error_reason("POST"))
            return
        except MissingQueryError:  # an empty query
            await _plain(send, 400, "No GraphQL query found in the request")
            return
        result = await self._audited(context, operation, result)
        await _send(send, 200, b"application/json", orjson.dumps(await self.process_result(None, result)))


class _Guard:
    """Authentication (401), body size (413) and the time limit, before GraphQL runs;
    it also knows when the server is idle (for the checkpoints)."""

    def __init__(self, app: _GraphQL, keyring: Keyring, max_body: int, timeout: float):
        self.app, self.keyring, self.max_body, self.timeout = app, keyring, max_body, timeout
        self.in_flight = 0
        self.last_seen = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended (0 while one is running)."""
        return 0.0 if self.in_flight else time.monotonic() - self.last_seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last_seen = time.monotonic()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        principal = self.keyring.authenticate(headers.get("authorization"))
        if principal is None:
            await _error(scope, receive, send, 401, "UNAUTHENTICATED", "missing or unknown API key (Authorization: Bearer <key>)")
            return
        if int(headers.get("content-length") or 0) > self.max_body:
            await _error(scope, receive, send, 413, "PAYLOAD_TOO_LARGE", f"request body over {self.max_body} bytes")
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _error(scope, receive, send, 413, "PAYLOAD_TOO_LARGE", f"request body over {self.max_body} bytes")
                return
        content_type = headers.get("content-type", "application/json")
        problem, request = _read_body(bytes(body), content_type)
        if problem is not None:
            await _error(scope, receive, send, 400, "BAD_REQUEST", problem)
            return
        if request is not None and ("application/json" not in content_type.lower() or _STREAMED.search(headers.get("accept", ""))):
            request = None  # another JSON type, or an answer in parts (SSE, multipart): strawberry's view answers
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        state: dict[str, Any] = {}  # the request's Context.request_state
        scope = {**scope, "unify.principal": principal, "unify.state": state}
        # The time limit cancels the request's own task (as asyncio.timeout does), unless
        # its write has committed: then its client gets the outcome, however late (a
        # TIMEOUT would say it failed; a checkpoint can hold a commit for seconds). No
        # task of its own per request: creating and awaiting one cost the event loop more
        # than the limit's timer.
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            if not state.get("committed"):
                expired = True
                task.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            if request is not None:
                await self.app.respond(principal, state, request, tracking_send)
            else:
                await self.app(scope, replay, tracking_send)
        except asyncio.CancelledError:
            if not expired or task.uncancel() > 0:  # the server gives up on the request
                raise
            if not started:
                await _error(scope, receive, send, 200, "TIMEOUT", f"request took longer than {self.timeout} s")
        finally:
            timer.cancel()


#: Accept headers asking for an answer in parts, which strawberry's view gives
_STREAMED = re.compile(r"multipart/mixed|text/event-stream", re.IGNORECASE)


def _read_body(body: bytes, content_type: str) -> tuple[str | None, dict[str, Any] | None]:
    """Why a JSON request body is no GraphQL request, or the request it holds (both None:
    not JSON, which strawberry's view answers itself). strawberry answered ``null``,
    ``42`` or 5,000 nested arrays with a plain-text HTTP 500."""
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        return None, None
    if b"\\u" in body and _lone_surrogate(body):
        return "the request body holds a lone surrogate escape (\\uD800-\\uDFFF without its pair): not text", None
    try:
        data = json.loads(body)
    except RecursionError:
        return "the request body nests too deeply", None
    except (ValueError, UnicodeDecodeError) as exc:
        return f"the request body is not JSON: {exc}", None
    if not isinstance(data, dict):
        return "the request body must be a JSON object with a query (and optional variables and operationName)", None
    query, variables = data.get("query"), data.get("variables")
    if not isinstance(query, str):
        return "the request body has no query string", None
    if variables is not None and not isinstance(variables, dict):
        return "variables must be a JSON object", None
    if not isinstance(data.get("operationName"), str | None) or not isinstance(data.get("extensions"), dict | None):
        return "operationName must be a string and extensions a JSON object", None
    return None, data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD]([89a-fA-F])[0-9a-fA-F]{2}")


def _lone_surrogate(body: bytes) -> bool:
    """A \\uD800-\\uDFFF escape (in the JSON, or in a GraphQL string inside it) that is
    not a high surrogate directly followed by a low one: it decodes to no character."""
    escapes = list(_SURROGATE_ESCAPE.finditer(body))
    i = 0
    while i < len(escapes):
        high = escapes[i].group(1) in b"89abAB"
        follows = i + 1 < len(escapes) and escapes[i + 1].start() - escapes[i].end() in (0, 1)
        if high and follows and escapes[i + 1].group(1) not in b"89abAB":
            i += 2
            continue
        return True
    return False


async def _plain(send: Send, status: int, text: str) -> None:
    await _send(send, status, b"text/plain; charset=utf-8", text.encode())


async def _send(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    await JSONResponse(body, status_code=status)(scope, receive, send)


#: The server checkpoints the store after this many idle seconds, when the WAL holds at least this much.
IDLE_SECONDS = 2.0
IDLE_CHECKPOINT_BYTES = 4 * 1024 * 1024


async def _checkpoint_when_idle(store: Store, guard: _Guard, live: LiveIngest, reread: asyncio.Event | None = None) -> None:
    """Write the WAL into the store file while no request waits. A checkpoint stops the
    world and rewrites the indexes of every changed table (3 to 6 s at 1M records): left to
    DuckDB, it runs inside whichever commit crosses the WAL limit, i.e. inside a request.
    Afterwards the rewritten tables and indexes are read in again, a statement at a time
    while no request runs: left to the requests, live records at 1M took p50 33 ms
    instead of 26 after a checkpoint (docs/benchmarks.md)."""
    rewarm: Iterator[tuple[str, float]] | None = None
    published = publish_count(store)
    while True:
        await asyncio.sleep(IDLE_SECONDS / 2)
        if publish_count(store) != published or (reread is not None and reread.is_set()):  # the CLI's run or ingest
            published = publish_count(store)
            if reread is not None:
                reread.clear()
            rewarm = live.warming()  # the records in memory, tables and indexes, between requests
        if guard.idle_for() >= IDLE_SECONDS:
            try:
                if await asyncio.to_thread(store.checkpoint_if_due, IDLE_CHECKPOINT_BYTES):
                    rewarm = live.warming(index=False)  # the in-memory index is not the store's
            except StoreError as exc:  # e.g. a transaction was open: the next idle moment
                _log.warning("idle checkpoint skipped: %s", exc)
        while rewarm is not None and guard.idle_for() > 0:  # between requests only
            if await asyncio.to_thread(next, rewarm, None) is None:
                rewarm = None


async def _health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(config: Config | str | Path, *, sidecar: Sidecar | None = None, dev: bool = False) -> ASGIApp:
    """Opens the store named by the config (a Config, or the path of its file) and warms
    the live path; ``sidecar`` runs beside the server while it serves. ``dev`` (`unify
    serve --dev`): development mode whatever the config says (introspection, field
    suggestions, demo keys) and GraphiQL at ``/graphiql``; never in production."""
    if not isinstance(config, Config):
        config = load_config(config)
    if dev:
        config = config.model_copy(update={"api": config.api.model_copy(update={"development": True})})
    # Store reads run on worker threads while the event loop goes on; a thread that
    # finished its query waits for the GIL at most this long (default 5 ms).
    sys.setswitchinterval(0.0005)
    keyring = Keyring.from_config(config)
    store = Store.open(config.store_path, compress=config.store.compress, checkpoint_wal=config.store.checkpoint_wal)
    store.host()  # the CLI's commands on this store run in here (the sidecar, unify.control)
    queries = ProfileQueries(store)
    # before serving (it also makes the published run's serving indexes, once per run):
    # live records then find their candidates in memory and their profiles' blocks and
    # index nodes read in (its time and memory at 1M: docs/benchmarks.md, real-time ingest)
    live = live_ingester(queries, config)
    live.warm()
    graphql = _GraphQL(config, queries, queries.secret("pseudonym_key").encode(), graphiql=dev)

    guarded = _Guard(graphql, keyring, config.api.max_body_bytes, config.api.resolver_timeout)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Store reads (and audit writes) run on as many threads as there are cores. More
        # only wait for the GIL between their queries, and the waiting costs CPU (asyncio's
        # default of cores + 4 served fewer requests: docs/benchmarks.md, "Figures behind
        # the code's choices").
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="unify-store"))
        rewarm = asyncio.Event()  # the server's live index is to be read again (a CLI ingest changed the records)

        def changed(command: str) -> None:
            if command in ("ingest", "erase", "unsuppress"):  # the live index holds the records as they were
                live.forget()
                loop.call_soon_threadsafe(rewarm.set)

        checkpoints = asyncio.create_task(_checkpoint_when_idle(store, guarded, live, rewarm))
        try:
            async with sidecar(store, changed) if sidecar else nullcontext():
                yield
        finally:
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
            store.close()

    # What start-up made (schema, config, store objects) lives as long as the process:
    # out of the collector's generations, so that collections during requests stay short.
    gc.collect()
    gc.freeze()
    routes = [
        Route("/healthz", _health),
        Route("/graphql", guarded, methods=["POST"]),
        *console_routes(graphql.graphql_ide_html if dev else None),  # the pages hold no data: outside the key guard
    ]
    rest = Starlette(routes=routes, lifespan=lifespan)
    return _Dispatch(guarded, rest, graphql_paths=("/graphql", "/graphiql") if dev else ("/graphql",))


class _Dispatch:
    """``POST /graphql`` straight to the guard; everything else (health, lifespan, other
    methods and paths with their 404 and 405) through Starlette. Starlette's router and
    its two middlewares were ~6% of the event loop's time a request; an error the guard
    does not handle still reaches uvicorn, which answers 500."""

    def __init__(self, graphql: ASGIApp, rest: ASGIApp, graphql_paths: tuple[str, ...] = ("/graphql",)):
        self.graphql, self.rest = graphql, rest
        self.graphql_paths = graphql_paths  # GraphiQL posts its queries to its own address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.graphql_paths:
            await self.graphql(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


__all__ = ["create_app"]

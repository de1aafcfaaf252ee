"""The web console for agents and data stewards: static files (plain HTML, CSS and JS
modules, no build step) served by `unify serve` beside the API, and GraphiQL in
development mode only.

The pages hold no data: every data call goes to ``/graphql`` with the key as a Bearer
header, so these routes stay outside the API's key guard. They carry a strict
Content-Security-Policy (scripts and styles from this origin only, no inline script, no
eval, no framing); GraphiQL, which loads its scripts from a CDN and starts them inline,
gets a looser one of its own and exists only with ``unify serve --dev``."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"

CONSOLE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
#: GraphiQL (strawberry's page): React and GraphiQL from unpkg, started by an inline script.
GRAPHIQL_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' https://unpkg.com",
        "style-src 'self' 'unsafe-inline' https://unpkg.com",
        "img-src 'self' data: https://unpkg.com",
        "font-src 'self' data: https://unpkg.com",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",  # revalidated (ETag): a new version is seen at once
    }


class _WithHeaders:
    """An ASGI app whose responses carry ``headers`` as well."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]):
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self.headers}
                message = {**message, "headers": [*(h for h in message.get("headers", []) if h[0] not in names), *self.headers]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _index(_: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=security_headers(CONSOLE_CSP))


def console_routes(graphiql_html: str | None = None) -> list[BaseRoute]:
    """``/`` (the console's page) and ``/console/...`` (its scripts and styles); with
    ``graphiql_html`` (development only) also ``GET /graphiql``."""
    routes: list[BaseRoute] = [
        Route("/", _index, methods=["GET", "HEAD"]),
        Mount("/console", app=_WithHeaders(StaticFiles(directory=STATIC), security_headers(CONSOLE_CSP)), name="console"),
    ]
    if graphiql_html is not None:
        page = graphiql_html

        async def graphiql(_: Request) -> Response:
            return HTMLResponse(page, headers=security_headers(GRAPHIQL_CSP))

        routes.append(Route("/graphiql", graphiql, methods=["GET", "HEAD"]))
    return routes


__all__ = ["CONSOLE_CSP", "GRAPHIQL_CSP", "STATIC", "console_routes", "security_headers"]

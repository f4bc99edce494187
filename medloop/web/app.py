"""The FastAPI application: REST API under /api/v1, OpenAPI docs with assets served from
the package (no CDN), the dashboard, and one error body for every failure.

`medloop serve` runs `create_app_from_env` under uvicorn; tests call `create_app`.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from medloop import __version__
from medloop.core.errors import MedloopError, PermissionDenied
from medloop.core.settings import Settings
from medloop.web import anchors, errors, guard
from medloop.web.accounts import AuthRequired
from medloop.web.context import RateLimit, WebContext
from medloop.web.limits import BodyLimit

PACKAGE_DIR = Path(__file__).parent
STATIC_DIR = PACKAGE_DIR / "static"
API_PREFIX = "/api/v1"

_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medloop API</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg"></head>
<body><div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body></html>"""

_REDOC_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medloop API reference</title>
<link rel="icon" href="/static/favicon.svg"></head>
<body><div id="redoc"></div>
<script src="/static/vendor/redoc/redoc.standalone.js"></script>
<script src="/static/redoc-init.js"></script>
</body></html>"""

DESCRIPTION = """REST API of medloop: campaigns, hypotheses, trials, claims, reviews and the audit log.

Authenticate with `Authorization: Bearer <token>` (create tokens with `medloop users token NAME`).
Lists are cursor-paginated: pass `next_cursor` back as `cursor`. Every error has the body
`{"error": {"code", "message", "hint", "details"}}`. No request body can set a claim's tier,
a campaign's status or who validated what: those change only through the actions, which are
authorized by role and ownership and written to the hash-chained audit log.
"""


def create_app(
    settings: Settings | None = None,
    *,
    examples_dir: Path | None = None,
    review_limit: RateLimit | None = None,
    cwd: Path | None = None,
) -> FastAPI:
    from medloop.web.routes import (
        api_campaigns,
        api_claims,
        api_misc,
        api_trials,
        compare,
        pages,
        pages_claims,
    )

    settings = settings or Settings()
    ctx = WebContext.build(settings, examples_dir=examples_dir, review_limit=review_limit, cwd=cwd)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with anchors.anchoring(
            ctx.store,
            settings.audit_anchor_file,
            settings.audit_anchor_interval,
            settings.audit_anchor_syslog,
        ):
            yield

    app = FastAPI(
        lifespan=lifespan,
        title="medloop",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)
    html_or_json = _html_or_json(app)
    app.add_exception_handler(MedloopError, html_or_json)
    app.add_exception_handler(PermissionDenied, guard.on_refused(html_or_json))  # audited, throttled

    async def unexpected(request: Request, exc: Exception) -> Response:
        response: Response = await html_or_json(request, errors.from_unexpected(exc))
        return response

    # Whatever a route did not translate still gets the error body, never plain text.
    for kind in (ValueError, OSError, RecursionError, Exception):
        app.add_exception_handler(kind, unexpected)
    app.add_middleware(BodyLimit)
    for module in (api_misc, api_campaigns, api_trials, api_claims):
        app.include_router(module.router)
    app.include_router(pages.router)
    app.include_router(pages_claims.router)
    app.include_router(compare.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS_HTML)

    @app.get("/api/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC_HTML)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        # Everything is served from this origin; nothing may load from elsewhere.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app


def _html_or_json(app: FastAPI):  # type: ignore[no-untyped-def]
    """API paths get the JSON error body; dashboard pages get a login redirect (401) or
    an HTML error page."""
    from medloop.web.routes.pages import error_page

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MedloopError)
        if request.url.path.startswith("/api/"):
            return errors.medloop_response(exc)
        if isinstance(exc, AuthRequired):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return error_page(request, exc)

    return handler


def create_app_from_env() -> FastAPI:
    """For uvicorn workers: options travel in MEDLOOP_WEB_* environment variables."""
    examples = os.environ.get("MEDLOOP_WEB_EXAMPLES")
    count = os.environ.get("MEDLOOP_WEB_REVIEW_LIMIT")
    limit = RateLimit(count=int(count)) if count else None
    app = create_app(Settings(), examples_dir=Path(examples) if examples else None, review_limit=limit)
    # Everything imported so far lives as long as the server: move it out of the cyclic
    # collector's reach, so a full collection scans only per-request garbage. Without
    # this, each full collection walks the whole import graph and stalls every open
    # request for tens of milliseconds (bench/api_load.py: p99 ~80 ms).
    gc.collect()
    gc.freeze()
    return app

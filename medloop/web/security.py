"""FastAPI dependencies: who is calling (Bearer token or dashboard session cookie), and
CSRF for cookie-authenticated changes. Tokens need no CSRF token: browsers never attach
an Authorization header on their own."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medloop.web import guard
from medloop.web.accounts import AuthRequired, Principal, session_principal, token_principal
from medloop.web.context import WebContext
from medloop.web.errors import CsrfError

SESSION_COOKIE = "medloop_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `medloop users token NAME` (tok_<id>.<secret>)",
)


def ctx_of(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


async def get_ctx(request: Request) -> WebContext:
    # async: FastAPI would run a plain function in its thread pool, on every request.
    return ctx_of(request)


async def check_csrf(request: Request, principal: Principal) -> None:
    """The session's CSRF token must come back in a header or a form field."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or principal.csrf is None or not hmac.compare_digest(sent, principal.csrf):
        raise CsrfError(
            "missing or wrong CSRF token for a change made with a session cookie",
            hint=f"reload the page, or send the {CSRF_HEADER} header",
        )


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    ctx = ctx_of(request)
    if creds is not None:
        raw = creds.credentials
        who = guard.login(ctx, request, raw, lambda: token_principal(ctx.store, raw), via="token")
        request.state.principal = who
        return who
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        who = session_principal(ctx.store, cookie)
        request.state.principal = who
        if request.method not in SAFE_METHODS:
            try:
                await check_csrf(request, who)
            except CsrfError as exc:
                guard.refused(ctx, who, exc, where=f"{request.method} {request.url.path}")
                raise
        return who
    raise AuthRequired(
        "authentication required",
        hint="send `Authorization: Bearer <token>` (create one with `medloop users token NAME`)",
    )


Caller = Annotated[Principal, Depends(principal)]
Ctx = Annotated[WebContext, Depends(get_ctx)]

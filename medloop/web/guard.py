"""Failed logins and refused actions: audited and throttled.

Failed logins (a bad API token on any request, or on the dashboard's login form) are
counted per client address and per account (the user a known token id belongs to), in
a sliding window shared by every server process (`web_rate_events`):

- An address with `login_failures_per_address` failures in `login_window` seconds gets
  429 (with Retry-After) for every credential it sends, right or wrong, until the oldest
  failure leaves the window. Requests refused this way are not counted, so a blocked
  address regains one attempt per freed slot: a guesser from one address is slowed to
  that rate, and a user who shares the address (a NAT) waits at most one window after
  the attacker stops.
- An account with `login_failures_per_account` failures gets 429 for every *wrong*
  secret that names it, and no more audit entry per attempt; the right token is always
  accepted. The trade-off is deliberate: refusing the right token too would let anyone
  who knows a token id (they appear in `users list` and the audit log) lock its owner
  out for as long as they keep trying, and it buys nothing, since a token's secret is
  256 random bits that no online attack can guess. The per-account count is there to
  make an attack on one account visible and to bound what it writes to the audit log.

Each counted failure is audited (`auth.fail`, with the address, the reason and the
token id when the token was well-formed; never the secret), and so is the moment an
address or account becomes throttled (`auth.throttle`). A refused action (HTTP 403) is
audited as `access.denied`; more than `refusals_per_user` a minute answer 429.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from medloop.core.errors import PermissionDenied, TrustError
from medloop.web.accounts import AuthRequired, Principal
from medloop.web.context import WebContext
from medloop.web.errors import RateLimited

T = TypeVar("T")
LOGIN_FAIL = "login.fail"
REFUSED = "refused"
_TOKEN_ID = re.compile(r"tok_[A-Za-z0-9_-]{1,60}")


def client_address(request: Request) -> str:
    """The caller's address: the socket peer, or what a trusted proxy said
    (`medloop serve --proxy-headers --forwarded-allow-ips`)."""
    return request.client.host if request.client else "unknown"


def _token_id(raw: str) -> str | None:
    """The id part of a well-formed token, else None (a malformed value may be a secret)."""
    head, dot, _ = raw.strip().partition(".")
    return head if dot and _TOKEN_ID.fullmatch(head) else None


def login(ctx: WebContext, request: Request, raw: str, attempt: Callable[[], T], *, via: str) -> T:
    """Run `attempt` (which checks the credential `raw`) under the failed-login throttle."""
    st, store, addr = ctx.settings, ctx.store, client_address(request)
    key_addr = f"addr:{addr}"
    suspect = ctx.suspects.get(addr, 0.0) > time.time()
    # Only addresses this process saw fail lately are looked up: no query on the hot path.
    if suspect:
        wait = store.users.rate_hit(
            key_addr, LOGIN_FAIL, limit=st.login_failures_per_address, window_s=st.login_window, peek=True
        )
        if wait > 0:
            raise RateLimited(f"too many failed logins from {addr}", retry_after=wait)
    try:
        return attempt()
    except AuthRequired as exc:
        _failed(ctx, addr, raw, exc, via=via)
        raise


def _failed(ctx: WebContext, addr: str, raw: str, exc: AuthRequired, *, via: str) -> None:
    st, store = ctx.settings, ctx.store
    ctx.suspects[addr] = time.time() + st.login_window
    if len(ctx.suspects) > 10_000:  # forget the oldest half; the database keeps the counts
        for old in sorted(ctx.suspects, key=ctx.suspects.__getitem__)[:5_000]:
            ctx.suspects.pop(old, None)
    token_id = _token_id(raw)
    login = store.tokens.login(token_id) if token_id else None
    account = login.user if login is not None else None
    limits = [(f"addr:{addr}", st.login_failures_per_address, "address", addr)]
    if account is not None:
        limits.append((f"user:{account}", st.login_failures_per_account, "user", account))
    detail: dict[str, Any] = {"address": addr, "via": via, "reason": exc.message[:200]}
    if token_id:
        detail["token"] = token_id
    over: float = 0.0
    entries: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for key, limit, kind, who in limits:
        wait = store.users.rate_hit(key, LOGIN_FAIL, limit=limit, window_s=st.login_window)
        if wait > 0:  # already throttled: not counted, not audited again
            over = max(over, wait)
            continue
        now_blocked = store.users.rate_hit(key, LOGIN_FAIL, limit=limit, window_s=st.login_window, peek=True)
        if now_blocked > 0:
            entries.append(
                (who if kind == "user" else "-", "auth.throttle", kind, who,
                 {"failures": limit, "window_s": st.login_window, "retry_after_s": round(now_blocked)})
            )  # fmt: skip
    if not over:
        entries.insert(
            0, (account or "-", "auth.fail", "user" if account else "address", account or addr, detail)
        )
    if entries:
        store.audit.append_many(entries)
    if over and account is not None:
        raise RateLimited(f"too many failed logins for {account}", retry_after=over) from None


def refused(ctx: WebContext, principal: Principal | None, exc: PermissionDenied, *, where: str) -> None:
    """Audit a refused action (once per exception) and throttle whoever keeps trying:
    raises RateLimited past `refusals_per_user` a minute."""
    if isinstance(exc, TrustError) or getattr(exc, "audited", False):
        return
    exc.audited = True  # type: ignore[attr-defined]
    name = principal.name if principal is not None else "-"
    wait = ctx.store.users.rate_hit(name, REFUSED, limit=ctx.settings.refusals_per_user, window_s=60.0)
    if wait > 0:
        raise RateLimited(f"{name} made too many refused requests", retry_after=wait) from exc
    detail = {"message": exc.message[:300], "role": principal.role if principal else None}
    ctx.store.audit.append(name, "access.denied", "request", where[:200], detail)


def audits_refusals(fn: Callable[..., T]) -> Callable[..., T]:
    """For actions(ctx, principal, ...): a PermissionDenied they raise is audited first."""

    @functools.wraps(fn)
    def wrapper(ctx: WebContext, principal: Principal, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(ctx, principal, *args, **kwargs)
        except PermissionDenied as exc:
            refused(ctx, principal, exc, where=f"{fn.__name__}:{args[0] if args else ''}")
            raise

    return wrapper


def on_refused(
    fallback: Callable[[Request, Exception], Awaitable[Response]],
) -> Callable[..., Awaitable[Response]]:
    """An exception handler for PermissionDenied: audit (unless done already), then answer
    as `fallback` does (429 instead when the caller keeps being refused)."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PermissionDenied)
        who = getattr(request.state, "principal", None)
        try:
            await run_in_threadpool(
                refused, request.app.state.ctx, who, exc, where=f"{request.method} {request.url.path}"
            )
        except RateLimited as limited:
            return await fallback(request, limited)
        return await fallback(request, exc)

    return handler

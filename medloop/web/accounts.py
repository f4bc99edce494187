"""Users, API tokens and dashboard sessions. No FastAPI here: the CLI uses it too.

A token reads `tok_<id>.<secret>`; the store keeps the id and sha256(secret), so a copy of
the database grants nothing. Session cookies are random values kept the same way.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

from medloop.core.accounts import ApiToken, Role, TokenLogin, User, WebSession
from medloop.core.errors import MedloopError, NotFoundError, SpecError
from medloop.core.ids import new_id, sha256_hex
from medloop.core.records import utcnow
from medloop.core.store import Store

ROLES: tuple[str, ...] = get_args(Role)
SESSION_HOURS = 12
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class AuthRequired(MedloopError):
    """No valid credentials came with the request (HTTP 401)."""

    exit_code = 5


@dataclass(frozen=True)
class Principal:
    """Who is calling. `csrf` is set for dashboard sessions (cookie auth) only."""

    name: str
    role: str
    via: str  # "token" | "session"
    csrf: str | None = None
    session_hash: str | None = None
    token_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(stamp: str | None) -> bool:
    return stamp is not None and datetime.fromisoformat(stamp) <= _now()


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise SpecError(
            f"user name {name!r} is not allowed",
            hint="use 1-64 letters, digits and . _ - @",
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise SpecError(f"role {role!r} is not a role", hint=f"roles: {', '.join(ROLES)}")
    return role


def add_user(store: Store, name: str, role: str, *, actor: str) -> User:
    """Create a user; audited. `store` is a Store that also implements WebStore."""
    user = User(name=check_name(name), role=check_role(role))  # type: ignore[arg-type]
    with store.transaction():
        store.users.add(user)
        store.audit.append(actor, "user.add", "user", user.name, {"role": role})
    return user


def issue_token(
    store: Store, user: str, *, actor: str, label: str = "", expires_days: float | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `user`; returns the record and the secret, shown only once."""
    store.users.get(user)
    secret = secrets.token_urlsafe(32)
    expires = (_now() + timedelta(days=expires_days)).isoformat() if expires_days else None
    token = ApiToken(id=new_id("tok"), user=user, hash=sha256_hex(secret), label=label, expires_at=expires)
    with store.transaction():
        store.tokens.add(token)
        store.audit.append(actor, "token.create", "user", user, {"token": token.id, "label": label})
    return token, f"{token.id}.{secret}"


def revoke_token(store: Store, token_id: str, *, actor: str) -> int:
    """Revoke a token and end the dashboard sessions opened with it; returns how many ended."""
    with store.transaction():
        token = store.tokens.get(token_id)
        store.tokens.revoke(token_id)
        ended = store.sessions.end(token_id=token_id)
        store.audit.append(
            actor, "token.revoke", "user", token.user, {"token": token_id, "sessions_ended": ended}
        )
    return ended


def set_disabled(store: Store, name: str, disabled: bool, *, actor: str) -> tuple[User, int]:
    """Disable a user (their tokens stop working and their sessions end at once) or enable
    them again (their unrevoked tokens work again; ended sessions stay ended)."""
    with store.transaction():
        user = store.users.set_disabled(name, disabled)
        ended = store.sessions.end(user=name) if disabled else 0
        action = "user.disable" if disabled else "user.enable"
        store.audit.append(actor, action, "user", name, {"sessions_ended": ended} if disabled else {})
    return user, ended


def end_sessions(store: Store, name: str, *, actor: str) -> int:
    """End every open dashboard session of a user; returns how many."""
    with store.transaction():
        store.users.get(name)
        ended = store.sessions.end(user=name)
        store.audit.append(actor, "session.end", "user", name, {"sessions_ended": ended})
    return ended


def session_state(session: WebSession) -> str:
    """open | ended | expired (as recorded; an open session of a revoked token is refused
    on use, and revoking ends it)."""
    if session.revoked_at is not None:
        return "ended"
    return "expired" if _expired(session.expires_at) else "open"


def _check_login(login: TokenLogin | None) -> TokenLogin:
    if login is None:
        raise AuthRequired("unknown API token")
    if login.revoked_at is not None or _expired(login.expires_at):
        raise AuthRequired("API token revoked or expired", hint="create one with `medloop users token NAME`")
    if login.disabled_at is not None:
        raise AuthRequired(f"user {login.user} is disabled")
    return login


def verify_token(store: Store, raw: str) -> Principal:
    """Who a raw token belongs to. AuthRequired if unknown, wrong, revoked or expired, or
    if its user is disabled. One indexed query: every API request comes through here."""
    token_id, _, secret = raw.strip().partition(".")
    if not token_id.startswith("tok_") or not secret:
        raise AuthRequired("malformed API token", hint="tokens look like tok_<id>.<secret>")
    login = store.tokens.login(token_id)
    if login is None:
        raise AuthRequired("unknown API token")
    if not hmac.compare_digest(login.hash, sha256_hex(secret)):
        raise AuthRequired("invalid API token")
    _check_login(login)
    return Principal(login.user, login.role, "token", token_id=token_id)


def _active_user(store: Store, name: str) -> User:
    user: User = store.users.get(name)
    if user.disabled_at is not None:
        raise AuthRequired(f"user {name} is disabled")
    return user


def start_session(store: Store, raw_token: str) -> tuple[str, WebSession]:
    """Log in with an API token; returns the cookie value and the session (with its CSRF
    token). The session ends with its token: at the token's expiry at the latest."""
    user = verify_token(store, raw_token)
    assert user.token_id is not None
    token = store.tokens.get(user.token_id)
    cookie = secrets.token_urlsafe(32)
    expires = _now() + timedelta(hours=SESSION_HOURS)
    if token.expires_at is not None:
        expires = min(expires, datetime.fromisoformat(token.expires_at))
    session = WebSession(
        id_hash=sha256_hex(cookie),
        user=user.name,
        csrf=secrets.token_urlsafe(24),
        expires_at=expires.isoformat(),
        token_id=user.token_id,
    )
    with store.transaction():
        store.sessions.add(session)
        store.audit.append(user.name, "session.login", "user", user.name, {"at": utcnow(), "token": token.id})
    return cookie, session


def session_principal(store: Store, cookie: str) -> Principal:
    """The caller of a session cookie: the session must be open and unexpired, and the
    token it was opened with still valid (not revoked, not expired, user not disabled)."""
    id_hash = sha256_hex(cookie)
    try:
        session = store.sessions.get(id_hash)
    except NotFoundError:
        raise AuthRequired("not logged in") from None
    if session.revoked_at is not None or _expired(session.expires_at):
        raise AuthRequired("session ended; log in again")
    if session.token_id is None:  # a session from before 0003: the user must still be enabled
        user = _active_user(store, session.user)
        return Principal(user.name, user.role, "session", csrf=session.csrf, session_hash=id_hash)
    try:
        login = _check_login(store.tokens.login(session.token_id))
    except AuthRequired as exc:
        raise AuthRequired(f"session ended: {exc.message}", hint="log in again") from None
    return Principal(
        login.user, login.role, "session", csrf=session.csrf, session_hash=id_hash, token_id=session.token_id
    )


def token_principal(store: Store, raw: str) -> Principal:
    return verify_token(store, raw)


def end_session(store: Store, principal: Principal) -> None:
    if principal.session_hash:
        store.sessions.revoke(principal.session_hash)
        store.audit.append(principal.name, "session.logout", "user", principal.name, {})

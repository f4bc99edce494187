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

from medloop.core.accounts import ApiToken, Role, User, WebSession
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


def revoke_token(store: Store, token_id: str, *, actor: str) -> None:
    with store.transaction():
        token = store.tokens.get(token_id)
        store.tokens.revoke(token_id)
        store.audit.append(actor, "token.revoke", "user", token.user, {"token": token_id})


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
    if login.revoked_at is not None or _expired(login.expires_at):
        raise AuthRequired("API token revoked or expired", hint="create one with `medloop users token NAME`")
    if login.disabled_at is not None:
        raise AuthRequired(f"user {login.user} is disabled")
    return Principal(login.user, login.role, "token")


def _active_user(store: Store, name: str) -> User:
    user: User = store.users.get(name)
    if user.disabled_at is not None:
        raise AuthRequired(f"user {name} is disabled")
    return user


def start_session(store: Store, raw_token: str) -> tuple[str, WebSession]:
    """Log in with an API token; returns the cookie value and the session (with its CSRF token)."""
    user = verify_token(store, raw_token)
    cookie = secrets.token_urlsafe(32)
    session = WebSession(
        id_hash=sha256_hex(cookie),
        user=user.name,
        csrf=secrets.token_urlsafe(24),
        expires_at=(_now() + timedelta(hours=SESSION_HOURS)).isoformat(),
    )
    with store.transaction():
        store.sessions.add(session)
        store.audit.append(user.name, "session.login", "user", user.name, {"at": utcnow()})
    return cookie, session


def session_principal(store: Store, cookie: str) -> Principal:
    id_hash = sha256_hex(cookie)
    try:
        session = store.sessions.get(id_hash)
    except NotFoundError:
        raise AuthRequired("not logged in") from None
    if session.revoked_at is not None or _expired(session.expires_at):
        raise AuthRequired("session ended; log in again")
    user = _active_user(store, session.user)
    return Principal(user.name, user.role, "session", csrf=session.csrf, session_hash=id_hash)


def token_principal(store: Store, raw: str) -> Principal:
    return verify_token(store, raw)


def end_session(store: Store, principal: Principal) -> None:
    if principal.session_hash:
        store.sessions.revoke(principal.session_hash)
        store.audit.append(principal.name, "session.logout", "user", principal.name, {})

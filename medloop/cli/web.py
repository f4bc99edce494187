"""`medloop serve`, `medloop users` and `medloop audit`: the web server, its accounts,
and the hash-chained audit log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medloop.cli.common import console, print_json, settings

if TYPE_CHECKING:
    from medloop.core.store import Store

users_app = typer.Typer(
    help="Users, roles and API tokens of the web API and dashboard.", no_args_is_help=True
)
audit_app = typer.Typer(help="Inspect and verify the hash-chained audit log.", no_args_is_help=True)


def _store() -> Store:
    from medloop import bootstrap

    return bootstrap.store(settings())


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (keep 127.0.0.1 unless behind a proxy)"),
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, min=1, max=64, help="Server processes"),
    examples: Path | None = typer.Option(
        None, help="Folder of campaign YAML files the launch form offers (default: ./examples)"
    ),
    review_limit: int | None = typer.Option(
        None, min=1, help="Review actions per user per minute (default 30)"
    ),
    log_level: str = typer.Option("info", help="uvicorn log level"),
    proxy_headers: bool = typer.Option(
        False,
        "--proxy-headers/--no-proxy-headers",
        help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a TLS proxy)",
    ),
    forwarded_allow_ips: str = typer.Option(
        "127.0.0.1", help="Comma list of proxy addresses (or networks) whose forwarded headers are trusted"
    ),
    ssl_certfile: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Serve HTTPS with this certificate (PEM)"
    ),
    ssl_keyfile: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="The certificate's key (PEM)"
    ),
) -> None:
    """Serve the REST API (/api/v1, docs at /api/docs) and the dashboard on the workspace.

    Session cookies get the Secure flag when the request came over HTTPS: with --ssl-*
    here, or through a proxy trusted with --proxy-headers --forwarded-allow-ips."""
    from medloop.core.extras import require

    require("fastapi", "medloop serve")
    uvicorn = require("uvicorn", "medloop serve")

    if (ssl_certfile is None) != (ssl_keyfile is None):
        from medloop.core.errors import SpecError

        raise SpecError("give both --ssl-certfile and --ssl-keyfile, or neither")
    st = settings()
    _store()  # migrate (and fail with one line) before the workers start
    folder = examples if examples is not None else Path("examples")
    if folder.is_dir():
        os.environ["MEDLOOP_WEB_EXAMPLES"] = str(folder.resolve())
    if review_limit is not None:
        os.environ["MEDLOOP_WEB_REVIEW_LIMIT"] = str(review_limit)
    os.environ["MEDLOOP_WORKSPACE"] = str(st.workspace_dir)
    scheme = "https" if ssl_certfile else "http"
    console.print(
        f"medloop on {scheme}://{host}:{port}  (workspace {st.workspace_dir}; API docs at /api/docs)"
    )
    uvicorn.run(
        "medloop.web.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips if proxy_headers else None,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (letters, digits, . _ - @)"),
    role: str = typer.Option(..., "--role", help="viewer | reviewer | admin | agent"),
    label: str = typer.Option("", help="What the first token is for"),
    expires_days: float | None = typer.Option(None, min=0.01, help="Token lifetime in days (default: none)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a user and print their first API token (shown once; only its hash is kept)."""
    from medloop.web.accounts import add_user, issue_token

    store, actor = _store(), settings().user
    user = add_user(store, name, role, actor=actor)
    token, secret = issue_token(store, user.name, actor=actor, label=label, expires_days=expires_days)
    if as_json:
        print_json({"name": user.name, "role": user.role, "token_id": token.id, "token": secret})
        return
    console.print(f"user {user.name} ({user.role}) added; API token (shown once):")
    console.print(secret, markup=False, highlight=False, soft_wrap=True)


@users_app.command("token")
def users_token(
    name: str = typer.Argument(...),
    label: str = typer.Option("", help="What the token is for"),
    expires_days: float | None = typer.Option(None, min=0.01, help="Token lifetime in days"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create another API token for a user (shown once)."""
    from medloop.web.accounts import issue_token

    token, secret = issue_token(_store(), name, actor=settings().user, label=label, expires_days=expires_days)
    if as_json:
        print_json({"name": name, "token_id": token.id, "token": secret, "expires_at": token.expires_at})
        return
    console.print(secret, markup=False, highlight=False, soft_wrap=True)


@users_app.command("revoke")
def users_revoke(
    token_id: str = typer.Argument(..., help="Token id (tok_..., the part before the dot)"),
) -> None:
    """Revoke an API token; the dashboard sessions opened with it end at once."""
    from medloop.web.accounts import revoke_token

    ended = revoke_token(_store(), token_id.partition(".")[0], actor=settings().user)
    console.print(f"{token_id.partition('.')[0]} revoked; {ended} dashboard session(s) ended")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(...)) -> None:
    """Disable a user: they cannot log in, their tokens and sessions stop working at once."""
    from medloop.web.accounts import set_disabled

    _, ended = set_disabled(_store(), name, True, actor=settings().user)
    console.print(f"user {name} disabled; {ended} dashboard session(s) ended")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(...)) -> None:
    """Enable a disabled user again (their unrevoked tokens work again)."""
    from medloop.web.accounts import set_disabled

    set_disabled(_store(), name, False, actor=settings().user)
    console.print(f"user {name} enabled")


@users_app.command("sessions")
def users_sessions(
    name: str = typer.Argument(...),
    end: bool = typer.Option(False, "--end", help="End every open session of this user"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List a user's dashboard sessions (open first), or end them all with --end."""
    from medloop.web.accounts import end_sessions, session_state

    store = _store()
    store.users.get(name)
    if end:
        ended = end_sessions(store, name, actor=settings().user)
        if as_json:
            print_json({"name": name, "ended": ended})
            return
        console.print(f"{ended} dashboard session(s) of {name} ended")
        return
    sessions = sorted(store.sessions.list(name), key=lambda s: (session_state(s) != "open", s.created_at))
    if as_json:
        print_json(
            [
                s.model_dump(include={"token_id", "created_at", "expires_at", "revoked_at"})
                | {"state": session_state(s)}
                for s in sessions
            ]
        )
        return
    if not sessions:
        console.print(f"{name} has no dashboard sessions")
    for s in sessions:
        console.print(
            f"{session_state(s):<8} opened {s.created_at[:19]}  expires {s.expires_at[:19]}  "
            f"token {s.token_id or '-'}",
            markup=False,
        )


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List users, their roles and tokens (ids only)."""
    store = _store()
    users = store.users.list()
    tokens = store.tokens.list()
    if as_json:
        print_json(
            [
                {
                    **u.model_dump(exclude={"schema_version"}),
                    "tokens": [
                        t.model_dump(exclude={"schema_version", "hash", "user"})
                        for t in tokens
                        if t.user == u.name
                    ],
                }
                for u in users
            ]
        )
        return
    from rich.table import Table

    table = Table()
    for col in ("name", "role", "active tokens", "created", "disabled"):
        table.add_column(col)
    for u in users:
        active = [t.id for t in tokens if t.user == u.name and t.revoked_at is None]
        table.add_row(
            u.name, u.role, ", ".join(active) or "-", u.created_at[:19], (u.disabled_at or "-")[:19]
        )
    console.print(table)


@audit_app.command("verify")
def audit_verify(
    anchor: list[str] = typer.Option(
        [], "--anchor", help="An anchor file or HASH:COUNT from `audit anchor`; the log must still hold it"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recompute the audit log's hash chain (entries 1..n, no gaps); exit 1 at the first
    entry that does not match, or if the log no longer holds an anchored head."""
    from medloop.core.errors import MedloopError
    from medloop.web import anchors

    wanted = [a for value in anchor for a in anchors.load(value)]
    store = _store()
    ok, bad = store.audit.verify()
    entries = store.audit.head()[0]
    problem = None
    if ok and wanted:
        try:
            anchors.check(store, wanted)
        except anchors.AnchorMismatch as exc:
            problem = exc
    if as_json:
        print_json(
            {"ok": ok and problem is None, "first_bad_seq": bad, "entries": entries,
             "anchors": len(wanted), "anchor_error": problem.message if problem else None}
        )  # fmt: skip
        if not ok or problem:
            raise typer.Exit(1)
        return
    if not ok:
        raise MedloopError(
            f"audit chain broken at entry {bad} of {entries} (an entry was changed, removed or inserted)",
            hint=f"compare with a backup; entries before {bad} are intact",
        )
    if problem:
        raise problem
    held = (
        f"; holds {len(wanted)} anchor(s)"
        if wanted
        else " (without an anchor, a rewrite with recomputed hashes or removed last entries cannot be seen)"
    )
    console.print(f"audit chain intact: {entries} entries{held}", markup=False)


@audit_app.command("anchor")
def audit_anchor(
    file: Path | None = typer.Option(
        None, "--file", help="Also append the anchor to this file (keep it off the database's volume)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print the head of the audit log as HASH:COUNT: kept outside the database, it lets
    `audit verify --anchor` detect removed last entries and rewrites with recomputed hashes."""
    from medloop.web import anchors

    anchor = anchors.head(_store())
    if file is not None:
        anchors.append(file, anchor)
    if as_json:
        print_json({"hash": anchor.hash, "count": anchor.count, "anchor": str(anchor)})
        return
    console.print(str(anchor), markup=False, highlight=False)


@audit_app.command("list")
def audit_list(
    object_id: str | None = typer.Option(None, "--object", help="Only entries about this id"),
    limit: int = typer.Option(50, min=1, help="Last N entries"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the latest audit entries."""
    entries = _store().audit.list(object_id=object_id, limit=100_000_000)[-limit:]
    if as_json:
        print_json([e.model_dump(mode="json", exclude={"schema_version"}) for e in entries])
        return
    for e in entries:
        console.print(
            f"{e.seq:>6} {e.ts[:19]} {e.actor:<10} {e.action:<26} {e.object_type} {e.object_id}", markup=False
        )

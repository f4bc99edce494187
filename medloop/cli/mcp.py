"""`medloop mcp`: serve the tool library over MCP (stdio, or streamable HTTP with tokens)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

TOKEN_ENV = "MEDLOOP_MCP_TOKEN"


def serve(
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP instead of stdio")] = False,
    host: Annotated[str, typer.Option(help="HTTP: address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP: port")] = 8765,
    caller: Annotated[
        str | None, typer.Option(help="Caller name (stdio, or the MEDLOOP_MCP_TOKEN caller)")
    ] = None,
    role: Annotated[
        str, typer.Option(help="Role of that caller: viewer | agent | reviewer | admin")
    ] = "agent",
    token_file: Annotated[
        Path | None, typer.Option(help='HTTP: JSON {"tokens": [{"caller", "role", "token_sha256"}]}')
    ] = None,
) -> None:
    """Serve every tool over MCP. stdio by default (one caller per session); with --http,
    each request needs `Authorization: Bearer <token>`: the token in MEDLOOP_MCP_TOKEN
    (acting as --caller/--role) or one listed by hash in --token-file."""
    # stdout carries the protocol on stdio: every log goes to stderr.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from medloop import bootstrap
    from medloop.cli.common import settings
    from medloop.core.errors import SpecError
    from medloop.core.extras import require

    require("mcp", "medloop mcp")
    from medloop.tools import mcp_server
    from medloop.tools.catalog import default_registry
    from medloop.tools.context import Caller

    st = settings()
    me = Caller(caller or st.user, role)  # type: ignore[arg-type]
    ctx = bootstrap.tool_context(st, me)
    registry = default_registry()
    if not http:
        server = mcp_server.build_server(registry, ctx, mcp_server.fixed_caller(me))
        import anyio

        anyio.run(mcp_server.serve_stdio, server)
        return
    if not ctx.limits.roots():
        # Over HTTP, every path a client names is opened by this server: confine them.
        raise SpecError(
            "medloop mcp --http needs data roots: without them a client could make the server read any path",
            hint="set MEDLOOP_TOOLS_DATA_ROOTS to a comma list of the folders tools may read",
        )
    entries = []
    if token_file is not None:
        entries.extend(mcp_server.StaticTokenVerifier.from_file(token_file).entries)
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        if len(token) < 16:
            raise SpecError(f"{TOKEN_ENV} is too short", hint="use at least 16 random characters")
        entries.append(
            mcp_server.TokenEntry(caller=me.name, role=me.role, token_sha256=mcp_server.sha256_token(token))
        )
    if not entries:
        raise SpecError(
            "the HTTP server needs a token",
            hint=f"set {TOKEN_ENV} or pass --token-file; tokens name the caller and role",
        )
    server = mcp_server.build_server(registry, ctx, mcp_server.token_caller)
    sys.stderr.write(f"medloop MCP server on http://{host}:{port}/mcp ({len(entries)} token(s))\n")
    mcp_server.serve_http(server, mcp_server.StaticTokenVerifier(entries), host=host, port=port)

"""The MCP server: every registered tool over the official MCP Python SDK (2.x).

Built on the SDK's low-level `mcp.server.Server` with explicit `tools/list` and
`tools/call` handlers, so the schemas MCP clients see are exactly the registry's (the
same ones the function-calling and LangChain adapters publish) and a refused call
carries the registry's error: which field, what is allowed, what to do next.

- stdio (`medloop mcp`): one caller for the whole session (name and role from options).
- streamable HTTP (`medloop mcp --http`): each request authenticates with a bearer
  token; the token names the caller and its role. Without a valid token: 401.

Tools run in worker threads; long ones report progress as MCP progress notifications
(`notifications/progress`) when the client sent a progress token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.provider import AccessToken
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medloop import __version__
from medloop.core.errors import MedloopError, PermissionDenied, SpecError
from medloop.tools.context import ROLES, Caller, Role, ToolContext
from medloop.tools.registry import Registry, ToolSpec, error_payload
from medloop.tools.schemas import description, input_schema, output_schema

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "medloop runs controlled, sandboxed medical-imaging experiments and keeps what they "
    "teach in a knowledge base. Typical flow: dataset_check -> search_knowledge -> "
    "run_trial (same seeds for control and treatment) -> trial_status (wait_s) -> "
    "compare_trials -> propose_claim. Long tools return handles; poll them with wait_s."
)
ROLE_SCOPE = "medloop:role:"

CallerResolver = Callable[[ServerRequestContext[Any, Any]], Caller]


def _mcp_tool(spec: ToolSpec[Any, Any]) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.summary,
        description=description(spec),
        input_schema=input_schema(spec),
        output_schema=output_schema(spec),
        annotations=types.ToolAnnotations(
            title=spec.summary,
            read_only_hint=spec.read_only,
            destructive_hint=False,
            idempotent_hint=True,  # handles are deterministic: repeating a call repeats no work
            open_world_hint=False,
        ),
        _meta={"medloop/version": spec.version, "medloop/roles": list(spec.roles)},
    )


def _text(payload: dict[str, Any]) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=json.dumps(payload, separators=(",", ":")))]


def mcp_tools(registry: Registry) -> list[types.Tool]:
    return [_mcp_tool(spec) for spec in registry]


def build_server(registry: Registry, base: ToolContext, resolve_caller: CallerResolver) -> Server[Any]:
    """An MCP server exposing `registry`, acting for the caller `resolve_caller` finds."""
    tools = mcp_tools(registry)

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            caller = resolve_caller(ctx)
        except MedloopError as exc:
            return types.CallToolResult(content=_text(error_payload(exc)), is_error=True)

        def progress(done: float, total: float | None, message: str | None) -> None:
            # Called from the tool's worker thread; the notification goes out on the loop.
            anyio.from_thread.run(ctx.session.report_progress, done, total, message)

        tctx = base.as_caller(caller).with_progress(progress)
        arguments = dict(params.arguments or {})
        try:
            result: BaseModel = await anyio.to_thread.run_sync(
                lambda: registry.call(params.name, tctx, arguments)
            )
        except MedloopError as exc:
            return types.CallToolResult(content=_text(error_payload(exc)), is_error=True)
        except Exception:  # a bug in a tool: logged here, never sent to the client
            log.exception("tool %s failed", params.name)
            payload = {
                "error": "InternalError",
                "message": f"{params.name} failed inside the server; see its log",
            }
            return types.CallToolResult(content=_text(payload), is_error=True)
        # Through JSON text so non-finite floats become null instead of invalid JSON.
        structured = json.loads(result.model_dump_json())
        return types.CallToolResult(content=_text(structured), structured_content=structured)

    return Server(
        "medloop",
        version=__version__,
        title="medloop research tools",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


# ---------------------------------------------------------------- callers


def fixed_caller(caller: Caller) -> CallerResolver:
    """stdio: the whole session acts as one caller."""
    return lambda ctx: caller


def token_caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    """HTTP: the caller the request's bearer token names (set by the auth middleware)."""
    scope = getattr(ctx.request, "scope", None) or {}
    user = scope.get("user")
    token = getattr(user, "access_token", None)
    if not isinstance(token, AccessToken):
        raise PermissionDenied("this request carries no valid bearer token")
    roles = [s.removeprefix(ROLE_SCOPE) for s in token.scopes if s.startswith(ROLE_SCOPE)]
    role = roles[0] if roles and roles[0] in ROLES else "viewer"
    return Caller(token.client_id, role)  # type: ignore[arg-type]


class TokenEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    caller: str = Field(min_length=1)
    role: Role = "agent"
    token_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the token (never the token)"
    )


class TokenFile(BaseModel):
    """`--token-file`: {"tokens": [{"caller": "lab-agent", "role": "agent", "token_sha256": "..."}]}"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: list[TokenEntry] = Field(min_length=1)


def sha256_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaticTokenVerifier:
    """Bearer tokens from configuration, compared by hash in constant time."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        if not entries:
            raise SpecError(
                "the MCP HTTP server needs at least one token", hint="pass --token or --token-file"
            )
        self.entries = entries

    @classmethod
    def from_file(cls, path: Path) -> StaticTokenVerifier:
        try:
            return cls(TokenFile.model_validate_json(path.read_text()).tokens)
        except FileNotFoundError:
            raise SpecError(f"{path}: token file not found") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SpecError(f"{path}: {where}: {first['msg']}", hint=TokenFile.__doc__) from None

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = sha256_token(token)
        for entry in self.entries:
            if hmac.compare_digest(digest, entry.token_sha256):
                return AccessToken(token=token, client_id=entry.caller, scopes=[ROLE_SCOPE + entry.role])
        return None


# ---------------------------------------------------------------- transports


async def serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def http_app(server: Server[Any], verifier: StaticTokenVerifier, *, host: str, port: int) -> Any:
    """The streamable-HTTP ASGI app at /mcp; every request needs a bearer token."""
    from mcp.server.auth.settings import AuthSettings

    url = f"http://{host}:{port}/mcp"
    auth = AuthSettings(issuer_url=url, resource_server_url=url, validate_token_resource=False)
    return server.streamable_http_app(host=host, auth=auth, token_verifier=verifier)


def serve_http(server: Server[Any], verifier: StaticTokenVerifier, *, host: str, port: int) -> None:
    import uvicorn

    app = http_app(server, verifier, host=host, port=port)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve)

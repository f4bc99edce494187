"""`medloop tools`: list the tool library, print its schemas and docs, call a tool."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from medloop.cli.common import console, err_console, print_json, settings

app = typer.Typer(
    help="The typed tool library other agents use (schemas, docs, calls).", no_args_is_help=True
)


def _registry() -> Any:
    from medloop.tools.catalog import default_registry

    return default_registry()


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """List every tool: name, version, roles, what it does."""
    from rich.table import Table

    specs = list(_registry())
    if as_json:
        print_json(
            [
                {"name": s.name, "version": s.version, "roles": list(s.roles), "summary": s.summary}
                for s in specs
            ]
        )
        return
    table = Table()
    for col in ("tool", "version", "roles", "summary"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, str(s.version), ", ".join(s.roles), s.summary)
    console.print(table)


@app.command("schema")
def schema(
    fmt: Annotated[str, typer.Option("--format", help="openai | mcp | json")] = "openai",
    tool: Annotated[list[str] | None, typer.Option("--tool", help="Only these tools (repeatable)")] = None,
) -> None:
    """Print the tools' schemas: OpenAI/litellm function-calling tools, MCP tool
    listings, or everything (json: input and output JSON Schemas, example calls)."""
    from medloop.core.errors import SpecError
    from medloop.tools import schemas
    from medloop.tools.registry import Registry

    full = _registry()
    registry = full
    if tool:
        registry = Registry()
        for name in tool:
            registry.add(full.get(name))
    if fmt == "openai":
        print_json(schemas.openai_tools(registry))
    elif fmt == "json":
        print_json(schemas.catalog(registry))
    elif fmt == "mcp":
        from medloop.tools.mcp_server import mcp_tools

        print_json([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in mcp_tools(registry)])
    else:
        raise SpecError(f"--format {fmt!r} is not known", hint="use openai, mcp or json")


@app.command("docs")
def docs(
    write: Annotated[Path | None, typer.Option(help="Write the page here (e.g. docs/tools.md)")] = None,
    check: Annotated[
        Path | None, typer.Option(help="Exit 1 if this file differs from the generated page")
    ] = None,
) -> None:
    """Generate the tool reference page from the registry (stdout by default)."""
    from medloop.core.errors import MedloopError
    from medloop.tools.schemas import render_docs

    page = render_docs(_registry())
    if check is not None:
        if not check.is_file() or check.read_text() != page:
            raise MedloopError(
                f"{check} is out of date with the tool registry",
                hint=f"run `medloop tools docs --write {check}`",
            )
        console.print(f"{check} is up to date")
        return
    if write is not None:
        write.parent.mkdir(parents=True, exist_ok=True)
        tmp = write.with_name(f".{write.name}.tmp")
        tmp.write_text(page)
        tmp.replace(write)
        console.print(f"wrote {write}")
        return
    sys.stdout.write(page)


@app.command("call")
def call(
    name: Annotated[str, typer.Argument(help="Tool name (see `medloop tools list`)")],
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object")] = "{}",
    caller: Annotated[str | None, typer.Option(help="Act as this caller (default: MEDLOOP_USER)")] = None,
    role: Annotated[str, typer.Option(help="viewer | agent | reviewer | admin")] = "agent",
) -> None:
    """Call one tool and print its JSON output. Trials it submits are waited for."""
    from medloop import bootstrap
    from medloop.core.errors import SpecError
    from medloop.tools.context import Caller
    from medloop.tools.trial_tools import JOBS_KEY

    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--args is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(arguments, dict):
        raise SpecError('--args must be a JSON object, e.g. \'{"path": "/data/ds"}\'')
    st = settings()
    ctx = bootstrap.tool_context(st, Caller(caller or st.user, role))  # type: ignore[arg-type]
    result = _registry().call(name, ctx, arguments)
    print_json(json.loads(result.model_dump_json()))
    jobs = ctx.shared.get(JOBS_KEY)
    pending = jobs.pending() if jobs is not None else []
    if jobs is not None and pending:
        err_console.print(
            f"waiting for {len(pending)} trial(s) to finish (Ctrl-C leaves them to a later run_trial)"
        )
        jobs.wait(pending, timeout=None)

"""The `medloop` command line: thin typer commands that parse, call and translate errors.

Each command group lives in its own module and registers here. Heavy libraries (torch,
monai, chromadb, litellm, langgraph) are imported inside commands, never at start-up.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from typing import Any

import typer

from medloop.cli import (
    campaign,
    claims,
    dataset,
    flags,  # noqa: F401  (flags print no `<bool>` in --help)
    hypotheses,
    knowledge,
    mcp,
    report,  # noqa: F401  (registers `campaign report`)
    sandbox,
    tools,
    vqa,
    web,
)
from medloop.cli.common import console, err_console, json_written, print_json, wants_json
from medloop.core.errors import MedloopError
from medloop.core.offline import OFFLINE_ENV

app = typer.Typer(
    help="medloop: closed-loop autonomous research for medical-imaging AI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(campaign.app, name="campaign")
app.add_typer(claims.app, name="claims")
app.add_typer(hypotheses.app, name="hypotheses")
app.add_typer(dataset.app, name="dataset")
app.add_typer(knowledge.app, name="knowledge")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(web.users_app, name="users")
app.add_typer(web.audit_app, name="audit")
app.command("serve")(web.serve)
app.add_typer(tools.app, name="tools")
app.command("mcp")(mcp.serve)
app.add_typer(vqa.app, name="vqa")


@app.command()
def version() -> None:
    """Print the medloop version."""
    from medloop import __version__

    console.print(__version__)


def _json_error(kind: str, message: str, hint: str | None, exit_code: int) -> None:
    """With --json, a failure is also a JSON object on stdout, so a script reads one format."""
    if wants_json(sys.argv[1:]) and not json_written():  # e.g. `dataset check --json` printed its report
        print_json({"error": {"type": kind, "message": message, "hint": hint, "exit_code": exit_code}})


def _is_usage_error(exc: Exception) -> bool:
    """click's usage errors (typer vendors click, so check both spellings; click itself is
    present only when another package brings it)."""
    if isinstance(exc, typer.TyperException) and callable(getattr(exc, "show", None)):
        return True
    try:
        import click
    except ImportError:
        return False
    return isinstance(exc, click.ClickException)


def main() -> None:
    """Entry point: offline defaults, then run; MedloopErrors become one line + exit code,
    usage errors the usage and exit 2, never a traceback."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # A crash in native code (a driver, a library) leaves Python's traceback on stderr,
    # which a launched campaign process writes to its log.
    faulthandler.enable(all_threads=True)
    try:
        # With standalone_mode=False click returns (not raises) the code of typer.Exit(n).
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except MedloopError as exc:
        err_console.print(f"error: {exc.message}", markup=False, highlight=False)
        if exc.hint:
            err_console.print(f"hint: {exc.hint}", markup=False, highlight=False)
        _json_error(type(exc).__name__, exc.message, exc.hint, exc.exit_code)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        if not _is_usage_error(exc):
            raise
        usage: Any = exc  # a click ClickException (typer's vendored click is untyped)
        usage.show()  # usage line, "Try ... --help", and the error
        exit_code = int(usage.exit_code)
        _json_error("UsageError", str(usage.format_message()), None, exit_code)
        sys.exit(exit_code)

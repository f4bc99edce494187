"""Shared CLI helpers: consoles, JSON output, settings."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from medloop.core.settings import Settings


def _console(stderr: bool = False) -> Console:
    # Logs and CI are not terminals: give tables room instead of rich's 80-column default,
    # and never break a message inside a word (soft_wrap leaves long lines whole).
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=130, soft_wrap=True)


console = _console()
err_console = _console(stderr=True)


def settings() -> Settings:
    """Settings from MEDLOOP_* variables; a bad value is a one-line error, not a traceback."""
    from pydantic import ValidationError

    from medloop.core.errors import SpecError
    from medloop.core.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MEDLOOP_" + str(first["loc"][0]).upper() if first["loc"] else "MEDLOOP_*"
        raise SpecError(f"{name}: {first['msg']}", hint="fix or unset the environment variable") from None


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asked for `--json` (before any `--` separator)."""
    args = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in args


_json_written = False  # a command printed its --json answer (a later error adds none)


def print_json(data: Any) -> None:
    """Machine-readable output for `--json`: plain JSON on stdout, nothing else."""
    global _json_written
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    _json_written = True


def json_written() -> bool:
    return _json_written

"""Shared CLI helpers: consoles, JSON output, settings."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from medloop.core.settings import Settings

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return Settings()


def print_json(data: Any) -> None:
    """Machine-readable output for `--json`: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

"""`medloop knowledge`: Maintain the knowledge base: rebuild indexes, quarantine, import/export."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Maintain the knowledge base: rebuild indexes, quarantine, import/export.", no_args_is_help=True
)

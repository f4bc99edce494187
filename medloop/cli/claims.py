"""`medloop claims`: List and inspect claims in the knowledge base."""

from __future__ import annotations

import typer

app = typer.Typer(help="List and inspect claims in the knowledge base.", no_args_is_help=True)

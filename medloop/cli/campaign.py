"""`medloop campaign`: Run, inspect and resume research campaigns."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run, inspect and resume research campaigns.", no_args_is_help=True)

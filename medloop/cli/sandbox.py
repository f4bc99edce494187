"""`medloop sandbox`: Build sandbox images and inspect jobs."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build sandbox images and inspect jobs.", no_args_is_help=True)

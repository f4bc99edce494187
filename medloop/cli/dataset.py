"""`medloop dataset`: Create, check and fingerprint datasets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Create, check and fingerprint datasets.", no_args_is_help=True)

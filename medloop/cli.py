"""The `medloop` command line (placeholder until the walking skeleton lands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="medloop: closed-loop autonomous research for medical-imaging AI.")


@app.callback()
def _root() -> None:
    """Closed-loop autonomous research for medical-imaging AI."""


def main() -> None:
    app()

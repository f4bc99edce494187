"""`medloop campaign report`: a campaign as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

import typer

from medloop.cli.campaign import app
from medloop.cli.common import console, settings


@app.command("report")
def report(
    campaign_id: str = typer.Argument(..., help="Campaign id (cmp_...)"),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write"),
) -> None:
    """Write one self-contained HTML report (plots and images embedded) for sharing."""
    from medloop import bootstrap
    from medloop.web.report import write_report

    path = write_report(bootstrap.store(settings()), campaign_id, out)
    console.print(f"report written to {path} ({path.stat().st_size // 1024} KiB)")

"""`medloop sandbox`: Build sandbox images and inspect jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medloop.cli.common import console, err_console, print_json, settings
from medloop.core.errors import NotFoundError

app = typer.Typer(help="Build sandbox images and inspect jobs.", no_args_is_help=True)


@app.command("build-image")
def build_image(
    tag: str = typer.Option(None, "--tag", "-t", help="Image tag (default: MEDLOOP_DOCKER_IMAGE)"),
    base: str = typer.Option(
        "python:3.11-slim-bookworm",
        "--base",
        help="BASE_IMAGE (needs python3 + venv), or 'debootstrap' to make one from the Debian mirror",
    ),
    wheelhouse: Path | None = typer.Option(
        None, "--wheelhouse", help="Install Python packages only from the wheels in this folder (offline)"
    ),
    download: bool = typer.Option(False, "--download", help="First fill --wheelhouse with pip download"),
    mirror: str | None = typer.Option(None, "--mirror", help="Debian mirror for --base debootstrap"),
    suite: str = typer.Option("bookworm", "--suite", help="Debian suite for --base debootstrap"),
    rebuild_base: bool = typer.Option(False, "--rebuild-base", help="Remake the debootstrap base"),
    force: bool = typer.Option(False, "--force", help="Build even if an identical image exists"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON"),
) -> None:
    """Build the job runtime image (works offline with --base debootstrap --wheelhouse DIR)."""
    from medloop.sandbox.image import build_image as build

    if download and wheelhouse is None:
        raise typer.BadParameter("--download needs --wheelhouse DIR", param_hint="--download")

    def log(line: str) -> None:
        (err_console if as_json else console).print(line, markup=False, highlight=False)

    result = build(
        tag=tag or settings().docker_image,
        base=base,
        wheelhouse=wheelhouse,
        download=download,
        force=force,
        mirror=mirror,
        suite=suite,
        rebuild_base=rebuild_base,
        log=log,
    )
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        state = "up to date" if result.cached else f"built in {result.seconds:.0f} s"
        console.print(f"{result.tag}: {result.image_id} ({state})", markup=False)


def _job_rows() -> list[dict[str, Any]]:
    from medloop.sandbox.jobdir import JobDir

    jobs_dir = settings().jobs_dir
    rows = []
    for folder in sorted(jobs_dir.glob("*/key.txt")) if jobs_dir.is_dir() else []:
        jd = JobDir(jobs_dir, folder.read_text())
        result = jd.result()
        info = jd.run_info()
        rows.append(
            {
                "key": jd.key,
                "runtime": info.runtime if info else None,
                "status": result.status if result else ("running" if info else "created"),
                "started_at": info.started_at if info else None,
                "wall_s": round(result.wall_s, 3) if result else None,
                "reason": result.reason if result else None,
                "path": str(jd.path),
            }
        )
    return rows


@app.command("jobs")
def jobs(as_json: bool = typer.Option(False, "--json", help="Print as JSON")) -> None:
    """List sandbox jobs in the workspace with their status."""
    rows = _job_rows()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("key", "runtime", "status", "wall s", "reason")
    for row in rows:
        table.add_row(
            row["key"], row["runtime"] or "-", row["status"], str(row["wall_s"] or "-"), row["reason"] or ""
        )
    console.print(table)


@app.command("show")
def show(
    key: str = typer.Argument(..., help="Job key"),
    tail: int = typer.Option(20, "--tail", help="Log lines to show"),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON"),
) -> None:
    """Show one job: its result (status, provenance) and the end of its log."""
    from medloop.sandbox.jobdir import JobDir

    jd = JobDir(settings().jobs_dir, key)
    if not jd.exists():
        raise NotFoundError(
            f"no sandbox job {key!r} in {settings().jobs_dir}", hint="see `medloop sandbox jobs`"
        )
    result = jd.result()
    info = jd.run_info()
    data = {
        "key": key,
        "path": str(jd.path),
        "run": info.model_dump(mode="json") if info else None,
        "result": result.model_dump(mode="json") if result else None,
        "log_tail": jd.log_tail(tail),
    }
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]{key}[/bold]  {jd.path}")
    if result is not None:
        console.print(
            f"status: {result.status}  exit: {result.exit_code}  wall: {result.wall_s:.1f} s", markup=False
        )
        if result.reason:
            console.print(f"reason: {result.reason}", markup=False)
        console.print_json(result.provenance.model_dump_json())
    else:
        console.print("status: running" if info else "status: created")
    console.print(data["log_tail"], markup=False, highlight=False)

"""`medloop hypotheses`: add a code hypothesis to a campaign; list code modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medloop.cli.common import console, print_json, settings

app = typer.Typer(help="Code hypotheses: add a module to a campaign, list modules.", no_args_is_help=True)


def read_module(path: Path) -> str:
    """The source of a module file, or one clear SpecError (missing, not a regular file,
    too big, not UTF-8). Reads at most one byte past the limit."""
    from medloop.core.code import MAX_SOURCE_BYTES
    from medloop.core.errors import SpecError

    if not path.is_file():
        raise SpecError(f"--code {path}: not a readable regular file")
    with path.open("rb") as fh:
        data = fh.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise SpecError(f"--code {path}: larger than the {MAX_SOURCE_BYTES}-byte limit of a code module")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"--code {path}: not UTF-8 text (byte {exc.start})") from None


@app.command("add")
def add(
    campaign: str = typer.Option(..., "--campaign", help="The campaign to test it in (cmp_...)"),
    code: Path = typer.Option(..., "--code", help="Python module implementing the extension point"),
    point: str = typer.Option(..., "--point", help="Extension point: loss, augmentation, network, ..."),
    rationale: str = typer.Option("", "--rationale", help="Why it should help (shown to reviewers)"),
    name: str | None = typer.Option(None, "--name", help="Short name (default: user-point-hash)"),
    as_json: bool = typer.Option(False, "--json", help="The stored module record as JSON"),
) -> None:
    """Check a code module and queue it for the campaign's next cycle, where it is tested
    against the incumbent like any hypothesis (it runs only in the sandbox)."""
    from medloop.core.store import open_store
    from medloop.engine.code import add_code_hypothesis

    source = read_module(code)
    store = open_store(settings().store_url)
    module = add_code_hypothesis(
        store, campaign, source, point=point, author=settings().user, rationale=rationale, name=name
    )
    if as_json:
        print_json(module.model_dump(mode="json"))
        return
    trust = "shipped with medloop" if module.trusted else "untrusted: runs in the docker sandbox"
    console.print(f"code module {module.sha256[:12]} ({module.name}, {module.point}) queued for {campaign}")
    console.print(f"  {trust}; resume the campaign to test it", markup=False)
    for flag in module.flags:
        console.print(f"  flagged: {flag}", markup=False)


@app.command("code")
def list_code(
    campaign: str | None = typer.Option(
        None, "--campaign", help="Only this campaign's modules and shipped ones"
    ),
    as_json: bool = typer.Option(False, "--json", help="Records with smoke outcome, as JSON"),
) -> None:
    """List code modules in the knowledge base: hash, point, name, author, smoke outcome."""
    from medloop.core.store import open_store

    store = open_store(settings().store_url)
    rows: list[dict[str, Any]] = []
    for m in store.code.list(campaign_id=campaign):
        state = store.code.state(m.sha256)
        rows.append({**m.model_dump(mode="json", exclude={"diff"}), **state.model_dump()})
    if as_json:
        print_json({"modules": rows})
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} code module(s)")
    for col in ("sha256", "point", "name", "author", "smoke", "campaign"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["sha256"][:12], r["point"], r["name"], r["author"], r["smoke"], r["campaign_id"] or "any"
        )
    console.print(table)

"""`medloop claims`: List and inspect claims in the knowledge base."""

from __future__ import annotations

from typing import Any, get_args

import typer

from medloop.cli.common import console, print_json, settings

app = typer.Typer(help="List and inspect claims in the knowledge base.", no_args_is_help=True)

TIER_STYLE = {
    "validated": "bold green",
    "reproduced": "green",
    "supported": "cyan",
    "refuted": "magenta",
    "inconclusive": "yellow",
    "external": "blue",
    "quarantined": "bold red",
    "rejected": "red",
    "superseded": "dim",
    "proposed": "dim",
}


def _store() -> Any:
    from medloop.core.store import open_store

    return open_store(settings().db_path)


def _effect(claim: Any) -> tuple[str, str]:
    e = claim.effect
    if e is None:
        return "-", "-"
    return f"{e.estimate:+.4f} [{e.ci_low:+.4f}, {e.ci_high:+.4f}]", f"{e.p_adjusted:.3g}"


@app.command("list")
def list_claims(
    tier: list[str] = typer.Option(None, "--tier", help="Only these tiers (repeatable)"),
    dataset: str = typer.Option(None, "--dataset", help="Only claims about this dataset name"),
    campaign: str = typer.Option(None, "--campaign", help="Only claims from this campaign id"),
    outcome: str = typer.Option(None, "--outcome", help="Only claims about this metric"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    after: str = typer.Option(None, "--after", help="Cursor: the last id of the previous page"),
    as_json: bool = typer.Option(False, "--json", help="Claims with evidence resolved to trials, as JSON"),
) -> None:
    """List claims (newest ids last), with their tier, effect and dataset."""
    from medloop.core.errors import SpecError
    from medloop.core.records import Tier
    from medloop.knowledge.provenance import claim_view

    tiers = list(tier or [])
    known = set(get_args(Tier))
    bad = [t for t in tiers if t not in known]
    if bad:
        raise SpecError(f"--tier {bad[0]!r} is not a tier", hint=f"tiers: {', '.join(sorted(known))}")
    store = _store()
    page = store.list_claims(
        tiers=tiers or None, dataset=dataset, outcome=outcome, campaign_id=campaign, after=after, limit=limit
    )
    if as_json:
        print_json({"claims": [claim_view(store, c) for c in page], "next_cursor": page.next_cursor})
        return
    from rich.table import Table

    table = Table(title=f"{len(page)} claim(s)", show_lines=False)
    for col in ("id", "tier", "outcome", "effect [CI]", "p_adj", "dataset", "statement"):
        table.add_column(col, overflow="fold" if col == "statement" else "ellipsis")
    for c in page:
        eff, p = _effect(c)
        style = TIER_STYLE.get(c.tier, "")
        table.add_row(c.id, f"[{style}]{c.tier}[/]", c.outcome, eff, p, c.context.dataset, c.statement)
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --after {page.next_cursor}")


@app.command("show")
def show(
    claim_id: str = typer.Argument(..., help="Claim id (clm_...)"),
    as_json: bool = typer.Option(False, "--json", help="Full record with evidence, relations, history"),
) -> None:
    """Show one claim: statement, effect, evidence resolved to trials, relations, history."""
    from medloop.knowledge.provenance import claim_view

    store = _store()
    view = claim_view(store, store.get_claim(claim_id), history=True)
    if as_json:
        print_json(view)
        return
    eff, p = _effect(store.get_claim(claim_id))
    style = TIER_STYLE.get(view["tier"], "")
    console.print(f"[bold]{view['id']}[/]  [{style}]{view['tier']}[/]  author {view['author']}")
    console.print(view["statement"], markup=False)
    ctx = view["context"]
    console.print(f"outcome {view['outcome']}  effect {eff}  p_adj {p}")
    console.print(
        f"dataset {ctx['dataset']} ({ctx['dataset_checksum'][:12]})  campaign {view['campaign_id']}"
    )
    console.print("[bold]evidence[/]")
    for ev in view["evidence"]:
        prov = ev.get("provenance") or {}
        extra = (
            f" seed {prov.get('seed')} spec {str(prov.get('spec_hash'))[:12]} code {prov.get('code_version')}"
            if ev["kind"] == "trial"
            else ""
        )
        console.print(f"  {ev['kind']} {ev['ref_id']} ({ev['role']}){extra}", markup=False)
    if view["relations"]:
        console.print("[bold]relations[/]")
        for rel in view["relations"]:
            arrow = "->" if rel["direction"] == "out" else "<-"
            console.print(f"  {arrow} {rel['kind']} {rel['claim_id']}", markup=False)
    console.print("[bold]history[/]")
    for h in view["history"]:
        console.print(f"  {h['ts']} {h['actor']} {h['action']} {h['detail']}", markup=False)

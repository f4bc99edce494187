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

    return open_store(settings().store_url)


def _effect(claim: Any) -> tuple[str, str]:
    e = claim.effect
    if e is None:
        return "-", "-"
    return f"{e.estimate:+.4f} [{e.ci_low:+.4f}, {e.ci_high:+.4f}]", f"{e.p_adjusted:.3g}"


def check_tiers(tiers: list[str] | None) -> list[Any]:
    """Tier names from the command line, or a one-line error listing the valid ones."""
    from medloop.core.errors import SpecError
    from medloop.core.records import Tier

    known = set(get_args(Tier))
    bad = [t for t in tiers or [] if t not in known]
    if bad:
        raise SpecError(f"--tier {bad[0]!r} is not a tier", hint=f"tiers: {', '.join(sorted(known))}")
    return list(tiers or [])


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
    from medloop.knowledge.provenance import claim_view

    tiers = check_tiers(tier)
    store = _store()
    page = store.claims.list(
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
    view = claim_view(store, store.claims.get(claim_id), history=True)
    if as_json:
        print_json(view)
        return
    eff, p = _effect(store.claims.get(claim_id))
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


@app.command()
def conflicts(
    show_all: bool = typer.Option(False, "--all", help="Include pairs where a claim is no longer live"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Claims about the same change, metric and comparable data with opposite significant effects."""
    from medloop.knowledge.provenance import conflicts as find

    found = find(_store(), include_inactive=show_all)
    if as_json:
        print_json(
            [
                {
                    "a": c.a.id,
                    "b": c.b.id,
                    "intervention": c.intervention,
                    "outcome": c.outcome,
                    "active": c.active,
                    "a_effect": c.a.effect.model_dump(mode="json") if c.a.effect else None,
                    "b_effect": c.b.effect.model_dump(mode="json") if c.b.effect else None,
                    "a_dataset": c.a.context.dataset,
                    "b_dataset": c.b.context.dataset,
                }
                for c in found
            ]
        )
        return
    if not found:
        console.print("no conflicting claims")
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} conflict(s)")
    for col in ("intervention", "outcome", "claim", "tier", "effect [CI]", "dataset"):
        table.add_column(col)
    for c in found:
        for i, claim in enumerate((c.a, c.b)):
            eff, _ = _effect(claim)
            table.add_row(
                c.intervention if i == 0 else "",
                c.outcome if i == 0 else "",
                claim.id,
                claim.tier,
                eff,
                claim.context.dataset,
            )
    console.print(table)


@app.command()
def review(
    claim_id: str = typer.Argument(..., help="Claim id"),
    decision: str = typer.Argument(..., help="validated or rejected"),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a reviewer's decision as MEDLOOP_USER. The lifecycle refuses your own campaigns' claims."""
    from medloop.core.errors import SpecError
    from medloop.knowledge.lifecycle import transition

    if decision not in ("validated", "rejected"):
        raise SpecError(f"decision {decision!r} is not validated or rejected")
    claim = transition(_store(), claim_id, decision, actor=settings().user, role="reviewer", reason=reason)  # type: ignore[arg-type]
    if as_json:
        print_json(claim.model_dump(mode="json"))
        return
    console.print(f"{claim.id} is now {claim.tier}", markup=False)


@app.command()
def requests(
    status: str = typer.Option("open", "--status", help="open, done, withdrawn or all"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Reproduction requests reviewers filed (web API or dashboard)."""
    from medloop.core.errors import SpecError

    if status not in ("open", "done", "withdrawn", "all"):
        raise SpecError(f"--status {status!r} is not open, done, withdrawn or all")
    rows = _store().reviews.list(status=None if status == "all" else status)
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} {'' if status == 'all' else status + ' '}reproduction request(s)")
    for col in ("id", "claim", "status", "by", "created", "rationale"):
        table.add_column(col, overflow="fold" if col == "rationale" else "ellipsis")
    for r in rows:
        table.add_row(r.id, r.claim_id, r.status, r.actor, r.created_at[:19], r.rationale)
    console.print(table, markup=False)


@app.command()
def reproduce(
    request_ids: list[str] = typer.Argument(None, help="Request ids (rrq_...); default: every open one"),
    claim: str = typer.Option(None, "--claim", help="Only the open requests on this claim"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run reviewers' reproduction requests: both arms of the claim's hypothesis on fresh
    seeds, compared on the host; the result is evidence on the claim (a supported claim
    becomes reproduced or inconclusive). Exit 1 if a request could not run to its end."""
    from medloop import bootstrap
    from medloop.agents.requested import run_request

    services = bootstrap.campaign_services(settings(), charge_campaign=False)
    store: Any = services.store
    ids = list(request_ids or [])
    if not ids:
        ids = [r.id for r in store.reviews.list(claim_id=claim, status="open")]
    elif claim:
        ids = [i for i in ids if store.reviews.get(i).claim_id == claim]
    results = []
    for request_id in ids:
        store.reviews.get(request_id)  # an unknown id: one line, before any work
        if not as_json:
            console.print(f"{request_id}: running", markup=False)
        result = run_request(
            services,
            request_id,
            on_trial=None
            if as_json
            else lambda t: console.print(
                f"  {t.id} seed {t.spec.seed} {t.status}"
                + (f" {t.result.objective:.4f}" if t.result and t.result.objective is not None else ""),
                markup=False,
            ),
        )
        results.append(result)
        if not as_json:
            est = "-" if result.estimate is None else f"{result.estimate:+.4f}"
            console.print(
                f"{request_id}: {result.outcome} (effect {est}); claim {result.claim_id} "
                f"{result.tier_before} -> {result.tier_after}",
                markup=False,
            )
    if as_json:
        print_json([r.model_dump(mode="json") for r in results])
    elif not ids:
        console.print("no open reproduction requests", markup=False)
    if any(r.outcome == "failed" for r in results):
        raise typer.Exit(1)

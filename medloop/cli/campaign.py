"""`medloop campaign`: run, inspect, pause, resume and stop research campaigns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from medloop.cli.common import console, print_json, settings

app = typer.Typer(help="Run, inspect and resume research campaigns.", no_args_is_help=True)


def _runner(verbose: bool = False) -> Any:
    from medloop import bootstrap
    from medloop.cli.progress import CampaignConsole

    return bootstrap.campaign_runner(settings(), CampaignConsole(console, verbose=verbose))


def _show_final(campaign_id: str, runner: Any) -> None:
    from medloop.cli.progress import final_table, incumbent_table, test_report_table

    store = runner.s.store
    campaign = store.campaigns.get(campaign_id)
    console.print()
    console.print(final_table(campaign, store.cycles.hypotheses(campaign_id)))
    console.print(incumbent_table(campaign))
    report = test_report_table(campaign)
    if report is not None:
        console.print(report)
    reason = campaign.summary.get("stop_reason")
    console.print(f"status: {campaign.status}" + (f" ({reason})" if reason else ""))
    waiting = campaign.summary.get("waiting_for")
    if campaign.status == "paused" and waiting == "review":
        console.print(f"waiting for a review: see and decide with `medloop campaign review {campaign_id}`")
    elif campaign.status == "paused" and waiting:
        console.print(f"waiting for: {waiting}; continue with `medloop campaign resume {campaign_id}`")


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="Campaign YAML (see examples/quickstart.yaml)"),
    owner: str | None = typer.Option(None, help="Who owns the campaign (default: MEDLOOP_USER)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every trial"),
) -> None:
    """Validate a campaign file, create the campaign and run it to the end."""
    from medloop.core.specs import load_campaign_spec

    spec = load_campaign_spec(file)  # fails with one line before anything is written
    if spec.executor.kind != "table" and spec.task == "audio":
        from medloop.experiments.dataset.audio_manifest import read_manifest

        read_manifest(spec.dataset.path)  # a broken manifest fails here, before any record
    elif spec.executor.kind != "table":
        from medloop.experiments.dataset import read_dataset

        read_dataset(spec.dataset.path)  # a broken dataset fails here, before any record
    runner = _runner(verbose)
    campaign = runner.create(spec, owner=owner or settings().user)
    console.print(f"campaign [bold]{campaign.id}[/bold] ({spec.name}): {spec.goal}")
    runner.run(campaign.id)
    _show_final(campaign.id, runner)


def _read_decisions(path: Path) -> dict[str, Any]:
    from medloop.core.errors import SpecError

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: decisions file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SpecError(f'{path}: expected {{"claim_id": {{"action": ..., "reviewer": ..., "reason": ...}}}}')
    return data


@app.command("resume")
def resume(
    campaign_id: str,
    decisions: Path | None = typer.Option(None, help="JSON file of review decisions"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Continue a campaign after a crash, a pause or a review."""
    payload = _read_decisions(decisions) if decisions else None
    runner = _runner(verbose)
    runner.resume(campaign_id, payload)
    _show_final(campaign_id, runner)


@app.command("pause")
def pause(campaign_id: str) -> None:
    """Ask a running campaign to pause at the next cycle boundary."""
    from medloop import bootstrap
    from medloop.agents.runner import request

    st = settings()
    request(bootstrap.store(st), campaign_id, "pause", actor=st.user)
    console.print(f"{campaign_id}: pause requested; it pauses at the next cycle boundary")


@app.command("stop")
def stop(campaign_id: str) -> None:
    """Ask a campaign to stop after the current cycle and write its final report."""
    from medloop import bootstrap
    from medloop.agents.runner import request

    st = settings()
    before = bootstrap.store(st).campaigns.get(campaign_id).status
    request(bootstrap.store(st), campaign_id, "stop", actor=st.user)
    tail = (
        f"; it is {before}: `medloop campaign resume {campaign_id}` finishes it" if before == "paused" else ""
    )
    console.print(f"{campaign_id}: stop requested; it stops after the current cycle and reports{tail}")


@app.command("status")
def status(
    campaign_id: str,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
) -> None:
    """Where a campaign stands: status, cycle, trials, budget used, what it waits for."""
    from medloop import bootstrap

    st = settings()
    store = bootstrap.store(st)
    campaign = store.campaigns.get(campaign_id)
    spent = bootstrap.spent_budget(store, campaign_id)
    cycles = store.cycles.list(campaign_id)
    budget = campaign.spec.budget
    view = {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "owner": campaign.owner,
        "cycles_done": len(cycles),
        "max_cycles": budget.max_cycles,
        "trials": len(store.trials.list(campaign_id=campaign_id, limit=100_000).items),
        "max_trials": budget.max_trials,
        "jobs_run": spent["trials"],
        "wall_s": round(spent["wall_s"], 1),
        "max_wall_s": budget.max_wall,
        "gpu_hours": round(spent["gpu_hours"], 4),
        "max_gpu_hours": budget.max_gpu_hours,
        "llm": campaign.summary.get("planner", {}),
        "baseline_objective": campaign.baseline_objective,
        "incumbent_objective": campaign.incumbent_objective,
        "waiting_for": campaign.summary.get("waiting_for"),
        "stop_reason": campaign.summary.get("stop_reason"),
        "error": campaign.summary.get("error"),
    }
    if as_json:
        print_json(view)
        return
    for key, value in view.items():
        if value not in (None, {}, ""):
            console.print(f"{key:>19}: {value}", markup=False, highlight=False)


@app.command("list")
def list_(
    status: str | None = typer.Option(None, help="Only campaigns with this status"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
) -> None:
    """List campaigns, newest first."""
    from rich.table import Table

    from medloop import bootstrap

    page = bootstrap.store(settings()).campaigns.list(status=status, limit=1000)
    if as_json:
        print_json(
            [
                {
                    "id": c.id,
                    "name": c.name,
                    "status": c.status,
                    "owner": c.owner,
                    "created_at": c.created_at,
                    "baseline_objective": c.baseline_objective,
                    "incumbent_objective": c.incumbent_objective,
                }
                for c in page
            ]
        )
        return
    table = Table()
    for col in ("id", "name", "status", "created", "baseline", "incumbent"):
        table.add_column(col)
    for c in page:
        table.add_row(
            c.id,
            c.name,
            c.status,
            c.created_at[:19],
            "-" if c.baseline_objective is None else f"{c.baseline_objective:.4f}",
            "-" if c.incumbent_objective is None else f"{c.incumbent_objective:.4f}",
        )
    console.print(table)


@app.command("show")
def show(
    campaign_id: str,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
) -> None:
    """Show a campaign: cycles, hypotheses with verdicts, claims used, the incumbent."""
    from medloop import bootstrap
    from medloop.cli.progress import final_table, incumbent_table

    store = bootstrap.store(settings())
    campaign = store.campaigns.get(campaign_id)
    hypotheses = store.cycles.hypotheses(campaign_id)
    cycles = store.cycles.list(campaign_id)
    if as_json:
        print_json(
            {
                "campaign": campaign.model_dump(mode="json"),
                "cycles": cycles,
                "hypotheses": [h.model_dump(mode="json") for h in hypotheses],
                "claims_used": sorted({c for cy in cycles for c in cy.get("retrieved", [])}),
                "trials": len(store.trials.list(campaign_id=campaign_id, limit=100_000).items),
            }
        )
        return
    console.print(f"[bold]{campaign.id}[/bold] {campaign.name} ({campaign.status}), owner {campaign.owner}")
    console.print(f"goal: {campaign.spec.goal}")
    for cy in cycles:
        used = ", ".join(cy.get("retrieved", [])) or "none"
        console.print(f"cycle {cy['idx']}: claims used for planning: {used}")
    for h in hypotheses:
        if h.evidence_ids:
            console.print(f"  {h.id} relied on {', '.join(h.evidence_ids)}")
    console.print(final_table(campaign, hypotheses))
    console.print(incumbent_table(campaign))


@app.command("review")
def review(
    campaign_id: str,
    validate: list[str] = typer.Option([], "--validate", help="Claim id to validate (repeatable)"),
    reject: list[str] = typer.Option([], "--reject", help="Claim id to reject (repeatable)"),
    reason: str = typer.Option("", help="Why (required with --validate/--reject)"),
    reviewer: str | None = typer.Option(None, help="Reviewer name (default: MEDLOOP_USER)"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
) -> None:
    """Show the claims a paused campaign waits on, or decide them and resume."""
    from medloop.core.errors import SpecError

    runner = _runner()
    pending = runner.pending_interrupt(campaign_id)
    if not validate and not reject:
        claims = [runner.s.store.claims.get(c) for c in (pending or {}).get("claims", [])]
        if as_json:
            print_json(
                {
                    "waiting_for": (pending or {}).get("kind"),
                    "claims": [c.model_dump(mode="json") for c in claims],
                }
            )
            return
        if not claims:
            console.print(f"{campaign_id} is not waiting for a review")
            return
        for c in claims:
            console.print(f"[bold]{c.id}[/bold] ({c.tier}) {c.statement}")
        console.print(f"decide with: medloop campaign review {campaign_id} --validate ID --reason '...'")
        return
    if not reason.strip():
        raise SpecError("--reason is required: every review decision records why")
    who = reviewer or settings().user
    decisions = {c: {"action": "validate", "reviewer": who, "reason": reason} for c in validate}
    decisions |= {c: {"action": "reject", "reviewer": who, "reason": reason} for c in reject}
    runner.review(campaign_id, decisions)
    _show_final(campaign_id, runner)

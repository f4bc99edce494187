"""Helpers several tools share: reading paths the caller names, and per-caller budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field

from medloop.core.errors import BudgetExhausted, PermissionDenied, SpecError
from medloop.tools.context import ToolContext
from medloop.tools.registry import ToolModel

# Resources charged per caller (tool_charges.resource).
TRIALS, GPU_HOURS, CAMPAIGNS = "trials", "gpu_hours", "campaigns"


def resolve_path(ctx: ToolContext, raw: str, *, what: str, must_be_dir: bool = True) -> Path:
    """An absolute path for a folder (or, with must_be_dir=False, a file) the caller
    named, inside the configured data roots.

    With data roots set, a path outside them, a missing path and a path of the wrong kind
    get one and the same error naming only what the caller typed: a caller learns nothing
    about the server's files outside the roots (not even whether they exist)."""
    if not raw.strip():
        raise SpecError(f"{what}: empty path", hint="pass the folder's absolute path")
    noun = "folder" if must_be_dir else "file"
    path = Path(raw).expanduser().resolve()
    roots = ctx.limits.roots()
    right_kind = path.is_dir() if must_be_dir else path.is_file()
    if roots:
        inside = any(path == r or r in path.parents for r in roots)
        if not (inside and right_kind):
            raise PermissionDenied(
                f"{what}: {raw} does not exist or lies outside the folders this tool server may read",
                hint=f"name an existing {noun} under {', '.join(str(r) for r in roots)} (MEDLOOP_TOOLS_DATA_ROOTS)",
            )
    elif not right_kind:
        state = f"is not a {noun}" if path.exists() else "does not exist"
        raise SpecError(
            f"{what}: {path} {state}", hint=f"pass an existing {noun} on the tool server's machine"
        )
    return path


def confine_init(ctx: ToolContext, init: object, *, what: str) -> None:
    """A `file:<checkpoint>` init is a path the caller names: it must lie in the data roots
    like any other (scratch and trial:<id> name nothing on disk)."""
    if isinstance(init, str) and init.startswith("file:"):
        resolve_path(ctx, init.removeprefix("file:"), what=what, must_be_dir=False)


class BudgetView(ToolModel):
    """What the caller has used of each budget in the current window."""

    window_hours: float
    trials_used: int
    trials_limit: int
    gpu_hours_used: float
    gpu_hours_limit: float
    campaigns_used: int
    campaigns_limit: int


def window_start(ctx: ToolContext) -> str:
    start = datetime.now(UTC) - timedelta(hours=ctx.limits.window_hours)
    return start.isoformat(timespec="milliseconds")


def budget_view(ctx: ToolContext) -> BudgetView:
    used = ctx.ledger.usage(ctx.caller.name, since=window_start(ctx))
    lim = ctx.limits
    return BudgetView(
        window_hours=lim.window_hours,
        trials_used=round(used.get(TRIALS, 0.0)),
        trials_limit=lim.max_trials,
        gpu_hours_used=round(used.get(GPU_HOURS, 0.0), 4),
        gpu_hours_limit=lim.max_gpu_hours,
        campaigns_used=round(used.get(CAMPAIGNS, 0.0)),
        campaigns_limit=lim.max_campaigns,
    )


def require_budget(ctx: ToolContext, *, trials: int = 0, gpu_hours: float = 0.0, campaigns: int = 0) -> None:
    """Refuse (BudgetExhausted, naming the budget and the numbers) if this call would
    take the caller over a limit. Nothing is charged here."""
    view = budget_view(ctx)
    who = f"caller {ctx.caller.name}"
    window = f"in the last {view.window_hours:g} h"
    if trials and view.trials_used + trials > view.trials_limit:
        raise BudgetExhausted(
            f"{who} has submitted {view.trials_used} of {view.trials_limit} trials {window}; this call needs {trials}",
            hint="submit fewer seeds, reuse finished trials, or ask an operator to raise MEDLOOP_TOOLS_MAX_TRIALS",
        )
    if gpu_hours and view.gpu_hours_used + gpu_hours > view.gpu_hours_limit + 1e-9:
        raise BudgetExhausted(
            f"{who} has used {view.gpu_hours_used:.2f} of {view.gpu_hours_limit:g} GPU-hours {window}; "
            f"this call reserves {gpu_hours:.2f} (GPUs x timeout)",
            hint="lower timeout_s or gpus, or ask an operator to raise MEDLOOP_TOOLS_MAX_GPU_HOURS",
        )
    if campaigns and view.campaigns_used + campaigns > view.campaigns_limit:
        raise BudgetExhausted(
            f"{who} has started {view.campaigns_used} of {view.campaigns_limit} campaigns {window}",
            hint="wait for the window to pass, or ask an operator to raise MEDLOOP_TOOLS_MAX_CAMPAIGNS",
        )


class Budgeted(ToolModel):
    """Mixed into outputs of tools that spend a budget."""

    budget: BudgetView = Field(description="The caller's usage after this call")

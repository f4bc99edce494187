"""The wall-time reserve for the final test-split runs, and how a campaign ends without them.

A campaign touches its test split once, at the end (`finalize`): baseline and incumbent,
retrained on fresh seeds. Those runs must fit in the wall budget, so the search never
starts a cycle it could not finalize: `reflect` stops when the time left, less one more
cycle at the pace measured so far, would not cover the final runs. Both estimates come from
this campaign's own records (median job wall time of its finished trials; mean active
seconds of its cycles), so they follow the machine's real speed, loaded or not.

When the final runs still do not all produce a test result (a budget cut them, a job
failed, the host could not score them), the campaign ends `incomplete`, with the reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from medloop.core.records import Campaign, Trial

# The final runs are few; one slow run must not push them past the budget.
SAFETY = 1.5


def final_runs(campaign: Campaign) -> int:
    """How many trials `finalize` runs: both arms x the validation seeds (one arm when the
    incumbent is still the baseline)."""
    arms = 1 if campaign.baseline == campaign.incumbent else 2
    return arms * campaign.spec.validation.seeds_per_arm


def final_reserve_runs(campaign: Campaign) -> int:
    """Trials the budget keeps for `finalize`: both arms x the validation seeds while the
    incumbent has moved or still may, one arm when it cannot (reproduction off: only a
    reproduced gain moves it, so the final runs test the baseline alone)."""
    v = campaign.spec.validation
    may_move = campaign.baseline != campaign.incumbent or v.reproduction_seeds > 0
    return (2 if may_move else 1) * v.seeds_per_arm


def final_reserve_s(campaign: Campaign, trials: Sequence[Trial]) -> float | None:
    """Seconds to keep for the final runs, from the median wall time of this campaign's
    finished jobs; None before any job finished (nothing measured yet)."""
    walls = [
        t.result.job.wall_s
        for t in trials
        if t.status == "succeeded" and t.result and t.result.job and t.result.job.wall_s > 0
    ]
    if not walls:
        return None
    waves = math.ceil(final_runs(campaign) / campaign.spec.executor.slots)
    return SAFETY * waves * statistics.median(walls)


def cycle_cost_s(cycles: Sequence[dict[str, Any]]) -> float:
    """Mean active seconds per finished cycle (0 before the first)."""
    marks = [float(c.get("active_s", 0.0)) for c in cycles]
    if not marks:
        return 0.0
    steps = [b - a for a, b in zip([0.0, *marks[:-1]], marks, strict=True)]
    return max(0.0, sum(steps) / len(steps))


def reserve_stop_reason(
    campaign: Campaign, active_s: float, trials: Sequence[Trial], cycles: Sequence[dict[str, Any]]
) -> str | None:
    """Why the search must stop now to leave the final runs their time, or None."""
    max_wall = campaign.spec.budget.max_wall
    reserve = final_reserve_s(campaign, trials)
    if max_wall is None or reserve is None:
        return None
    left = max_wall - active_s
    next_cycle = cycle_cost_s(cycles)
    if left >= reserve + next_cycle:
        return None
    return (
        f"wall-time budget: {max(0.0, left):.0f} s of {max_wall:g} s left, kept for the final "
        f"test-split runs (~{reserve:.0f} s) instead of another cycle (~{next_cycle:.0f} s)"
    )


def incomplete_reason(final_trials: Sequence[Trial], scored: set[str]) -> str | None:
    """Why the final comparison lacks test results, or None when every final run has one."""
    missing = [t for t in final_trials if t.id not in scored]
    if not missing:
        return None
    causes: dict[str, int] = {}
    for t in missing:
        result = t.result
        why = (
            (result.split_errors.get("test") or result.error or t.status)
            if result is not None
            else f"{t.status} (no result)"
        )
        causes[why] = causes.get(why, 0) + 1
    listed = "; ".join(f"{why} (x{n})" if n > 1 else why for why, n in causes.items())
    return f"{len(missing)} of {len(final_trials)} final test-split runs have no test result: {listed}"


def cancelled_by_budget(trials: Sequence[Trial]) -> str | None:
    """The budget's reason when every one of these trials that did not succeed was
    cancelled before it could finish (a hypothesis with no evidence either way, not a
    failed one), or None."""
    unfinished = [t for t in trials if t.status != "succeeded"]
    if not unfinished or any(t.status != "cancelled" for t in unfinished):
        return None
    reasons = [t.result.error for t in unfinished if t.result and t.result.error]
    return reasons[0] if reasons else "cancelled before it ran"

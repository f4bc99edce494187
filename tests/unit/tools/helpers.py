"""Builders shared by the tool tests: a replay table with a planted effect, a phantom
dataset, tiny real-trial configs, and tool contexts built through bootstrap."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medloop import bootstrap
from medloop.core.records import Trial
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec
from medloop.core.store import SqlStore
from medloop.engine.base import TrialCallback, TrialRequest, TrialService
from medloop.engine.replay import ReplayTrials, save_table, synthetic_table
from medloop.sandbox.base import EventSink
from medloop.tools.context import Caller, ToolContext, ToolLimits

# The replay table's true effect of loss=dicece over loss=dice on every case.
PLANTED = 0.04
# A real trial that trains for a few optimizer steps on the 2D phantom (seconds of CPU).
TINY = {"iterations": 4, "epoch_iterations": 2, "batch_size": 2, "base_features": 8, "depth": 3}


def replay_table(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "table.json"
    table = synthetic_table(
        space={"loss": ["dice", "dicece"], "lr": [0.001], "augmentation": ["none"]},
        effect=lambda cfg: PLANTED * (cfg["loss"] == "dicece"),
        n_cases=20,
        rng_seed=5,
    )
    save_table(table, path)
    return path


def replay_context(settings: Settings, table: Path, caller: Caller, **limits: Any) -> ToolContext:
    """The bootstrap tool context, with trials answered from `table` instead of trained."""
    store = bootstrap.store(settings)
    ctx = bootstrap.tool_context(settings, caller, store_=store)

    def make(spec: CampaignSpec, campaign_id: str) -> TrialService:
        return ReplayTrials(store, spec, table=table)

    return dataclasses.replace(ctx, make_trials=make, limits=ToolLimits(**limits))


class GatedTrials:
    """A TrialService whose `run` waits for `gate` before delegating: lets a test look at
    the state while trials are queued or running."""

    def __init__(self, inner: TrialService, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.dataset = inner.dataset
        self.spec_for = inner.spec_for
        self.evaluate_test = inner.evaluate_test
        self.close = inner.close

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list[Trial]:
        assert self.gate.wait(30), "test never opened the gate"
        return self.inner.run(campaign_id, requests, on_event=on_event, on_trial=on_trial)


def gated(ctx: ToolContext, gate: threading.Event) -> ToolContext:
    inner = ctx.make_trials
    return dataclasses.replace(ctx, make_trials=lambda spec, cid: GatedTrials(inner(spec, cid), gate))  # type: ignore[arg-type]


def store_of(ctx: ToolContext) -> SqlStore:
    assert isinstance(ctx.store, SqlStore)
    return ctx.store

"""The final test-split runs under a budget (issue 14 item 12): the search keeps their
measured cost in reserve and stops early; when the budget still cuts them, the campaign
ends `incomplete` with the reason (never `completed` with no test result), and a
hypothesis whose trials the budget cancelled is `cancelled (budget)`, not `failed`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medloop.agents.budget import cycle_cost_s, final_reserve_s, reserve_stop_reason
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.records import JobResult, Provenance, Trial, TrialResult
from medloop.core.specs import CampaignSpec
from medloop.core.store import SqlStore, open_store
from medloop.engine.base import FINAL_STATUSES, TrialCallback, TrialRequest
from medloop.engine.replay import ReplayTrials
from medloop.sandbox.base import EventSink
from tests.fakes import FakeKnowledge
from tests.unit.agents.test_replay_campaign import make_spec, table  # noqa: F401 - fixture

CUT = "campaign budget: wall time of 480 s is spent"


class TimedReplay(ReplayTrials):
    """Replayed outcomes with the job wall time a real run had, and the trials `cut`
    picks cancelled by the budget, as the scheduler records them."""

    def __init__(
        self, store: SqlStore, spec: CampaignSpec, *, wall_s: float, cut: Callable[[TrialRequest], bool]
    ) -> None:
        assert spec.executor.table is not None
        super().__init__(store, spec, table=spec.executor.table)
        self.wall_s, self.cut = wall_s, cut

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list[Trial]:
        for req in requests:
            fresh = Trial(
                id=req.trial_id,
                campaign_id=campaign_id,
                hypothesis_id=req.hypothesis_id,
                arm=req.arm,
                spec=req.spec,
                spec_hash=req.spec.spec_hash(),
            )
            self.store.trials.put(fresh)  # the design node may have stored it already
            if self.cut(req) and self.store.trials.get(req.trial_id).status not in FINAL_STATUSES:
                cancelled = TrialResult(
                    trial_id=req.trial_id, spec_hash=fresh.spec_hash, status="cancelled", error=CUT
                )
                self.store.trials.set_result(req.trial_id, cancelled)
        out = []
        for trial in super().run(campaign_id, requests, on_event=on_event, on_trial=on_trial):
            if trial.result is not None and trial.status == "succeeded" and trial.result.job is None:
                trial = self.store.trials.set_result(
                    trial.id, trial.result.model_copy(update={"job": _job(self.wall_s)})
                )
            out.append(trial)
        return out


def _job(wall_s: float) -> JobResult:
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="a", ended_at="b")
    return JobResult(
        key="k", status="succeeded", exit_code=0, wall_s=wall_s, out_dir=Path("/x"), provenance=prov
    )


def _runner(
    tmp_path: Path, store: SqlStore, *, wall_s: float, cut: Callable[[TrialRequest], bool]
) -> CampaignRunner:
    services = CampaignServices(
        store=store,
        knowledge=FakeKnowledge(store),
        make_trials=lambda spec, _cid: TimedReplay(store, spec, wall_s=wall_s, cut=cut),  # type: ignore[arg-type]
        make_planner=lambda spec: OfflinePlanner(),
        checkpoints=local_checkpoints(tmp_path / "ckpt.sqlite"),
    )
    return CampaignRunner(services)


def test_the_search_stops_to_keep_time_for_the_final_runs(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store = open_store(tmp_path / "m.db")
    # Each job took 400 s: the final runs on one slot (3 or 6, x1.5) need 1800 s or more,
    # more than the 1000 s budget leaves after the first cycle; without the reserve the
    # search would go on for more cycles and the budget would cut the final runs.
    runner = _runner(tmp_path, store, wall_s=400.0, cut=lambda req: False)
    campaign = runner.create(make_spec(table, max_wall=1000), owner="alice")
    done = runner.run(campaign.id)
    assert done.status == "completed"
    assert "kept for the final test-split runs" in done.summary["stop_reason"]
    assert done.summary["cycles"] == 1  # max_cycles is 4
    assert done.summary["test"]["incumbent"]["objective"] is not None


def test_final_runs_cut_by_the_budget_leave_the_campaign_incomplete(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store = open_store(tmp_path / "m.db")
    runner = _runner(tmp_path, store, wall_s=1.0, cut=lambda req: req.arm == "final")
    campaign = runner.create(make_spec(table), owner="alice")
    done = runner.run(campaign.id)
    assert done.status == "incomplete"
    assert done.summary["incomplete"].startswith("6 of 6 final test-split runs have no test result")
    assert CUT in done.summary["incomplete"]
    assert done.summary["test"]["incumbent"]["objective"] is None
    actions = [e.action for e in store.audit.list(object_id=campaign.id)]
    assert "campaign.incomplete" in actions and "campaign.complete" not in actions


def test_a_hypothesis_whose_trials_the_budget_cancelled_is_not_failed(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store = open_store(tmp_path / "m.db")
    runner = _runner(tmp_path, store, wall_s=1.0, cut=lambda req: req.arm == "treatment")
    campaign = runner.create(make_spec(table, max_cycles=1), owner="alice")
    runner.run(campaign.id)
    hyps = store.cycles.hypotheses(campaign.id)
    assert hyps and all(h.verdict == "cancelled" for h in hyps)
    assert all(h.analysis["note"] == f"cancelled (budget): {CUT}" for h in hyps)


def test_reserve_estimates_follow_measured_durations(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store = open_store(tmp_path / "m.db")
    runner = _runner(tmp_path, store, wall_s=1.0, cut=lambda req: False)
    campaign = runner.create(make_spec(table, max_wall=1000), owner="alice")
    assert final_reserve_s(campaign, []) is None  # nothing measured: no reserve invented
    assert reserve_stop_reason(campaign, 10.0, [], []) is None
    assert cycle_cost_s([{"active_s": 100.0}, {"active_s": 300.0}]) == 150.0
    cycles: list[dict[str, Any]] = [{"active_s": 100.0}]
    trial = Trial(
        id="t",
        campaign_id=campaign.id,
        hypothesis_id=None,
        arm="control",
        spec=_spec_of(runner, campaign.id),
        spec_hash="h",
        status="succeeded",
        result=TrialResult(trial_id="t", spec_hash="h", status="succeeded", job=_job(40.0)),
    )
    # Baseline == incumbent: one arm x 3 seeds on one slot = 3 x 40 s x 1.5 = 180 s.
    assert final_reserve_s(campaign, [trial]) == 180.0
    assert reserve_stop_reason(campaign, 700.0, [trial], cycles) is None  # 300 left >= 180 + 100
    why = reserve_stop_reason(campaign, 750.0, [trial], cycles)
    assert why is not None and "250 s of 1000 s left" in why


def _spec_of(runner: CampaignRunner, campaign_id: str) -> Any:
    campaign = runner.s.store.campaigns.get(campaign_id)
    service = runner.s.make_trials(campaign.spec, campaign_id)
    return service.spec_for(campaign.spec.baseline_config(None), 0)

"""Create, run, pause, resume and stop campaigns (the agents' public API).

A campaign is one LangGraph thread (thread_id = campaign id) checkpointed (SQLite or Postgres) with
durability="sync", so `resume` continues after any crash from the last finished node.
Pausing is an `interrupt()` at the next cycle boundary; a human review is another.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medloop.agents.graph import build_graph, recursion_limit
from medloop.agents.nodes import CampaignNodes
from medloop.agents.services import CampaignServices, EventCallback
from medloop.agents.state import CampaignState
from medloop.core.errors import ConflictError, DiskFull, SpecError
from medloop.core.ids import new_id
from medloop.core.records import Campaign
from medloop.core.specs import CampaignSpec
from medloop.core.store import Store


class CampaignRunner:
    def __init__(self, services: CampaignServices, on_event: EventCallback | None = None) -> None:
        self.s = services
        self.on_event = on_event

    # ------------------------------------------------------------ lifecycle

    def create(self, spec: CampaignSpec, *, owner: str, started_by: str | None = None) -> Campaign:
        """A new campaign. `started_by`: who ran the command, when not the owner; they may
        not review its claims either."""
        if self.s.preflight is not None:
            self.s.preflight(spec)  # an unreadable case or unknown site: nothing is recorded
        self.s.make_planner(spec)  # e.g. `planner.kind: llm` without a model fails here, not mid-run
        planned = None
        if spec.baseline_auto:
            if self.s.plan_baseline is None:
                raise SpecError("baseline: auto needs dataset plans, which this deployment cannot make")
            planned = self.s.plan_baseline(spec)
        baseline = spec.baseline_config(planned).model_dump()
        campaign = Campaign(
            id=new_id("cmp"),
            name=spec.name,
            spec=spec,
            owner=owner,
            started_by=started_by if started_by not in (None, owner) else None,
            baseline=baseline,
            incumbent=baseline,
        )
        with self.s.store.transaction():
            self.s.store.campaigns.add(campaign)
            detail = {"name": spec.name} | (
                {"started_by": campaign.started_by} if campaign.started_by else {}
            )
            self.s.store.audit.append(owner, "campaign.create", "campaign", campaign.id, detail)
        return campaign

    def run(self, campaign_id: str) -> Campaign:
        """Run from the start (a new campaign) or continue where it stopped."""
        campaign = self.s.store.campaigns.get(campaign_id)
        if campaign.status in ("completed", "incomplete", "stopped", "failed"):
            raise ConflictError(f"campaign {campaign_id} is {campaign.status}")
        return self._drive(campaign_id, decision=None)

    def resume(self, campaign_id: str, decision: dict[str, Any] | None = None) -> Campaign:
        """Continue after a crash, a pause, or a review interrupt (with the decisions)."""
        return self._drive(campaign_id, decision=decision)

    def review(self, campaign_id: str, decisions: dict[str, dict[str, str]]) -> Campaign:
        """Answer a review interrupt: {claim_id: {"action", "reviewer", "reason"}}."""
        pending = self.pending_interrupt(campaign_id)
        if not pending or pending.get("kind") != "review":
            raise ConflictError(f"campaign {campaign_id} is not waiting for a review")
        unknown = sorted(set(decisions) - set(pending.get("claims", [])))
        if unknown:
            raise ConflictError(
                f"claims {unknown} are not awaiting review in {campaign_id}",
                hint=f"pending: {', '.join(pending.get('claims', []))}",
            )
        return self.resume(campaign_id, decisions)

    def pause(self, campaign_id: str, *, actor: str) -> Campaign:
        return request(self.s.store, campaign_id, "pause", actor=actor)

    def stop(self, campaign_id: str, *, actor: str) -> Campaign:
        return request(self.s.store, campaign_id, "stop", actor=actor)

    def pending_interrupt(self, campaign_id: str) -> dict[str, Any] | None:
        with self._graph() as graph:
            snapshot = graph.get_state(self._config(campaign_id))
            if snapshot.interrupts:
                value = snapshot.interrupts[0].value
                return dict(value) if isinstance(value, dict) else {"value": value}
        return None

    # ------------------------------------------------------------ plumbing

    def _config(self, campaign_id: str) -> dict[str, Any]:
        max_cycles = self.s.store.campaigns.get(campaign_id).spec.budget.max_cycles
        return {"configurable": {"thread_id": campaign_id}, "recursion_limit": recursion_limit(max_cycles)}

    def _drive(self, campaign_id: str, *, decision: dict[str, Any] | None) -> Campaign:
        """Run the graph for one campaign, in this process only (a lock file), recording
        what happened: paused (an interrupt), completed, or failed (with the error)."""
        from langgraph.types import Command

        with self.s.checkpoints.lock(campaign_id), self._graph() as graph:
            config = self._config(campaign_id)
            snapshot = graph.get_state(config)
            campaign = self.s.store.campaigns.get(campaign_id)
            if snapshot.created_at and not snapshot.next:
                raise ConflictError(f"campaign {campaign_id} is {campaign.status}; nothing to resume")
            # A stop asked for while paused is kept; reflect sees it and finalizes. A crash
            # inside `finalize` can leave the store saying completed while the graph still
            # has that node to finish; it re-runs idempotently.
            if campaign.status != "stopping":
                self.s.store.campaigns.update(campaign_id, status="running")
            try:
                if not snapshot.created_at:
                    initial: CampaignState = {
                        "campaign_id": campaign_id,
                        "cycle": 1,
                        "phase": "explore",
                        "no_gain_cycles": 0,
                        "active_s": 0.0,
                        "stop_reason": None,
                    }
                    result = graph.invoke(initial, config, durability="sync")
                elif snapshot.interrupts:
                    result = graph.invoke(Command(resume=decision or {}), config, durability="sync")
                else:
                    result = graph.invoke(None, config, durability="sync")
            except KeyboardInterrupt:
                self._mark(campaign_id, "paused", waiting_for="resume (interrupted)")
                raise
            except Exception as exc:
                full = disk_full(exc)
                if full is None:
                    self._mark(campaign_id, "failed", error=f"{type(exc).__name__}: {exc}")
                    raise
                # A full disk is no verdict on the campaign: pause it, resumable.
                with contextlib.suppress(Exception):  # the store may be on the full disk too
                    self._mark(campaign_id, "paused", waiting_for="resume (the disk was full)", error=full)
                raise DiskFull(
                    f"campaign {campaign_id} paused: {full}",
                    hint=f"free disk space, then `medloop campaign resume {campaign_id}`",
                ) from None
            return self._settle(campaign_id, result)

    def _mark(self, campaign_id: str, status: str, **summary: Any) -> None:
        campaign = self.s.store.campaigns.get(campaign_id)
        self.s.store.campaigns.update(campaign_id, status=status, summary={**campaign.summary, **summary})
        self.s.store.audit.append(self.s.actor, f"campaign.{status}", "campaign", campaign_id, summary)

    @contextmanager
    def _graph(self) -> Iterator[Any]:
        nodes = CampaignNodes(self.s, self.on_event)
        try:
            with self.s.checkpoints.saver() as saver:
                yield build_graph(nodes, saver)
        finally:
            nodes.close()

    def _settle(self, campaign_id: str, result: Any) -> Campaign:
        campaign = self.s.store.campaigns.get(campaign_id)
        interrupts = result.get("__interrupt__") if isinstance(result, dict) else None
        summary = {k: v for k, v in campaign.summary.items() if k not in ("waiting_for", "error")}
        if interrupts:
            value = interrupts[0].value if interrupts else {}
            kind = value.get("kind") if isinstance(value, dict) else None
            self.s.store.campaigns.update(
                campaign_id, status="paused", summary={**summary, "waiting_for": kind or "resume"}
            )
        elif campaign.status in ("completed", "incomplete"):
            self.s.store.campaigns.update(campaign_id, summary=summary)
        return self.s.store.campaigns.get(campaign_id)


def disk_full(exc: BaseException) -> str | None:
    """What filled up, if this error (or one it was raised from) is a full disk."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFull):
            return seen.message
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"no space left on device ({seen.filename or seen.strerror})"
        if "database or disk is full" in str(seen):
            return "the database's disk is full"
        seen = seen.__cause__ or seen.__context__
    return None


def request(store: Store, campaign_id: str, what: str, *, actor: str) -> Campaign:
    """Ask a campaign to pause (at the next cycle boundary) or stop (finish the cycle, then
    report). Used by the CLI, the web API and the tools alike."""
    campaign = store.campaigns.get(campaign_id)
    if campaign.status in ("completed", "incomplete", "stopped", "failed"):
        raise ConflictError(f"campaign {campaign_id} is {campaign.status}; it cannot {what}")
    status = "paused" if what == "pause" else "stopping"
    with store.transaction():
        store.audit.append(actor, f"campaign.{what}", "campaign", campaign_id, {})
        updated: Campaign = store.campaigns.update(campaign_id, status=status)
    return updated

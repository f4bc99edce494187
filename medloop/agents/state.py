"""Graph state: ids and short summaries only (the store holds the records)."""

from __future__ import annotations

from typing import Literal, TypedDict

Phase = Literal["explore", "reproduce"]


class CampaignState(TypedDict, total=False):
    campaign_id: str
    cycle: int
    phase: Phase
    retrieved: list[str]  # claim ids the planner saw this cycle
    hypothesis_ids: list[str]  # this cycle's hypotheses
    screened: list[str]  # config keys this cycle screened (one seed each, no claims)
    reproduce_ids: list[str]  # hypotheses awaiting reproduction
    new_claim_ids: list[str]
    awaiting_review: list[str]  # reproduced hypotheses whose promotion waits for a reviewer
    no_gain_cycles: int
    best_screened: float | None  # best mean objective of any config run so far
    trials_at_best: int  # trials the campaign had used when best_screened last improved
    incumbent_changed: bool
    active_s: float  # wall seconds spent in nodes, charged against the budget
    stop_reason: str | None

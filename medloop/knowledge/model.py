"""The structured knowledge model: what a claim is about, where it came from, and how
claims relate. Pure functions from records to facts, entities and typed edges.

Edges read as sentences, `src kind dst`:
  claim derived_from trial|source|claim|hypothesis|campaign   (provenance)
  hypothesis|trial derived_from campaign
  claim reproduces claim, claim supports|refutes|contradicts claim
  claim|trial about dataset|metric|site|loss|model|augmentation|factor
Quarantine follows `derived_from` backwards: everything derived from a poisoned node.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from medloop.core.ids import canonical_json
from medloop.core.records import (
    Claim,
    ClaimFacts,
    Edge,
    EdgeKind,
    Entity,
    EntityKind,
    Evidence,
    FactorChange,
    Trial,
)
from medloop.core.specs import Scalar
from medloop.core.store import RelatedRow
from medloop.knowledge.lifecycle import REPRODUCTION_ROLES

PROVENANCE: tuple[EdgeKind, ...] = ("derived_from",)
CLAIM_RELATIONS: tuple[EdgeKind, ...] = ("supports", "refutes", "contradicts", "reproduces")
# Config fields that are entities of their own kind; other factors become `factor:` nodes.
NAMED_FACTORS: dict[str, EntityKind] = {"loss": "loss", "model": "model", "augmentation": "augmentation"}
# Fingerprints closer than this (0..1) count as a comparable context.
COMPARABLE_FINGERPRINT = 0.8


def _v(value: Scalar | None) -> str:
    return "*" if value is None else canonical_json(value).strip('"')


def intervention_key(changes: Sequence[FactorChange]) -> tuple[str, int]:
    """An orientation-free key of a change set and the orientation of this one.

    `loss dice->dicece` and `loss dicece->dice` share the key `loss:dice<>dicece` with
    orientations +1 and -1, so their effects compare after multiplying by orientation.
    """
    if not changes:
        return "none", 1
    parts: list[tuple[str, int]] = []
    for ch in sorted(changes, key=lambda c: c.factor):
        a, b = _v(ch.from_value), _v(ch.to_value)
        if ch.from_value is None:
            parts.append((f"{ch.factor}:*->{b}", 1))
        else:
            lo, hi = sorted((a, b))
            parts.append((f"{ch.factor}:{lo}<>{hi}", 1 if (a, b) == (lo, hi) else -1))
    signs = {s for _, s in parts}
    if len(signs) == 1:
        return " & ".join(p for p, _ in parts), signs.pop()
    # Mixed orientations: keep the literal directions, so only identical change sets match.
    return " & ".join(
        f"{c.factor}:{_v(c.from_value)}->{_v(c.to_value)}" for c in sorted(changes, key=lambda c: c.factor)
    ), 1


_STATS = re.compile(r"\s*\([^()]*\d[^()]*\)")


def embedding_text(statement: str) -> str:
    """What is embedded for a claim: its statement without parenthesised statistics
    ("(95% CI +0.01 to +0.03; p=0.002; 24 cases x 3 seeds)"). Those numbers live in the
    structured effect; as text they cost most of the tokens (MiniLM time grows with
    length) and only blur what the claim is about."""
    stripped = _STATS.sub("", statement).strip()
    return stripped or statement


def facts_of(claim: Claim) -> ClaimFacts:
    key, orientation = intervention_key(claim.changes)
    return ClaimFacts(
        claim_id=claim.id,
        task=claim.context.task,
        outcome=claim.outcome,
        dataset=claim.context.dataset,
        dataset_checksum=claim.context.dataset_checksum,
        intervention=key,
        orientation=orientation,
        sign=significant_sign(claim, orientation),
        fingerprint=dict(claim.context.fingerprint),
        factors=sorted({c.factor for c in claim.changes}),
    )


def vector_metadata(facts: ClaimFacts) -> dict[str, Any]:
    """Immutable facts only (tiers change; they are read from SQL at query time)."""
    return {
        "task": facts.task,
        "outcome": facts.outcome,
        "dataset": facts.dataset,
        "factors": facts.factors or ["none"],
    }


def dataset_node(name: str, checksum: str) -> str:
    return f"dataset:{name}@{checksum[:12]}" if checksum else f"dataset:{name}"


def factor_node(factor: str, value: Scalar) -> tuple[str, EntityKind]:
    kind = NAMED_FACTORS.get(factor)
    if kind is not None:
        return f"{kind}:{_v(value)}", kind
    return f"factor:{factor}={_v(value)}", "factor"


def trial_provenance(trial: Trial) -> dict[str, Any]:
    """What a trial entity records: enough to trace a claim to its runs."""
    job = trial.result.job if trial.result else None
    prov = job.provenance if job else None
    return {
        "campaign_id": trial.campaign_id,
        "arm": trial.arm,
        "spec_hash": trial.spec_hash,
        "seed": trial.spec.seed,
        "dataset": trial.spec.dataset.name,
        "dataset_checksum": trial.spec.dataset.checksum,
        "status": trial.status,
        "code_version": prov.code_version if prov else None,
        "code_commit": prov.code_commit if prov else None,
        "image": prov.image if prov else None,
        "runtime": prov.runtime if prov else None,
    }


class Graphlet:
    """Entities and edges contributed by one claim (deduplicated)."""

    def __init__(self) -> None:
        self.entities: dict[str, Entity] = {}
        self.edges: dict[tuple[str, str, str], Edge] = {}

    def entity(self, node_id: str, kind: EntityKind, name: str, **attrs: Any) -> str:
        if node_id not in self.entities:
            # Built from validated records: skip re-validation (hot path of bulk ingest).
            self.entities[node_id] = Entity.model_construct(id=node_id, kind=kind, name=name, attrs=attrs)
        return node_id

    def edge(
        self, src: str, src_kind: EntityKind, kind: EdgeKind, dst: str, dst_kind: EntityKind, **attrs: Any
    ) -> None:
        if (src, dst, kind) not in self.edges:
            self.edges[(src, dst, kind)] = Edge.model_construct(
                src=src, dst=dst, kind=kind, src_kind=src_kind, dst_kind=dst_kind, attrs=attrs, seq=0
            )


def graphlet(claim: Claim, evidence: Sequence[Evidence], trials: dict[str, Trial]) -> Graphlet:
    """Entities and edges of a claim; `trials` are the evidence trials found in the store."""
    g = Graphlet()
    ctx = claim.context
    ds = g.entity(
        dataset_node(ctx.dataset, ctx.dataset_checksum), "dataset", ctx.dataset, checksum=ctx.dataset_checksum
    )
    g.edge(claim.id, "claim", "about", ds, "dataset")
    metric = g.entity(f"metric:{claim.outcome}", "metric", claim.outcome)
    g.edge(claim.id, "claim", "about", metric, "metric")
    for site in ctx.sites:
        g.edge(claim.id, "claim", "about", g.entity(f"site:{site}", "site", site), "site")
    for ch in claim.changes:
        for role, value in (("to", ch.to_value), ("from", ch.from_value)):
            if value is None:
                continue
            node, kind = factor_node(ch.factor, value)
            g.entity(node, kind, f"{ch.factor}={_v(value)}", factor=ch.factor, value=value)
            g.edge(claim.id, "claim", "about", node, kind, role=role)
    if claim.campaign_id:
        g.entity(claim.campaign_id, "campaign", claim.campaign_id)
        g.edge(claim.id, "claim", "derived_from", claim.campaign_id, "campaign")
    if claim.hypothesis_id:
        g.entity(claim.hypothesis_id, "hypothesis", claim.hypothesis_id)
        g.edge(claim.id, "claim", "derived_from", claim.hypothesis_id, "hypothesis")
        if claim.campaign_id:
            g.edge(claim.hypothesis_id, "hypothesis", "derived_from", claim.campaign_id, "campaign")
    for ev in evidence:
        if ev.kind == "trial":
            trial = trials.get(ev.ref_id)
            attrs = trial_provenance(trial) if trial else dict(ev.detail.get("provenance", {}))
            g.entity(ev.ref_id, "trial", ev.ref_id, **attrs)
            g.edge(claim.id, "claim", "derived_from", ev.ref_id, "trial", role=ev.role)
            if trial is not None:
                _trial_edges(g, trial)
        elif ev.kind == "source":
            name = str(ev.detail.get("name", ev.ref_id))
            g.entity(ev.ref_id, "source", name, knowledge_base=ev.detail.get("knowledge_base"))
            g.edge(claim.id, "claim", "derived_from", ev.ref_id, "source", role=ev.role)
        elif ev.kind == "claim" and ev.ref_id != claim.id:
            link: EdgeKind = "reproduces" if ev.role in REPRODUCTION_ROLES else "derived_from"
            g.edge(claim.id, "claim", link, ev.ref_id, "claim", role=ev.role)
    return g


def _trial_edges(g: Graphlet, trial: Trial) -> None:
    ds = trial.spec.dataset
    node = g.entity(dataset_node(ds.name, ds.checksum), "dataset", ds.name, checksum=ds.checksum)
    g.edge(trial.id, "trial", "about", node, "dataset")
    g.entity(trial.campaign_id, "campaign", trial.campaign_id)
    g.edge(trial.id, "trial", "derived_from", trial.campaign_id, "campaign")
    config = trial.spec.config.model_dump(mode="json")
    for factor in NAMED_FACTORS:
        if factor in config:
            fnode, kind = factor_node(factor, config[factor])
            g.entity(fnode, kind, f"{factor}={_v(config[factor])}", factor=factor, value=config[factor])
            g.edge(trial.id, "trial", "about", fnode, kind)


# ---------------------------------------------------------------- comparing claims


def fingerprint_similarity(a: dict[str, float], b: dict[str, float]) -> float | None:
    """0..1 over shared keys (1 - mean relative difference) times key overlap; None if
    either side has no fingerprint."""
    if not a or not b:
        return None
    shared = [k for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])]
    if not shared:
        return 0.0
    diffs = [abs(a[k] - b[k]) / (abs(a[k]) + abs(b[k]) + 1e-12) for k in shared]
    overlap = len(shared) / len(set(a) | set(b))
    return max(0.0, 1.0 - sum(diffs) / len(diffs)) * overlap


def significant_sign(claim: Claim, orientation: int) -> int:
    """+1/-1: the canonical direction of a significant effect; 0 if not significant."""
    e = claim.effect
    if e is None or e.p_adjusted > e.alpha or (e.ci_low <= 0.0 <= e.ci_high):
        return 0
    return orientation * (1 if e.estimate > 0 else -1)


class Comparable(Protocol):
    @property
    def task(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def dataset_checksum(self) -> str: ...
    @property
    def fingerprint(self) -> dict[str, float]: ...


def comparable(a: Comparable, b: Comparable) -> bool:
    """Same task and outcome, and the same dataset or similar fingerprints."""
    if a.task != b.task or a.outcome != b.outcome:
        return False
    if a.dataset_checksum and a.dataset_checksum == b.dataset_checksum:
        return True
    sim = fingerprint_similarity(a.fingerprint, b.fingerprint)
    if sim is None:
        return a.dataset == b.dataset
    return sim >= COMPARABLE_FINGERPRINT


def relation(new: ClaimFacts, new_tier: str, new_campaign: str | None, old: RelatedRow) -> EdgeKind | None:
    """How a new claim bears on an earlier one about the same intervention, if at all.
    Signs are canonical (orientation applied), so reversed change sets compare."""
    if new.claim_id == old.claim_id or not comparable(new, old):
        return None
    if new.sign and old.sign:
        if new.sign != old.sign:
            return "contradicts"
        return "supports" if new_campaign != old.campaign_id else None
    if old.sign and new_tier == "refuted":
        return "refutes"
    return None

"""Store records -> what the API returns and the dashboard and reports show. One place,
so the three agree. Read-only: nothing here changes state."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medloop.core import safe_tree
from medloop.core.errors import NotFoundError
from medloop.core.records import AuditEntry, Campaign, Claim, Hypothesis, SplitEvaluation, Trial
from medloop.core.store import Store
from medloop.core.store.base import TrialListing
from medloop.engine.launcher import CampaignProcesses
from medloop.sandbox.base import job_key
from medloop.web import schemas as S
from medloop.web.errors import BadRequest

CLAIM_RELATIONS = ("supports", "refutes", "contradicts", "reproduces")
MAX_ARTIFACTS = 500


def finite(value: Any) -> float | None:
    """JSON has no NaN or infinity: such values (a diverged run) become null."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def clean(obj: Any) -> Any:
    """Recursively replace non-finite floats with None (for free-form dicts)."""
    if isinstance(obj, float):
        return finite(obj)
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


# ---------------------------------------------------------------- campaigns


def campaign_summary(campaign: Campaign, launcher: CampaignProcesses | None = None) -> S.CampaignSummary:
    running = launcher is not None and launcher.running_pid(campaign.id) is not None
    return S.CampaignSummary(
        id=campaign.id,
        name=campaign.name,
        goal=campaign.spec.goal,
        status=campaign.status,
        owner=campaign.owner,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        metric=campaign.spec.objective.metric,
        direction=campaign.spec.objective.direction,
        baseline_objective=finite(campaign.baseline_objective),
        incumbent_objective=finite(campaign.incumbent_objective),
        running=running,
    )


def best_so_far(rows: Sequence[tuple[str, str, str, float | None]], direction: str) -> S.Curve:
    """The running best over finished trials (failed ones have no objective)."""
    sign = 1.0 if direction == "maximize" else -1.0
    best: float | None = None
    ids, arms, values, bests = [], [], [], []
    for trial_id, arm, status, objective in rows:
        value = finite(objective) if status == "succeeded" else None
        if value is not None and (best is None or sign * value > sign * best):
            best = value
        ids.append(trial_id)
        arms.append(arm)
        values.append(value)
        bests.append(best)
    return S.Curve(trial_id=ids, arm=arms, objective=values, best=bests)


def campaign_detail(
    store: Store, campaign: Campaign, launcher: CampaignProcesses | None = None
) -> S.CampaignDetail:
    counts = store.listings.trial_counts(campaign.id)
    n_trials = sum(counts.values())
    cycles = store.cycles.list(campaign.id)
    budget = campaign.spec.budget
    active = float(campaign.summary.get("active_s") or (cycles[-1].get("active_s", 0.0) if cycles else 0.0))
    fractions = [n_trials / budget.max_trials if budget.max_trials else None]
    fractions.append(len(cycles) / budget.max_cycles)
    fractions.append(active / budget.max_wall if budget.max_wall else None)
    known = [f for f in fractions if f is not None]
    return S.CampaignDetail(
        campaign=campaign_summary(campaign, launcher),
        spec=clean(campaign.spec.model_dump(mode="json")),
        baseline=clean(dict(campaign.baseline)),
        incumbent=clean(dict(campaign.incumbent)),
        summary=clean(campaign.summary),
        waiting_for=campaign.summary.get("waiting_for") if campaign.status == "paused" else None,
        cycles=clean(cycles),
        hypotheses=store.cycles.hypotheses(campaign.id),
        budget=S.Budget(
            trials_used=n_trials,
            max_trials=budget.max_trials,
            cycles_done=len(cycles),
            max_cycles=budget.max_cycles,
            active_s=active,
            max_wall_s=budget.max_wall,
            used_fraction=min(1.0, max(known)) if known else None,
        ),
        trial_counts=counts,
        best_so_far=best_so_far(store.listings.trial_curve(campaign.id), campaign.spec.objective.direction),
        verdict_notes=verdict_notes(store, campaign.id),
    )


def verdict_notes(store: Store, campaign_id: str) -> dict[str, S.VerdictNote]:
    """A hypothesis whose trials were all cancelled (by the budget, or by the host) did not
    fail: show it as cancelled, with the reason its trials carry."""
    notes: dict[str, S.VerdictNote] = {}
    for hyp in store.cycles.hypotheses(campaign_id):
        if hyp.verdict != "failed":
            continue
        trials = store.trials.list(campaign_id=campaign_id, hypothesis_id=hyp.id, limit=1000).items
        results = [t.result for t in trials]
        if not results or any(r is None or r.status not in ("cancelled", "quota_exceeded") for r in results):
            continue
        reasons = sorted({(r.error or r.status) for r in results if r is not None})
        budget = any("budget" in why for why in reasons) or any(
            r is not None and r.status == "quota_exceeded" for r in results
        )
        notes[hyp.id] = S.VerdictNote(
            label="cancelled (budget)" if budget else "cancelled", reason="; ".join(reasons)
        )
    return notes


# ---------------------------------------------------------------- trials


def trial_row(trial: Trial) -> TrialListing:
    return TrialListing(
        id=trial.id,
        campaign_id=trial.campaign_id,
        hypothesis_id=trial.hypothesis_id,
        arm=trial.arm,
        seed=trial.spec.seed,
        status=trial.status,
        objective=finite(trial.result.objective) if trial.result else None,
        created_at=trial.created_at,
        updated_at=trial.created_at,
    )


def out_dir(trial: Trial) -> Path | None:
    job = trial.result.job if trial.result else None
    return job.out_dir if job is not None else None


CURVES_FILE = "curves.json"  # written by the segmentation job: every iteration's loss
MAX_CURVE_BYTES = 20_000_000


def iteration_losses(trial: Trial) -> list[tuple[float, float]]:
    """(iteration, batch loss) for every iteration the job logged; [] when it kept none or
    the file is not what the job writes (the job is untrusted: malformed means absent)."""
    folder = out_dir(trial)
    path = folder / CURVES_FILE if folder is not None else None
    if path is None or not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_CURVE_BYTES:
        return []
    try:
        data = json.loads(path.read_text())
        xs, ys = data["iteration"], data["loss"]
        return [
            (float(x), float(y))
            for x, y in zip(xs, ys, strict=True)
            if isinstance(x, int | float) and isinstance(y, int | float) and math.isfinite(y)
        ]
    except (ValueError, KeyError, TypeError, OSError):
        return []


def prediction_cases(trial: Trial) -> dict[str, list[str]]:
    """split -> cases whose prediction file exists in the job's output folder."""
    root = out_dir(trial)
    if root is None:
        return {}
    ending = trial.spec.dataset.file_ending
    out: dict[str, list[str]] = {}
    for split in ("eval", "test", "internal_val"):
        folder = root / "predictions" / split
        if folder.is_dir():
            cases = sorted(p.name[: -len(ending)] for p in folder.iterdir() if p.name.endswith(ending))
            if cases:
                out[split] = cases
    return out


def trial_provenance(trial: Trial) -> dict[str, Any]:
    job = trial.result.job if trial.result else None
    prov = job.provenance.model_dump(mode="json") if job else {}
    out: dict[str, Any] = clean(
        {
            "campaign_id": trial.campaign_id,
            "hypothesis_id": trial.hypothesis_id,
            "arm": trial.arm,
            "spec_hash": trial.spec_hash,
            "seed": trial.spec.seed,
            "dataset": trial.spec.dataset.name,
            "dataset_checksum": trial.spec.dataset.checksum,
            **{k: v for k, v in prov.items() if k not in ("schema_version",)},
        }
    )
    return out


def trial_detail(trial: Trial) -> S.TrialDetail:
    splits = sorted(trial.result.evaluations) if trial.result else []
    return S.TrialDetail(
        trial=_finite_trial(trial),
        provenance=trial_provenance(trial),
        splits=splits,
        cases=prediction_cases(trial),
    )


def _finite_trial(trial: Trial) -> Trial:
    """The trial with non-finite numbers (diverged losses, infinite tamper gaps) as null."""
    if trial.result is None:
        return trial
    data = trial.model_dump(mode="python")
    return Trial.model_validate(clean(data))


def metrics_table(evaluation: SplitEvaluation) -> S.MetricsTable:
    columns: list[str] = []
    rows = []
    for case in evaluation.cases:
        values: dict[str, float | None] = {}
        for metric, per_class in case.metrics.items():
            numbers = [v for v in per_class.values() if finite(v) is not None]
            values[metric] = finite(sum(numbers) / len(numbers)) if numbers else None  # type: ignore[arg-type]
            for cls, v in per_class.items():
                values[f"{metric}:{cls}"] = finite(v)
        for key in values:
            if key not in columns:
                columns.append(key)
        rows.append(S.CaseRow(case=case.case, site=case.site, values=values, error=case.error))
    counts: dict[str, int] = {}
    for case in evaluation.cases:
        if case.site:
            counts[case.site] = counts.get(case.site, 0) + 1
    sites = [
        S.SiteRow(site=site, n=counts.get(site, 0), values={k: finite(v) for k, v in vals.items()})
        for site, vals in sorted(evaluation.by_site.items())
    ]
    return S.MetricsTable(
        split=evaluation.split,
        columns=columns,
        cases=rows,
        sites=sites,
        summary={k: finite(v) for k, v in evaluation.summary.items()},
        implementation=evaluation.implementation,
    )


def _tail(path: Path, lines: int, max_bytes: int = 256_000) -> tuple[list[str], bool]:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        text = fh.read().decode("utf-8", errors="replace")
    rows = text.splitlines()
    if size > max_bytes and rows:
        rows = rows[1:]  # the first line was cut
    return rows[-lines:], len(rows) > lines or size > max_bytes


def job_log(trial: Trial, jobs_dir: Path) -> Path | None:
    """The job's log file (`log.txt` in its job folder): beside the output folder of a
    finished trial, or found by the trial's job key while it runs (latest retry)."""
    root = out_dir(trial)
    if root is not None:
        path = root.parent / "log.txt"
        return path if path.is_file() else None
    key = job_key(trial.campaign_id, trial.spec_hash)
    if not jobs_dir.is_dir():
        return None
    found = sorted(
        (p / "log.txt" for p in jobs_dir.glob(f"{key}*") if (p / "log.txt").is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


def log_lines(trial: Trial, tail: int, jobs_dir: Path) -> S.TrialLogs:
    path = job_log(trial, jobs_dir)
    if path is not None:
        lines, truncated = _tail(path, tail)
        return S.TrialLogs(trial_id=trial.id, source="file", lines=lines, truncated=truncated)
    job = trial.result.job if trial.result else None
    if job is None or not job.log_tail:
        return S.TrialLogs(trial_id=trial.id, source="none", lines=[], truncated=False)
    lines = job.log_tail.splitlines()
    return S.TrialLogs(trial_id=trial.id, source="job", lines=lines[-tail:], truncated=len(lines) > tail)


def artifacts(trial: Trial) -> list[S.Artifact]:
    root = out_dir(trial)
    if root is None or not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1:
            out.append(S.Artifact(path=path.relative_to(root).as_posix(), size=path.stat().st_size))
            if len(out) >= MAX_ARTIFACTS:
                break
    return out


def artifact_path(trial: Trial, rel: str) -> Path:
    """A file inside the trial's output folder; NotFoundError for anything else
    (`..`, absolute paths and symlinks pointing out are refused)."""
    root = out_dir(trial)
    if root is None:
        raise NotFoundError(f"trial {trial.id} has no output folder")
    if "\0" in rel or any(len(part.encode()) > 255 for part in rel.split("/")):
        raise BadRequest("the artifact path holds a NUL or a name longer than 255 bytes")
    base = root.resolve()
    target = (base / rel).resolve()
    # No link anywhere on the way, one name for the file, a regular file (core.safe_tree):
    # the job wrote this folder, and a FIFO would hold a server worker forever.
    if not target.is_relative_to(base) or not safe_tree.is_file(base, rel):
        raise NotFoundError(f"trial {trial.id} has no artifact {rel!r}")
    return target


# ---------------------------------------------------------------- claims


def campaign_owner(store: Store, claim: Claim) -> str | None:
    if not claim.campaign_id:
        return None
    try:
        return store.campaigns.get(claim.campaign_id).owner
    except NotFoundError:
        return None


def _relation(store: Store, kind: str, direction: str, other: str, claims: dict[str, Claim]) -> S.Relation:
    c = claims.get(other)
    return S.Relation(
        kind=kind,
        direction=direction,  # type: ignore[arg-type]
        claim_id=other,
        tier=c.tier if c else None,
        statement=c.statement if c else None,
    )


def code_views(store: Store, shas: list[str]) -> list[S.CodeView]:
    """The modules these hashes name, as reviewers see them (unknown hashes left out)."""
    out = []
    for sha in dict.fromkeys(shas):
        try:
            module, source = store.code.get(sha)
        except NotFoundError:
            continue
        state = store.code.state(sha)
        out.append(
            S.CodeView(
                **module.model_dump(include={"sha256", "point", "name", "author", "author_kind", "trusted"}),
                rationale=module.rationale,
                flags=module.flags,
                smoke=state.smoke,
                smoke_reason=state.smoke_reason,
                quarantined=bool(store.quarantines.list(active_only=True, target_id=f"code:{sha}")),
                source=source,
                diff=module.diff,
            )
        )
    return out


def code_of(changes: list[Any]) -> list[str]:
    """Hashes of the code modules a list of factor changes switches to."""
    return [str(c.to_value) for c in changes if c.factor.startswith("code_") and c.to_value != "none"]


def hypothesis_detail(store: Store, hypothesis: Hypothesis) -> S.HypothesisDetail:
    return S.HypothesisDetail(hypothesis=hypothesis, code=code_views(store, code_of(hypothesis.changes)))


def claim_detail(store: Store, claim: Claim, actions: list[str]) -> S.ClaimDetail:
    evidence = []
    for ev in store.evidence.list(claim.id):
        trial_out: TrialListing | None = None
        prov: dict[str, Any] | None = None
        if ev.kind == "trial":
            try:
                trial = store.trials.get(ev.ref_id)
                trial_out, prov = trial_row(trial), trial_provenance(trial)
            except NotFoundError:
                prov = clean(dict(ev.detail.get("provenance", {}))) or None
        evidence.append(
            S.EvidenceOut(
                kind=ev.kind,
                ref_id=ev.ref_id,
                role=ev.role,
                detail=clean(ev.detail),
                trial=trial_out,
                provenance=prov,
            )
        )
    out_edges = store.graph.edges(src=claim.id, kinds=CLAIM_RELATIONS)
    in_edges = store.graph.edges(dst=[claim.id], kinds=CLAIM_RELATIONS)
    others = {c.id: c for c in store.claims.get_many([e.dst for e in out_edges] + [e.src for e in in_edges])}
    relations = [_relation(store, e.kind, "out", e.dst, others) for e in out_edges] + [
        _relation(store, e.kind, "in", e.src, others) for e in in_edges
    ]
    holds = store.quarantines.holds([claim.id]).get(claim.id, [])
    return S.ClaimDetail(
        claim=claim,
        campaign_owner=campaign_owner(store, claim),
        evidence=evidence,
        relations=relations,
        conflicts=[r for r in relations if r.kind == "contradicts"],
        history=[_clean_audit(e) for e in store.audit.list(object_id=claim.id)],
        reproduction_requests=store.reviews.list(claim_id=claim.id),
        quarantined_by=holds,
        actions=actions,
        code=code_views(store, code_of(claim.changes)),
    )


def _clean_audit(entry: AuditEntry) -> AuditEntry:
    return entry.model_copy(update={"detail": clean(entry.detail)})


def claim_graph(store: Store, center: str, *, depth: int = 2, max_nodes: int = 60) -> S.Graph:
    """The knowledge graph around a node: breadth-first over edges in both directions."""
    seen = {center}
    frontier = [center]
    edges: dict[tuple[str, str, str], S.GraphEdge] = {}
    truncated = False
    for _ in range(depth):
        nxt: list[str] = []
        for node in frontier:
            for e in store.graph.edges(src=node, limit=200) + store.graph.edges(dst=[node], limit=200):
                other = e.dst if e.src == node else e.src
                if other not in seen:
                    if len(seen) >= max_nodes:
                        truncated = True
                        continue
                    seen.add(other)
                    nxt.append(other)
                edges[(e.src, e.dst, e.kind)] = S.GraphEdge(src=e.src, dst=e.dst, kind=e.kind)
        frontier = nxt
    claims = {c.id: c for c in store.claims.get_many(sorted(seen))}
    nodes = []
    for node_id in sorted(seen, key=lambda n: (n != center, n)):
        if node_id in claims:
            c = claims[node_id]
            nodes.append(S.GraphNode(id=node_id, kind="claim", label=c.statement[:80], tier=c.tier))
            continue
        try:
            entity = store.graph.get_entity(node_id)
            nodes.append(S.GraphNode(id=node_id, kind=entity.kind, label=entity.name[:80]))
        except NotFoundError:
            nodes.append(S.GraphNode(id=node_id, kind="unknown", label=node_id))
    return S.Graph(
        center=center,
        nodes=nodes,
        edges=[e for e in edges.values() if e.src in seen and e.dst in seen],
        truncated=truncated,
    )

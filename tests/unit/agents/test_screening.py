"""Screening (planner.screening): one-seed runs that find, a certification that claims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.agents.budget import final_reserve_runs
from medloop.agents.runner import CampaignRunner
from medloop.agents.screening_nodes import certification_cost, promotion_candidate
from medloop.agents.seeds import SEED_STRIDE, fresh_reproduction_seeds, reproduction_seeds
from medloop.agents.space import config_key
from medloop.core.records import Campaign
from medloop.core.store import SqlStore, open_store
from medloop.engine.replay import save_table, synthetic_table
from tests.unit.agents.test_replay_campaign import LRS, SPACE, make_spec, services
from tests.unit.agents.test_replay_campaign import table as table


def _screening_spec(path: Path, *, max_trials: int, min_effect: float = 0.005, screening: int = 2) -> Any:
    spec = make_spec(path, max_trials=max_trials, max_cycles=200, patience=200)
    return spec.model_copy(
        update={
            "planner": spec.planner.model_copy(update={"screening": screening}),
            "validation": spec.validation.model_copy(update={"min_effect": min_effect}),
        }
    )


def _run(tmp_path: Path, spec: Any, name: str = "c") -> tuple[SqlStore, Campaign]:
    ws = tmp_path / name
    ws.mkdir()
    store = open_store(ws / "m.db")
    runner = CampaignRunner(services(ws, store))
    return store, runner.run(runner.create(spec, owner="a").id)


def test_screening_runs_never_create_claims(tmp_path: Path) -> None:
    """Every config is equal and the margin is out of reach: the campaign screens, and
    since nothing is promoted, no hypothesis and no claim exists."""
    path = tmp_path / "null.json"
    save_table(
        synthetic_table(space={**SPACE, "lr": LRS}, effect=lambda c: 0.0, n_cases=24, rng_seed=2), path
    )
    store, done = _run(tmp_path, _screening_spec(path, max_trials=40, min_effect=0.5))
    trials = store.trials.list(campaign_id=done.id).items
    screens = [t for t in trials if t.arm == "screen"]
    assert len(screens) >= 10
    assert all(t.hypothesis_id is None for t in screens)
    assert store.cycles.hypotheses(done.id) == []
    assert store.claims.list(campaign_id=done.id).items == []
    assert done.summary["best_screened"]["runs"] >= 1  # the search's belief is still shown


def test_claims_rest_on_certification_not_on_a_screening_run(tmp_path: Path, table: Path) -> None:
    spec = _screening_spec(table, max_trials=60)
    store, done = _run(tmp_path, spec)
    hyps = store.cycles.hypotheses(done.id)
    claims = store.claims.list(campaign_id=done.id).items
    assert claims, "the planted effects were never certified"
    by_claim = {h.claim_id: h for h in hyps if h.claim_id}
    assert {c.id for c in claims} == set(by_claim)  # every claim is a certified hypothesis
    for h in by_claim.values():
        # the paired arms: all explore seeds of both arms, not the one screening seed
        assert len(h.treatment_trials) >= spec.validation.seeds_per_arm
        assert len(h.control_trials) >= spec.validation.seeds_per_arm
    assert done.incumbent != done.baseline, "no certified change moved the incumbent"


def test_campaign_does_not_stop_with_budget_unused(tmp_path: Path, table: Path) -> None:
    """28 configs, 90 runs: the campaign screens, certifies and goes on until the budget
    left cannot pay one more screening run and a certification (before, it stopped when
    the planner ran out of one-factor moves)."""
    spec = _screening_spec(table, max_trials=90)
    store, done = _run(tmp_path, spec)
    used = len(store.trials.list(campaign_id=done.id).items)
    assert "budget" in str(done.summary["stop_reason"]), done.summary["stop_reason"]
    assert used >= 90 - final_reserve_runs(done) - certification_cost(spec) - 1
    assert used <= 90


def test_a_sequential_campaign_spends_its_budget(tmp_path: Path, table: Path) -> None:
    """With 3 looks a certification may take 2 x 3 x 2 more runs, but those looks are paid
    only while the budget lasts: reserving them for every certification ended campaigns
    with 20 runs unspent beside the final runs."""
    spec = _screening_spec(table, max_trials=90)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"stages": 3})})
    store, done = _run(tmp_path, spec)
    used = len(store.trials.list(campaign_id=done.id).items)
    assert "budget" in str(done.summary["stop_reason"]), done.summary["stop_reason"]
    first_look = (spec.validation.seeds_per_arm - 1) + 2 * spec.validation.reproduction_seeds
    assert used >= 90 - final_reserve_runs(done) - first_look - 1


def test_promotion_requires_beating_the_incumbent() -> None:
    inc = {"loss": "dice", "lr": 0.001}
    a, b = {"loss": "dicece", "lr": 0.001}, {"loss": "dice", "lr": 0.003}
    measured: list[tuple[dict[str, Any], float | None]] = [(inc, 0.80), (a, 0.803), (b, 0.79)]
    kw: dict[str, Any] = {"incumbent": inc, "maximize": True, "certified": set()}
    # the best screened config beats the incumbent, but by less than the margin
    assert promotion_candidate(measured, incumbent_objective=0.80, margin=0.005, **kw) is None
    # a worse screened config is never promoted, whatever the margin
    assert promotion_candidate([(inc, 0.8), (b, 0.79)], incumbent_objective=0.8, margin=0.0, **kw) is None
    got = promotion_candidate(measured, incumbent_objective=0.80, margin=0.002, **kw)
    assert got is not None and got.config == a and abs(got.gain - 0.003) < 1e-12
    # a pair already certified is not certified again; the next best must beat it too
    done = {(config_key(inc), config_key(a))}
    assert (
        promotion_candidate(measured, incumbent_objective=0.8, margin=0.002, **{**kw, "certified": done})
        is None
    )
    # minimising: lower is better
    low = promotion_candidate(measured, incumbent_objective=0.80, margin=0.005, **{**kw, "maximize": False})
    assert low is not None and low.config == b
    assert promotion_candidate(measured, incumbent_objective=None, margin=0.0, **kw) is None


def test_every_promoted_hypothesis_beat_the_incumbent_when_promoted(tmp_path: Path, table: Path) -> None:
    spec = _screening_spec(table, max_trials=60)
    store, done = _run(tmp_path, spec)
    hyps = store.cycles.hypotheses(done.id)
    assert hyps
    for h in hyps:
        assert h.expected_effect is not None and h.expected_effect >= spec.validation.min_effect


def _fingerprint(store: SqlStore, done: Campaign) -> tuple[Any, ...]:
    trials = store.trials.list(campaign_id=done.id, limit=10_000).items
    runs = sorted(
        (t.arm, config_key(t.spec.config.model_dump(mode="json")), t.spec.seed % SEED_STRIDE) for t in trials
    )
    plan = [(h.cycle, [(c.factor, c.to_value) for c in h.changes]) for h in store.cycles.hypotheses(done.id)]
    return runs, sorted(plan, key=str), config_key(done.incumbent), done.summary["stop_reason"]


def test_same_seed_same_campaign(tmp_path: Path, table: Path) -> None:
    spec = _screening_spec(table, max_trials=50)
    first = _fingerprint(*_run(tmp_path, spec, "one"))
    second = _fingerprint(*_run(tmp_path, spec, "two"))
    assert first == second
    assert any(arm == "screen" for arm, _, _ in first[0])


def test_with_reproduction_off_the_budget_keeps_one_arm_of_final_runs(tmp_path: Path, table: Path) -> None:
    """reproduction_seeds: 0 means the incumbent cannot move, so the final test-split runs
    are the baseline's seeds only. The planner kept room for two arms anyway: with 2 seeds
    and max_trials 6 a campaign ran its control and final runs and tested nothing."""
    spec = make_spec(table, max_trials=6, max_cycles=1)
    spec = spec.model_copy(
        update={
            "validation": spec.validation.model_copy(update={"seeds_per_arm": 2, "reproduction_seeds": 0}),
            "planner": spec.planner.model_copy(update={"hypotheses_per_cycle": 1}),
        }
    )
    store, done = _run(tmp_path, spec)
    trials = store.trials.list(campaign_id=done.id).items
    assert len(store.cycles.hypotheses(done.id)) == 1, done.summary.get("stop_reason")
    assert len(trials) == 6  # 2 control + 2 treatment + 2 final (the baseline's)
    assert done.incumbent == done.baseline


def _reproduced(campaign: Campaign, estimate: float, factor: str, value: Any) -> Any:
    from medloop.core.records import FactorChange, Hypothesis

    return Hypothesis(
        id=f"hyp_{factor}_{value}",
        campaign_id=campaign.id,
        cycle=1,
        statement=f"{factor} -> {value}",
        changes=[FactorChange(factor=factor, from_value=campaign.incumbent.get(factor), to_value=value)],
        verdict="supported",
        reproduction="agreed",
        analysis={"estimate": estimate, "ci_low": estimate / 2, "ci_high": 2 * estimate},
    )


def test_a_reproduced_gain_below_min_effect_still_moves_the_incumbent(tmp_path: Path, table: Path) -> None:
    """`supported` needs a CI above zero that still reaches min_effect, and the fresh seeds
    agreed: that is a certified step even when its estimate is below min_effect (a floor
    there left the answer within min_effect of the best forever). A reproduced loss is not."""
    from medloop.agents.nodes import CampaignNodes

    store = open_store(tmp_path / "m.db")
    svc = services(tmp_path, store)
    spec = _screening_spec(table, max_trials=60, min_effect=0.005)
    campaign = CampaignRunner(svc).create(spec, owner="a")
    nodes = CampaignNodes(svc)
    worse = _reproduced(campaign, -0.004, "augmentation", "light")
    assert not nodes._promote(campaign, [worse])
    small = _reproduced(campaign, 0.003, "loss", "dicece")
    assert nodes._promote(campaign, [worse, small])
    assert store.campaigns.get(campaign.id).incumbent["loss"] == "dicece"


def test_earlier_comparisons_join_the_seed_variance_pool(tmp_path: Path, table: Path) -> None:
    """One change per cycle with 3 seeds leaves a comparison 2 degrees of freedom of its own
    (t = 4.3 at 5%); the campaign's earlier pairs, trained the same way, make the pool.
    Same data, same estimate: a narrower interval and a smaller p-value."""
    from medloop.engine.analysis import analyze_hypotheses

    store, done = _run(tmp_path, _screening_spec(table, max_trials=90, min_effect=0.005))
    tested = [h for h in store.cycles.hypotheses(done.id) if h.control_trials and h.treatment_trials]
    assert len(tested) >= 3
    kw = {"objective": done.spec.objective, "policy": done.spec.validation}

    def compared(h: Any, pool: bool) -> Any:
        history = [o for o in tested if o.id != h.id] if pool else []
        return analyze_hypotheses(store, [h], history=history, **kw)[0].comparison

    def narrowing(h: Any) -> float:
        alone, pooled = compared(h, False), compared(h, True)
        return (alone.ci_high - alone.ci_low) - (pooled.ci_high - pooled.ci_low)

    # The comparison the pool helps most (one noisier than the pool keeps its own variance).
    last = max(tested, key=lambda h: (narrowing(h), h.id))
    alone, pooled = compared(last, False), compared(last, True)
    assert alone is not None and pooled is not None
    assert pooled.estimate == alone.estimate
    assert pooled.ci_high - pooled.ci_low < alone.ci_high - alone.ci_low
    assert pooled.p_run is not None and alone.p_run is not None and pooled.p_run < alone.p_run


def test_pool_history_zero_means_no_earlier_comparisons(
    tmp_path: Path, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[-0:]` keeps a whole list: POOL_HISTORY = 0 once pooled every earlier comparison
    instead of none. The cycle's own comparisons still pool (the history is what it sets)."""
    import medloop.agents.decision_nodes as dn

    seen: list[int] = []
    real = dn.analyze_hypotheses

    def spy(*a: Any, history: Any = (), **k: Any) -> Any:
        seen.append(len(history))
        return real(*a, history=history, **k)

    monkeypatch.setattr(dn, "analyze_hypotheses", spy)
    monkeypatch.setattr(dn, "POOL_HISTORY", 0)
    _run(tmp_path, _screening_spec(table, max_trials=60), "none")
    assert len(seen) >= 2 and set(seen) == {0}
    seen.clear()
    monkeypatch.setattr(dn, "POOL_HISTORY", 1)
    _run(tmp_path, _screening_spec(table, max_trials=60), "one")
    assert max(seen) == 1


def _deferred_table(tmp_path: Path) -> Path:
    """dicece better by 0.008 (above min_effect 0.005, near the seed noise of 3 seeds):
    its first certification is undecided and it stays the best screened candidate."""
    path = tmp_path / "deferred.json"
    table = synthetic_table(
        space={**SPACE, "lr": LRS}, effect=lambda c: 0.008 * (c["loss"] == "dicece"), n_cases=24, rng_seed=2
    )
    save_table(table, path)
    return path


def test_an_undecided_certification_resumes_at_its_deferred_look(tmp_path: Path) -> None:
    """Before, a pair certified once was never certified again: an undecided last step to
    the best config left the incumbent where it was for the rest of the budget (surface1080,
    design note 11). With a deferred look the pair resumes, when it is again the best
    candidate, with all its seeds plus seeds_per_arm more per arm, at the level the alpha
    spending planned for look 2 of 2 (the first look, planned with it, is stricter)."""
    from medloop.evaluation.stats import sequential_levels

    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"deferred_looks": 1})})
    store, done = _run(tmp_path, spec)
    hyps = {h.id: h for h in store.cycles.hypotheses(done.id)}
    resumed = [h for h in hyps.values() if "resume" in h.analysis]
    assert resumed, "no undecided certification resumed"
    levels = sequential_levels([0.5, 1.0], spec.validation.alpha)
    per_arm = spec.validation.seeds_per_arm
    for h in resumed:
        earlier = hyps[h.analysis["resume"]["from"]]
        assert earlier.verdict == "inconclusive" and earlier.cycle < h.cycle
        assert earlier.analysis["looks"] == {
            "look": 1,
            "of": 2,
            "nominal_alpha": levels[0],
            "deferred": False,
        }
        assert h.analysis["looks"] == {"look": 2, "of": 2, "nominal_alpha": levels[1], "deferred": True}
        assert [c.model_dump() for c in h.changes] == [c.model_dump() for c in earlier.changes]
        # the same seeds (the same trials), then seeds_per_arm new ones per arm
        assert h.treatment_trials[:per_arm] == earlier.treatment_trials
        assert h.control_trials[:per_arm] == earlier.control_trials
        assert len(set(h.treatment_trials)) == len(set(h.control_trials)) == 2 * per_arm
        assert h.analysis["n_seeds"] == 2 * per_arm
    decided = [h for h in resumed if h.verdict == "supported"]
    assert decided and all(h.reproduction != "none" for h in decided)  # then reproduced, as any
    # Look 2 is the plan's last: a pair undecided there is closed, never resumed again.
    pairs = [tuple(c.to_value for c in h.changes) for h in resumed]
    assert len(pairs) == len(set(pairs))


def test_a_resumed_certification_supersedes_the_claim_of_its_earlier_look(tmp_path: Path) -> None:
    """Before, the earlier look's inconclusive claim stayed live beside the resumed one's,
    so a reviewer (and the next campaign's retrieval) saw two claims about one comparison.
    The resumed claim names the earlier one as evidence (role `continues`, a provenance
    edge) and the earlier one is `superseded`; inconclusive claims nobody resumed stay."""
    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"deferred_looks": 1})})
    store, done = _run(tmp_path, spec)
    hyps = {h.id: h for h in store.cycles.hypotheses(done.id)}
    resumed = [h for h in hyps.values() if "resume" in h.analysis]
    assert resumed
    retired = set()
    for h in resumed:
        earlier = hyps[h.analysis["resume"]["from"]]
        assert earlier.claim_id and h.claim_id
        assert store.claims.get(earlier.claim_id).tier == "superseded"
        links = [e for e in store.evidence.list(h.claim_id) if e.kind == "claim"]
        assert [(e.ref_id, e.role) for e in links] == [(earlier.claim_id, "continues")]
        assert store.claims.get(h.claim_id).tier != "superseded"
        retired.add(earlier.claim_id)
    others = [
        h for h in hyps.values() if h.claim_id and h.claim_id not in retired and h.verdict == "inconclusive"
    ]
    assert all(store.claims.get(h.claim_id).tier == "inconclusive" for h in others)


def test_a_crash_between_the_resumed_claim_and_the_retirement_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record node writes the resumed claim, then retires the earlier one: interrupted
    between the two, the re-run node retires it and the campaign ends as one never
    interrupted (same claims, same tiers)."""
    from tests.fakes import FakeKnowledge

    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"deferred_looks": 1})})
    ref_store, ref = _run(tmp_path, spec, "ref")
    reference = sorted((c.statement, c.tier) for c in ref_store.claims.list(campaign_id=ref.id).items)
    assert any(tier == "superseded" for _, tier in reference)

    real = FakeKnowledge.transition
    crashed: list[str] = []

    def crash_once(self: Any, claim_id: str, tier: str, **kw: Any) -> Any:
        if tier == "superseded" and not crashed:
            crashed.append(claim_id)
            raise KeyboardInterrupt  # the process dies here: the checkpoint is the node's start
        return real(self, claim_id, tier, **kw)

    monkeypatch.setattr(FakeKnowledge, "transition", crash_once)
    ws = tmp_path / "crash"
    ws.mkdir()
    store = open_store(ws / "m.db")
    runner = CampaignRunner(services(ws, store))
    campaign = runner.create(spec, owner="a")
    with pytest.raises(KeyboardInterrupt):
        runner.run(campaign.id)
    assert crashed and store.claims.get(crashed[0]).tier == "inconclusive"
    done = runner.resume(campaign.id)
    assert done.status == "completed"
    assert store.claims.get(crashed[0]).tier == "superseded"
    assert sorted((c.statement, c.tier) for c in store.claims.list(campaign_id=done.id).items) == reference


def test_pocock_spending_decides_each_look_at_its_own_level(tmp_path: Path) -> None:
    """validation.spending: pocock plans the same two looks with alpha spread evenly
    (0.031, 0.028) instead of O'Brien-Fleming's (0.0056, 0.048): every look a campaign
    takes is decided, and recorded, at the Pocock level of its index."""
    from medloop.evaluation.stats import sequential_levels

    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    spec = spec.model_copy(
        update={"validation": spec.validation.model_copy(update={"deferred_looks": 1, "spending": "pocock"})}
    )
    store, done = _run(tmp_path, spec)
    pocock = sequential_levels([0.5, 1.0], spec.validation.alpha, "pocock")
    obf = sequential_levels([0.5, 1.0], spec.validation.alpha)
    hyps = [h for h in store.cycles.hypotheses(done.id) if "looks" in h.analysis]
    assert hyps
    for h in hyps:
        look = h.analysis["looks"]
        assert look["of"] == 2 and look["nominal_alpha"] == pocock[look["look"] - 1]
    assert {h.analysis["looks"]["look"] for h in hyps} == {1, 2}  # a look 2 was taken too
    assert pocock[0] > 5 * obf[0]


def test_without_deferred_looks_a_pair_is_certified_once(tmp_path: Path) -> None:
    """The default plan (deferred_looks: 0) keeps the fixed design: one look at alpha."""
    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    store, done = _run(tmp_path, spec)
    hyps = store.cycles.hypotheses(done.id)
    assert hyps and all("resume" not in h.analysis for h in hyps)
    assert all(h.analysis["looks"]["of"] == 1 and h.analysis["looks"]["look"] == 1 for h in hyps)
    assert all(h.analysis["looks"]["nominal_alpha"] == pytest.approx(spec.validation.alpha) for h in hyps)


def test_a_resumed_certification_does_not_pool_its_own_earlier_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier look of a resumed certification shares its trials: counted in the pool
    it would be the same seed differences twice, with degrees of freedom they do not have."""
    import medloop.agents.decision_nodes as dn

    overlaps: list[int] = []
    real = dn.analyze_hypotheses

    def spy(store: Any, hyps: Any, *a: Any, history: Any = (), **k: Any) -> Any:
        overlaps.append(
            sum(
                1
                for e in history
                for h in hyps
                if set(h.control_trials) & set(e.control_trials)
                and set(h.treatment_trials) & set(e.treatment_trials)
            )
        )
        return real(store, hyps, *a, history=history, **k)

    monkeypatch.setattr(dn, "analyze_hypotheses", spy)
    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"deferred_looks": 1})})
    store, done = _run(tmp_path, spec)
    assert any("resume" in h.analysis for h in store.cycles.hypotheses(done.id))
    assert overlaps and set(overlaps) == {0}


def test_certification_state_parks_only_undecided_pairs_with_looks_left() -> None:
    from medloop.agents.screening_nodes import certification_state
    from medloop.core.records import FactorChange, Hypothesis

    def hyp(i: int, verdict: str, look: int | None) -> Hypothesis:
        return Hypothesis(
            id=f"h{i}",
            campaign_id="c",
            cycle=i,
            statement="s",
            changes=[FactorChange(factor="loss", from_value="dice", to_value="dicece")],
            verdict=verdict,  # type: ignore[arg-type]
            analysis={} if look is None else {"looks": {"look": look}},
        )

    a, b, c, d = ("i", "a"), ("i", "b"), ("i", "c"), ("i", "d")
    closed, parked = certification_state(
        [
            (hyp(1, "inconclusive", 1), a),  # parked
            (hyp(2, "inconclusive", 2), b),  # every look spent: closed
            (hyp(3, "supported", 1), c),
            (hyp(4, "inconclusive", 1), d),
            (hyp(5, "refuted", 2), d),  # the resumed look decided: closed
            (hyp(6, "pending", None), ("i", "e")),  # interrupted: closed, as before
        ],
        looks=2,
    )
    assert parked == {a: ("h1", 1)}
    assert closed == {b, c, d, ("i", "e")}
    closed, parked = certification_state([(hyp(1, "inconclusive", 1), a)], looks=1)
    assert parked == {} and closed == {a}  # no deferred look planned: certified once


def test_a_later_field_at_its_default_leaves_the_planning_seed_as_it_was(table: Path) -> None:
    """deferred_looks and spending came after campaigns were run: at their defaults (0,
    obrien_fleming) a spec plans as it did before the fields existed; set, each is part of
    what the campaign asks for."""
    from medloop.agents.seeds import _LOCATION_FIELDS, planning_seed
    from medloop.core.ids import canonical_json, sha256_hex

    spec = make_spec(table)
    body = spec.model_dump(mode="json", exclude=_LOCATION_FIELDS)
    del body["validation"]["deferred_looks"]
    del body["validation"]["spending"]
    before = int(sha256_hex(canonical_json([7, body, ["x"]]))[:8], 16)
    assert planning_seed(spec, 7, "x") == before
    for update in ({"deferred_looks": 1}, {"spending": "pocock"}):
        changed = spec.model_copy(update={"validation": spec.validation.model_copy(update=update)})
        assert planning_seed(changed, 7, "x") != before, update


def test_the_console_renders_a_resumed_certification(tmp_path: Path) -> None:
    """`medloop campaign run` prints every event: the resumed look's event carries a flag
    the printer must take (it raised TypeError on its first version)."""
    from io import StringIO

    from rich.console import Console

    from medloop.cli.progress import CampaignConsole

    out = StringIO()
    spec = _screening_spec(_deferred_table(tmp_path), max_trials=60)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"deferred_looks": 1})})
    ws = tmp_path / "console"
    ws.mkdir()
    store = open_store(ws / "m.db")
    runner = CampaignRunner(services(ws, store), on_event=CampaignConsole(Console(file=out, width=200)))
    done = runner.run(runner.create(spec, owner="a").id)
    assert "resumed at look 2" in out.getvalue()
    # the final table says which look of the plan decided each change
    from medloop.cli.progress import final_table

    table = StringIO()
    Console(file=table, width=300).print(final_table(done, store.cycles.hypotheses(done.id)))
    assert "(look 2/2, deferred)" in table.getvalue() and "(look 1/2)" in table.getvalue()


def test_every_reproduction_runs_both_arms_on_seeds_they_never_ran(tmp_path: Path, table: Path) -> None:
    """The incumbent moves more than once. Each reproduction's control is the incumbent of
    its day, which reached that place through its own reproduction: with one fixed block
    of reproduction seeds, the next reproduction reused those runs as its control (runs
    that selected the incumbent, so they lean its way). Every reproduction run must be the
    first run of its config at its seed, and hypotheses reproduced together share one."""
    spec = _screening_spec(table, max_trials=120)
    store, done = _run(tmp_path, spec)
    trials = {t.id: t for t in store.trials.list(campaign_id=done.id, limit=10_000).items}
    reproduced = [h for h in store.cycles.hypotheses(done.id) if h.reproduction_control]
    assert len({trials[h.reproduction_control[0]].spec.config.model_dump_json() for h in reproduced}) >= 2, (
        "the incumbent moved fewer than twice: the attack needs a second reproduction"
    )
    owner: dict[str, set[str]] = {}
    for h in reproduced:
        for tid in h.reproduction_control + h.reproduction_treatment:
            owner.setdefault(tid, set()).add(h.id)
    for h in reproduced:
        for tid in h.reproduction_control + h.reproduction_treatment:
            t = trials[tid]
            # the run was made by a reproduction of this cycle, not reused from an earlier one
            # (a trial's id is its config and seed, so a reused run keeps its first owner)
            made_by = store.cycles.get_hypothesis(t.hypothesis_id) if t.hypothesis_id else None
            assert made_by is not None and made_by.cycle == h.cycle, (
                f"{h.id}: {t.arm} run at seed {t.spec.seed} was made by an earlier hypothesis"
            )
            cycles = {store.cycles.get_hypothesis(o).cycle for o in owner[tid]}
            assert cycles == {h.cycle}, f"{tid} is shared by reproductions of cycles {sorted(cycles)}"


def test_fresh_reproduction_seeds_take_the_first_block_neither_arm_ran() -> None:
    first = reproduction_seeds("cmp_x", 3, 0)
    second = reproduction_seeds("cmp_x", 3, 1)
    assert set(first).isdisjoint(second)
    assert fresh_reproduction_seeds("cmp_x", 3, ["a", "b"], set()) == first
    # the control ran at block 0 (it was reproduced as a treatment): block 1
    assert fresh_reproduction_seeds("cmp_x", 3, ["a", "b"], {("a", first[2])}) == second
    # another config's runs at block 0 do not make it stale for these two
    assert fresh_reproduction_seeds("cmp_x", 3, ["a", "b"], {("c", first[0])}) == first
    with pytest.raises(ValueError, match="outside the seed plan"):
        reproduction_seeds("cmp_x", 3, 1000 // 3)

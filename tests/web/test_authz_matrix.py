"""Authorization matrix: every /api/v1 endpoint x every role x an object the caller owns
and one they do not. The expectations below are the specification (issue 7), written
independently of medloop/web/policy.py; a new endpoint without a row fails the test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from medloop.core.ids import new_id
from medloop.core.records import Claim, ClaimContext, Effect, FactorChange
from tests.web.builders import ROLES
from tests.web.conftest import Web

ALL = {"viewer", "reviewer", "admin", "agent"}
RATIONALE = {"rationale": "checked the evidence table and the CI"}


@dataclass(frozen=True)
class Rule:
    own: set[str]  # roles allowed on an object they own
    other: set[str]  # roles allowed on someone else's object
    body: dict[str, Any] | None = None


READ = Rule(ALL, ALL)
CONTROL = Rule({"reviewer", "admin", "agent"}, {"admin"})
HUMAN_DECISION = Rule(set(), {"reviewer"}, RATIONALE)  # never on your own campaign's claims
EXPECTED: dict[tuple[str, str], Rule] = {
    ("GET", "/api/v1/me"): READ,
    ("GET", "/api/v1/users"): Rule({"admin"}, {"admin"}),
    ("GET", "/api/v1/audit"): READ,
    ("GET", "/api/v1/audit/verify"): READ,
    ("GET", "/api/v1/campaigns"): READ,
    ("POST", "/api/v1/campaigns"): Rule(
        {"reviewer", "admin", "agent"}, {"reviewer", "admin", "agent"}, {"spec_yaml": "name: only a name"}
    ),
    ("GET", "/api/v1/campaigns/{campaign_id}"): READ,
    ("GET", "/api/v1/campaigns/{campaign_id}/hypotheses"): READ,
    ("POST", "/api/v1/campaigns/{campaign_id}/launch"): CONTROL,
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"): CONTROL,
    ("POST", "/api/v1/campaigns/{campaign_id}/resume"): CONTROL,
    ("POST", "/api/v1/campaigns/{campaign_id}/stop"): CONTROL,
    # a person's code hypothesis: the owning reviewer or an admin; never the agent or a viewer
    ("POST", "/api/v1/campaigns/{campaign_id}/code"): Rule(
        {"reviewer", "admin"},
        {"admin"},
        {
            "source": 'EXTENSION_POINT = "lr_schedule"\n\n\ndef lr_factor(step, total_steps):\n    return 1.0\n',
            "point": "lr_schedule",
        },
    ),
    ("GET", "/api/v1/hypotheses/{hypothesis_id}"): READ,
    ("GET", "/api/v1/hypotheses/{hypothesis_id}/detail"): READ,
    ("GET", "/api/v1/trials"): READ,
    ("GET", "/api/v1/trials/{trial_id}"): READ,
    ("GET", "/api/v1/trials/{trial_id}/logs"): READ,
    ("GET", "/api/v1/trials/{trial_id}/metrics"): READ,
    ("GET", "/api/v1/trials/{trial_id}/artifacts"): READ,
    ("GET", "/api/v1/trials/{trial_id}/artifacts/{path}"): READ,
    ("GET", "/api/v1/compare"): READ,
    ("GET", "/api/v1/trials/{trial_id}/slices"): READ,
    ("GET", "/api/v1/claims"): READ,
    ("GET", "/api/v1/claims/{claim_id}"): READ,
    ("GET", "/api/v1/claims/{claim_id}/graph"): READ,
    ("POST", "/api/v1/claims/{claim_id}/validate"): HUMAN_DECISION,
    ("POST", "/api/v1/claims/{claim_id}/reject"): HUMAN_DECISION,
    ("POST", "/api/v1/claims/{claim_id}/request-reproduction"): Rule(
        {"reviewer", "admin"}, {"reviewer", "admin"}, RATIONALE
    ),
    ("POST", "/api/v1/claims/{claim_id}/quarantine"): Rule(
        {"reviewer", "admin", "agent"}, {"reviewer", "admin", "agent"}, RATIONALE
    ),
    ("GET", "/api/v1/quarantines"): READ,
    ("POST", "/api/v1/quarantines"): Rule(
        {"reviewer", "admin", "agent"},
        {"reviewer", "admin", "agent"},
        {"target": "<the owner's campaign>", **RATIONALE},
    ),
    ("POST", "/api/v1/quarantines/{quarantine_id}/lift"): Rule(
        {"reviewer", "admin"}, {"reviewer", "admin"}, RATIONALE
    ),
}
PUBLIC = {("GET", "/api/v1/health")}


def api_routes(web: Web) -> set[tuple[str, str]]:
    """Every operation the OpenAPI document publishes."""
    paths = web.app.openapi()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


class World:
    """Per user: a campaign they own (completed, so control actions stop at the status
    check after authorization), a trial, a hypothesis, and fresh reproduced claims."""

    def __init__(self, web: Web) -> None:
        self.web = web
        store = web.store
        base = store.campaigns.get(web.campaign_id)
        trial = store.trials.list(campaign_id=web.campaign_id, limit=1).items[0]
        hyp = store.cycles.hypotheses(web.campaign_id)[0]
        self.claim_template = store.claims.get(
            store.claims.list(campaign_id=web.campaign_id, limit=1).items[0].id
        )
        self.objects: dict[str, dict[str, str]] = {}
        for user in ROLES:
            cid = web.campaign_id if user == "alice" else new_id("cmp")
            if user != "alice":
                store.campaigns.add(base.model_copy(update={"id": cid, "owner": user}))
            tid, hid = f"trl_{user}_{cid[-6:]}", f"hyp_{user}_{cid[-6:]}"
            store.cycles.put_hypothesis(hyp.model_copy(update={"id": hid, "campaign_id": cid}))
            store.trials.put(trial.model_copy(update={"id": tid, "campaign_id": cid, "hypothesis_id": hid}))
            self.objects[user] = {"campaign_id": cid, "trial_id": tid, "hypothesis_id": hid}

    def claim(self, owner: str) -> str:
        """A new reproduced claim in `owner`'s campaign, authored by the agent."""
        c = self.claim_template
        claim = Claim(
            id=new_id("clm"),
            campaign_id=self.objects[owner]["campaign_id"],
            hypothesis_id=None,
            statement=c.statement,
            changes=[FactorChange(factor="loss", from_value="dice", to_value="dicece")],
            context=ClaimContext(task="segmentation", dataset=c.context.dataset, dataset_checksum="x" * 64),
            outcome="dice",
            effect=c.effect
            or Effect(
                metric="dice",
                direction="maximize",
                estimate=0.04,
                ci_low=0.02,
                ci_high=0.06,
                p_value=0.01,
                p_adjusted=0.01,
                test="wilcoxon",
                n_cases=24,
                n_seeds=3,
                min_effect=0.005,
                alpha=0.05,
            ),
            tier="reproduced",
        )
        self.web.store.claims.put([(claim, [])])
        return claim.id

    def url(self, path: str, owner: str) -> str:
        ids = {**self.objects[owner], "path": "result.json", "quarantine_id": "qtn_none"}
        if "{claim_id}" in path:
            ids["claim_id"] = self.claim(owner)
        return path.format(**ids)


def user_of(role: str, *, not_: str | None = None) -> str:
    return next(u for u, r in ROLES.items() if r == role and u != not_)


def test_every_endpoint_has_a_rule(web: Web) -> None:
    assert api_routes(web) == set(EXPECTED) | PUBLIC


def test_unauthenticated_requests_are_refused_everywhere(web: Web) -> None:
    world = World(web)
    for method, path in sorted(EXPECTED):
        rule = EXPECTED[(method, path)]
        r = web.client.request(method, world.url(path, "alice"), json=rule.body)
        assert r.status_code == 401, (method, path, r.status_code)
    assert web.client.get("/api/v1/health").status_code == 200


@pytest.mark.parametrize("role", sorted(ALL))
def test_role_matrix(web: Web, role: str) -> None:
    world = World(web)
    caller = user_of(role)
    other_owner = user_of("reviewer", not_=caller)  # someone else's campaign
    failures = []
    for (method, path), rule in sorted(EXPECTED.items()):
        for ownership, owner, allowed in (("own", caller, rule.own), ("other", other_owner, rule.other)):
            params = {"case": "case_000"} if path.endswith("/slices") else None
            r = web.client.request(
                method, world.url(path, owner), json=rule.body, params=params, headers=web.auth(caller)
            )
            permitted = role in allowed
            if permitted == (r.status_code == 403) or r.status_code in (401, 500):
                failures.append(f"{method} {path} {role}/{ownership}: {r.status_code} {r.text[:160]}")
    assert not failures, "\n".join(failures)

"""The REST API against a finished campaign: listings, details, reviews, errors, auth."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medloop.web.context import RateLimit
from tests.web import builders as B
from tests.web.conftest import Template, Web, make_web

RATIONALE = "reproduced with fresh seeds; the CI excludes zero"


def test_cursor_pagination_visits_every_trial_once(web: Web) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 7, "campaign_id": web.campaign_id} | ({"cursor": cursor} if cursor else {})
        body = web.client.get("/api/v1/trials", params=params, headers=web.auth("vic")).json()
        seen += [t["id"] for t in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    stored = [t.id for t in web.store.trials.list(campaign_id=web.campaign_id, limit=100_000)]
    assert sorted(seen) == sorted(stored) and len(seen) == len(set(seen))
    assert pages == -(-len(stored) // 7)
    bad = web.client.get("/api/v1/trials", params={"cursor": "not-a-cursor"}, headers=web.auth("vic"))
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "cursor"


def test_campaign_detail_has_cycles_hypotheses_budget_and_best_so_far(web: Web) -> None:
    d = web.client.get(f"/api/v1/campaigns/{web.campaign_id}", headers=web.auth("vic")).json()
    assert d["campaign"]["status"] == "completed" and d["campaign"]["owner"] == "alice"
    assert d["cycles"] and d["hypotheses"]
    assert {h["verdict"] for h in d["hypotheses"]} <= {"supported", "refuted", "inconclusive", "failed"}
    n_trials = len(web.store.trials.list(campaign_id=web.campaign_id, limit=100_000).items)
    assert d["budget"]["trials_used"] == n_trials == sum(d["trial_counts"].values())
    curve = d["best_so_far"]
    assert len(curve["trial_id"]) == len(curve["objective"]) == len(curve["best"]) == n_trials
    best = [b for b in curve["best"] if b is not None]
    assert best == sorted(best)  # maximize: the running best never drops
    assert best[-1] == max(v for v in curve["objective"] if v is not None)
    hyps = web.client.get(f"/api/v1/campaigns/{web.campaign_id}/hypotheses", headers=web.auth("vic")).json()
    assert [h["id"] for h in hyps["items"]] == [h["id"] for h in d["hypotheses"]]


def test_claim_detail_resolves_evidence_to_trials_with_provenance(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    d = web.client.get(f"/api/v1/claims/{claim_id}", headers=web.auth("bob")).json()
    trials = [e for e in d["evidence"] if e["kind"] == "trial"]
    assert trials and {e["role"] for e in trials} >= {"control", "treatment"}
    checksum = d["claim"]["context"]["dataset_checksum"]
    for ev in trials:
        trial = web.store.trials.get(ev["ref_id"])
        assert ev["provenance"]["spec_hash"] == trial.spec_hash
        assert ev["provenance"]["dataset_checksum"] == checksum
        assert ev["provenance"]["seed"] == trial.spec.seed
    assert d["campaign_owner"] == "alice"
    assert "validate" in d["actions"]  # bob did not run the campaign
    mine = web.client.get(f"/api/v1/claims/{claim_id}", headers=web.auth("alice")).json()
    assert "validate" not in mine["actions"] and "reject" not in mine["actions"]
    graph = web.client.get(f"/api/v1/claims/{claim_id}/graph", headers=web.auth("vic")).json()
    ids = {n["id"] for n in graph["nodes"]}
    assert claim_id in ids and {e["ref_id"] for e in trials} & ids
    assert all(e["src"] in ids and e["dst"] in ids for e in graph["edges"])


def test_claim_filters(web: Web) -> None:
    h = web.auth("vic")
    every = web.client.get("/api/v1/claims", params={"limit": 500}, headers=h).json()["items"]
    tiers = {c["tier"] for c in every}
    for tier in tiers:
        got = web.client.get("/api/v1/claims", params={"tier": tier, "limit": 500}, headers=h).json()["items"]
        assert got and {c["tier"] for c in got} == {tier}
    assert web.client.get("/api/v1/claims", params={"metric": "hd95"}, headers=h).json()["items"] == []
    ds = every[0]["dataset"]
    assert len(
        web.client.get("/api/v1/claims", params={"dataset": ds, "limit": 500}, headers=h).json()["items"]
    ) == len(every)
    bad = web.client.get("/api/v1/claims", params={"tier": "trusted"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "tier"


def test_validate_changes_tier_and_writes_the_audit_entry(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    r = web.client.post(
        f"/api/v1/claims/{claim_id}/validate", json={"rationale": RATIONALE}, headers=web.auth("bob")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["claim"]["tier"] == "validated" == web.store.claims.get(claim_id).tier
    entry = body["audit"]
    assert (entry["actor"], entry["action"]) == ("bob", "claim.transition")
    assert entry["detail"]["from"] == "reproduced" and entry["detail"]["to"] == "validated"
    assert entry["detail"]["reason"] == RATIONALE and entry["detail"]["role"] == "reviewer"
    log = web.client.get("/api/v1/audit", params={"object_id": claim_id}, headers=web.auth("vic")).json()
    assert log["items"][-1]["hash"] == entry["hash"]
    assert web.client.get("/api/v1/audit/verify", headers=web.auth("vic")).json()["ok"] is True
    again = web.client.post(
        f"/api/v1/claims/{claim_id}/validate", json={"rationale": RATIONALE}, headers=web.auth("bob")
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "lifecycle"


def test_the_campaign_owner_cannot_validate_or_reject(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    before = len(web.store.audit.list(limit=100_000))
    for action in ("validate", "reject"):
        r = web.client.post(
            f"/api/v1/claims/{claim_id}/{action}", json={"rationale": RATIONALE}, headers=web.auth("alice")
        )
        assert r.status_code == 403
        assert "own campaign" in r.json()["error"]["message"]
    assert web.store.claims.get(claim_id).tier == "reproduced"
    # Nothing changed; the two refusals are on record (issue 14 item 21).
    new = web.store.audit.list(limit=100_000)[before:]
    assert [(e.action, e.actor) for e in new] == [("access.denied", "alice")] * 2


def test_no_body_can_set_tier_status_or_validated_by(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    for extra in ({"tier": "validated"}, {"validated_by": "bob"}, {"status": "validated"}):
        r = web.client.post(
            f"/api/v1/claims/{claim_id}/reject",
            json={"rationale": RATIONALE, **extra},
            headers=web.auth("bob"),
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == next(iter(extra))
    r = web.client.post(
        "/api/v1/campaigns",
        json={"example": "replay", "status": "completed", "owner": "bob"},
        headers=web.auth("bob"),
    )
    assert r.status_code == 422 and {d["field"] for d in r.json()["error"]["details"]} == {"status", "owner"}
    assert web.store.claims.get(claim_id).tier == "reproduced"


def test_review_needs_a_rationale(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    for body in ({}, {"rationale": ""}, {"rationale": "   ok     "}):
        r = web.client.post(f"/api/v1/claims/{claim_id}/validate", json=body, headers=web.auth("bob"))
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "rationale"


def test_review_actions_are_rate_limited(template: Template, tmp_path: Path) -> None:
    web = make_web(template, tmp_path, review_limit=RateLimit(count=2, window_s=60))
    claim_id = web.claims("reproduced")[0]
    url = f"/api/v1/claims/{claim_id}/request-reproduction"
    codes = [
        web.client.post(url, json={"rationale": RATIONALE}, headers=web.auth("bob")).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    r = web.client.post(url, json={"rationale": RATIONALE}, headers=web.auth("bob"))
    assert r.json()["error"]["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60
    # Per user: another reviewer is not affected.
    assert web.client.post(url, json={"rationale": RATIONALE}, headers=web.auth("ada")).status_code == 200
    requests = web.store.reviews.list(claim_id=claim_id)
    assert [r.actor for r in requests] == ["bob", "bob", "ada"]


def test_every_error_has_the_same_body(web: Web) -> None:
    cases = [
        (web.client.get("/api/v1/nowhere", headers=web.auth("vic")), 404, "not_found"),
        (web.client.get("/api/v1/claims/clm_missing", headers=web.auth("vic")), 404, "not_found"),
        (web.client.delete("/api/v1/campaigns", headers=web.auth("vic")), 405, "method_not_allowed"),
        (web.client.get("/api/v1/campaigns"), 401, "unauthenticated"),
        (
            web.client.get("/api/v1/campaigns", headers={"Authorization": "Bearer tok_x.y"}),
            401,
            "unauthenticated",
        ),
        (
            web.client.get("/api/v1/trials", params={"limit": 0}, headers=web.auth("vic")),
            422,
            "invalid_input",
        ),
        (web.client.get("/api/v1/users", headers=web.auth("vic")), 403, "forbidden"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_revoked_and_tampered_tokens_are_refused(web: Web) -> None:
    from medloop.web.accounts import issue_token, revoke_token

    token, secret = issue_token(web.store, "bob", actor="test", label="ci")
    h = {"Authorization": f"Bearer {secret}"}
    assert web.client.get("/api/v1/me", headers=h).json() == {
        "name": "bob",
        "role": "reviewer",
        "via": "token",
    }
    wrong = {"Authorization": f"Bearer {secret[:-2]}xx"}
    assert web.client.get("/api/v1/me", headers=wrong).status_code == 401
    revoke_token(web.store, token.id, actor="test")
    assert web.client.get("/api/v1/me", headers=h).status_code == 401
    # Only the hash is stored.
    assert secret.split(".", 1)[1] not in (web.settings.db_path.read_bytes().decode("latin-1"))


def test_session_changes_need_the_csrf_token(web: Web) -> None:
    client, csrf = web.login("bob")
    claim_id = web.claims("reproduced")[0]
    url = f"/api/v1/claims/{claim_id}/request-reproduction"
    r = client.post(url, json={"rationale": RATIONALE})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
    assert (
        client.post(url, json={"rationale": RATIONALE}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    )
    assert client.post(url, json={"rationale": RATIONALE}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/v1/me").json()["via"] == "session"
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/api/v1/me").status_code == 401


def test_campaign_form_errors_name_the_field_and_yaml_line(web: Web) -> None:
    text = B.replay_yaml(web.table).replace("max_cycles: 3", "max_cycles: 0").replace("planner:", "planer:")
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert r.status_code == 422
    details = {d["field"]: d for d in r.json()["error"]["details"]}
    assert set(details) == {"budget.max_cycles", "planer"}
    lines = text.splitlines()
    assert "max_cycles: 0" in lines[details["budget.max_cycles"]["line"] - 1]
    assert lines[details["planer"]["line"] - 1].startswith("planer:")
    assert details["planer"]["message"].startswith("unknown key")

    missing = web.client.post(
        "/api/v1/campaigns",
        json={"example": "replay", "overrides": {"executor.kind": "local", "dataset.path": "/nowhere/ds"}},
        headers=web.auth("bob"),
    )
    assert missing.status_code == 422
    detail = missing.json()["error"]["details"][0]
    assert detail["field"] == "dataset.path" and "/nowhere/ds does not exist" in detail["message"]
    broken = web.client.post(
        "/api/v1/campaigns", json={"spec_yaml": "name: [unclosed"}, headers=web.auth("bob")
    )
    detail = broken.json()["error"]["details"][0]
    assert (broken.status_code, detail["field"], detail["line"]) == (422, "yaml", 1)
    assert web.store.campaigns.list().items[0].id == web.campaign_id  # nothing was created


def test_campaign_controls_follow_status_and_ownership(web: Web) -> None:
    r = web.client.post("/api/v1/campaigns", json={"example": "replay"}, headers=web.auth("agt"))
    assert r.status_code == 201 and r.json()["pid"] is None
    cid = r.json()["campaign"]["id"]
    assert r.headers["Location"] == f"/api/v1/campaigns/{cid}"
    assert web.store.campaigns.get(cid).owner == "agt"
    assert web.client.post(f"/api/v1/campaigns/{cid}/pause", headers=web.auth("agt")).status_code == 409
    assert web.client.post(f"/api/v1/campaigns/{cid}/stop", headers=web.auth("bob")).status_code == 403
    stopped = web.client.post(f"/api/v1/campaigns/{cid}/stop", headers=web.auth("agt"))
    assert stopped.status_code == 202 and stopped.json()["campaign"]["status"] == "stopped"
    assert web.client.post(f"/api/v1/campaigns/{cid}/launch", headers=web.auth("ada")).status_code == 409
    actions = [e.action for e in web.store.audit.list(object_id=cid)]
    assert actions == ["campaign.create", "campaign.stop"]


@pytest.mark.slow
def test_launch_runs_the_campaign_in_the_background(web: Web) -> None:
    started = time.monotonic()
    r = web.client.post(
        "/api/v1/campaigns", json={"example": "replay", "launch": True}, headers=web.auth("bob")
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 201 and r.json()["pid"] > 0
    assert elapsed < 5.0, f"the request waited {elapsed:.1f}s for the campaign"
    cid = r.json()["campaign"]["id"]
    again = web.client.post(f"/api/v1/campaigns/{cid}/resume", headers=web.auth("bob"))
    assert again.status_code == 409
    deadline = time.monotonic() + 240
    status = ""
    while time.monotonic() < deadline:
        status = web.client.get(f"/api/v1/campaigns/{cid}", headers=web.auth("bob")).json()["campaign"][
            "status"
        ]
        if status in ("completed", "failed"):
            break
        time.sleep(1.0)
    log = web.settings.workspace_dir / "runs" / f"{cid}.log"
    assert status == "completed", log.read_text()[-2000:]
    d = web.client.get(f"/api/v1/campaigns/{cid}", headers=web.auth("bob")).json()
    assert d["budget"]["trials_used"] > 0 and d["cycles"]


def test_docs_and_assets_are_served_locally(web: Web) -> None:
    import re

    for page in ("/api/docs", "/api/redoc"):
        html = web.client.get(page).text
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
        for ref in refs:
            assert web.client.get(ref).status_code == 200, ref
    spec = web.client.get("/api/v1/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/api/v1/claims/{claim_id}/validate" in spec["paths"]
    for vendor in ("swagger-ui/LICENSE", "redoc/LICENSE"):
        assert web.client.get(f"/static/vendor/{vendor}").status_code == 200


def test_artifacts_cannot_escape_the_trial_folder(web: Web) -> None:
    trial_id = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0].id
    for path in ("../../medloop.db", "%2e%2e/%2e%2e/medloop.db", "/etc/passwd"):
        r = web.client.get(f"/api/v1/trials/{trial_id}/artifacts/{path}", headers=web.auth("vic"))
        assert r.status_code == 404


def test_quarantine_and_lift_through_the_knowledge_base(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    r = web.client.post(
        f"/api/v1/claims/{claim_id}/quarantine", json={"rationale": RATIONALE}, headers=web.auth("agt")
    )
    assert r.status_code == 200, r.text
    q = r.json()["quarantine"]
    assert r.json()["claim"]["tier"] == "quarantined" and claim_id in q["members"]
    active = web.client.get("/api/v1/quarantines", headers=web.auth("vic")).json()["items"]
    assert [x["id"] for x in active] == [q["id"]]
    detail = web.client.get(f"/api/v1/claims/{claim_id}", headers=web.auth("vic")).json()
    assert detail["quarantined_by"] == [q["id"]] and "validate" not in detail["actions"]
    assert (
        web.client.post(
            f"/api/v1/quarantines/{q['id']}/lift", json={"rationale": RATIONALE}, headers=web.auth("agt")
        ).status_code
        == 403
    )
    lifted = web.client.post(
        f"/api/v1/quarantines/{q['id']}/lift", json={"rationale": RATIONALE}, headers=web.auth("bob")
    )
    assert lifted.status_code == 200, lifted.text
    assert web.store.claims.get(claim_id).tier == "reproduced"
    actions = [e.action for e in web.store.audit.list(object_id=claim_id)]
    assert "claim.quarantine" in actions and "claim.unquarantine" in actions
    # A whole campaign: every claim derived from it is demoted at once.
    r = web.client.post(
        "/api/v1/quarantines",
        json={"target": web.campaign_id, "rationale": RATIONALE},
        headers=web.auth("bob"),
    )
    assert r.status_code == 201
    tiers = {c.tier for c in web.store.claims.list(campaign_id=web.campaign_id, limit=1000)}
    assert tiers == {"quarantined"}


def test_logs_of_a_running_trial_come_from_its_job_folder(web: Web) -> None:
    from medloop.sandbox.base import job_key

    done = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0]
    running = done.model_copy(
        update={"id": "trl_running", "status": "running", "result": None, "spec_hash": "f" * 64}
    )
    web.store.trials.put(running)
    assert (
        web.client.get("/api/v1/trials/trl_running/logs", headers=web.auth("vic")).json()["source"] == "none"
    )
    folder = web.settings.jobs_dir / job_key(web.campaign_id, "f" * 64)
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text(
        "".join(f'{{"event": "progress", "iteration": {i}}}\n' for i in range(500))
    )
    logs = web.client.get(
        "/api/v1/trials/trl_running/logs", params={"tail": 3}, headers=web.auth("vic")
    ).json()
    assert logs["source"] == "file" and logs["truncated"] is True
    assert [line[-4:] for line in logs["lines"]] == ["497}", "498}", "499}"]


def test_artifacts_that_are_links_or_fifos_are_not_served(web: Web, tmp_path: Path) -> None:
    # Issue 14 item 1: the job wrote its output folder; a hard link to a host file (or a
    # symlink, or a FIFO that would hold a worker) is never listed or served.
    import os

    from medloop.core.records import JobResult, Provenance, TrialResult

    out = tmp_path / "job" / "out"
    out.mkdir(parents=True)
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="x", ended_at="y")
    job = JobResult(key="k", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=prov)
    base = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0]
    result = TrialResult(trial_id="trl_links", spec_hash="s", status="succeeded", job=job)
    trial = base.model_copy(update={"id": "trl_links", "result": result})
    web.store.trials.put(trial)
    secret = tmp_path / "host-secret.txt"
    secret.write_text("SECRET")
    os.link(secret, out / "hard.txt")
    (out / "soft.txt").symlink_to(secret)
    os.mkfifo(out / "pipe.txt")
    (out / "plain.txt").write_text("ok")
    names = {
        a["path"]
        for a in web.client.get(f"/api/v1/trials/{trial.id}/artifacts", headers=web.auth("vic")).json()[
            "items"
        ]
    }
    assert "plain.txt" in names and not names & {"hard.txt", "soft.txt", "pipe.txt"}
    for name in ("hard.txt", "soft.txt", "pipe.txt"):
        r = web.client.get(f"/api/v1/trials/{trial.id}/artifacts/{name}", headers=web.auth("vic"))
        assert r.status_code == 404 and "SECRET" not in r.text
    assert (
        web.client.get(f"/api/v1/trials/{trial.id}/artifacts/plain.txt", headers=web.auth("vic")).text == "ok"
    )

"""Dashboard pages without a browser (forms, CSRF, live events), the slice viewer's data,
the CLI (users, audit verify, campaign report)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from medloop.core.records import CaseEvaluation, JobResult, Provenance, SplitEvaluation, TrialResult
from medloop.web import slices
from tests.web.conftest import Web

RATIONALE = "Reproduced with fresh seeds; the CI excludes zero."


def test_pages_need_a_login_and_render(web: Web) -> None:
    anon = web.client.get(f"/campaigns/{web.campaign_id}", follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"] == f"/login?next=/campaigns/{web.campaign_id}"
    client, _ = web.login("vic")
    claim_id = web.claims("reproduced")[0]
    trial_id = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0].id
    for path in (
        "/",
        f"/campaigns/{web.campaign_id}",
        "/claims",
        f"/claims/{claim_id}",
        f"/trials/{trial_id}",
        "/audit",
    ):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "http://" not in r.text.replace('href="http://127', "") and "https://" not in r.text
    page = client.get(f"/campaigns/{web.campaign_id}").text
    assert 'id="best-so-far"' in page and "Cycle 1" in page
    assert client.get("/claims/clm_nope").status_code == 404
    # A viewer sees no review buttons.
    assert 'value="validate"' not in client.get(f"/claims/{claim_id}").text


def test_login_rejects_bad_tokens_and_forged_forms(web: Web) -> None:
    r = web.client.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', r.text)
    assert nonce is not None
    bad = web.client.post("/login", data={"nonce": nonce.group(1), "token": "tok_x.y"})
    assert bad.status_code == 401 and "unknown API token" in bad.text
    fresh = web.client.__class__(web.app)  # no pre-login cookie: a cross-site form post
    forged = fresh.post("/login", data={"nonce": nonce.group(1), "token": web.tokens["bob"]})
    assert forged.status_code == 403 and "medloop_session" not in forged.cookies


def test_review_form_validates_and_refuses_without_csrf(web: Web) -> None:
    client, csrf = web.login("bob")
    claim_id = web.claims("reproduced")[0]
    no_csrf = client.post(f"/claims/{claim_id}/review", data={"action": "validate", "rationale": RATIONALE})
    assert no_csrf.status_code == 403
    short = client.post(
        f"/claims/{claim_id}/review", data={"action": "validate", "rationale": "ok", "csrf": csrf}
    )
    assert "refused" in short.text and web.store.claims.get(claim_id).tier == "reproduced"
    done = client.post(
        f"/claims/{claim_id}/review", data={"action": "validate", "rationale": RATIONALE, "csrf": csrf}
    )
    assert done.status_code == 200 and "tier is now validated" in done.text
    assert web.store.claims.get(claim_id).tier == "validated"


def test_launch_form_shows_errors_next_to_fields(web: Web) -> None:
    client, csrf = web.login("bob")
    form = client.get("/campaigns/new?example=replay").text
    assert "replay example" in form  # the example's YAML is loaded into the editor
    text = re.search(r'<textarea name="spec_yaml"[^>]*>(.*?)</textarea>', form, re.S)
    assert text is not None
    r = client.post(
        "/campaigns/new",
        data={"csrf": csrf, "spec_yaml": text.group(1).replace("&#34;", '"'), "budget.max_trials": "-3"},
    )
    assert r.status_code == 422
    field = re.search(
        r'id="f-budget.max_trials".*?<p class="field-error" data-field="budget.max_trials">([^<]+)',
        r.text,
        re.S,
    )
    assert field is not None and "greater than or equal to 1" in field.group(1)
    broken = client.post(
        "/campaigns/new", data={"csrf": csrf, "spec_yaml": "name: x\nbudget: {max_cycles: many}\n"}
    )
    assert re.search(
        r'data-field="budget.max_cycles">YAML line 2: Input should be a valid integer', broken.text
    )
    errs = re.findall(r'data-field="yaml">([^<]+)', broken.text)
    assert "dataset: required key is missing" in errs and "search_space: required key is missing" in errs
    ok = client.post("/campaigns/new", data={"csrf": csrf, "example": "replay"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].startswith("/campaigns/cmp_")


def test_live_updates_stream_a_change_event(web: Web) -> None:
    client, _ = web.login("vic")
    seen: list[str] = []

    def change_later() -> None:
        time.sleep(1.5)
        trial = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0]
        web.store.trials.set_status(trial.id, "running")

    threading.Thread(target=change_later, daemon=True).start()
    with client.stream("GET", f"/campaigns/{web.campaign_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            seen.append(line)
            if line.startswith("data:"):
                break
    assert "event: change" in seen
    assert json.loads(seen[-1].removeprefix("data: "))["trials"] > 0


def test_slice_overlay_from_real_nifti(web: Web, tmp_path: Path) -> None:
    """A trial whose prediction is the reference label with one organ erased: the API
    returns the slice, label and prediction that differ exactly there."""
    from medloop.experiments.dataset import synth_phantom
    from medloop.experiments.dataset.imageio import read_volume, save_nifti

    ds = synth_phantom(tmp_path / "Dataset902_Slices", cases=4, size=32, seed=2, test_cases=0)
    case = "phantom_001"
    label = read_volume(ds / "labelsTr" / f"{case}.nii.gz").array.astype(np.uint8)
    pred = label.copy()
    pred[pred == 2] = 0  # the model missed the spleen
    out = tmp_path / "job" / "out"
    save_nifti(pred, out / "predictions" / "eval" / f"{case}.nii.gz", spacing=(1.0, 1.0, 5.0))
    campaign = web.store.campaigns.get(web.campaign_id)
    spec_ds = campaign.spec.dataset.model_copy(update={"path": ds})
    # The same campaign pointing at this dataset (specs are immutable: add a copy).
    other = campaign.model_copy(
        update={"id": "cmp_slices", "spec": campaign.spec.model_copy(update={"dataset": spec_ds})}
    )
    web.store.campaigns.add(other)
    base = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0]
    manifest = base.spec.dataset.model_copy(update={"eval_cases": [case], "train_cases": ["phantom_000"]})
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="x", ended_at="y")
    job = JobResult(key="k", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=prov)
    evaluation = SplitEvaluation(
        split="eval",
        cases=[CaseEvaluation(case=case, metrics={"dice": {"spleen": 0.0}})],
        summary={"dice": 0.5},
        implementation="t",
    )
    trial = base.model_copy(
        update={
            "id": "trl_slices",
            "campaign_id": "cmp_slices",
            "spec": base.spec.model_copy(update={"dataset": manifest}),
            "result": TrialResult(
                trial_id="trl_slices",
                spec_hash="s",
                status="succeeded",
                objective=0.5,
                evaluations={"eval": evaluation},
                job=job,
            ),
        }
    )
    web.store.trials.put(trial)
    r = web.client.get("/api/v1/trials/trl_slices/slices", params={"case": case}, headers=web.auth("vic"))
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["width"], s["height"], s["depth"], s["z"]) == (32, 32, 1, 0)
    lab = np.frombuffer(__import__("base64").b64decode(s["label"]), np.uint8).reshape(32, 32)
    prd = np.frombuffer(__import__("base64").b64decode(s["prediction"]), np.uint8).reshape(32, 32)
    assert np.array_equal(lab, label[:, :, 0]) and np.array_equal(prd, pred[:, :, 0])
    assert set(np.unique(lab[lab != prd])) == {2}
    detail = web.client.get("/api/v1/trials/trl_slices", headers=web.auth("vic")).json()
    assert detail["cases"] == {"eval": [case]}
    outside = web.client.get(
        "/api/v1/trials/trl_slices/slices", params={"case": "phantom_000"}, headers=web.auth("vic")
    )
    assert outside.status_code == 404  # a training case is not in the eval split
    # The report's PNG overlay of the same slice: label outlines in the spleen colour.
    files = slices.case_files(trial, other, "eval", case, Path.cwd())
    sl = slices.load_slice(files, case=case, split="eval", z=None, labels=manifest.labels)
    png = slices.png_bytes(slices.overlay_rgb(sl), scale=2)
    assert png.startswith(b"\x89PNG") and len(png) > 200


def _cli(web: Web, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "MEDLOOP_WORKSPACE": str(web.settings.workspace_dir),
        "MEDLOOP_EMBEDDER": "hash",
        "MEDLOOP_VECTOR_INDEX": "memory",
        "MEDLOOP_USER": "root",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    return subprocess.run(
        [sys.executable, "-m", "medloop", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_users_tokens_and_audit_verify(web: Web) -> None:
    added = _cli(web, "users", "add", "rita", "--role", "reviewer", "--json")
    assert added.returncode == 0, added.stderr
    token = json.loads(added.stdout)["token"]
    assert web.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "rita"
    dup = _cli(web, "users", "add", "rita", "--role", "viewer")
    assert dup.returncode == 4 and "exists" in dup.stderr and "Traceback" not in dup.stderr
    bad = _cli(web, "users", "add", "x y", "--role", "boss")
    assert bad.returncode == 2 and "not allowed" in bad.stderr
    listed = json.loads(_cli(web, "users", "list", "--json").stdout)
    assert {u["name"]: u["role"] for u in listed}["rita"] == "reviewer"
    assert all("hash" not in t for u in listed for t in u["tokens"])
    revoked = _cli(web, "users", "revoke", token)
    assert revoked.returncode == 0
    assert web.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    ok = _cli(web, "audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    actions = {
        e["action"] for e in json.loads(_cli(web, "audit", "list", "--json", "--limit", "1000").stdout)
    }
    assert {"user.add", "token.create", "token.revoke", "campaign.create", "claim.transition"} <= actions
    # Tamper with one entry the way someone with file access would.
    con = sqlite3.connect(web.settings.db_path)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    con.commit()
    con.close()
    broken = _cli(web, "audit", "verify")
    assert (
        broken.returncode == 1 and "broken at entry 3" in broken.stderr and "Traceback" not in broken.stderr
    )


def test_campaign_report_is_one_self_contained_file(web: Web, tmp_path: Path) -> None:
    out = tmp_path / "share" / "report.html"
    r = _cli(web, "campaign", "report", web.campaign_id, "--out", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "<svg" in html and 'id="best-so-far"' in html and "<style>" in html
    for hyp in web.store.cycles.hypotheses(web.campaign_id):
        assert hyp.changes[0].factor in html
    for claim in web.store.claims.list(campaign_id=web.campaign_id):
        assert claim.id in html
    # Nothing is loaded from anywhere: the chart library is inline, no external or
    # server-relative URLs.
    assert "<script src" not in html and "uPlot" in html and 'data-chart="' in html
    assert not re.search(r'(?:src|href)="(?!data:|#)', html)
    missing = _cli(web, "campaign", "report", "cmp_nope", "--out", str(tmp_path / "x.html"))
    assert missing.returncode == 3 and not (tmp_path / "x.html").exists()

"""Dashboard fixes from issue 19: titles follow the tier, budget-cancelled hypotheses,
review buttons only for moves the lifecycle allows, audit paging with incremental checks."""

from __future__ import annotations

import re
import sqlite3

import pytest

from medloop.core.records import TrialResult
from medloop.web.render import claim_title
from tests.web.conftest import Web

RATIONALE = "effect reproduced with fresh seeds; CI excludes zero"


def test_claim_titles_carry_the_current_tier_not_the_one_at_creation(web: Web) -> None:
    claim_id = web.claims("reproduced")[0]
    claim = web.store.claims.get(claim_id)
    assert not claim.statement.rstrip().endswith(("supported", "reproduced"))  # no verdict in the text
    # A claim written before this change carried its creation verdict in the text.
    assert claim_title(claim.statement + ": supported", "reproduced") == claim.statement + ": reproduced"
    client, _ = web.login("bob")
    html = client.get(f"/claims/{claim_id}").text
    title = re.search(r'class="claim-title">([^<]+)</a>', html)
    assert title is not None and title.group(1).endswith(": reproduced"), title
    assert ": supported" not in title.group(1)
    r = web.client.post(
        f"/api/v1/claims/{claim_id}/validate", json={"rationale": RATIONALE}, headers=web.auth("bob")
    )
    assert r.status_code == 200, r.text
    html = client.get(f"/campaigns/{web.campaign_id}").text
    assert re.search(r">[^<]*: validated</a>", html), "campaign page shows the title with the new tier"


def test_review_buttons_are_only_the_moves_the_server_accepts(web: Web) -> None:
    client, _ = web.login("bob")
    for tier in ("inconclusive", "supported", "refuted"):
        for claim_id in web.claims(tier)[:1]:
            html = client.get(f"/claims/{claim_id}").text
            assert 'value="validate"' not in html, f"Validate offered on a {tier} claim"
            assert 'value="reject"' in html
    reproduced = web.claims("reproduced")[0]
    assert 'value="validate"' in client.get(f"/claims/{reproduced}").text
    # and the button that is offered is accepted
    r = web.client.post(
        f"/api/v1/claims/{reproduced}/validate", json={"rationale": RATIONALE}, headers=web.auth("bob")
    )
    assert r.status_code == 200


def test_a_hypothesis_cancelled_by_the_budget_is_not_shown_as_failed(web: Web) -> None:
    hyp = web.store.cycles.hypotheses(web.campaign_id)[0]
    why = "campaign budget: wall time of 60 s is spent"
    trials = web.store.trials.list(campaign_id=web.campaign_id, hypothesis_id=hyp.id).items
    assert trials
    for t in trials:
        web.store.trials.set_result(
            t.id, TrialResult(trial_id=t.id, spec_hash=t.spec_hash, status="cancelled", error=why)
        )
    web.store.cycles.put_hypothesis(hyp.model_copy(update={"verdict": "failed"}))
    client, _ = web.login("vic")
    html = client.get(f"/campaigns/{web.campaign_id}").text
    assert "cancelled (budget)" in html and why in html
    detail = web.client.get(f"/api/v1/campaigns/{web.campaign_id}", headers=web.auth("vic")).json()
    assert detail["verdict_notes"][hyp.id] == {"label": "cancelled (budget)", "reason": why}


def test_audit_page_pages_by_seq_and_verifies_only_new_entries(web: Web) -> None:
    client, _ = web.login("vic")
    for i in range(230):
        web.store.audit.append("ada", "note.add", "note", f"n{i}", {"reason": f"entry {i}"})
    last = web.store.audit.list(after=0, limit=10**6)[-1].seq
    first = client.get("/audit").text
    assert "Hash chain intact" in first
    seqs = [int(s) for s in re.findall(r"<tr><td>(\d+)</td>", first)]
    assert seqs[0] == last and seqs == sorted(seqs, reverse=True) and len(seqs) == 100
    older = re.search(r'href="/audit\?before=(\d+)"', first)
    assert older is not None and int(older.group(1)) == seqs[-1]
    second = client.get(f"/audit?before={older.group(1)}").text
    seqs2 = [int(s) for s in re.findall(r"<tr><td>(\d+)</td>", second)]
    assert seqs2[0] == seqs[-1] - 1 and len(seqs2) == 100
    assert client.get("/audit?before=x").status_code == 422

    # Verified once: the next view hashes only what was appended since.
    chain = web.app.state.ctx.audit_chain
    assert chain.mark.seq == last
    web.store.audit.append("ada", "note.add", "note", "late", {"reason": "late"})
    assert chain.check(web.store).checked == 1
    # A forged new entry is caught on the next view, without a full recomputation.
    web.store.audit.append("ada", "note.add", "note", "forged", {"reason": "x"})
    con = sqlite3.connect(web.settings.db_path)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET actor = 'mallory' WHERE seq = ?", (last + 2,))
    con.commit()
    con.close()
    assert f"Hash chain broken at entry {last + 2}" in client.get("/audit").text


def test_trial_axis_has_whole_ticks_and_the_legend_sits_above_the_plot() -> None:
    from medloop.web import charts

    assert charts._nice_ticks(1, 10, 6, integer=True) == [2, 4, 6, 8, 10]  # was 2.5, 5, 7.5, 10
    series = [
        charts.Series("trial objective", [(float(i), 0.5 + i / 100) for i in range(1, 11)], dots=True),
        charts.Series("best screened", [(1.0, 0.51), (10.0, 0.6)], step=True),
    ]
    svg = charts.line_chart(series, title="t", x_label="trials", y_label="dice", chart_id="c")
    ticks = re.findall(r'class="chart-tick">([^<]+)</text>', svg)
    assert "2.5" not in ticks and "7.5" not in ticks
    frame_top = float(
        re.findall(r'<rect x="\d+" y="(\d+)" width="\d+" height="\d+" class="chart-frame"', svg)[0]
    )
    legend_ys = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" class="chart-legend"', svg)]
    assert legend_ys and all(y < frame_top for y in legend_ys), (legend_ys, frame_top)
    data = charts.chart_data(series, title="t", x_label="trials", y_label="dice")
    assert data["x"] == [float(i) for i in range(1, 11)] and data["integer_x"] is True
    assert data["series"][1]["y"][1] is None  # aligned columns: no value at x=2


def test_every_logged_iteration_reaches_the_trial_page(web: Web) -> None:
    import json as _json

    from medloop.core.records import JobResult, Provenance
    from medloop.web import views

    trial = web.store.trials.list(campaign_id=web.campaign_id, limit=1).items[0]
    out = web.settings.workspace / "fake-out"
    out.mkdir()
    losses = [1.0 / (i + 1) for i in range(150)]
    (out / views.CURVES_FILE).write_text(_json.dumps({"iteration": list(range(1, 151)), "loss": losses}))
    assert trial.result is not None
    prov = Provenance(
        code_version="t",
        runtime="local",
        host="h",
        started_at="2026-01-01T00:00:00Z",
        ended_at="2026-01-01T00:00:01Z",
    )
    job = JobResult(key="k", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=prov)
    history = [{"epoch": float(e), "iteration": float(50 * e), "loss": 0.5 / e} for e in (1, 2, 3)]
    web.store.trials.set_result(trial.id, trial.result.model_copy(update={"job": job, "history": history}))
    client, _ = web.login("vic")
    html = client.get(f"/trials/{trial.id}").text
    chart = re.search(r'id="curve-loss-i" data-height="\d+" data-chart="([^"]+)"', html)
    assert chart is not None
    from html import unescape

    data = _json.loads(unescape(chart.group(1)))
    batch = next(s for s in data["series"] if s["name"] == "batch loss")
    assert sum(v is not None for v in batch["y"]) == 150  # not 3 points for 150 iterations
    (out / views.CURVES_FILE).write_text("{not json")
    assert client.get(f"/trials/{trial.id}").status_code == 200  # a broken file is ignored


def test_compare_a_hypothesis_arms_and_picked_trials(web: Web) -> None:
    hyp = next(
        h for h in web.store.cycles.hypotheses(web.campaign_id) if h.control_trials and h.treatment_trials
    )
    r = web.client.get("/api/v1/compare", params={"hypothesis": hyp.id}, headers=web.auth("vic"))
    assert r.status_code == 200, r.text
    body = r.json()
    arms = {t["id"]: t["arm"] for t in body["trials"]}
    assert {k for k, v in arms.items() if v == "control"} == set(hyp.control_trials)
    assert body["cases"] and all(set(c["values"]) == set(arms) for c in body["cases"])
    paired = body["paired"]
    assert paired is not None and paired["n_cases"] == len(paired["control_per_case"])
    # the same statistic the campaign's analysis recorded for this hypothesis
    assert paired["estimate"] == pytest.approx(hyp.analysis["estimate"], abs=1e-9)
    assert set(body["per_site"][hyp.control_trials[0]]) >= {"site_a"} or body["per_site"]

    picked = hyp.control_trials[:1] + hyp.treatment_trials[:1]
    r2 = web.client.get("/api/v1/compare", params={"trials": ",".join(picked)}, headers=web.auth("vic"))
    assert r2.status_code == 200 and [t["id"] for t in r2.json()["trials"]] == picked
    one = web.client.get("/api/v1/compare", params={"trials": picked[0]}, headers=web.auth("vic"))
    assert one.status_code == 422 and one.json()["error"]["details"][0]["field"] == "trials"
    missing = web.client.get(
        "/api/v1/compare", params={"trials": "trl_nope,trl_gone"}, headers=web.auth("vic")
    )
    assert missing.status_code == 404

    client, _ = web.login("vic")
    html = client.get("/compare", params=[("trials", picked[0]), ("trials", picked[1])]).text
    assert 'id="cmp-paired"' in html and 'id="cmp-cases"' in html and 'id="cmp-scatter-i"' in html
    campaign = client.get(f"/campaigns/{web.campaign_id}").text
    assert f"/compare?hypothesis={hyp.id}" in campaign and 'id="compare-form"' in campaign


def test_slice_api_returns_stored_intensities_for_window_level(web: Web, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64

    import numpy as np

    from medloop.experiments.dataset.imageio import read_volume
    from tests.web import browser_data as D

    trial_id, case = D.volume_trial(web.store, web.campaign_id, tmp_path)
    r = web.client.get(
        f"/api/v1/trials/{trial_id}/slices", params={"case": case, "z": 3}, headers=web.auth("vic")
    )
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["depth"] > 1 and s["z"] == 3 and s["modality"] == "CT"
    raw = np.frombuffer(base64.b64decode(s["raw"]), "<f4").reshape(s["height"], s["width"])
    ds = web.store.campaigns.get("cmp_volume").spec.dataset.path
    volume = read_volume(ds / "imagesTr" / f"{case}_0000.nii.gz").array
    assert np.allclose(raw, volume[:, :, 3])  # HU as stored: the viewer's W400/L40 means what it says


def test_overlay_thinning_keeps_spikes() -> None:
    from medloop.web.charts import thin_minmax

    pts = [(float(i), 1.0) for i in range(10_000)]
    pts[4321] = (4321.0, 9.0)
    thin = thin_minmax(pts, 500)
    assert len(thin) <= 1000 and (4321.0, 9.0) in thin and thin == sorted(thin)

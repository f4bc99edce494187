"""Dashboard fixes from issue 19: titles follow the tier, budget-cancelled hypotheses,
review buttons only for moves the lifecycle allows, audit paging with incremental checks."""

from __future__ import annotations

import re
import sqlite3

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

"""A failed trial says why, everywhere it is shown: `campaign show` (text and --json, which
lists the trials), the campaign page and the trial page; a test split the host could not
score says so too. (Issue 14 items 13 and 24.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.web.conftest import Web
from tests.web.test_pages_cli import _cli

ENOSPC = "exited with code 1: OSError: [Errno 28] No space left on device"
NO_TEST = "VQA predictions unusable: /out/predictions/test.jsonl line 3 is not JSON"


def _break_two_trials(web: Web) -> tuple[str, str]:
    first, second = web.store.trials.list(campaign_id=web.campaign_id, limit=2).items
    assert first.result is not None and second.result is not None
    web.store.trials.set_result(
        first.id, first.result.model_copy(update={"status": "failed", "error": ENOSPC})
    )
    web.store.trials.set_result(
        second.id, second.result.model_copy(update={"split_errors": {"test": NO_TEST}})
    )
    return first.id, second.id


def test_campaign_show_lists_trials_with_their_causes(web: Web) -> None:
    failed, unscored = _break_two_trials(web)
    shown = _cli(web, "campaign", "show", web.campaign_id, "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {t["id"]: t for t in json.loads(shown.stdout)["trials"]}
    assert len(rows) == len(web.store.trials.list(campaign_id=web.campaign_id, limit=100_000).items)
    assert rows[failed]["status"] == "failed" and rows[failed]["cause"] == ENOSPC
    assert set(rows[failed]) == {"id", "hypothesis", "arm", "seed", "status", "objective", "cause"}
    assert rows[unscored]["cause"] == f"test split not scored: {NO_TEST}"
    assert sum(1 for t in rows.values() if t["cause"]) == 2
    text = _cli(web, "campaign", "show", web.campaign_id)
    assert text.returncode == 0, text.stderr
    assert f"{failed} " in text.stdout and "No space left on device" in text.stdout


def test_dashboard_shows_the_cause_of_a_failed_trial(web: Web) -> None:
    failed, unscored = _break_two_trials(web)
    client, _ = web.login("vic")
    page = client.get(f"/campaigns/{web.campaign_id}").text
    assert "No space left on device" in page
    # A viewer is told why there are no control buttons instead of an unexplained blank.
    assert "vic (viewer) may not control" in page
    assert "No space left on device" in client.get(f"/trials/{failed}").text
    assert "test split not scored" in client.get(f"/trials/{unscored}").text


def test_an_incomplete_campaign_says_why_in_show_page_and_report(web: Web, tmp_path: Path) -> None:
    why = (
        "2 of 6 final test-split runs have no test result: campaign budget: wall time of 480 s is spent (x2)"
    )
    campaign = web.store.campaigns.get(web.campaign_id)
    web.store.campaigns.update(
        web.campaign_id, status="incomplete", summary={**campaign.summary, "incomplete": why}
    )
    shown = _cli(web, "campaign", "show", web.campaign_id)
    assert shown.returncode == 0 and f"incomplete: {why}" in shown.stdout
    client, _ = web.login("vic")
    assert f"Incomplete: {why}" in client.get(f"/campaigns/{web.campaign_id}").text
    out = tmp_path / "report.html"
    assert _cli(web, "campaign", "report", web.campaign_id, "--out", str(out)).returncode == 0
    assert f"Incomplete: {why}" in out.read_text()

"""Hostile requests to the API (issue 14, items 14-18): each is refused fast with the JSON
error body, and nothing is written."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from medloop.core.records import JobResult, Provenance
from tests.unit.test_safeyaml import billion_laughs
from tests.web import builders as B
from tests.web.conftest import Web


def _nothing_created(web: Web) -> None:
    assert [c.id for c in web.store.campaigns.list().items] == [web.campaign_id]


def test_billion_laughs_campaign_is_refused_in_bounded_cpu(web: Web) -> None:
    text = B.replay_yaml(web.table) + billion_laughs()
    start = time.process_time()  # the server runs in this process (TestClient)
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert time.process_time() - start < 5  # generous: on main this ran for over 10 minutes
    assert r.status_code == 422, r.text
    detail = r.json()["error"]["details"][0]
    assert detail["field"] == "yaml" and "anchors and aliases" in detail["message"]
    assert text.splitlines()[detail["line"] - 1].startswith("a: &a")
    _nothing_created(web)


def test_duplicate_keys_are_refused_with_the_line(web: Web) -> None:
    text = B.replay_yaml(web.table) + "name: second name\n"
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert r.status_code == 422
    detail = r.json()["error"]["details"][0]
    assert "duplicate key 'name' (first on line 1)" in detail["message"]
    assert detail["line"] == len(text.splitlines())
    _nothing_created(web)


def test_boolean_count_and_quadratic_duration_are_refused_fast(web: Web) -> None:
    text = B.replay_yaml(web.table).replace("max_cycles: 3", "max_cycles: 3, max_trials: true")
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    detail = r.json()["error"]["details"][0]
    assert (r.status_code, detail["field"]) == (422, "budget.max_trials")
    assert "expected a number, got true" in detail["message"]
    # '1' + spaces + 'x' made the duration regex backtrack quadratically (minutes of CPU)
    slow = B.replay_yaml(web.table).replace(
        "max_cycles: 3", "max_cycles: 3, max_wall: '1" + " " * 150_000 + "x'"
    )
    start = time.process_time()
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": slow}, headers=web.auth("bob"))
    assert time.process_time() - start < 5
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "budget.max_wall"
    _nothing_created(web)


def _trial_with_outputs(web: Web, out: Path) -> str:
    """A trial of the campaign whose job wrote `out` (replayed trials have no folder)."""
    trial = web.store.trials.list(campaign_id=web.campaign_id).items[0]
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    now = "2026-01-01T00:00:00Z"
    provenance = Provenance(code_version="t", runtime="local", host="h", started_at=now, ended_at=now)
    job = JobResult(key="k", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=provenance)
    assert trial.result is not None
    web.store.trials.set_result(trial.id, trial.result.model_copy(update={"job": job}))
    return trial.id


def test_bad_artifact_paths_answer_the_json_error_body(web: Web, tmp_path: Path) -> None:
    client = TestClient(web.app, raise_server_exceptions=False)  # see what a real client sees
    trial = _trial_with_outputs(web, tmp_path / "out")
    ok = client.get(f"/api/v1/trials/{trial}/artifacts/metrics.json", headers=web.auth("bob"))
    assert (ok.status_code, ok.text) == (200, "{}")
    for path, status in (("%00", 400), ("a%00b/c", 400), ("x" * 300, 400), ("..%2F..%2Fetc%2Fpasswd", 404)):
        r = client.get(f"/api/v1/trials/{trial}/artifacts/{path}", headers=web.auth("bob"))
        assert r.status_code == status, (path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert error["code"] in ("bad_request", "not_found") and error["message"]
        assert str(tmp_path) not in r.text, "no server path in the answer"


def test_oversized_bodies_are_refused_413_before_parsing(web: Web) -> None:
    text = B.replay_yaml(web.table).replace("Raise Dice", "Raise Dice " + "x" * 50_000_000)
    start = time.process_time()
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to trust
        yield b'{"spec_yaml": "'
        for _ in range(3000):
            yield b"x" * 1000
        yield b'"}'

    r = web.client.post(
        "/api/v1/campaigns",
        content=chunks(),
        headers={**web.auth("bob"), "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")
    assert time.process_time() - start < 5
    _nothing_created(web)
    small = web.client.post("/api/v1/campaigns", json={"example": "replay"}, headers=web.auth("bob"))
    assert small.status_code == 201  # bodies under the cap pass through unchanged


def test_unreadable_case_via_the_api_leaves_no_campaign(web: Web, tmp_path: Path) -> None:
    from medloop.experiments.dataset import synth_phantom

    data = synth_phantom(tmp_path / "data", cases=6, seed=1, test_cases=0)
    victim = sorted((data / "imagesTr").iterdir())[1]
    victim.write_bytes(b"\x00garbage")
    text = (
        f"name: broken\ngoal: g\ndataset: {{path: {data}}}\nsearch_space: {{loss: [dice, dicece]}}\n"
        "budget: {max_cycles: 1}\n"
    )
    r = web.client.post("/api/v1/campaigns", json={"spec_yaml": text}, headers=web.auth("bob"))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_dataset" and victim.name in r.json()["error"]["message"]
    _nothing_created(web)


def test_deeply_nested_or_huge_number_json_is_a_json_400(web: Web) -> None:
    client = TestClient(web.app, raise_server_exceptions=False)
    start = time.process_time()
    for raw in (b"[" * 400_000 + b"]" * 400_000, b'{"spec_yaml": ' + b"9" * 900_000 + b"}"):
        r = client.post(
            "/api/v1/campaigns", content=raw, headers={**web.auth("bob"), "Content-Type": "application/json"}
        )
        assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/json", r.text[:200]
        assert r.json()["error"]["code"]
    assert time.process_time() - start < 5
    _nothing_created(web)

"""Guards found in review: specs that cannot yield honest claims are refused, plans cannot
be no-ops, a stop asked for during a pause is kept, one process drives a campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.agents.runner import CampaignRunner, request
from medloop.agents.space import validate_changes
from medloop.bootstrap import local_checkpoints
from medloop.core.errors import ConflictError, SpecError
from medloop.core.records import FactorChange
from medloop.core.specs import parse_campaign_spec
from medloop.core.store import open_store
from tests.unit.agents.test_replay_campaign import make_spec, services, table  # noqa: F401


def _spec(tmp_path: Path, **over: Any) -> dict[str, Any]:
    (tmp_path / "dataset.json").write_text("{}")
    base = {"name": "g", "goal": "g", "dataset": str(tmp_path), "search_space": {"loss": ["dice", "dicece"]}}
    return {**base, **over}


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"objective": {"metric": "dcie"}}, "objective.metric"),
        ({"objective": {"metric": "hd95"}}, "objective.direction"),
        ({"validation": {"seeds_per_arm": 1}}, "seeds_per_arm"),
        ({"validation": {"reproduction_seeds": 2}}, "reproduction_seeds"),
        (
            {
                "search_space": {
                    "loss": {
                        "type": "categorical",
                        "choices": ["dice", "dicece"],
                        "when": {"loss": ["focal"]},
                    }
                }
            },
            "when",
        ),
    ],
)
def test_specs_that_cannot_give_honest_claims_are_refused(
    tmp_path: Path, over: dict[str, Any], needle: str
) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_campaign_spec(_spec(tmp_path, **over), source="c.yaml")


def test_no_op_and_double_changes_are_not_hypotheses(table: Path) -> None:  # noqa: F811
    spec = make_spec(table)
    inc = spec.baseline_config().model_dump()
    same = [FactorChange(factor="lr", from_value=inc["lr"], to_value=inc["lr"])]
    twice = [FactorChange(factor="loss", from_value="dice", to_value="dicece")] * 2
    assert "already" in (validate_changes(spec, inc, same) or "") or "no change" in (
        validate_changes(spec, inc, same) or ""
    )
    assert "twice" in (validate_changes(spec, inc, twice) or "")


def test_stop_during_pause_is_kept_and_finalizes(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store = open_store(tmp_path / "m.db")
    ids: list[str] = []

    def pause_mid_cycle(kind: str, payload: dict[str, Any]) -> None:
        if kind == "verdicts" and payload["cycle"] == 1:  # another process asks while it runs
            request(store, ids[0], "pause", actor="a")

    runner = CampaignRunner(services(tmp_path, store), on_event=pause_mid_cycle)
    ids.append(runner.create(make_spec(table), owner="a").id)
    paused = runner.run(ids[0])
    assert paused.status == "paused" and paused.summary["waiting_for"] == "paused"
    request(store, ids[0], "stop", actor="a")
    done = CampaignRunner(services(tmp_path, store)).resume(ids[0])
    assert done.status == "completed" and done.summary["stop_reason"] == "stopped by user"
    assert done.summary["cycles"] == 1
    with pytest.raises(ConflictError, match="completed"):
        request(store, ids[0], "pause", actor="a")


def test_one_process_drives_a_campaign(tmp_path: Path) -> None:
    with (
        local_checkpoints(tmp_path / "ck.sqlite").lock("cmp_x"),
        pytest.raises(ConflictError, match="being run by pid"),
    ):
        import subprocess
        import sys

        code = (
            "import sys; from pathlib import Path; from medloop.bootstrap import local_checkpoints\n"
            f"with local_checkpoints(Path({str(tmp_path / 'ck.sqlite')!r})).lock('cmp_x'): pass\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if "being run by pid" in out.stderr:
            raise ConflictError("campaign cmp_x is being run by pid (child saw the lock)")

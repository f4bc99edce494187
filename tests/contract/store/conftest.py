"""The store conformance suite runs every test on each backend: a new SQLite file, an
empty SQLite workspace made by medloop 0.1.0 and upgraded in place, and a new Postgres
database (a throwaway cluster; CI requires it through MEDLOOP_REQUIRE=postgres)."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medloop.core.records import (
    Campaign,
    Claim,
    ClaimContext,
    DatasetManifest,
    Effect,
    Evidence,
    FactorChange,
    Hypothesis,
    Trial,
    TrialResult,
    TrialSpec,
)
from medloop.core.specs import make_config, parse_campaign_spec
from medloop.core.store import SqlStore, open_store

FIXTURES = Path(__file__).parents[2] / "fixtures" / "store_0_1_0"


def unzip(name: str, dest: Path) -> Path:
    with gzip.open(FIXTURES / f"{name}.gz", "rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    return dest


@dataclass
class StoreCase:
    name: str
    url: str

    def open(self) -> SqlStore:
        """Another store object on the same database (another connection)."""
        return open_store(self.url)


@pytest.fixture(params=["sqlite", "sqlite-0.1.0", "postgres"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    if request.param == "postgres":
        return StoreCase("postgres", request.getfixturevalue("postgres_url"))
    if request.param == "sqlite-0.1.0":
        return StoreCase(request.param, f"sqlite:///{unzip('empty.db', tmp_path / 'old.db')}")
    return StoreCase("sqlite", f"sqlite:///{tmp_path / 'new.db'}")


@pytest.fixture
def store(case: StoreCase) -> Iterator[SqlStore]:
    st = case.open()
    yield st
    st.close()


# ---------------------------------------------------------------- builders

MANIFEST = DatasetManifest(
    name="Dataset900_Conformance",
    checksum="c" * 64,
    channel_names={"0": "CT"},
    labels={"background": 0, "organ": 1},
    train_cases=["case_0", "case_1"],
    eval_cases=["case_2"],
)


def campaign(cid: str, *, status: str = "created", owner: str = "alice") -> Campaign:
    spec = parse_campaign_spec(
        {
            "name": f"campaign {cid}",
            "goal": "Raise Dice; ünïcode ✓",
            "dataset": {"path": "/data/x"},
            "baseline": {"loss": "dice", "lr": 0.001},
            "search_space": {
                "loss": ["dice", "dicece"],
                "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            },
        },
        source="test",
        check_dataset=False,
    )
    return Campaign(id=cid, name=spec.name, spec=spec, status=status, owner=owner, baseline={"lr": 0.001})  # type: ignore[arg-type]


def hypothesis(hid: str, cid: str, cycle: int = 1, *, verdict: str = "pending") -> Hypothesis:
    change = FactorChange(factor="loss", from_value="dice", to_value="dicece")
    return Hypothesis(
        id=hid, campaign_id=cid, cycle=cycle, statement=f"h {hid}", changes=[change], verdict=verdict
    )  # type: ignore[arg-type]


def trial(
    tid: str, cid: str, *, seed: int = 0, hid: str | None = None, status: str = "pending", **config: Any
) -> Trial:
    spec = TrialSpec(
        dataset=MANIFEST,
        config=make_config("segmentation", {"loss": "dice", "lr": 0.001, **config}),
        seed=seed,
    )
    return Trial(
        id=tid,
        campaign_id=cid,
        hypothesis_id=hid,
        arm="control",
        spec=spec,
        spec_hash=spec.spec_hash(),
        status=status,
    )  # type: ignore[arg-type]


def result(t: Trial, objective: float | None, status: str = "succeeded") -> TrialResult:
    return TrialResult(
        trial_id=t.id, spec_hash=t.spec_hash, status=status, objective=objective, history=[{"loss": 0.5}]
    )  # type: ignore[arg-type]


def claim(
    cid: str,
    *,
    campaign_id: str | None = None,
    tier: str = "supported",
    estimate: float | None = 0.03,
    dataset: str = "D1",
) -> Claim:
    effect = None
    if estimate is not None:
        effect = Effect(
            metric="dice",
            direction="maximize",
            estimate=estimate,
            ci_low=estimate - 0.01,
            ci_high=estimate + 0.01,
            p_value=0.01,
            p_adjusted=0.02,
            test="wilcoxon",
            n_cases=12,
            n_seeds=3,
            min_effect=0.0,
            alpha=0.05,
        )
    return Claim(
        id=cid,
        campaign_id=campaign_id,
        hypothesis_id=None,
        statement=f"On {dataset}, dicece beats dice ({cid})",
        changes=[FactorChange(factor="loss", from_value="dice", to_value="dicece")],
        context=ClaimContext(
            task="segmentation", dataset=dataset, dataset_checksum="c" * 64, fingerprint={"n": 12.0}
        ),
        outcome="dice",
        effect=effect,
        tier=tier,  # type: ignore[arg-type]
    )


def evidence(claim_id: str, ref: str, kind: str = "trial", role: str = "treatment") -> Evidence:
    return Evidence(claim_id=claim_id, kind=kind, ref_id=ref, role=role, detail={"note": ref})  # type: ignore[arg-type]

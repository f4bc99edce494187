"""Code hypotheses in planning: the code modules a campaign may try become one more
categorical factor per extension point (`code_<point>`: "none" or a module's sha256), so
every planner proposes them like any other change and every code hypothesis is tested like
any other (control = incumbent, paired seeds, reproduction with the same hash).

Where modules come from: the shipped code moves at the campaign's `code.points` (the
offline planner's library), modules a person added for the campaign (`medloop hypotheses
add --code`, `POST /api/v1/campaigns/{id}/code`), and modules the LLM planner wrote. A
module added by a person or an LLM is *queued*: the next cycle tests it before the
planner's own ideas. Modules that failed their smoke trial or are quarantined are left out.
"""

from __future__ import annotations

from medloop.agents.base import HypothesisDraft
from medloop.core.code import CodeModule, code_field
from medloop.core.records import FactorChange, Hypothesis
from medloop.core.specs import CampaignSpec, Categorical, Scalar
from medloop.core.store import Store
from medloop.engine.code import register_library
from medloop.engine.smoke import quarantine_target


def campaign_modules(store: Store, spec: CampaignSpec, campaign_id: str) -> list[CodeModule]:
    """The modules this campaign's planners may choose (shipped moves registered first)."""
    if not spec.code.points:
        return []
    register_library(store, list(spec.code.points), list(spec.code.moves))
    out = []
    for module in store.code.list(campaign_id=campaign_id):
        if module.point not in spec.code.points:
            continue
        if module.campaign_id is None and not (
            module.trusted and (not spec.code.moves or module.name in spec.code.moves)
        ):
            continue
        if store.code.state(module.sha256).smoke == "failed":
            continue
        if store.quarantines.list(active_only=True, target_id=quarantine_target(module.sha256)):
            continue
        out.append(module)
    return out


def planning_spec(spec: CampaignSpec, modules: list[CodeModule]) -> CampaignSpec:
    """The campaign spec the planners see: its search space plus `code_<point>` factors."""
    space = dict(spec.search_space)
    for point in spec.code.points:
        shas: list[Scalar] = [m.sha256 for m in modules if m.point == point]
        if shas:
            space[code_field(point)] = Categorical(choices=["none", *shas])
    return spec.model_copy(update={"search_space": space})


def queued(modules: list[CodeModule], hypotheses: list[Hypothesis], campaign_id: str) -> list[CodeModule]:
    """Modules written for this campaign (by a person or an LLM) that no hypothesis of it
    has tested yet, oldest first as listed."""
    tested = {str(c.to_value) for h in hypotheses for c in h.changes if c.factor.startswith("code_")}
    return [m for m in modules if m.campaign_id == campaign_id and m.sha256 not in tested]


def draft_for(module: CodeModule, incumbent: dict[str, Scalar], metric: str, verb: str) -> HypothesisDraft:
    field = code_field(module.point)
    return HypothesisDraft(
        statement=f"Running the {module.point} code module {module.name} ({module.sha256[:12]}, by "
        f"{module.author}) {verb} mean {metric}",
        changes=[FactorChange(factor=field, from_value=incumbent.get(field), to_value=module.sha256)],
        rationale=module.rationale or f"{module.author_kind}-written {module.point} module",
    )


def readable(statement: str, modules: list[CodeModule]) -> str:
    """A statement with module hashes shown as `name (short hash)`."""
    for module in modules:
        statement = statement.replace(module.sha256, f"{module.name} ({module.sha256[:12]})")
    return statement

"""Who may do what: one table, checked by every route (API and dashboard alike).

Reads are open to every authenticated role. Changes depend on the role and, for
campaign controls and human trust decisions, on who owns the campaign. The knowledge
lifecycle checks trust moves again (`KnowledgeBase.transition`); this table refuses
early, with a message that says why, and covers actions the lifecycle does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from medloop.core.errors import PermissionDenied
from medloop.core.records import Campaign, Claim
from medloop.web.accounts import Principal

READ = frozenset({"viewer", "reviewer", "admin", "agent"})


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    # Roles allowed only on objects they own (a campaign, or a claim's campaign).
    own_only: frozenset[str] = frozenset()
    # A human trust decision: refused to the campaign owner and the claim's author.
    independent: bool = False


RULES: dict[str, Rule] = {
    "read": Rule(READ),
    "campaign.create": Rule(frozenset({"reviewer", "admin", "agent"})),
    # launch / pause / resume / stop
    "campaign.control": Rule(
        frozenset({"reviewer", "admin", "agent"}), own_only=frozenset({"reviewer", "agent"})
    ),
    # a person's code hypothesis for a campaign (queued for its next cycle)
    "campaign.code": Rule(frozenset({"reviewer", "admin"}), own_only=frozenset({"reviewer"})),
    "claim.validate": Rule(frozenset({"reviewer"}), independent=True),
    "claim.reject": Rule(frozenset({"reviewer"}), independent=True),
    "claim.request_reproduction": Rule(frozenset({"reviewer", "admin"})),
    "claim.quarantine": Rule(frozenset({"reviewer", "admin", "agent"})),
    "quarantine.lift": Rule(frozenset({"reviewer", "admin"})),
    "users.read": Rule(frozenset({"admin"})),
}


def allowed_roles(action: str) -> frozenset[str]:
    return RULES[action].roles


def authorize(
    principal: Principal,
    action: str,
    *,
    campaign: Campaign | None = None,
    claim: Claim | None = None,
) -> None:
    """Raise PermissionDenied unless `principal` may do `action` on these objects."""
    rule = RULES[action]
    verb = action.split(".", 1)[-1].replace("_", " ")
    if principal.role not in rule.roles:
        who = ", ".join(sorted(rule.roles))
        raise PermissionDenied(
            f"{principal.name} ({principal.role}) may not {verb}", hint=f"this needs role {who}"
        )
    owner = campaign.owner if campaign is not None else None
    if principal.role in rule.own_only and owner is not None and owner != principal.name:
        raise PermissionDenied(
            f"campaign {campaign.id if campaign else ''} belongs to {owner}; "
            f"{principal.name} ({principal.role}) may only {verb} their own campaigns",
            hint="ask the owner or an admin",
        )
    if rule.independent:
        if campaign is not None and principal.name in (campaign.owner, campaign.started_by):
            raise PermissionDenied(
                f"{principal.name} owns or started campaign {campaign.id}; a reviewer cannot "
                f"{verb} a claim from their own campaign",
                hint="ask a reviewer who did not run the campaign",
            )
        if claim is not None and claim.author == principal.name:
            raise PermissionDenied(
                f"{principal.name} authored claim {claim.id} and cannot {verb} it",
                hint="ask another reviewer",
            )

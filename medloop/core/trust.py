"""Which trust moves exist and who may make them: one table, read by the knowledge
lifecycle (which enforces it) and by the dashboard (which offers only the buttons it would
accept), so the two cannot disagree."""

from __future__ import annotations

from medloop.core.records import Tier

STATISTICAL: tuple[Tier, ...] = ("supported", "refuted", "inconclusive")

# (from, to) -> roles that may make the move (quarantine moves are not listed: they have
# their own operations, and the lifecycle refuses them as plain moves).
MOVES: dict[tuple[Tier, Tier], tuple[str, ...]] = {}
for _t in STATISTICAL:
    MOVES[("proposed", _t)] = ("agent", "admin")
MOVES[("supported", "inconclusive")] = ("agent", "admin")  # a reproduction that failed
MOVES[("reproduced", "inconclusive")] = ("agent", "admin")
for _t in ("supported", "refuted", "external"):
    MOVES[(_t, "reproduced")] = ("agent", "admin")
MOVES[("reproduced", "validated")] = ("reviewer",)
for _t in ("proposed", "supported", "refuted", "inconclusive", "reproduced", "external", "validated"):
    MOVES[(_t, "rejected")] = ("reviewer",)
    MOVES[(_t, "superseded")] = ("agent", "reviewer", "admin")
MOVES[("rejected", "superseded")] = ("reviewer", "admin")


def allowed_moves(tier: Tier) -> dict[Tier, tuple[str, ...]]:
    return {to: roles for (frm, to), roles in MOVES.items() if frm == tier}


def move_refusal(frm: Tier, to: Tier, role: str) -> str | None:
    """Why the table refuses `frm -> to` for `role` (None if it allows it). The rules on
    people (author, campaign owner) and evidence are checked by the lifecycle on top."""
    if frm == to:
        return f"already {to}"
    roles = MOVES.get((frm, to))
    if roles is None:
        nexts = ", ".join(sorted(allowed_moves(frm))) or "none"
        return f"{frm} -> {to} is not a lifecycle step (from {frm}: {nexts})"
    if role not in roles:
        return f"{frm} -> {to} needs role {' or '.join(roles)}"
    return None

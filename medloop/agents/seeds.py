"""Seeds of a campaign's runs.

Every campaign draws its own seeds, so a second campaign produces new runs rather than
reusing the first one's (its claims are independent evidence, not the same data twice).
Within a campaign, seeds are shared by design: control and treatment arms run the same
seeds (paired), and an incumbent's earlier runs serve as the next cycle's control.

    explore        base + 0 .. base + seeds_per_arm - 1
    reproduction   base + 1000 + n b ..     (block b: fresh for both arms' configs)
    final          base + 2000 ..           (fresh for everything that selected the incumbent)
    requested      base + 3000 + 20 k ..    (the k-th reproduction a reviewer asked for)

A reproduction takes the first block of n seeds at which neither of its configs has run
in the campaign. A fixed block would hand the next reproduction the incumbent's own
reproduction runs as its control: runs that *selected* the incumbent (it moved because
they agreed), so they lean its way and the new treatment's fresh seeds are compared with
lucky ones (design note 13).

`base` is a multiple of SEED_STRIDE, so `seed % SEED_STRIDE` is the role-and-index that
replay tables are keyed by.
"""

from __future__ import annotations

from typing import Any

from medloop.core.ids import canonical_json, sha256_hex

SEED_STRIDE = 10_000
REPRODUCTION_OFFSET = 1000
FINAL_OFFSET = 2000
REQUESTED_OFFSET = 3000
REQUESTED_BLOCK = 20
MAX_REQUESTS = (SEED_STRIDE - REQUESTED_OFFSET) // REQUESTED_BLOCK


def seed_base(campaign_id: str) -> int:
    """A stable per-campaign base below 2**31 (torch and numpy accept it)."""
    return (int(sha256_hex(campaign_id)[:8], 16) % 200_000) * SEED_STRIDE


# Where a spec names files or services: the same campaign reached through another path
# spelling (absolute vs relative) or another host must plan the same way.
_LOCATION_FIELDS: dict[str, Any] = {
    "dataset": {"path"},
    "executor": {"table", "address", "slots"},
    "sandbox": {"image"},
}


# Spec fields added after campaigns were already run, with the default that keeps the
# earlier behaviour: at that default they stay out of the planning seed, so the same spec
# plans the same way on this version as on the one before the field existed.
_LATER_FIELDS: dict[str, dict[str, Any]] = {
    "validation": {"deferred_looks": 0, "spending": "obrien_fleming"},
}


def planning_seed(spec: Any, seed: int, *salt: object) -> int:
    """The planner's random seed for one decision: from the planner's seed and what the
    campaign asks for (goal, space, baseline, policy), never from file paths, hosts or
    dict order (canonical JSON sorts keys). `spec` is a CampaignSpec."""
    body = spec.model_dump(mode="json", exclude=_LOCATION_FIELDS)
    for section, fields in _LATER_FIELDS.items():
        part = body.get(section)
        for name, default in fields.items():
            if isinstance(part, dict) and part.get(name) == default:
                del part[name]
    return int(sha256_hex(canonical_json([seed, body, list(salt)]))[:8], 16)


def explore_seeds(campaign_id: str, n: int) -> list[int]:
    return [seed_base(campaign_id) + i for i in range(n)]


def reproduction_seeds(campaign_id: str, n: int, block: int = 0) -> list[int]:
    """The `block`-th set of n reproduction seeds (0-based)."""
    if not 0 <= block < (FINAL_OFFSET - REPRODUCTION_OFFSET) // max(1, n):
        raise ValueError(f"reproduction seed block {block} of {n} seeds is outside the seed plan")
    start = seed_base(campaign_id) + REPRODUCTION_OFFSET + n * block
    return [start + i for i in range(n)]


def fresh_reproduction_seeds(
    campaign_id: str, n: int, configs: list[str], used: set[tuple[str, int]]
) -> list[int]:
    """The first block of reproduction seeds at which none of `configs` (config keys) has a
    run in `used` ((config key, seed) pairs): fresh for both arms of the reproduction."""
    block = 0
    while True:  # ends: a config has runs in finitely many blocks; the last raises
        seeds = reproduction_seeds(campaign_id, n, block)
        if not any((c, s) in used for c in configs for s in seeds):
            return seeds
        block += 1


def final_seeds(campaign_id: str, n: int) -> list[int]:
    return [seed_base(campaign_id) + FINAL_OFFSET + i for i in range(n)]


def requested_seeds(campaign_id: str, index: int, n: int) -> list[int]:
    """Seeds of the `index`-th reviewer-requested reproduction in a campaign (0-based):
    fresh for every earlier run of the campaign and every other request."""
    if not 0 <= index < MAX_REQUESTS or not 0 < n <= REQUESTED_BLOCK:
        raise ValueError(f"requested reproduction {index} with {n} seeds is outside the seed plan")
    start = seed_base(campaign_id) + REQUESTED_OFFSET + REQUESTED_BLOCK * index
    return [start + i for i in range(n)]

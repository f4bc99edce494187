"""Share findings between labs as JSON lines: one claim per line, with its evidence and
the provenance of every trial (spec hash, seed, dataset checksum, code version).

Import never raises trust: every imported claim enters as `external` (below supported),
derived from a `source:<name>` entity, so one `medloop knowledge quarantine source:<name>`
pulls a whole lab's findings back out.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medloop.core.errors import NotFoundError, SpecError, StoreError
from medloop.core.ids import canonical_json, sha256_hex
from medloop.core.records import Claim, Evidence, Tier, utcnow
from medloop.core.specs import format_validation_error
from medloop.core.store import Store
from medloop.knowledge.model import trial_provenance
from medloop.knowledge.service import KnowledgeService

FORMAT = "medloop-claim/1"
BATCH = 1000


class Origin(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    knowledge_base: str
    exported_at: str
    tier: Tier = Field(description="The tier the claim had where it came from (informational)")
    campaign_id: str | None = None
    hypothesis_id: str | None = None


class ExportedClaim(BaseModel):
    """One line of an export file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = FORMAT
    origin: Origin
    claim: Claim
    evidence: list[Evidence]


def _with_provenance(store: Store, ev: Evidence) -> Evidence:
    if ev.kind != "trial" or "provenance" in ev.detail:
        return ev
    try:
        prov = trial_provenance(store.trials.get(ev.ref_id))
    except NotFoundError:
        return ev
    return ev.model_copy(update={"detail": {**ev.detail, "provenance": prov}})


def export_claims(
    store: Store, path: Path, *, tiers: list[Tier] | None = None, dataset: str | None = None
) -> int:
    """Write matching claims (quarantined ones only if asked by tier) atomically; returns
    the number written."""
    wanted = tiers or [t for t in get_args(Tier) if t not in ("quarantined", "rejected", "superseded")]
    kb_id = store.meta.get("kb_id") or "unknown"
    now = utcnow()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w") as fh:
            after: str | None = None
            while True:
                page = store.claims.list(tiers=wanted, dataset=dataset, after=after, limit=BATCH)
                for claim in page:
                    line = ExportedClaim(
                        origin=Origin(
                            knowledge_base=kb_id,
                            exported_at=now,
                            tier=claim.tier,
                            campaign_id=claim.campaign_id,
                            hypothesis_id=claim.hypothesis_id,
                        ),
                        claim=claim,
                        evidence=[_with_provenance(store, ev) for ev in store.evidence.list(claim.id)],
                    )
                    fh.write(line.model_dump_json() + "\n")
                    count += 1
                if page.next_cursor is None:
                    break
                after = page.next_cursor
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc}") from None
    return count


MAX_LINE = 1_000_000  # characters in one exported claim line


def read_export(path: Path) -> Iterator[tuple[int, ExportedClaim]]:
    if not path.is_file():
        raise SpecError(f"{path}: export file not found")
    with path.open(encoding="utf-8", errors="strict") as fh:
        n = 0
        while True:
            try:
                raw = fh.readline(MAX_LINE + 1)
            except UnicodeDecodeError:
                raise SpecError(f"{path}:{n + 1}: not UTF-8 text") from None
            if not raw:
                return
            n += 1
            if len(raw) > MAX_LINE:
                raise SpecError(f"{path}:{n}: a line over {MAX_LINE:,} characters; one claim is far smaller")
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SpecError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:  # a 5,000-digit number, [[[[...]]]]
                raise SpecError(f"{path}:{n}: not usable JSON ({type(exc).__name__})") from None
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise SpecError(
                    f"{path}:{n}: not a {FORMAT} line", hint="make one with `medloop knowledge export`"
                )
            try:
                yield n, ExportedClaim.model_validate(data)
            except ValidationError as exc:
                raise SpecError(format_validation_error(exc, f"{path}:{n}")) from None


def as_external(item: ExportedClaim, source_id: str, source_name: str) -> tuple[Claim, list[Evidence]]:
    """The local form of an imported claim: tier `external`, no local campaign, derived
    from the source; the original ids, tier and provenance kept as data."""
    claim = item.claim.model_copy(update={"tier": "external", "campaign_id": None, "hypothesis_id": None})
    evidence = [ev for ev in item.evidence if ev.kind != "source" or ev.ref_id != source_id]
    origin = item.origin.model_dump(mode="json")
    evidence.append(
        Evidence(
            claim_id=claim.id,
            kind="source",
            ref_id=source_id,
            role="derived_from",
            detail={"name": source_name, **origin},
        )
    )
    return claim, evidence


def import_claims(kb: KnowledgeService, path: Path, *, source: str, actor: str) -> dict[str, int]:
    """Validate the whole file first (nothing is written if a line is bad), then add in
    batches of one transaction each; claims already present are left untouched, so an
    interrupted import is finished by running it again."""
    if not source.strip():
        raise SpecError("an import needs a source name", hint="pass --source LAB")
    source_id = f"source:{source}"
    items = [item for _, item in read_export(path)]
    digest = sha256_hex(canonical_json([i.claim.id for i in items]))[:16]
    pairs = [as_external(i, source_id, source) for i in items]
    before = set(kb.store.claims.tiers([c.id for c, _ in pairs]))
    for start in range(0, len(pairs), BATCH):
        kb.add_claims(pairs[start : start + BATCH], actor=actor)
    detail: dict[str, Any] = {
        "file": str(path),
        "claims": len(pairs),
        "new": len(pairs) - len(before),
        "digest": digest,
    }
    kb.store.audit.append(actor, "knowledge.import", "source", source_id, detail)
    return {"read": len(items), "imported": len(pairs) - len(before), "already_present": len(before)}

"""/api/v1: health, the caller, users (admins), and the hash-chained audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from medloop.web import anchors, views
from medloop.web import schemas as S
from medloop.web.errors import ERROR_RESPONSES, FieldError, InvalidInput
from medloop.web.policy import authorize
from medloop.web.security import Caller, Ctx

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


@router.get("/health", response_model=S.Health, tags=["meta"], summary="Liveness (no auth, no store access)")
async def health() -> S.Health:
    return S.Health()


@router.get("/me", response_model=S.Me, tags=["meta"], summary="Who the credentials belong to")
def me(who: Caller) -> S.Me:
    return S.Me(name=who.name, role=who.role, via=who.via)


@router.get("/users", response_model=list[S.UserOut], tags=["meta"], summary="Users and roles (admins only)")
def users(ctx: Ctx, who: Caller) -> list[S.UserOut]:
    authorize(who, "users.read")
    return [S.UserOut(**u.model_dump(exclude={"schema_version"})) for u in ctx.store.users.list()]


@router.get("/audit", response_model=S.AuditPage, tags=["audit"], summary="The audit log, oldest first")
async def audit(
    ctx: Ctx,
    who: Caller,
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    authorize(who, "read")
    after = S.decode_cursor("a", cursor)
    if after is not None and not after.isdigit():
        raise InvalidInput("invalid cursor", [FieldError(field="cursor", message="not an audit cursor")])
    entries = ctx.store.audit.list(object_id=object_id, after=int(after or 0), limit=limit + 1)
    items = [e.model_copy(update={"detail": views.clean(e.detail)}) for e in entries[:limit]]
    more = len(entries) > limit
    return S.json_response(
        S.AuditPage(items=items, next_cursor=S.encode_cursor("a", items[-1].seq) if more else None)
    )


@router.get("/audit/verify", response_model=S.AuditCheck, tags=["audit"], summary="Recompute the hash chain")
def audit_verify(ctx: Ctx, who: Caller) -> S.AuditCheck:
    """The chain (entries 1..n, each hash linked) and, when the server writes anchors
    (`MEDLOOP_AUDIT_ANCHOR_FILE`), every anchor in that file."""
    authorize(who, "read")
    ok, bad = ctx.store.audit.verify()
    count, _ = ctx.store.audit.head()
    held, error = anchors.check_file(ctx.store, ctx.settings.audit_anchor_file)
    return S.AuditCheck(
        ok=ok and error is None, first_bad_seq=bad, entries=count, anchors=held, anchor_error=error
    )

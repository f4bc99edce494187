"""The audit page: newest entries first, one page at a time (cursor = a seq), and a chain
check that is incremental. A full recomputation (`/api/v1/audit/verify`, `medloop audit
verify`) reads every entry; the page instead remembers the last (seq, hash) it verified
and checks only the entries appended since, plus that the remembered entry still has the
hash it had. The first view of a process verifies the whole chain once."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from medloop.core.records import AUDIT_GENESIS, AuditEntry
from medloop.core.store import Store

PAGE = 100
_FIELDS = {"seq", "ts", "actor", "action", "object_type", "object_id", "detail"}
GENESIS = AUDIT_GENESIS


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # last verified entry (0: none yet)
    hash: str


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    bad_seq: int | None
    last_seq: int  # newest entry in the log
    checked: int  # entries hashed by this call (0 when nothing was appended)


class IncrementalVerifier:
    """Verified prefix of one store's audit chain, kept per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mark = Checkpoint(0, GENESIS)

    @property
    def mark(self) -> Checkpoint:
        return self._mark

    def check(self, store: Store, *, batch: int = 5000) -> ChainStatus:
        with self._lock:
            mark = self._mark
            if mark.seq:
                again = store.audit.list(after=mark.seq - 1, limit=1)
                if not again or again[0].hash != mark.hash:  # the verified tail was rewritten
                    return ChainStatus(False, mark.seq, mark.seq, 1)
            prev, after, checked = mark.hash, mark.seq, 0
            while entries := store.audit.list(after=after, limit=batch):
                for e in entries:
                    checked += 1
                    if not e.follows(after, prev):  # numbering, link and hash, as `audit verify`
                        return ChainStatus(False, e.seq, entries[-1].seq, checked)
                    prev, after = e.hash, e.seq
                    self._mark = Checkpoint(e.seq, e.hash)
                after = entries[-1].seq
            return ChainStatus(True, None, self._mark.seq, checked)


def page_of(
    store: Store, *, before: int | None, last_seq: int, object_id: str | None, size: int = PAGE
) -> tuple[list[AuditEntry], int | None]:
    """Entries with seq < `before` (default: all), newest first, and the cursor of the next
    (older) page. Sequence numbers are consecutive, so an unfiltered page is one range read."""
    top = min(before if before is not None else last_seq + 1, last_seq + 1)
    if object_id is None:
        start = max(0, top - 1 - size)
        entries = store.audit.list(after=start, limit=top - 1 - start) if top > 1 else []
    else:  # one object's entries are few; read them and cut the page here
        entries = [e for e in store.audit.list(object_id=object_id, limit=1_000_000) if e.seq < top][-size:]
    entries.reverse()
    older = entries[-1].seq if entries and entries[-1].seq > 1 else None
    if older is not None and object_id is not None:
        has_more = any(e.seq < older for e in store.audit.list(object_id=object_id, limit=size + 1))
        older = older if has_more else None
    return entries, older

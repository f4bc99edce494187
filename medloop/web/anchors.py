"""Anchors of the audit chain kept outside the database.

The chain in the database proves that no entry was changed *unless* whoever changed it
also recomputed every later hash, or simply removed the last entries. An anchor, the
head's hash and the number of entries (`HASH:COUNT`), written where the database's
writers cannot reach (a file on another volume, an append-only log, a ticket, a printout),
closes both holes: a later chain must still hold exactly that hash at that position.

Anchor files hold one anchor a line, `<ISO time> <hash>:<count>`; `medloop audit anchor
--file` and the server (`MEDLOOP_AUDIT_ANCHOR_FILE`) append to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from medloop.core.errors import MedloopError, SpecError
from medloop.core.store import Store

log = logging.getLogger("medloop.audit")
_ANCHOR = re.compile(r"([0-9a-f]{64}):(\d{1,12})")


@dataclass(frozen=True)
class Anchor:
    hash: str
    count: int

    def __str__(self) -> str:
        return f"{self.hash}:{self.count}"


class AnchorMismatch(MedloopError):
    """The chain no longer holds an anchored head (exit 1)."""

    exit_code = 1


def head(store: Store) -> Anchor:
    count, digest = store.audit.head()
    return Anchor(digest, count)


def parse(text: str, *, where: str = "anchor") -> Anchor:
    """`HASH:COUNT` (the last word of a line from an anchor file)."""
    word = text.strip().split()[-1] if text.strip() else ""
    match = _ANCHOR.fullmatch(word)
    if match is None:
        raise SpecError(f"{where}: {text.strip()[:80]!r} is not an anchor", hint="anchors read HASH:COUNT")
    return Anchor(match.group(1), int(match.group(2)))


def load(value: str) -> list[Anchor]:
    """Anchors from a file (one a line; blank lines and # comments skipped) or one HASH:COUNT."""
    path = Path(value)
    if _ANCHOR.fullmatch(value.strip()) or not path.exists():
        return [parse(value)]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read anchors ({exc})") from None
    out = [
        parse(line, where=f"{path} line {n}")
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not out:
        raise SpecError(f"{path} holds no anchors", hint="write some with `medloop audit anchor --file`")
    return out


def check(store: Store, anchors: list[Anchor]) -> None:
    """Raise AnchorMismatch unless the chain holds every anchor's hash at its count."""
    count, _ = store.audit.head()
    for anchor in anchors:
        if anchor.count > count:
            raise AnchorMismatch(
                f"audit log truncated: anchor {anchor} records {anchor.count} entries, the log has {count}",
                hint="entries after the anchor were removed; restore them from a backup",
            )
        if anchor.count == 0:
            continue
        found = store.audit.list(after=anchor.count - 1, limit=1)
        if not found or found[0].seq != anchor.count or found[0].hash != anchor.hash:
            raise AnchorMismatch(
                f"audit log rewritten: entry {anchor.count} no longer has the anchored hash {anchor.hash[:16]}...",
                hint="entries up to the anchor were changed and their hashes recomputed; compare with a backup",
            )


def check_file(store: Store, path: Path | None) -> tuple[int, str | None]:
    """(anchors checked, the first problem or None) for a server's anchor file; a missing
    file (no anchor written yet) checks nothing."""
    if path is None or not path.exists():
        return 0, None
    try:
        held = load(str(path))
        check(store, held)
    except MedloopError as exc:
        return 0, exc.message
    return len(held), None


def line(anchor: Anchor) -> str:
    return f"{datetime.now(UTC).isoformat(timespec='seconds')} {anchor}\n"


def append(path: Path, anchor: Anchor) -> None:
    """Append one anchor line (O_APPEND, fsync): several processes may share the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line(anchor).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise MedloopError(f"cannot append an audit anchor to {path}: {exc.strerror or exc}") from None


def last(path: Path) -> Anchor | None:
    """The last anchor in a file, or None (no file, or no anchor on its last line)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return None
    try:
        return parse(tail[-1]) if tail else None
    except SpecError:
        return None


def append_if_moved(store: Store, path: Path) -> Anchor | None:
    """Append the head unless the file already ends with it; returns what was written."""
    anchor = head(store)
    if last(path) == anchor:
        return None
    append(path, anchor)
    return anchor


def syslog_handler(target: str) -> logging.Handler:
    """A syslog sink: `udp://host:port`, `tcp://host:port`, or a local socket path
    (`/dev/log`). Messages read `medloop-audit-anchor: <time> HASH:COUNT`."""
    import socket
    from logging.handlers import SysLogHandler

    scheme, sep, rest = target.partition("://")
    if not sep:
        return SysLogHandler(address=target)
    host, _, port = rest.rpartition(":")
    if scheme not in ("udp", "tcp") or not host or not port.isdigit():
        raise SpecError(
            f"audit anchor syslog {target!r} is not udp://host:port, tcp://host:port or a socket path"
        )
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    return SysLogHandler(address=(host, int(port)), socktype=kind)


@contextlib.asynccontextmanager
async def anchoring(
    store: Store, path: Path | None, interval_s: float, syslog: str | None = None
) -> AsyncIterator[None]:
    """While the server runs: an anchor at start, every `interval_s` seconds if the log
    moved, and at shutdown, to a file and/or a syslog sink. A failure to write is logged,
    never fatal to the server."""
    if path is None and not syslog:
        yield
        return
    sink = None
    try:
        sink = syslog_handler(syslog) if syslog else None
    except OSError as exc:  # a TCP collector that is down: the file anchors still go on
        log.error("audit anchor syslog %s unreachable: %s", syslog, exc)
    if sink is not None:
        sink.setFormatter(logging.Formatter("medloop-audit-anchor: %(message)s"))
    sent: list[Anchor] = []

    def write() -> None:
        try:
            if path is not None:
                append_if_moved(store, path)
            if sink is not None and (anchor := head(store)) not in sent[-1:]:
                text = line(anchor).strip()
                sink.emit(logging.LogRecord("medloop.audit", logging.INFO, "", 0, text, None, None))
                sent[:] = [anchor]
        except MedloopError as exc:
            log.error("could not append an audit anchor to %s: %s", path, exc)

    async def loop() -> None:
        while True:
            await asyncio.to_thread(write)
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(write)
        if sink is not None:
            sink.close()

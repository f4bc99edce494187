"""Identifiers and content hashes.

Ids are `prefix_` + 26 chars of a time-ordered value, so they sort by creation time.
Deterministic ids (from content) make graph nodes idempotent after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A random, time-ordered id such as `trl_01j9...` (48-bit ms time + 80 random bits)."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every content hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def content_id(prefix: str, *parts: Any) -> str:
    """A deterministic id from content: the same parts always give the same id."""
    return f"{prefix}_{sha256_hex(canonical_json(list(parts)))[:26]}"

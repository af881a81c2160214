"""Identifiers, etags and clocks, in the formats the reference platforms use."""

from __future__ import annotations

import secrets
import time
import uuid


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_hex(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)


def new_etag() -> str:
    """An etag shaped like the platform's: a quoted, UUID-like string."""
    raw = uuid.uuid4().hex
    return f'"{raw[:8]}-0000-0200-0000-{raw[8:20]}"'


def etag_matches(header: str, etag: str) -> bool:
    """Compare an If-Match header with a stored etag, accepting it quoted or not, weak or strong."""
    candidates = [c.strip() for c in header.split(",")]
    bare = etag.strip('"')
    for candidate in candidates:
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"') == bare:
            return True
    return False

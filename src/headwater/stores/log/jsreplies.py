"""What JetStream's replies to a pull consumer say: a delivery's sequence and time, how a pull ended."""

from __future__ import annotations

import logging

log = logging.getLogger("headwater.stores.log.jetstream")


def sequence_and_ms(reply: str) -> tuple[int, int]:
    """Stream sequence and timestamp (ms) from a JetStream delivery's reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<consumer seq>.<ns>.<pending>``, or with
    ``<domain>.<account hash>`` after ``ACK`` (and a trailing token) on newer servers."""
    tokens = reply.split(".")
    at = 2 if len(tokens) == 9 else 4
    return int(tokens[at + 3]), int(tokens[at + 5]) // 1_000_000


def pull_ended_cleanly(headers: dict[str, str]) -> bool:
    """Whether a pull's closing status leaves the consumer right after the last record it delivered."""
    status, description = headers.get("Status"), headers.get("Description", "")
    if status in ("404", "408") or (status == "409" and "MaxBytes" in description):
        return True  # no more records now / the next one did not fit in max_bytes
    log.warning("JetStream ended a pull with %s %s", status, description)
    return False

"""Customer.io reporting webhooks: how a request proves it comes from the workspace.

A connection of the Customer.io spec may hold a webhook signing key (auth param
:data:`SIGNING_KEY_PARAM`, sealed at rest). When it does, every request to its inlet must carry
``X-CIO-Timestamp`` (Unix seconds, within :data:`SIGNATURE_MAX_AGE_SECONDS` of now) and
``X-CIO-Signature``, the hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` under the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNING_KEY_PARAM = "webhookSigningKey"
SIGNATURE_HEADER = "x-cio-signature"
TIMESTAMP_HEADER = "x-cio-timestamp"
SIGNATURE_MAX_AGE_SECONDS = 300


def check_signature(key: str, body: bytes, signature: str | None, timestamp: str | None) -> str | None:
    """Customer.io's request signature: hex HMAC-SHA256 of ``v0:{timestamp}:{body}``. None when
    valid, else why not."""
    if not signature or not timestamp:
        return "X-CIO-Signature and X-CIO-Timestamp are required: this inlet verifies signatures"
    try:
        sent = int(timestamp)
    except ValueError:
        return "X-CIO-Timestamp must be a Unix time in seconds"
    if abs(time.time() - sent) > SIGNATURE_MAX_AGE_SECONDS:
        return f"X-CIO-Timestamp is more than {SIGNATURE_MAX_AGE_SECONDS} seconds from now: stale request"
    expected = hmac.new(key.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        return "X-CIO-Signature does not match the request body"
    return None

"""What every HTML page of Headwater carries: the console's pages and the OAuth consent page alike."""

from __future__ import annotations

#: Headers of every HTML answer: no inline script or style, no framing, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

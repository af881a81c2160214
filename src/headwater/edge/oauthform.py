"""The body of an OAuth2 token request (RFC 6749 §2.3.1, §4.4): its form fields, with the client's id and
secret also taken from ``Authorization: Basic`` (``client_secret_basic``, which RFC 6749 obliges a server
to accept and which clients such as DuckDB's iceberg extension send instead of form fields)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl

from starlette.requests import Request


async def token_form(request: Request, query: bool = False) -> dict[str, str]:
    """The request's form fields (and, with ``query``, its query parameters the form lacks); a Basic
    authorization fills ``client_id`` and ``client_secret`` where the form has none."""
    raw = (await request.body()).decode("utf-8", "replace")
    form = dict(parse_qsl(raw)) if raw else {}
    if query:
        form.update({k: v for k, v in request.query_params.items() if k not in form})
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            pair = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return form  # not a client's pair: the missing fields are reported as missing
        user, sep, password = pair.partition(":")
        if sep:
            # Taken as sent: RFC 6749 asks clients to form-encode both first, most do not; Headwater's
            # ids and secrets (hex, base64url) read the same either way.
            form.setdefault("client_id", user)
            form.setdefault("client_secret", password)
    return form

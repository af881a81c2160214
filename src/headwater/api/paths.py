"""Request path normalisation, ahead of every route (the platform API, the console, /docs).

- A trailing slash names the same resource: ``/tenant/schemas/`` is ``/tenant/schemas``. Clients such as
  aepp call collections with one; without this, FastAPI answers 405, or a route ``/{ident:path}`` reads
  the empty segment as an id. No route of Headwater ends with a slash (tests/test_aepp_client.py checks).
- A repeated service prefix is one prefix: ``/data/foundation/flowservice/data/foundation/flowservice/x``
  is ``/data/foundation/flowservice/x``. Flow Service ``_links.next.href`` is a path from the host root
  (the console and most clients follow it as such); aepp's ``getConnections`` appends it to the service
  path instead, which repeats the prefix.
"""

from __future__ import annotations

from typing import Any

_SERVICE_PREFIXES = ("/data/foundation/flowservice",)


def normalise(path: str) -> str:
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    for prefix in _SERVICE_PREFIXES:
        doubled = prefix + prefix
        if path == doubled or path.startswith(doubled + "/"):
            path = path[len(prefix) :]
    return path


class PathNormaliser:
    """ASGI middleware applying :func:`normalise` to ``path`` (and ``raw_path``) of HTTP requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope.get("path", "")
            fixed = normalise(path)
            if fixed != path:
                scope = dict(scope)
                scope["path"] = fixed
                raw = scope.get("raw_path")
                if isinstance(raw, bytes | bytearray):
                    scope["raw_path"] = normalise(bytes(raw).decode("latin-1")).encode("latin-1")
        await self.app(scope, receive, send)

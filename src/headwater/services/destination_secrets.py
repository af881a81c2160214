"""Which values of an HTTP destination are secrets, and what becomes of them (the rule itself:
connectors/http_destination/secrecy.py).

A destination's request (its header values, URL, body) and its connection's OAuth token request
(``extraHeaders``, ``formItems``) hold values the rule makes secret. Contract:

- stored: a secret value is sealed in place (:func:`sealed_request`, :func:`seal_auth`) with associated
  data naming where it belongs (a request value: its organization, destination and place; a token
  request value: its organization and place), so a sealed value copied elsewhere does not open; a
  document sealed by the rule carries :data:`SEALED_MARK`.
- shown: a sealed value is the mask, never the value (:func:`render_request`, :func:`render_auth`); a
  document saved before the rule (no mark) is masked by the rule instead, until the one-time upgrade at
  start (``destinations.seal_legacy``, recorded as :data:`SEALED_UPGRADE`) has sealed it.
- sent: :func:`request_of` opens a stored request into plain params for delivery, and :func:`secrecy_of`
  with :func:`auth_secrets` says what the engine masks and scrubs from everything it shows.

Checking a request at save time (compiling it, the outbound policy) is destinations.py's; this module
imports nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headwater.connectors.http_destination import secrecy
from headwater.stores.metadata import Resource, Scope
from headwater.stores.secrets import SecretBox, is_sealed

# --- secrets inside the request -----------------------------------------------------------------------


@dataclass
class CheckedRequest:
    """A destination's request as sent (``params``: plain text everywhere) and what of it is secret."""

    params: dict[str, Any]
    secret_headers: frozenset[str] = frozenset()  # names as spelled in params["headers"]
    url_flag: bool | None = None
    body_secret: bool = False


def _context(org_id: str, base_id: str, place: str) -> str:
    """Associated data of a sealed request value: its organization, destination and place."""
    return f"{org_id}:{base_id}:request.{place}"


def sealed_request(box: SecretBox, org_id: str, base_id: str, checked: CheckedRequest) -> dict[str, Any]:
    """``checked.params`` with its secret places sealed (values already sealed are kept as they are)."""
    stored = dict(checked.params)
    stored["headers"] = {
        name: box.seal(value, _context(org_id, base_id, f"headers.{name.lower()}"))
        if name in checked.secret_headers and not is_sealed(value)
        else value
        for name, value in stored["headers"].items()
    }
    shown = secrecy.masked_url(stored["url"], checked.url_flag)
    if shown != stored["url"] and not is_sealed(stored.get("urlSecret")):
        stored["urlSecret"] = box.seal(stored["url"], _context(org_id, base_id, "url"))
        stored["url"] = shown
    if checked.body_secret and isinstance(stored.get("body"), str):
        stored["body"] = box.seal(stored["body"], _context(org_id, base_id, "body"))
    return stored


#: Marks a destination document (a target connection's top level, a connection's ``auth``) whose secret
#: places were sealed by the rule. Documents saved before the rule was introduced lack it: they are
#: sealed once when services start (``destinations.seal_legacy``) and, until then, masked by the rule
#: when shown.
SEALED_MARK = "secretsSealed"
SEALED_VERSION = 1
SEALED_UPGRADE = "destination-request-secrets-sealed-v1"  # the store's upgrade mark of seal_legacy


def is_marked(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get(SEALED_MARK) == SEALED_VERSION


def legacy_request(params: dict[str, Any]) -> CheckedRequest:
    """A request stored before the rule (plain values, no flags: the old code had none) with what the
    rule makes secret in it: header values by :func:`secrecy.header_is_secret`, the URL's user-info and
    literal query values. Its body stays as it is (only a body marked secret is one)."""
    headers = params.get("headers") if isinstance(params.get("headers"), dict) else {}
    assert isinstance(headers, dict)
    secret = frozenset(
        name
        for name, value in headers.items()
        if is_sealed(value) or (isinstance(value, str) and secrecy.header_is_secret(str(name), value, None))
    )
    return CheckedRequest(dict(params), secret, None, is_sealed(params.get("body")))


def render_request(doc: dict[str, Any]) -> dict[str, Any]:
    """A destination target connection as shown: sealed values as the mask, the sealed URL left out. A
    document not yet sealed by the rule (saved by an older version) is masked by the rule instead, so a
    secret stored in clear is never shown either."""
    params, marked = doc.get("params"), is_marked(doc)
    doc = {k: v for k, v in doc.items() if k != SEALED_MARK}
    if not isinstance(params, dict):
        return doc
    shown = {k: v for k, v in params.items() if k != "urlSecret"}
    legacy = None if marked else legacy_request(params)
    if isinstance(shown.get("headers"), dict):
        shown["headers"] = {
            k: secrecy.MASK if is_sealed(v) or (legacy and k in legacy.secret_headers) else v
            for k, v in shown["headers"].items()
        }
    if legacy is not None and isinstance(shown.get("url"), str):
        shown["url"] = secrecy.masked_url(shown["url"], None)
    if is_sealed(shown.get("body")):
        shown["body"] = secrecy.MASK
    return {**doc, "params": shown}


def request_of(scope: Scope, target: Resource, box: SecretBox) -> CheckedRequest:
    """A stored destination request opened for sending: plain params and what of them is secret."""
    params = dict(target.doc.get("params") or {})
    base_id = str(target.doc.get("baseConnectionId") or "")
    headers = dict(params.get("headers") or {})
    secret = []
    for name, value in headers.items():
        if is_sealed(value):
            headers[name] = box.open(value, _context(scope.org_id, base_id, f"headers.{name.lower()}"))
            secret.append(name)
    params["headers"] = headers
    url_flag: bool | None = False
    sealed_url = params.pop("urlSecret", None)
    if is_sealed(sealed_url):
        url_flag = True if str(params.get("url", "")).endswith("/" + secrecy.MASK) else None
        params["url"] = box.open(sealed_url, _context(scope.org_id, base_id, "url"))
    body_secret = is_sealed(params.get("body"))
    if body_secret:
        params["body"] = box.open(params["body"], _context(scope.org_id, base_id, "body"))
    if not is_marked(target.doc):  # saved before the rule: what it makes secret is masked and scrubbed
        secret += legacy_request(params).secret_headers
        url_flag = None if url_flag is False else url_flag
    return CheckedRequest(params, frozenset(secret), url_flag, body_secret)


def secrecy_of(request: CheckedRequest, auth_secrets: list[str]) -> secrecy.Secrecy:
    """What the engine masks and scrubs for ``request``; ``auth_secrets``: the auth's secret values."""
    params = request.params
    headers = params.get("headers") or {}
    values = [*auth_secrets]
    for name in request.secret_headers:
        values += secrecy.text_secrets(str(headers.get(name, "")))
    url = str(params.get("url") or "")
    values += secrecy.url_secrets(url, request.url_flag)
    if request.body_secret and isinstance(params.get("body"), str):
        values += secrecy.body_secrets(params["body"])
    return secrecy.Secrecy.of(
        headers=request.secret_headers,
        query=secrecy.query_names(secrecy.masked_url(url, request.url_flag)),
        whole_url=request.url_flag is True,
        body=request.body_secret,
        values=values,
    )


# --- secrets of the OAuth token request (extraHeaders, formItems) ------------------------------------

EXTRAS = ("extraHeaders", "formItems")


def plain_auth(params: dict[str, Any]) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """Auth params with ``extraHeaders``/``formItems`` values unwrapped, and the (key, name) of the
    secret ones: a token request header by the header rule, every form item unless marked not secret."""
    out = dict(params)
    secret: set[tuple[str, str]] = set()
    for key in EXTRAS:
        items = params.get(key)
        if not isinstance(items, dict):
            continue
        plain = {}
        for name, value in items.items():
            text, flag = secrecy.entry(value)
            plain[name] = text
            if not isinstance(text, str):
                continue
            is_header = key == "extraHeaders"
            if secrecy.header_is_secret(str(name), text, flag) if is_header else flag is not False:
                secret.add((key, name))
        out[key] = plain
    return out, secret


def seal_auth(
    box: SecretBox, org_id: str, params: dict[str, Any], errors: list[dict[str, str]]
) -> dict[str, Any]:
    """Auth params of a destination as stored: secret ``extraHeaders``/``formItems`` values sealed in
    place (associated data ``{org}:{key}.{name}``, as Connections.secret_params_of opens them)."""
    plain, secret = plain_auth(params)
    message = f"is {secrecy.MASK}, which Headwater shows in place of a secret: give the value itself"
    for key in EXTRAS:
        items = plain.get(key)
        if not isinstance(items, dict):
            continue
        for name, value in items.items():
            if value == secrecy.MASK:
                errors.append({"path": f"auth.params.{key}.{name}", "message": message})
        plain[key] = {
            name: box.seal(value, f"{org_id}:{key}.{name}") if (key, name) in secret else value
            for name, value in items.items()
        }
    return plain


def render_auth(auth: dict[str, Any]) -> dict[str, Any]:
    """A destination connection's ``auth`` as shown (sealed values already masked by the caller): the
    mark left out and, in one saved before the rule, the secret extra headers and form items masked."""
    marked = is_marked(auth)
    auth = {k: v for k, v in auth.items() if k != SEALED_MARK}
    params = auth.get("params")
    if marked or not isinstance(params, dict):
        return auth
    _, secret = plain_auth(params)
    shown = dict(params)
    for key in EXTRAS:
        if isinstance(shown.get(key), dict):
            shown[key] = {n: secrecy.MASK if (key, n) in secret else v for n, v in shown[key].items()}
    return {**auth, "params": shown}


def auth_secrets(spec_name: str, stored: dict[str, Any], opened: dict[str, Any]) -> list[str]:
    """The secret values of a destination's auth (``opened``: decrypted ``stored``), in the forms the
    request carries them (a Basic header's base64 credentials too)."""
    found = []
    for key, value in stored.items():
        if is_sealed(value) and isinstance(opened.get(key), str):
            found.append(opened[key])
        elif isinstance(value, dict):
            inner = opened.get(key) or {}
            found += [inner[n] for n, v in value.items() if is_sealed(v) and isinstance(inner.get(n), str)]
    username, password = opened.get("username"), opened.get("password")
    if spec_name == "Basic Authentication" and isinstance(username, str) and isinstance(password, str):
        found += secrecy.basic_secrets(username, password)
    client_id, client_secret = opened.get("clientId"), opened.get("clientSecret")
    if isinstance(client_id, str) and isinstance(client_secret, str):
        found += secrecy.basic_secrets(client_id, client_secret)
    return found

"""HTTP destinations (Sitecore Personalize-style connections) and the activation flows that feed them.

A destination is a base connection of the HTTP destination spec (name, description, icon and the
authentication) with a target connection holding the request: method, URL, headers, timeouts and the
JSON body, with ``${var}`` placeholders. Document 003: once saved, a destination cannot be edited; a
change is a new destination. Everything here is checked at save time so a flow never starts with a
request that cannot be built: the template compiles, its body is JSON, no ``${guest.…}`` variables, and
the fixed part of every URL passes the outbound policy.

An activation flow binds each variable of the request to a source path or a mapping expression.
Dead letters are the records a destination would not take; they are kept per flow and can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headwater.connectors.errors import OutboundRefused
from headwater.errors import BadRequest, ValidationFailed
from headwater.runtime.delivery import secrecy
from headwater.services.resources import Built, ServiceCollection
from headwater.services.specs import DATA_LAKE_SPEC_ID
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource, Scope
from headwater.stores.secrets import SecretBox, is_sealed

if TYPE_CHECKING:
    from headwater.services.container import Services

HTTP_DESTINATION_SPEC_ID = "ce55fc04-f79b-4668-a8b7-2565a5c65ad4"
ACTIVATION_FLOW_SPEC_ID = "cf0ccb51-d329-4dd2-a912-d3c87e068aa4"
ICONS = (
    "api",
    "email",
    "sms",
    "push",
    "webhook",
    "crm",
    "ecommerce",
    "analytics",
    "advertising",
    "chat",
    "database",
    "cloud",
)
IMMUTABLE = (
    "A saved destination cannot be edited (document 003). Create a new destination connection with the "
    "change, point your activation flows at it, then delete this one."
)

#: Delivery options of an activation flow: name -> (default, minimum, maximum).
DELIVERY_OPTIONS: dict[str, tuple[float, float, float]] = {
    "maxInFlight": (64, 1, 1024),
    "requestsPerSecond": (0, 0, 100_000),
    "retryInitialDelayMs": (500, 1, 3_600_000),
    "retryMaxDelayMs": (300_000, 1, 86_400_000),
    "retryMaxAgeSeconds": (14_400, 1, 7 * 86_400),
}


def is_destination(spec_id: str | None) -> bool:
    return spec_id == HTTP_DESTINATION_SPEC_ID


def refuse_edit() -> BadRequest:
    return BadRequest(IMMUTABLE, code="FLOW-1400-400", report={"immutable": True})


def check_connection(
    services: Services, body: dict[str, Any], errors: list[dict[str, str]]
) -> dict[str, Any]:
    """The destination fields of a base connection body (``icon``), with the token URL checked against
    the outbound policy now, as the request URL is (not first when a token is fetched)."""
    icon = body.get("icon", "api")
    if icon not in ICONS:
        errors.append({"path": "icon", "message": "must be one of: " + ", ".join(ICONS)})
    auth = body.get("auth")
    params = auth.get("params") if isinstance(auth, dict) else None
    if isinstance(params, dict):
        check_token_url(services, params, errors)
    return {"icon": icon}


def check_token_url(services: Services, params: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """``accessTokenUrl`` of OAuth auth params against the outbound policy (400 naming the field)."""
    url = params.get("accessTokenUrl")
    if isinstance(url, str) and url.lower().startswith("https://"):
        _check_outbound(services, url, "auth.params.accessTokenUrl", errors)


# --- secrets inside the request (runtime/delivery/secrecy.py states the rule) -----------------------


@dataclass
class CheckedRequest:
    """A destination's request as sent (``params``: plain text everywhere) and what of it is secret."""

    params: dict[str, Any]
    secret_headers: frozenset[str] = frozenset()  # names as spelled in params["headers"]
    url_flag: bool | None = None
    body_secret: bool = False


def check_request(services: Services, params: dict[str, Any], errors: list[dict[str, str]]) -> CheckedRequest:
    """A target connection's request params, normalized (default headers and timeouts filled in, values
    given as ``{"value", "secret"}`` unwrapped) and checked: the template compiles, the fixed part of
    the URL passes the outbound policy, no value is the mask."""
    from headwater.runtime.delivery.template import RequestTemplate, TemplateInvalid, effective_headers

    params = dict(params)
    headers = params.get("headers")
    flags: dict[str, bool | None] = {}
    if headers is not None:
        plain: dict[str, Any] = {}
        for name, value in headers.items() if isinstance(headers, dict) else ():
            plain[name], flags[name] = secrecy.entry(value)
        if not (isinstance(headers, dict) and all(isinstance(v, str) for v in plain.values())):
            errors.append({"path": "params.headers", "message": "must be an object of header name -> string"})
            return CheckedRequest(params)
        headers = plain
    # Defaults shown and overridden; an empty value removes a default and stays visible as removed.
    params["headers"] = {
        **effective_headers(headers),
        **{k: v for k, v in (headers or {}).items() if v == ""},
    }
    params["url"], url_flag = secrecy.entry(params.get("url"))
    body, body_flag = secrecy.entry(params.get("body"))
    params["body"] = body
    params.setdefault("connectionTimeoutMs", 1000)
    params.setdefault("readTimeoutMs", 1000)
    if params.get("body") is not None and not isinstance(params["body"], str):
        errors.append({"path": "params.body", "message": "must be a string holding a JSON template"})
        return CheckedRequest(params)
    try:
        RequestTemplate.compile(params)
    except TemplateInvalid as exc:
        errors.extend(e for e in exc.errors if e not in errors)
        return CheckedRequest(params)
    _check_outbound(services, _fixed_part(params["url"]), "params.url", errors)
    _refuse_masks(params, errors)
    secret = frozenset(
        name
        for name, value in params["headers"].items()
        if secrecy.header_is_secret(name, value, _flag_of(flags, name))
    )
    return CheckedRequest(params, secret, url_flag, bool(body_flag))


def _flag_of(flags: dict[str, bool | None], name: str) -> bool | None:
    return next((flag for given, flag in flags.items() if given.lower() == name.lower()), None)


def _refuse_masks(params: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """The mask is what Headwater shows in place of a secret: sent back as a value it would be stored
    as the secret itself (a destination copied from a GET), so it is refused."""
    message = f"is {secrecy.MASK}, which Headwater shows in place of a secret: give the value itself"
    for name, value in params["headers"].items():
        if secrecy.MASK in value:
            errors.append({"path": f"params.headers.{name}", "message": message})
    if secrecy.MASK in params["url"]:
        errors.append({"path": "params.url", "message": message})


def _context(org_id: str, base_id: str, place: str) -> str:
    """Associated data of a sealed request value: its organization, destination and place."""
    return f"{org_id}:{base_id}:request.{place}"


def stored_request(
    services: Services, org_id: str, base_id: Any, params: dict[str, Any], errors: list[dict[str, str]]
) -> dict[str, Any]:
    """The request params as stored: checked (:func:`check_request`), secret header values and a secret
    body sealed in place, a URL with secrets kept as its masked form with the real one sealed beside it
    (``urlSecret``)."""
    checked = check_request(services, params, errors)
    if errors or not isinstance(base_id, str):
        return checked.params
    return _sealed_request(services.box, org_id, base_id, checked)


def _sealed_request(box: SecretBox, org_id: str, base_id: str, checked: CheckedRequest) -> dict[str, Any]:
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
#: sealed once when services start (:func:`seal_legacy`) and, until then, masked by the rule when shown.
SEALED_MARK = "secretsSealed"
SEALED_VERSION = 1
SEALED_UPGRADE = "destination-request-secrets-sealed-v1"  # the store's upgrade mark of seal_legacy


def _is_marked(doc: Any) -> bool:
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
    params, marked = doc.get("params"), _is_marked(doc)
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
    if not _is_marked(target.doc):  # saved before the rule: what it makes secret is masked and scrubbed
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
    services: Services, org_id: str, params: dict[str, Any], errors: list[dict[str, str]]
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
            name: services.box.seal(value, f"{org_id}:{key}.{name}") if (key, name) in secret else value
            for name, value in items.items()
        }
    return plain


def render_auth(auth: dict[str, Any]) -> dict[str, Any]:
    """A destination connection's ``auth`` as shown (sealed values already masked by the caller): the
    mark left out and, in one saved before the rule, the secret extra headers and form items masked."""
    marked = _is_marked(auth)
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


# --- sealing destinations saved before the rule (run when services start) ---------------------------


def seal_legacy(services: Services) -> int:
    """Seal, by the rule and with the associated data a save uses now, the secret places of every HTTP
    destination saved before the rule existed (its request and its connection's extra headers and form
    items), and mark each document done. Idempotent: marked documents are left alone, so values marked
    not secret since are never sealed. Safe with several processes starting at once: each document is
    replaced only if its etag is still the one read, and a process that loses the race re-reads it and
    finds it marked. Once every document is done the store keeps an upgrade mark, and later starts
    return at once without reading any document. Returns how many documents were rewritten."""
    if services.store.has_mark(SEALED_UPGRADE):
        return 0  # done once, by this or another process: later starts read nothing
    done = 0
    for kind, seal in (("targetConnection", _seal_target), ("connection", _seal_connection)):
        for resource in services.store.scan_kind(kind):
            done += _seal_one(services, resource, seal)
    services.store.set_mark(SEALED_UPGRADE)
    return done


def _seal_one(services: Services, resource: Resource | None, seal: Any) -> int:
    from headwater.services.ids import new_etag
    from headwater.stores.metadata import StaleWrite

    while resource is not None:
        doc = seal(services.box, resource)
        if doc is None:
            return 0
        updated = Resource(
            resource.kind, resource.id, resource.scope, doc, new_etag(), resource.name, resource.alt_id,
            resource.created_at, resource.updated_at, refs=list(resource.refs),
        )  # fmt: skip
        try:
            services.store.update(updated, resource.etag)
            return 1
        except StaleWrite:  # another process (or a user) changed it meanwhile: look again
            resource = services.store.get(resource.kind, resource.scope, resource.id)
    return 0


def _seal_target(box: SecretBox, resource: Resource) -> dict[str, Any] | None:
    """The sealed document of a destination request not yet marked (None: nothing to do)."""
    doc = resource.doc
    spec = doc.get("connectionSpec") if isinstance(doc.get("connectionSpec"), dict) else {}
    if not is_destination((spec or {}).get("id")) or _is_marked(doc):
        return None
    params, base_id = doc.get("params"), doc.get("baseConnectionId")
    if isinstance(params, dict) and isinstance(base_id, str):
        params = _sealed_request(box, resource.scope.org_id, base_id, legacy_request(params))
    return {**doc, "params": params, SEALED_MARK: SEALED_VERSION}


def _seal_connection(box: SecretBox, resource: Resource) -> dict[str, Any] | None:
    """The sealed document of a destination connection whose auth is not yet marked (None: nothing to do)."""
    doc = resource.doc
    spec = doc.get("connectionSpec") if isinstance(doc.get("connectionSpec"), dict) else {}
    auth = doc.get("auth")
    if not is_destination((spec or {}).get("id")) or not isinstance(auth, dict) or _is_marked(auth):
        return None
    params = auth.get("params")
    if isinstance(params, dict):
        plain, secret = plain_auth(params)
        for key in EXTRAS:
            if isinstance(plain.get(key), dict):
                plain[key] = {
                    n: box.seal(v, f"{resource.scope.org_id}:{key}.{n}") if (key, n) in secret else v
                    for n, v in plain[key].items()
                }
        params = plain
    return {**doc, "auth": {**auth, "params": params, SEALED_MARK: SEALED_VERSION}}


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


def _fixed_part(url: str) -> str:
    """The URL up to its first placeholder: scheme, host and port never hold one (the template says)."""
    cut = url.find("${")
    return url if cut < 0 else url[:cut]


def _check_outbound(services: Services, url: str, path: str, errors: list[dict[str, str]]) -> None:
    try:
        services.outbound.check_url(url)
    except OutboundRefused as exc:
        errors.append({"path": path, "message": str(exc)})


def delivery_options(options: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, Any]:
    out = dict(options)
    for name, (default, low, high) in DELIVERY_OPTIONS.items():
        value = options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            errors.append(
                {"path": f"options.{name}", "message": f"must be a number from {low:g} to {high:g}"}
            )
            continue
        out[name] = value
    header = options.get("idempotencyHeader", "Idempotency-Key")
    if not isinstance(header, str) or not header or any(c in header for c in " :\r\n\t"):
        errors.append({"path": "options.idempotencyHeader", "message": "must be a header name"})
    else:
        out["idempotencyHeader"] = header
    return out


def check_activation(
    services: Services,
    actor: Actor,
    sources: list[Resource],
    targets: list[Resource],
    transformations: list[dict[str, Any]],
    errors: list[dict[str, str]],
) -> None:
    """An activation flow: one source (a dataset, or a streaming source), one destination, bindings for
    every variable of the destination's request."""
    from headwater.runtime.delivery.bindings import check
    from headwater.runtime.delivery.template import RequestTemplate, TemplateInvalid

    if len(sources) > 1:
        errors.append({"path": "sourceConnectionIds", "message": "an activation flow reads one source"})
    if len(targets) > 1:
        errors.append({"path": "targetConnectionIds", "message": "an activation flow feeds one destination"})
    for index, source in enumerate(sources):
        if source.doc["connectionSpec"]["id"] == DATA_LAKE_SPEC_ID:
            dataset_id = (source.doc.get("params") or {}).get("dataSetId")
            if (
                not isinstance(dataset_id, str)
                or services.store.get("dataSet", actor.scope, dataset_id) is None
            ):
                message = f"its dataset {dataset_id!r} does not exist in this sandbox"
                errors.append({"path": f"sourceConnectionIds[{index}]", "message": message})
    variables: set[str] = set()
    bindings: Any = None
    for index, item in enumerate(transformations):
        if item["name"] == "Variables":
            bindings = item["params"].get("bindings")
            errors.extend(check(bindings, f"transformations[{index}].params.bindings"))
    if targets:
        try:
            request = request_of(actor.scope, targets[0], services.box)
            template = RequestTemplate.compile(request.params)
            variables = {name.split(".")[0] for name in template.variables}
        except TemplateInvalid:
            pass
    bound = set(bindings) if isinstance(bindings, dict) else set()
    missing = sorted(variables - bound)
    if missing:
        errors.append(
            {
                "path": "transformations",
                "message": "the destination's request uses variables with no binding: "
                + ", ".join(missing)
                + ' (add a "Variables" transformation with {"bindings": {name: {"source": path}}})',
            }
        )


class DeadLetters(ServiceCollection):
    """Records an activation gave up on, with the rendered request (secrets masked), the last response and
    the reason. Created by the delivery engine only; replayed through the API."""

    kind, label = "deadLetter", "dead letter"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        raise ValidationFailed([{"path": "(body)", "message": "dead letters are created by deliveries only"}])

    def render(self, resource: Resource) -> dict[str, Any]:
        return {**resource.doc, "id": resource.id}

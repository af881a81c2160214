"""HTTP destinations (Sitecore Personalize-style connections) and the activation flows that feed them.

A destination is a base connection of the HTTP destination spec (name, description, icon and the
authentication) with a target connection holding the request: method, URL, headers, timeouts and the
JSON body, with ``${var}`` placeholders. Document 003: once saved, a destination cannot be edited; a
change is a new destination. Everything here is checked at save time so a flow never starts with a
request that cannot be built: the template compiles, its body is JSON, no ``${guest.…}`` variables, and
the fixed part of every URL passes the outbound policy.

An activation flow binds each variable of the request to a source path or a mapping expression.
Dead letters are the records a destination would not take; they are kept per flow and can be replayed.

Which values of a destination are secrets, and how they are sealed, shown and opened, is
destination_secrets.py's; the one-time sealing of destinations saved before that rule runs from here
(:func:`seal_legacy`), as it walks the store for documents of this spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from headwater.catalog import ids
from headwater.connectors.errors import OutboundRefused
from headwater.connectors.http_destination import secrecy
from headwater.connectors.http_destination.auth import CA_CERTIFICATE, check_ca_data, tls_context
from headwater.connectors.http_destination.errors import AuthError
from headwater.errors import BadRequest, ValidationFailed
from headwater.services.destination_secrets import (
    EXTRAS,
    SEALED_MARK,
    SEALED_UPGRADE,
    SEALED_VERSION,
    CheckedRequest,
    is_marked,
    legacy_request,
    plain_auth,
    request_of,
    sealed_request,
)
from headwater.services.resources import Built, Collection
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource
from headwater.stores.secrets import SecretBox

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy


class WithOutbound(Protocol):
    """What the save-time URL checks need: the outbound policy, held by whoever calls (a connection
    service; the runtime's delivery passes the container until it receives the policy itself)."""

    @property
    def outbound(self) -> OutboundPolicy: ...


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
    return spec_id == ids.HTTP_DESTINATION


def refuse_edit() -> BadRequest:
    return BadRequest(IMMUTABLE, code="FLOW-1400-400", report={"immutable": True})


def check_connection(
    services: WithOutbound, body: dict[str, Any], errors: list[dict[str, str]]
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
        check_ca_certificate(params, errors)
        check_client_certificate(params, errors)
    return {"icon": icon}


def check_client_certificate(params: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """``clientCertificate`` and ``clientKey`` (mutual TLS) parse as PEM and match (400 naming the field
    otherwise), so mTLS material that cannot work is refused at save, not stored."""
    certificate, key = params.get("clientCertificate"), params.get("clientKey")
    if not (isinstance(certificate, str) and certificate and isinstance(key, str) and key):
        return  # one without the other: the auth spec's dependencies say so
    try:
        tls_context(None, certificate, key)
    except AuthError:
        errors.append(
            {
                "path": "auth.params.clientCertificate",
                "message": "and clientKey must be PEM, the key unencrypted and matching the certificate",
            }
        )


def check_ca_certificate(params: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """``caCertificate`` of auth params, when given, is a PEM bundle of certificates that loads (400 naming
    the field otherwise): a destination's own CAs for TLS to its token endpoint and its requests."""
    value = params.get(CA_CERTIFICATE)
    problem = check_ca_data(value) if isinstance(value, str) else None  # a non-string: the spec says so
    if problem:
        errors.append({"path": f"auth.params.{CA_CERTIFICATE}", "message": problem})


def check_token_url(services: WithOutbound, params: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """``accessTokenUrl`` of OAuth auth params against the outbound policy (400 naming the field)."""
    url = params.get("accessTokenUrl")
    if isinstance(url, str) and url.lower().startswith("https://"):
        _check_outbound(services, url, "auth.params.accessTokenUrl", errors)


def check_request(
    services: WithOutbound, params: dict[str, Any], errors: list[dict[str, str]]
) -> CheckedRequest:
    """A target connection's request params, normalized (default headers and timeouts filled in, values
    given as ``{"value", "secret"}`` unwrapped) and checked: the template compiles, the fixed part of
    the URL passes the outbound policy, no value is the mask."""
    from headwater.engines.template import RequestTemplate, TemplateInvalid, effective_headers

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


def stored_request(
    services: WithOutbound,
    box: SecretBox,
    org_id: str,
    base_id: Any,
    params: dict[str, Any],
    errors: list[dict[str, str]],
) -> dict[str, Any]:
    """The request params as stored: checked (:func:`check_request`), secret header values and a secret
    body sealed in place, a URL with secrets kept as its masked form with the real one sealed beside it
    (``urlSecret``)."""
    checked = check_request(services, params, errors)
    if errors or not isinstance(base_id, str):
        return checked.params
    return sealed_request(box, org_id, base_id, checked)


# --- sealing destinations saved before the rule (run when services start) ---------------------------


def seal_legacy(store: MetadataStore, box: SecretBox) -> int:
    """Seal, by the rule and with the associated data a save uses now, the secret places of every HTTP
    destination saved before the rule existed (its request and its connection's extra headers and form
    items), and mark each document done. Idempotent: marked documents are left alone, so values marked
    not secret since are never sealed. Safe with several processes starting at once: each document is
    replaced only if its etag is still the one read, and a process that loses the race re-reads it and
    finds it marked. Once every document is done the store keeps an upgrade mark, and later starts
    return at once without reading any document. Returns how many documents were rewritten."""
    if store.has_mark(SEALED_UPGRADE):
        return 0  # done once, by this or another process: later starts read nothing
    done = 0
    for kind, seal in (("targetConnection", _seal_target), ("connection", _seal_connection)):
        for resource in store.scan_kind(kind):
            done += _seal_one(store, box, resource, seal)
    store.set_mark(SEALED_UPGRADE)
    return done


def _seal_one(store: MetadataStore, box: SecretBox, resource: Resource | None, seal: Any) -> int:
    from headwater.services.ids import new_etag
    from headwater.stores.metadata import StaleWrite

    while resource is not None:
        doc = seal(box, resource)
        if doc is None:
            return 0
        updated = Resource(
            resource.kind, resource.id, resource.scope, doc, new_etag(), resource.name, resource.alt_id,
            resource.created_at, resource.updated_at, refs=list(resource.refs),
        )  # fmt: skip
        try:
            store.update(updated, resource.etag)
            return 1
        except StaleWrite:  # another process (or a user) changed it meanwhile: look again
            resource = store.get(resource.kind, resource.scope, resource.id)
    return 0


def _seal_target(box: SecretBox, resource: Resource) -> dict[str, Any] | None:
    """The sealed document of a destination request not yet marked (None: nothing to do)."""
    doc = resource.doc
    spec = doc.get("connectionSpec") if isinstance(doc.get("connectionSpec"), dict) else {}
    if not is_destination((spec or {}).get("id")) or is_marked(doc):
        return None
    params, base_id = doc.get("params"), doc.get("baseConnectionId")
    if isinstance(params, dict) and isinstance(base_id, str):
        params = sealed_request(box, resource.scope.org_id, base_id, legacy_request(params))
    return {**doc, "params": params, SEALED_MARK: SEALED_VERSION}


def _seal_connection(box: SecretBox, resource: Resource) -> dict[str, Any] | None:
    """The sealed document of a destination connection whose auth is not yet marked (None: nothing to do)."""
    doc = resource.doc
    spec = doc.get("connectionSpec") if isinstance(doc.get("connectionSpec"), dict) else {}
    auth = doc.get("auth")
    if not is_destination((spec or {}).get("id")) or not isinstance(auth, dict) or is_marked(auth):
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


def _fixed_part(url: str) -> str:
    """The URL up to its first placeholder: scheme, host and port never hold one (the template says)."""
    cut = url.find("${")
    return url if cut < 0 else url[:cut]


def _check_outbound(services: WithOutbound, url: str, path: str, errors: list[dict[str, str]]) -> None:
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
    store: MetadataStore,
    box: SecretBox,
    actor: Actor,
    sources: list[Resource],
    targets: list[Resource],
    transformations: list[dict[str, Any]],
    errors: list[dict[str, str]],
    refs: list[tuple[str, str]],
) -> None:
    """An activation flow: one source (a dataset, a streaming source, or the Profile Service with the
    audience its GeneralTransform selects: services/audience_activation.py), one destination, bindings
    for every variable of the destination's request (of both requests, for an audience's exits)."""
    from headwater.engines.bindings import check
    from headwater.services import audience_activation

    if len(sources) > 1:
        errors.append({"path": "sourceConnectionIds", "message": "an activation flow reads one source"})
    audience = any(s.doc["connectionSpec"]["id"] == ids.PROFILE_SERVICE for s in sources)
    if audience:
        audience_activation.check_audience(store, actor.scope, targets, transformations, errors, refs)
    else:
        audience_activation.refuse_selectors(transformations, errors)
        if len(targets) > 1:
            message = "an activation flow feeds one destination"
            errors.append({"path": "targetConnectionIds", "message": message})
    for index, source in enumerate(sources):
        if source.doc["connectionSpec"]["id"] == ids.DATA_LAKE:
            dataset_id = (source.doc.get("params") or {}).get("dataSetId")
            if not isinstance(dataset_id, str) or store.get("dataSet", actor.scope, dataset_id) is None:
                message = f"its dataset {dataset_id!r} does not exist in this sandbox"
                errors.append({"path": f"sourceConnectionIds[{index}]", "message": message})
    bindings: Any = None
    for index, item in enumerate(transformations):
        if item["name"] == "Variables":
            bindings = item["params"].get("bindings")
            errors.extend(check(bindings, f"transformations[{index}].params.bindings"))
    from headwater.services.flowservice import drafts

    drafts.unusable(store, actor.scope, targets, errors)
    variables: set[str] = set()
    for target in targets[:2]:
        variables |= _request_variables(box, actor, target)
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


def _request_variables(box: SecretBox, actor: Actor, target: Resource) -> set[str]:
    """The top-level variables of a destination request (none when it does not compile)."""
    from headwater.engines.template import RequestTemplate, TemplateInvalid

    try:
        request = request_of(actor.scope, target, box)
        template = RequestTemplate.compile(request.params)
    except TemplateInvalid:
        return set()
    return {name.split(".")[0] for name in template.variables}


class DeadLetters(Collection):
    """Records an activation gave up on, with the rendered request (secrets masked), the last response and
    the reason. Created by the delivery engine only; replayed through the API."""

    kind, label = "deadLetter", "dead letter"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        raise ValidationFailed([{"path": "(body)", "message": "dead letters are created by deliveries only"}])

    def render(self, resource: Resource) -> dict[str, Any]:
        return {**resource.doc, "id": resource.id}

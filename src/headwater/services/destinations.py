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

from typing import TYPE_CHECKING, Any

from headwater.connectors.errors import OutboundRefused
from headwater.errors import BadRequest, ValidationFailed
from headwater.services.resources import Built, ServiceCollection
from headwater.services.specs import DATA_LAKE_SPEC_ID
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

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
    """The destination fields of a base connection body (``icon``), with the token URL checked."""
    icon = body.get("icon", "api")
    if icon not in ICONS:
        errors.append({"path": "icon", "message": "must be one of: " + ", ".join(ICONS)})
    auth = body.get("auth")
    params = auth.get("params") if isinstance(auth, dict) else None
    url = params.get("accessTokenUrl") if isinstance(params, dict) else None
    if isinstance(url, str) and url.startswith("https://"):
        _check_outbound(services, url, "auth.params.accessTokenUrl", errors)
    return {"icon": icon}


def check_request(services: Services, params: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, Any]:
    """A target connection's request params, normalized (default headers and timeouts filled in)."""
    from headwater.runtime.delivery.template import RequestTemplate, TemplateInvalid, effective_headers

    params = dict(params)
    headers = params.get("headers")
    if headers is not None and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        errors.append({"path": "params.headers", "message": "must be an object of header name -> string"})
        return params
    # Defaults shown and overridden; an empty value removes a default and stays visible as removed.
    params["headers"] = {
        **effective_headers(headers),
        **{k: v for k, v in (headers or {}).items() if v == ""},
    }
    params.setdefault("connectionTimeoutMs", 1000)
    params.setdefault("readTimeoutMs", 1000)
    if params.get("body") is not None and not isinstance(params["body"], str):
        errors.append({"path": "params.body", "message": "must be a string holding a JSON template"})
        return params
    try:
        RequestTemplate.compile(params)
    except TemplateInvalid as exc:
        errors.extend(e for e in exc.errors if e not in errors)
        return params
    _check_outbound(services, _fixed_part(params["url"]), "params.url", errors)
    return params


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
            template = RequestTemplate.compile(targets[0].doc.get("params") or {})
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

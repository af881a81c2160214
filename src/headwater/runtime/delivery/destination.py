"""A saved HTTP destination made ready to send: its documents read, its credentials and request opened,
what of it is secret decided (services/destination_secrets.py), and the connector's destination built
from them (connectors/http_destination/). Also the two sends a person asks for directly: a
destination's Test Request and the replay of a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from headwater.catalog import ids
from headwater.connectors.http_destination import secrecy
from headwater.connectors.http_destination.destination import Destination, connect, send_once
from headwater.connectors.http_destination.errors import AuthError
from headwater.engines.template import TemplateInvalid
from headwater.errors import HeadwaterError, NotFound, ValidationFailed
from headwater.runtime.delivery.engine import Limits
from headwater.services import destination_secrets, destinations, validation
from headwater.stores.metadata import Resource, Scope

if TYPE_CHECKING:
    from headwater.runtime.context import Runtime
    from headwater.services.tenancy import Actor

log = logging.getLogger(__name__)
TEST_KEY = "test-request"


def open_destination(
    services: Runtime, scope: Scope, target: Resource, max_connections: int = 64
) -> Destination:
    """The destination of ``target`` (an HTTP destination target connection), ready to send."""
    base = services.store.get("connection", scope, target.doc.get("baseConnectionId") or "")
    if base is None:
        raise NotFound(f"The destination connection of target connection {target.id} no longer exists.")
    auth = base.doc.get("auth") or {}
    spec_name = auth.get("specName", "None")
    params = services.connections.secret_params_of(scope, base)
    request = destination_secrets.request_of(scope, target, services.box)
    secrets = destination_secrets.auth_secrets(spec_name, auth.get("params") or {}, params)
    return build(services, spec_name, params, request, secrets, max_connections)


def build(
    services: Runtime,
    spec_name: str,
    auth_params: dict[str, Any],
    checked: destination_secrets.CheckedRequest,
    auth_secrets: list[str],
    max_connections: int = 64,
) -> Destination:
    """A destination ready to send ``checked`` (plain params) with decrypted ``auth_params``; everything
    secret (``auth_secrets`` and the request's own) is masked and scrubbed from what it shows."""
    return connect(
        checked.params,
        spec_name,
        auth_params,
        destination_secrets.secrecy_of(checked, auth_secrets),
        services.outbound,
        ca_file=services.settings.outbound_ca_file,
        max_connections=max_connections,
    )


def _opened_for_a_person(
    services: Runtime, scope: Scope, target: Resource, max_connections: int
) -> Destination:
    """:func:`open_destination` for a send a person asked for (Test Request, replay). A saved destination
    whose auth cannot be built (a client certificate that does not load, say) answers the unexpected
    error it has always answered (logged here), not the connector error's own status and words."""
    try:
        return open_destination(services, scope, target, max_connections)
    except AuthError as exc:
        log.exception("the destination of target connection %s cannot be opened", target.id)
        raise HeadwaterError("An unexpected error occurred; it has been logged.", code="HW-1000-500") from exc


async def test_saved(services: Runtime, actor: Actor, target_id: str, body: Any) -> dict[str, Any]:
    """``POST /targetConnections/{id}/test``: the saved destination's request with the given variables."""
    target = services.target_connections.get(actor, target_id)
    if not destinations.is_destination(target.doc["connectionSpec"]["id"]):
        raise ValidationFailed(
            [{"path": "id", "message": "only HTTP destination target connections have a test request"}]
        )
    destination = _opened_for_a_person(services, actor.scope, target, max_connections=2)
    try:
        return await send_once(destination, _variables(body), TEST_KEY, Limits().idempotency_header)
    finally:
        await destination.aclose()


async def test_unsaved(services: Runtime, actor: Actor, body: Any) -> dict[str, Any]:
    """``POST /targetConnections/test``: the wizard's Test Request before anything is saved. The body holds
    ``auth`` (specName and params, secrets in clear) or ``baseConnectionId``, ``params`` (the request)
    and ``variables``."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"path": "(body)", "message": "must be a JSON object"}])
    errors: list[dict[str, str]] = []
    params = body.get("params")
    if not isinstance(params, dict):
        raise ValidationFailed([{"path": "params", "message": "is required: the request to test"}])
    spec = services.specs.connection_spec(ids.HTTP_DESTINATION)
    assert spec is not None
    schema = spec["targetSpec"]["spec"]
    params = validation.coerce(params, schema)
    errors.extend(validation.check(params, schema, "params"))
    if errors:
        raise ValidationFailed(errors, code="FLOW-1422-400")
    request = destinations.check_request(services, params, errors)
    spec_name, auth_params, secrets = _auth_of(services, actor, body, errors)
    if errors:
        raise ValidationFailed(errors, code="FLOW-1422-400")
    try:
        destination = build(services, spec_name, auth_params, request, secrets, max_connections=2)
    except TemplateInvalid as exc:
        raise ValidationFailed(exc.errors, code="FLOW-1422-400") from exc
    except AuthError as exc:
        raise ValidationFailed([{"path": "auth.params", "message": str(exc)}], code="FLOW-1422-400") from exc
    try:
        return await send_once(destination, _variables(body), TEST_KEY, Limits().idempotency_header)
    finally:
        await destination.aclose()


def _auth_of(
    services: Runtime, actor: Actor, body: dict[str, Any], errors: list[dict[str, str]]
) -> tuple[str, dict[str, Any], list[str]]:
    """The auth to test with (spec name, plain params, their secret values): a saved destination's, or
    the one in the body, checked as saving it would check it (the token URL against the policy too)."""
    base_id = body.get("baseConnectionId")
    if isinstance(base_id, str):
        base = services.connections.get(actor, base_id)
        if not destinations.is_destination(base.doc["connectionSpec"]["id"]):
            errors.append({"path": "baseConnectionId", "message": "is not an HTTP destination connection"})
        auth = base.doc.get("auth") or {}
        spec_name = auth.get("specName", "None")
        opened = services.connections.secret_params(actor, base)
        return (
            spec_name,
            opened,
            destination_secrets.auth_secrets(spec_name, auth.get("params") or {}, opened),
        )
    auth = body.get("auth", {"specName": "None", "params": {}})
    spec = services.specs.connection_spec(ids.HTTP_DESTINATION)
    assert spec is not None
    if not isinstance(auth, dict):
        errors.append({"path": "auth", "message": "must be an object with specName and params"})
        return "None", {}, []
    name = auth.get("specName")
    auth_spec = services.specs.auth_spec(spec, name) if isinstance(name, str) else None
    if auth_spec is None:
        names = ", ".join(a["name"] for a in spec["authSpec"])
        errors.append({"path": "auth.specName", "message": f"must be one of: {names}"})
        return "None", {}, []
    params = auth.get("params") if isinstance(auth.get("params"), dict) else {}
    params = validation.coerce(params, auth_spec["spec"])
    errors.extend(validation.check(params, auth_spec["spec"], "auth.params"))
    destinations.check_token_url(services, params, errors)
    destinations.check_ca_certificate(params, errors)
    destinations.check_client_certificate(params, errors)
    plain, extras = destination_secrets.plain_auth(params)
    secret_fields = services.specs.secret_fields(auth_spec)
    secrets = [str(plain[k][n]) for k, n in extras]
    secrets += [plain[k] for k in secret_fields if isinstance(plain.get(k), str)]
    if auth_spec["name"] == "Basic Authentication":
        secrets += _basic_pair(plain)
    elif isinstance(plain.get("clientId"), str) and isinstance(plain.get("clientSecret"), str):
        secrets += secrecy.basic_secrets(plain["clientId"], plain["clientSecret"])
    return auth_spec["name"], plain, secrets


def _basic_pair(params: dict[str, Any]) -> list[str]:
    username, password = params.get("username"), params.get("password")
    if isinstance(username, str) and isinstance(password, str):
        return secrecy.basic_secrets(username, password)
    return []


def _variables(body: Any) -> dict[str, Any]:
    variables = body.get("variables", {}) if isinstance(body, dict) else None
    if not isinstance(variables, dict):
        raise ValidationFailed([{"path": "variables", "message": "must be an object of variable -> value"}])
    return variables


MAX_REPLAY = 1000


async def replay(services: Runtime, actor: Actor, ids: list[str]) -> dict[str, Any]:
    """Send dead letters again, once each, with their idempotency keys; a delivered one is marked
    ``replayed``, another failure updates its response and reason. Each answer says which."""
    if not ids or len(ids) > MAX_REPLAY:
        raise ValidationFailed([{"path": "ids", "message": f"must name 1 to {MAX_REPLAY} dead letters"}])
    letters = services.store.get_many("deadLetter", actor.scope, ids)
    opened: dict[str, Destination] = {}
    results = []
    try:
        for ident in ids:
            letter = letters.get(ident)
            if letter is None:
                results.append({"id": ident, "state": None, "error": "no such dead letter in this sandbox"})
                continue
            if letter.doc.get("state") == "replayed":
                results.append({"id": ident, "state": "replayed", "error": None})
                continue
            outcome = await _replay_one(services, actor, letter, opened)
            changes = _replay_changes(letter, outcome)
            error = changes.pop("error", None)
            await asyncio.to_thread(services.ledger.save, letter, changes)
            status = (outcome.get("response") or {}).get("status")
            results.append({"id": ident, "state": changes["state"], "status": status, "error": error})
    finally:
        for destination in opened.values():
            await destination.aclose()
    return {"results": results}


async def _replay_one(
    services: Runtime, actor: Actor, letter: Resource, opened: dict[str, Destination]
) -> dict[str, Any]:
    doc = letter.doc
    variables = doc.get("variables")
    if not isinstance(variables, dict):
        return {
            "error": {
                "kind": "bind",
                "message": "its record could not be bound to variables: nothing to send",
            }
        }
    target_id = doc.get("targetConnectionId") or ""
    destination = opened.get(target_id)
    if destination is None:
        target = services.store.get("targetConnection", actor.scope, target_id)
        if target is None:
            return {"error": {"kind": "gone", "message": f"its destination {target_id} no longer exists"}}
        destination = opened[target_id] = await asyncio.to_thread(
            _opened_for_a_person, services, actor.scope, target, 8
        )
    flow = services.store.get("flow", actor.scope, doc.get("flowId") or "")
    header = str(
        ((flow.doc.get("options") or {}) if flow else {}).get("idempotencyHeader", "Idempotency-Key")
    )
    try:
        return await send_once(destination, variables, str(doc["idempotencyKey"]), header)
    except ValidationFailed as exc:
        return {"error": {"kind": "render", "message": exc.detail}}


def _replay_changes(letter: Resource, outcome: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time() * 1000)
    response = outcome.get("response")
    error = outcome.get("error")
    attempts = int(letter.doc.get("attempts") or 0) + (
        0 if error and error.get("kind") in ("bind", "gone") else 1
    )
    delivered = response is not None and 200 <= int(response["status"]) < 300
    changes: dict[str, Any] = {
        "state": "replayed" if delivered else "dead",
        "attempts": attempts,
        "lastAttemptAt": now,
        "updatedAt": now,
        "replays": int(letter.doc.get("replays") or 0) + 1,
    }
    if response is not None:
        changes["response"] = response
    if delivered:
        changes["replayedAt"] = now
    else:
        changes["reason"] = (error or {}).get(
            "message"
        ) or f"HTTP {response['status'] if response else '?'} on replay"
        changes["error"] = changes["reason"]
    return changes

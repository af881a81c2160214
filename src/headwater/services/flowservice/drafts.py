"""Draft destinations: set up step by step, unusable until published (AEP's ``mode=draft``).

    POST /connections?mode=draft                       a destination connection (its auth) as a draft
    POST /targetConnections                            its request; a draft too while its base is one
    PATCH /connections/{id}, /targetConnections/{id}   edits, while a draft (a published one: 400)
    POST /connections/{id}/action?op=publish           publish the destination: its base connection and
    POST /targetConnections/{id}/action?op=publish     every request on it; from then on, no edits

Contract:

- A draft is ``state: "draft"``. Only HTTP destinations have drafts; ``mode=draft`` (or ``state: "draft"``
  in the body) elsewhere is a 400. A request (target connection) whose base connection is a draft is a
  draft; ``mode=draft`` on a request of a published destination is a 400 naming ``baseConnectionId``.
- A draft is unusable: an activation flow naming it is a 400 naming ``targetConnectionIds`` (checked by
  :func:`unusable`). Its Test Request works (that is what setting it up needs).
- Publishing needs at least one request on the destination (400 otherwise); it enables the requests
  first and the base connection last, each with a compare-and-set, so a crash in between leaves the
  destination a draft (the base decides: :func:`unusable` looks at both) and publishing again finishes it.
  Publishing a published destination answers it as it is.
- Without ``mode=draft`` nothing changes: a destination is saved, and immutable, at its first POST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.errors import BadRequest
from headwater.services import access, destinations
from headwater.stores.metadata import Resource, Scope

if TYPE_CHECKING:
    from headwater.services.flowservice.connections import Connections, TargetConnections
    from headwater.services.tenancy import Actor
    from headwater.stores.metadata import MetadataStore

DRAFT = "draft"
MODES = ("draft",)


def is_draft(resource: Resource | None) -> bool:
    return resource is not None and resource.doc.get("state") == DRAFT


def check_mode(mode: str | None, kind: str) -> bool:
    """Whether ``?mode=`` asks for a draft; a 400 naming the parameter for a mode that is not one."""
    if mode is None:
        return False
    if mode not in MODES or kind not in ("connection", "targetConnection"):
        raise BadRequest(
            "mode must be draft, and drafts are made of destination connections and their requests "
            "(POST /connections?mode=draft, then POST /targetConnections).",
            code="FLOW-1400-400",
            report={"parameter": "mode"},
        )
    return True


def connection_state(body: dict[str, Any], existing: Resource | None, destination: bool) -> str | None:
    """The state a connection is stored with when it is (or asks to be) a draft, else None (as before);
    a draft of something other than a destination is refused."""
    if is_draft(existing):
        return DRAFT
    if existing is None and body.get("state") == DRAFT:
        if not destination:
            raise BadRequest(
                "Only destination connections can be drafts (mode=draft).",
                code="FLOW-1400-400",
                report={"parameter": "mode"},
            )
        return DRAFT
    return None


def request_state(
    store: MetadataStore, scope: Scope, body: dict[str, Any], base_id: Any, errors: list[dict[str, str]]
) -> str:
    """A destination request's state: a draft while its base connection is one."""
    base = store.get("connection", scope, base_id) if isinstance(base_id, str) else None
    if is_draft(base):
        return DRAFT
    if body.get("state") == DRAFT and base is not None:
        errors.append(
            {
                "path": "baseConnectionId",
                "message": "is a published destination: its requests are saved at once (mode=draft "
                "needs a draft destination)",
            }
        )
    return "enabled"


def editable(existing: Resource | None) -> bool:
    """A destination connection or request may be changed only while it is a draft."""
    return existing is None or is_draft(existing)


def publish(
    connections: Connections, targets: TargetConnections, actor: Actor, kind: str, ident: str, op: str
) -> Resource:
    """``POST /{connections|targetConnections}/{id}/action?op=publish``: the base connection, published."""
    if op != "publish":
        raise BadRequest("op must be publish.", code="FLOW-1400-400", report={"parameter": "op"})
    actor.require(access.MANAGE_DESTINATIONS, "publishing a destination")
    if kind == "targetConnection":
        request = targets.get(actor, ident)
        ident = str(request.doc.get("baseConnectionId") or "")
    base = connections.get(actor, ident)
    if not destinations.is_destination(base.doc["connectionSpec"]["id"]):
        raise BadRequest(
            "Only destination connections are drafts and can be published.",
            code="FLOW-1400-400",
            report={"id": ident},
        )
    if not is_draft(base):
        return base
    requests = [
        r
        for r in targets.store.list("targetConnection", actor.scope).items
        if r.doc.get("baseConnectionId") == base.id
    ]
    if not requests:
        raise BadRequest(
            "This destination has no request yet: POST /targetConnections with its baseConnectionId "
            "before publishing it.",
            code="FLOW-1400-400",
            report={"field": "targetConnection"},
        )
    for request in requests:
        if is_draft(request):
            targets.save_if_unchanged(request, state="enabled")
    published = connections.save_if_unchanged(base, state="enabled")
    return published if published is not None else connections.get(actor, base.id)


def unusable(
    store: MetadataStore, scope: Scope, targets: list[Resource], errors: list[dict[str, str]]
) -> None:
    """An activation flow cannot feed a draft destination (its request or its base connection)."""
    for index, target in enumerate(targets):
        base_id = target.doc.get("baseConnectionId")
        base = store.get("connection", scope, base_id) if isinstance(base_id, str) else None
        if is_draft(target) or is_draft(base):
            errors.append(
                {
                    "path": f"targetConnectionIds[{index}]",
                    "message": f"is a draft destination: publish it first (POST /connections/{base_id}"
                    "/action?op=publish)",
                }
            )

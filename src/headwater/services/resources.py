"""The life cycle every control-plane resource shares: create, read, patch with If-Match, delete.

A :class:`Collection` knows one kind of resource: how to turn a request body (or a patched document)
into a valid stored document, and how to render it. The functions here do the rest the same way for
every kind: ids, etags, system fields, optimistic concurrency and references.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

from headwater.errors import Conflict, NotFound, PreconditionFailed, PreconditionRequired, ValidationFailed
from headwater.services import jsonpatch
from headwater.services.ids import etag_matches, new_etag, new_uuid, now_ms
from headwater.services.tenancy import Actor
from headwater.stores.metadata import (
    AlreadyExists,
    MetadataStore,
    MissingReference,
    Resource,
    StaleWrite,
    StillReferenced,
)

SYSTEM_FIELDS = frozenset(
    {
        "id",
        "createdAt",
        "updatedAt",
        "createdBy",
        "updatedBy",
        "createdClient",
        "updatedClient",
        "sandboxId",
        "sandboxName",
        "imsOrgId",
        "etag",
        "version",
    }
)


@dataclass
class Built:
    """A validated document ready to store, with what it references."""

    doc: dict[str, Any]
    refs: list[tuple[str, str]] = field(default_factory=list)
    name: str | None = None
    alt_id: str | None = None


class Collection(ABC):
    kind: str  # stored kind, e.g. "connection"
    label: str  # used in messages, e.g. "connection"
    service: str = "FLOW"  # error code prefix
    protected: frozenset[str] = SYSTEM_FIELDS

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def new_id(self) -> str:
        return new_uuid()

    @abstractmethod
    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        """Validate and normalize a body (create) or a patched document (update)."""

    def render(self, resource: Resource) -> dict[str, Any]:
        return {**resource.doc, "etag": resource.etag}

    def editable(self, resource: Resource) -> dict[str, Any]:
        """The document a JSON Patch applies to."""
        return dict(resource.doc)

    # --- the shared life cycle ---
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        body = require_object(body)
        built = self.build(actor, body, None)
        now = now_ms()
        ident = ident or self.new_id()
        doc = {**built.doc, **system_fields(actor, ident, now, now, created_by=None)}
        resource = Resource(
            kind=self.kind,
            id=ident,
            scope=actor.scope,
            doc=doc,
            etag=new_etag(),
            name=built.name,
            alt_id=built.alt_id,
            created_at=now,
            updated_at=now,
            refs=built.refs,
        )
        try:
            self.store.insert(resource)
        except MissingReference as exc:
            raise self.missing(exc) from exc
        except AlreadyExists as exc:
            raise Conflict(
                f"A {self.label} with this id or name already exists.", code=f"{self.service}-1409-409"
            ) from exc
        return resource

    def get(self, actor: Actor, ident: str) -> Resource:
        resource = self.store.get(self.kind, actor.scope, ident)
        if resource is None:
            raise self.not_found(ident)
        return resource

    def patch(self, actor: Actor, ident: str, operations: Any, if_match: str | None) -> Resource:
        if not if_match:
            raise PreconditionRequired(
                "PATCH needs an If-Match header holding the resource's current etag; GET it first.",
                code=f"{self.service}-1428-428",
            )
        current = self.get(actor, ident)
        self.check_if_match(current, if_match)
        patched = jsonpatch.apply(self.editable(current), operations, self.protected, service=self.service)
        return self.replace(actor, current, patched)

    def check_if_match(self, current: Resource, if_match: str | None) -> None:
        """412 when an If-Match header is given and is not ``current``'s etag."""
        if if_match and not etag_matches(if_match, current.etag):
            raise PreconditionFailed(
                "The If-Match etag is not the current one: the resource changed since you read it. "
                "GET it again and reapply your change.",
                code=f"{self.service}-1412-412",
                report={"currentEtag": current.etag},
            )

    def replace(self, actor: Actor, current: Resource, body: dict[str, Any]) -> Resource:
        """Store ``body`` as the new version of ``current`` (validated by ``build``)."""
        built = self.build(actor, {k: v for k, v in body.items() if k not in SYSTEM_FIELDS}, current)
        now = now_ms()
        keep: dict[str, Any] = {
            k: current.doc[k] for k in ("createdAt", "createdBy", "createdClient") if k in current.doc
        }
        doc = {**built.doc, **system_fields(actor, current.id, current.created_at, now, created_by=keep)}
        updated = Resource(
            kind=self.kind,
            id=current.id,
            scope=current.scope,
            doc=doc,
            etag=new_etag(),
            name=built.name,
            alt_id=built.alt_id,
            created_at=current.created_at,
            updated_at=now,
            refs=built.refs,
        )
        try:
            self.store.update(updated, current.etag)
        except StaleWrite as exc:
            raise PreconditionFailed(
                "The resource changed while this update was applied; GET it again and retry.",
                code=f"{self.service}-1412-412",
            ) from exc
        except MissingReference as exc:
            raise self.missing(exc) from exc
        return updated

    def save_if_unchanged(self, resource: Resource, **changes: Any) -> Resource | None:
        """``resource`` with ``changes`` (and a new ``updatedAt``), stored if nobody changed it since it
        was read; None otherwise (the job runners' compare-and-set on a job's document)."""
        now = now_ms()
        doc = {**resource.doc, **changes, "updatedAt": now}
        updated = replace(resource, doc=doc, etag=new_etag(), updated_at=now)
        try:
            self.store.update(updated, resource.etag)
        except StaleWrite:
            return None
        return updated

    def delete(self, actor: Actor, ident: str) -> None:
        try:
            deleted = self.store.delete(self.kind, actor.scope, ident)
        except StillReferenced as exc:
            users = ", ".join(f"{k} {i}" for k, i in exc.referrers)
            raise Conflict(
                f"This {self.label} is still used by {users}; delete or change those first.",
                code=f"{self.service}-1410-409",
                report={"referencedBy": [{"type": k, "id": i} for k, i in exc.referrers]},
            ) from exc
        if not deleted:
            raise self.not_found(ident)

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No {self.label} with id {ident!r} in this organization and sandbox.",
            code=f"{self.service}-1439-404" if self.service == "FLOW" else f"{self.service}-1404-404",
            report={"id": ident, "type": self.label},
        )

    def missing(self, exc: MissingReference) -> ValidationFailed:
        return ValidationFailed(
            [
                {
                    "path": exc.kind,
                    "message": f"{exc.kind} {exc.ident!r} does not exist (it may have just been deleted)",
                }
            ],
            code=f"{self.service}-1404-400",
        )


def system_fields(
    actor: Actor, ident: str, created: int, updated: int, created_by: dict[str, Any] | None
) -> dict[str, Any]:
    fields = {
        "id": ident,
        "createdAt": created,
        "updatedAt": updated,
        "createdBy": actor.user,
        "updatedBy": actor.user,
        "createdClient": actor.client_id,
        "updatedClient": actor.client_id,
        "sandboxId": actor.sandbox.id,
        "sandboxName": actor.sandbox.name,
        "imsOrgId": actor.org.id,
    }
    if created_by:
        fields.update(created_by)
    return fields


def require_object(body: Any, path: str = "(body)") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed([{"path": path, "message": "must be a JSON object"}])
    return body


def text_field(
    body: dict[str, Any], key: str, errors: list[dict[str, str]], required: bool = True, prefix: str = ""
) -> str | None:
    value = body.get(key)
    path = f"{prefix}{key}"
    if value is None:
        if required:
            errors.append({"path": path, "message": "is required"})
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        errors.append(
            {"path": path, "message": "must be a non-empty string" if required else "must be a string"}
        )
        return None
    return value

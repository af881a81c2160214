"""Identity namespaces (``/data/core/idnamespace/identities``): the standard ones every sandbox has, and the
custom ones a sandbox creates.

A namespace is the context of an identity value (an email address, a CRM id, a cookie). Other services
ask :meth:`IdentityNamespaces.resolve` whether a ``namespaceCode`` (a mapping's) or an ``xdm:namespace``
(an identity descriptor's) exists; codes compare case-insensitively and a custom code can never shadow a
standard one. Custom namespaces cannot be deleted (as in AEP: identities already stored would lose their
meaning); ``PUT`` changes their name and description only.

Stored as kind ``identityNamespace`` with the lower-cased code as ``alt_id``, so the store's unique
constraint keeps codes unique in a sandbox even under concurrent creates.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Protocol

from headwater.engines.identity.namespaces import CRMID_ID, STANDARD
from headwater.errors import Conflict, NotFound, ValidationFailed
from headwater.services.resources import Built, Collection, require_object, text_field
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource, Scope

KIND = "identityNamespace"
CODE = "IDNS-1400-400"
ID_TYPES = ("COOKIE", "CROSS_DEVICE", "DEVICE", "EMAIL", "MOBILE", "NON_PEOPLE", "PHONE")
# AEP's reference says "letters and numbers"; underscores are allowed too, as standard codes have them.
CODE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Custom ids are drawn above every standard id, as AEP's custom ids (e.g. 10093197) are.
CUSTOM_ID_MIN, CUSTOM_ID_MAX = CRMID_ID + 1, 2**31 - 1  # CRMID holds the range's first id
_EDITABLE = ("name", "description")


def standard_namespaces() -> list[dict[str, Any]]:
    """The namespaces every sandbox has (engines/identity/namespaces.py), rendered as the API shows them:
    AEP's standard ones, and CRMID, which AEP organizations create themselves and Headwater ships."""
    return [n.to_aep() for n in STANDARD]


class NamespaceLookup(Protocol):
    """What the services that name namespaces (conversion, descriptors) need of this one."""

    def resolve(self, actor_or_scope: Actor | Scope, code: str) -> dict[str, Any] | None: ...


class IdentityNamespaces(Collection):
    kind = KIND
    label = "identity namespace"
    service = "IDNS"

    def new_id(self) -> str:
        return str(secrets.randbelow(CUSTOM_ID_MAX - CUSTOM_ID_MIN) + CUSTOM_ID_MIN)

    # --- what other services call ---
    def resolve(self, actor_or_scope: Actor | Scope, code: str) -> dict[str, Any] | None:
        """The namespace (as the API renders it) whose code is ``code``, compared case-insensitively:
        a standard one, else a custom one of the sandbox; None if there is none."""
        wanted = code.strip().lower()
        standard = next((n for n in standard_namespaces() if n["code"].lower() == wanted), None)
        if standard is not None:
            return standard
        scope = actor_or_scope.scope if isinstance(actor_or_scope, Actor) else actor_or_scope
        found = self.store.get_by_alt_id(self.kind, scope, wanted)
        return self.render(found) if found is not None else None

    # --- the API ---
    def list_all(self, actor: Actor) -> list[dict[str, Any]]:
        """Standard namespaces first (by id), then the sandbox's custom ones in creation order."""
        custom = [self.render(r) for r in self.store.list(self.kind, actor.scope).items]
        return [*standard_namespaces(), *custom]

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        """A standard or custom namespace by its numeric id; NotFound (IDNS-1404-404) otherwise."""
        standard = next((n for n in standard_namespaces() if str(n["id"]) == ident.strip()), None)
        if standard is not None:
            return standard
        return self.render(self.get(actor, ident.strip()))

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        """A custom namespace; 409 (report.path ``code``) when the code is taken, standard or custom."""
        body = require_object(body)
        self._refuse_taken(actor, body.get("code"))
        for _ in range(3):  # a drawn id that is taken (unlikely) is drawn again
            try:
                return super().create(actor, body, ident)
            except Conflict:
                if self.resolve(actor, str(body["code"])) is not None:
                    raise self._taken(str(body["code"])) from None
        raise self._taken(str(body["code"]))

    def put(self, actor: Actor, ident: str, body: Any) -> Resource:
        """Replace a custom namespace's name and description; ``code`` and ``idType`` may be sent but
        not changed. A standard namespace cannot be changed (400)."""
        body = require_object(body)
        if any(str(n["id"]) == ident.strip() for n in standard_namespaces()):
            raise ValidationFailed(
                [
                    {
                        "path": "id",
                        "message": f"namespace {ident} is a standard namespace and cannot be changed",
                    }
                ],
                code=CODE,
            )
        current = self.get(actor, ident.strip())
        errors = [
            {
                "path": key,
                "message": f"cannot be changed (it is {current.doc[key]!r}); only name and description can",
            }
            for key in ("code", "idType")
            if key in body and _norm(key, body[key]) != current.doc[key]
        ]
        if errors:
            raise ValidationFailed(errors, code=CODE)
        merged = {**current.doc, **{k: body[k] for k in _EDITABLE if k in body}}
        return self.replace(actor, current, merged)

    # --- the collection ---
    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        code = text_field(body, "code", errors)
        if code is not None and not CODE_PATTERN.match(code):
            errors.append(
                {
                    "path": "code",
                    "message": "must start with a letter and hold only letters, digits and underscores "
                    "(at most 64), e.g. Loyalty",
                }
            )
        id_type = body.get("idType")
        if not isinstance(id_type, str) or id_type.upper() not in ID_TYPES:
            errors.append({"path": "idType", "message": "must be one of " + ", ".join(ID_TYPES)})
        description = body.get("description", "")
        if description is not None and not isinstance(description, str):
            errors.append({"path": "description", "message": "must be a string"})
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert name is not None and code is not None and isinstance(id_type, str)
        doc = {"name": name, "code": code, "idType": id_type.upper(), "description": description or ""}
        return Built(doc=doc, name=name, alt_id=code.lower())

    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        return {
            "updateTime": resource.updated_at,
            "code": d["code"],
            "status": "ACTIVE",
            "description": d.get("description", ""),
            "id": int(resource.id),
            "createTime": resource.created_at,
            "idType": d["idType"],
            "name": d["name"],
            "namespaceType": "Custom",
            "custom": True,
        }

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No identity namespace with id {ident!r} in this organization and sandbox; "
            "GET /data/core/idnamespace/identities lists them.",
            code="IDNS-1404-404",
            report={"id": ident, "type": self.label},
        )

    # --- helpers ---
    def _refuse_taken(self, actor: Actor, code: Any) -> None:
        if isinstance(code, str) and code.strip() and self.resolve(actor, code) is not None:
            raise self._taken(code)

    @staticmethod
    def _taken(code: str) -> Conflict:
        return Conflict(
            f"Namespace code {code!r} already exists (codes compare case-insensitively, and standard "
            "codes are taken); use a different code.",
            code="IDNS-1409-409",
            report={"path": "code", "errors": [{"path": "code", "message": "already exists"}]},
        )


def _norm(key: str, value: Any) -> Any:
    return value.upper() if key == "idType" and isinstance(value, str) else value

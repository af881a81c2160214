"""External client apps (Salesforce's External Client App Manager): organization-level resources of kind
``externalClientApp`` (services/users.py), with their consumer key and sealed consumer secret, the users an
admin approved, and their policies (apppolicy.py). Their consumer key carries the organization id
(``base64url(orgId).random``): the token endpoint, which learns nothing else about the caller, finds the
app with one keyed read and no global index. The token flows that use them are jwtbearer.py, consent.py
and identity.py (the exchange).

Who may change an app (every one of them also needs ``manage-apps``, checked by the route):

    create                       anyone with manage-apps; the creator (``createdBy``) owns the app
    change, delete               its owner or an organization admin (403 naming manage-users for others)
    approvedUsers, permittedUsers  an organization admin only: pre-approving users, or letting every
                                 user self-authorize, decides who the app may act as (403 naming
                                 manage-users); others may only keep them as they are (on create: none
                                 approved, "Admin approved users are pre-authorized")
    clientCredentialsUser        an organization admin only, likewise: whom the client credentials
                                 flow acts as (``clientCredentialsFlowEnabled`` and
                                 ``usernamePasswordFlowEnabled``, off by default, are the owner's)

``authorizationVersion`` counts the changes of what a grant was given under: the callback URL (where
codes go), the certificate (who signs JWT bearer assertions) and the scopes (what tokens may do). Every
code, refresh-token family, consent and token issued through the app carries the version it was issued
under; one of another version counts as revoked (identity.py, consent.py), so such a change revokes them
all at once, in every process, without a sweep.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from headwater.errors import Forbidden, NotFound, ValidationFailed
from headwater.services import access, listing
from headwater.services.data360 import apppolicy
from headwater.services.data360.apppolicy import choice
from headwater.services.data360.keys import certificate_info, load_rsa_certificate
from headwater.services.resources import SYSTEM_FIELDS, Built, Collection, text_field
from headwater.services.tenancy import Actor
from headwater.services.users import (
    USERNAME,
    Listed,
    Users,
    flag,
    normalize_username,
    org_actor,
    org_scope,
    render_org_level,
)
from headwater.stores.metadata import Resource
from headwater.stores.secrets import MASK

if TYPE_CHECKING:
    from headwater.stores.metadata import MetadataStore
    from headwater.stores.secrets import SecretBox

SCOPES = ("api", "refresh_token", "offline_access", "cdp_ingest_api", "cdp_query_api")
INGEST_SCOPE = "cdp_ingest_api"
QUERY_SCOPE = "cdp_query_api"  # the Data Cloud Query API (services/data360/queryapi.py)
#: The scopes a Data 360 token is for: the token exchange needs one of them.
DATA360_SCOPES = frozenset({INGEST_SCOPE, QUERY_SCOPE})
SELF_AUTHORIZED = "All users may self-authorize"
ADMIN_APPROVED = "Admin approved users are pre-authorized"
# UI label (stored) -> Metadata API name (also accepted), as Salesforce's ExtlClntAppOauthConfigurablePolicies
PERMITTED_USERS = {SELF_AUTHORIZED: "AllSelfAuthorized", ADMIN_APPROVED: "AdminApprovedPreAuthorized"}
VERSION = "authorizationVersion"
#: Fields whose change revokes every grant made under the old value (see the module docstring).
AUTHORIZATION_FIELDS = ("callbackUrl", "certificate", "scopes")
#: The flags of apps stored before the client credentials and username-password flows existed.
FLOW_DEFAULTS: dict[str, Any] = {
    "clientCredentialsFlowEnabled": False,
    "clientCredentialsUser": None,
    "usernamePasswordFlowEnabled": False,
}
#: Fields only an organization admin may set: who the app may get tokens for (clientCredentialsUser: whom
#: the client credentials flow acts as, Salesforce's "Run As" user).
ADMIN_FIELDS = ("approvedUsers", "permittedUsers", "clientCredentialsUser")


class ExternalClientApps(Collection):
    """OAuth-enabled external client apps of an organization (Salesforce's External Client App Manager)."""

    kind, label, service = "externalClientApp", "external client app", "IDN"
    protected = SYSTEM_FIELDS | {"consumerKey", "consumerSecret", "certificateInfo", VERSION}

    def __init__(self, store: MetadataStore, box: SecretBox, users: Users) -> None:
        super().__init__(store)
        self.box = box
        self.users = users

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        doc: dict[str, Any] = {
            "name": name,
            "description": text_field(body, "description", errors, required=False) or "",
            "contactEmail": _email(body, errors),
            "callbackUrl": _callback_url(body.get("callbackUrl"), errors),
            "scopes": _scopes(body.get("scopes"), errors),
            "jwtBearerFlowEnabled": flag(body, "jwtBearerFlowEnabled", False, errors),
            "pkceRequired": flag(body, "pkceRequired", True, errors),
            # Off by default, as Salesforce ships them (secretflows.py).
            "clientCredentialsFlowEnabled": flag(body, "clientCredentialsFlowEnabled", False, errors),
            "usernamePasswordFlowEnabled": flag(body, "usernamePasswordFlowEnabled", False, errors),
            "permittedUsers": choice(body, "permittedUsers", PERMITTED_USERS, ADMIN_APPROVED, errors),
            "approvedUsers": self._approved_users(actor.org.id, body.get("approvedUsers"), errors),
            **apppolicy.policies(body, errors),
        }
        doc.update(_certificate(body.get("certificate"), doc["jwtBearerFlowEnabled"], errors))
        doc["clientCredentialsUser"] = self._run_as(
            actor.org.id, body.get("clientCredentialsUser"), doc["clientCredentialsFlowEnabled"], errors
        )
        if errors:
            raise ValidationFailed(errors, code="IDN-1422-400")
        _require_admin_for_access(actor, doc, existing)
        if existing is not None:
            key, sealed = existing.doc["consumerKey"], existing.doc["consumerSecret"]
        else:
            key = new_consumer_key(actor.org.id)
            sealed = self.box.seal(secrets.token_hex(32).upper(), _secret_context(key))
        doc.update({"consumerKey": key, "consumerSecret": sealed, VERSION: _next_version(doc, existing)})
        return Built(doc=doc, name=name, alt_id=key)

    def _approved_users(self, org_id: str, value: Any, errors: list[dict[str, str]]) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            errors.append({"path": "approvedUsers", "message": "must be a list of usernames"})
            return []
        approved: list[str] = []
        for index, item in enumerate(value):
            username = normalize_username(item)
            if username is None or self.users.find(org_id, username) is None:
                errors.append(
                    {"path": f"approvedUsers[{index}]", "message": f"no user {item!r} in this organization"}
                )
            elif username not in approved:
                approved.append(username)
        return approved

    def _run_as(self, org_id: str, value: Any, required: bool, errors: list[dict[str, str]]) -> str | None:
        """The client credentials flow's execution user: a user of the organization, required when the
        flow is enabled."""
        if value is None or value == "":
            if required:
                errors.append(
                    {
                        "path": "clientCredentialsUser",
                        "message": "is required when clientCredentialsFlowEnabled is true: the username "
                        "the flow's tokens act as",
                    }
                )
            return None
        username = normalize_username(value)
        if username is None or self.users.find(org_id, username) is None:
            errors.append(
                {"path": "clientCredentialsUser", "message": f"no user {value!r} in this organization"}
            )
            return None
        return username

    def render(self, resource: Resource) -> dict[str, Any]:
        """The app, with the policies' defaults filled in for apps stored before those fields existed."""
        return {**FLOW_DEFAULTS, **apppolicy.DEFAULTS, **render_org_level(resource), "consumerSecret": MASK}

    def render_created(self, resource: Resource) -> dict[str, Any]:
        """The one rendering with the consumer secret in clear: the answer to its creation."""
        return {**render_org_level(resource), "consumerSecret": self.consumer_secret(resource)}

    def editable(self, resource: Resource) -> dict[str, Any]:
        doc = {**FLOW_DEFAULTS, **apppolicy.DEFAULTS, **resource.doc}
        return {k: v for k, v in doc.items() if k not in self.protected}

    def consumer_secret(self, resource: Resource) -> str:
        return self.box.open(resource.doc["consumerSecret"], _secret_context(resource.alt_id or ""))

    def by_consumer_key(self, consumer_key: str) -> Resource | None:
        org_id = consumer_key_org(consumer_key)
        if org_id is None:
            return None
        return self.store.get_by_alt_id(self.kind, org_scope(org_id), consumer_key)

    # --- the shared life cycle, at organization level ---
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        return super().create(org_actor(actor), body, ident)

    def get(self, actor: Actor, ident: str) -> Resource:
        return super().get(org_actor(actor), ident)

    def patch(self, actor: Actor, ident: str, operations: Any, if_match: str | None) -> Resource:
        actor = org_actor(actor)
        _require_owner(actor, self.get(actor, ident), "change")
        return super().patch(actor, ident, operations, if_match)

    def delete(self, actor: Actor, ident: str) -> None:
        actor = org_actor(actor)
        _require_owner(actor, self.get(actor, ident), "delete")
        super().delete(actor, ident)

    def list_page(self, actor: Actor, query: listing.ListQuery) -> Listed:
        return listing.run(self.store, self.kind, org_scope(actor.org.id), query, self.render)

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No external client app with id {ident!r} in this organization.",
            code="IDN-1404-404",
            report={"id": ident, "type": self.label},
        )


# --- who may change what ---
def is_org_admin(actor: Actor) -> bool:
    """An organization admin: a user with ``admin: true``, an Admin API client, the CLI."""
    return actor.permissions >= access.ORG_PERMISSIONS


def version_of(doc: dict[str, Any]) -> int:
    """The app's authorization version (0 for apps stored before it existed)."""
    return int(doc.get(VERSION) or 0)


def _next_version(doc: dict[str, Any], existing: Resource | None) -> int:
    if existing is None:
        return 1
    old = existing.doc
    changed = any(doc.get(f) != old.get(f) for f in AUTHORIZATION_FIELDS)
    return version_of(old) + 1 if changed else version_of(old)


def _require_owner(actor: Actor, app: Resource, verb: str) -> None:
    """403 unless ``actor`` created the app or is an organization admin."""
    if is_org_admin(actor) or app.doc.get("createdBy") == actor.user:
        return
    raise Forbidden(
        f"Only the owner of the external client app {app.doc['name']!r} ({app.doc.get('createdBy')}) or an "
        f"organization admin may {verb} it: that needs the permission {access.MANAGE_USERS!r}, which the "
        f"{actor.role} role does not have.",
        code="HW-1403-403",
        report={"permission": access.MANAGE_USERS, "role": actor.role, "sandbox": actor.sandbox.name},
    )


def _require_admin_for_access(actor: Actor, doc: dict[str, Any], existing: Resource | None) -> None:
    """403 naming manage-users when someone who is not an organization admin changes who the app may get
    tokens for (approvedUsers, permittedUsers), or creates an app that pre-approves anyone or lets every
    user self-authorize."""
    if is_org_admin(actor):
        return
    old = existing.doc if existing is not None else {}
    before = {
        "approvedUsers": old.get("approvedUsers") or [],
        "permittedUsers": old.get("permittedUsers", ADMIN_APPROVED),
        "clientCredentialsUser": old.get("clientCredentialsUser"),
    }
    changed = [f for f in ADMIN_FIELDS if doc.get(f) != before[f]]
    if changed:
        raise Forbidden(
            f"Only an organization admin may set {' and '.join(changed)} of an external client app: "
            "pre-approving users, or letting every user self-authorize, decides whom the app may get tokens "
            f"for, and needs the permission {access.MANAGE_USERS!r}, which the {actor.role} role does not "
            "have.",
            code="HW-1403-403",
            report={
                "permission": access.MANAGE_USERS,
                "role": actor.role,
                "sandbox": actor.sandbox.name,
                "fields": changed,
            },
        )


# --- consumer keys ---
def new_consumer_key(org_id: str) -> str:
    prefix = base64.urlsafe_b64encode(org_id.encode()).rstrip(b"=").decode()
    return f"{prefix}.{secrets.token_urlsafe(36)}"


def consumer_key_org(consumer_key: str) -> str | None:
    prefix, dot, _ = consumer_key.partition(".")
    if not dot or not prefix or len(consumer_key) > 300:
        return None
    try:
        return base64.urlsafe_b64decode(prefix + "=" * (-len(prefix) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


def _secret_context(consumer_key: str) -> str:
    return f"externalClientApp:{consumer_key}:consumerSecret"


# --- field validation ---
def _scopes(value: Any, errors: list[dict[str, str]]) -> list[str]:
    """Scopes as a list, or one comma or space separated string; "Label (name)" as Salesforce's UI shows
    them is read as the names in parentheses."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        errors.append({"path": "scopes", "message": f"must be a list of OAuth scopes ({', '.join(SCOPES)})"})
        return []
    names: list[str] = []
    for item in items:
        inside = re.findall(r"\(([^)]*)\)", item)
        names += [n for n in re.split(r"[\s,]+", " ".join(inside) if inside else item) if n]
    unknown = sorted({n for n in names if n not in SCOPES})
    if unknown:
        errors.append(
            {
                "path": "scopes",
                "message": f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}",
            }
        )
    elif not names:
        errors.append({"path": "scopes", "message": "must name at least one scope, e.g. cdp_ingest_api"})
    return [s for s in SCOPES if s in names]


def _certificate(value: Any, required: bool, errors: list[dict[str, str]]) -> dict[str, Any]:
    if value is None or value == "":
        if required:
            errors.append({"path": "certificate", "message": "is required when jwtBearerFlowEnabled is true"})
        return {"certificate": None, "certificateInfo": None}
    if not isinstance(value, str):
        errors.append({"path": "certificate", "message": "must be a PEM string"})
        return {}
    try:
        certificate, _ = load_rsa_certificate(value)
    except ValueError as exc:
        errors.append({"path": "certificate", "message": str(exc)})
        return {}
    return {"certificate": value.strip() + "\n", "certificateInfo": certificate_info(certificate)}


def _callback_url(value: Any, errors: list[dict[str, str]]) -> str | None:
    if value is None:
        errors.append({"path": "callbackUrl", "message": "is required (the OAuth redirect URI)"})
        return None
    parts = urlsplit(value.strip()) if isinstance(value, str) else None
    if parts is None or not parts.scheme or not (parts.netloc or parts.path) or " " in value.strip():
        errors.append(
            {"path": "callbackUrl", "message": "must be a URL such as https://example.com/callback"}
        )
        return None
    return str(value).strip()


def _email(body: dict[str, Any], errors: list[dict[str, str]]) -> str | None:
    value = body.get("contactEmail")
    if value is None:
        return None
    if not isinstance(value, str) or not USERNAME.match(value.strip()):
        errors.append({"path": "contactEmail", "message": "must be an email address"})
        return None
    return value.strip()

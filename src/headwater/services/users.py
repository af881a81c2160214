"""The user directory of an organization: the people and integrations a JWT bearer assertion names.

Users are organization-level resources: kind ``user`` in the scope ``(org_id, "_org")``, so every sandbox
of an organization sees one directory (:func:`org_actor` turns a request's actor into that scope). A
username is Salesforce style, an email-like login (``ada@example.com``), unique in its organization and
compared without case. The record is ``{"username", "email", "enabled", "admin", "roles"}`` plus system
fields, and ``passwordHash`` for people who sign in to the console (scrypt; never rendered). ``roles`` maps
sandbox names (``"*"``: every other sandbox) to roles; ``admin`` makes an organization admin
(services/access.py).
Users are disabled, never deleted, as in Salesforce: tokens already issued to a user stop working
within :data:`ENABLED_CACHE_SECONDS`. Disabling a user or changing their password (by an admin, through
the API or the CLI) ends every console session of the user at once (edge/session.py keeps them in the
metadata store); the person signs in again with the new password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import replace
from typing import Any

from headwater.errors import Conflict, NotFound, ValidationFailed
from headwater.services import access, listing
from headwater.services.cache import TtlCache
from headwater.services.resources import Built, Collection, require_object
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Org, Resource, Sandbox, Scope

ORG_LEVEL = "_org"  # the sandbox id of organization-level resources (no sandbox row has it)
ENABLED_CACHE_SECONDS = 2.0
USERNAME = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@.]+$")
MAX_USERNAME = 80  # Salesforce's limit
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
# scrypt with n=2**15, r=8, p=1: about 32 MiB and 50-100 ms per check, OWASP's recommended floor.
SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
Listed = tuple[list[dict[str, Any]], int | None, int | None]  # a page, the next offset, the total


def org_scope(org_id: str) -> Scope:
    return Scope(org_id, ORG_LEVEL)


def org_actor(actor: Actor) -> Actor:
    """The same person or client acting on organization-level resources (idempotent): who it is and what
    it may do stay, so the resources it writes record it."""
    if actor.sandbox.id == ORG_LEVEL:
        return actor
    return replace(actor, sandbox=actor_for(actor.org, actor.client_id).sandbox)


def actor_for(org: Org, client_id: str) -> Actor:
    sandbox = Sandbox(ORG_LEVEL, org.id, ORG_LEVEL, "Organization", "organization", org.created_at)
    return Actor(org=org, sandbox=sandbox, client_id=client_id)


def render_org_level(resource: Resource) -> dict[str, Any]:
    """A resource's document without the sandbox fields, which mean nothing at organization level."""
    doc = {k: v for k, v in resource.doc.items() if k not in ("sandboxId", "sandboxName")}
    return {**doc, "etag": resource.etag}


def flag(body: dict[str, Any], key: str, default: bool, errors: list[dict[str, str]]) -> bool:
    """A boolean field, ``default`` when absent or null; "true"/"false" strings are accepted too."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        errors.append({"path": key, "message": "must be true or false"})
        return default
    return value


def normalize_username(value: Any) -> str | None:
    """The canonical (lower-case) form of a valid username, or None."""
    if not isinstance(value, str):
        return None
    username = value.strip().lower()
    if len(username) > MAX_USERNAME or not USERNAME.match(username):
        return None
    return username


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    b64 = base64.b64encode
    return (
        f"scrypt$n={SCRYPT['n']},r={SCRYPT['r']},p={SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"
    )


def check_password(password: str, stored: str | None) -> bool:
    """Constant-time check of ``password`` against a ``hash_password`` value (False when there is none)."""
    if not stored or not stored.startswith("scrypt$"):
        hashlib.scrypt(password.encode(), salt=b"0" * 16, **SCRYPT)  # the same cost as a real check
        return False
    try:
        _, params, salt, digest = stored.split("$")
        cost = dict(item.split("=") for item in params.split(","))
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(cost["n"]),
            r=int(cost["r"]),
            p=int(cost["p"]),
            maxmem=SCRYPT["maxmem"],
            dklen=len(expected),
        )
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(got, expected)


def password_problem(password: Any) -> str | None:
    if not isinstance(password, str):
        return "must be a string"
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    return None


class Users(Collection):
    kind, label, service = "user", "user", "IDN"

    def __init__(self, store: MetadataStore) -> None:
        super().__init__(store)
        # Every console call and every ingestion call reads its user: from here, at most a few seconds old.
        self._recent: TtlCache[tuple[str, str], Resource | None] = TtlCache(
            ENABLED_CACHE_SECONDS, lambda key: self.find(*key)
        )

    # --- reads used by the token flows ---
    def find(self, org_id: str, username: str) -> Resource | None:
        """The user named ``username`` (any case) in the organization, or None."""
        canonical = normalize_username(username)
        if canonical is None:
            return None
        return self.store.get_by_alt_id(self.kind, org_scope(org_id), canonical)

    def recent(self, org_id: str, username: str) -> Resource | None:
        """The enabled user ``username`` of the organization, from a cache at most a few seconds old (a
        disabled or unknown user is None)."""
        user = self._recent.get((org_id, username.lower()))
        return user if user is not None and user.doc.get("enabled") is True else None

    def is_enabled(self, org_id: str, username: str) -> bool:
        """True when the user exists and is enabled; answers from a cache at most a few seconds old."""
        return self.recent(org_id, username) is not None

    # --- the API's life cycle, at organization level ---
    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        raw = body.get("username")
        username = normalize_username(raw)
        if existing is not None:
            username = existing.doc["username"]
        elif username is None:
            rule = f"an email-like login such as ada@example.com, at most {MAX_USERNAME} characters"
            errors.append(
                {"path": "username", "message": ("is required: " if raw is None else "must be ") + rule}
            )
        email = body.get("email")
        if email is None and username is not None:  # the login as it was typed
            email = raw.strip() if existing is None and isinstance(raw, str) else username
        if email is not None and (not isinstance(email, str) or not USERNAME.match(email.strip())):
            errors.append({"path": "email", "message": "must be an email address"})
        enabled = flag(body, "enabled", True, errors)
        admin = flag(body, "admin", False, errors)
        roles = self._roles(actor, body.get("roles"), errors)
        password_hash = existing.doc.get("passwordHash") if existing is not None else None
        if body.get("password") is not None:
            problem = password_problem(body["password"])
            if problem:
                errors.append({"path": "password", "message": problem})
            else:
                password_hash = hash_password(body["password"])
        if errors:
            raise ValidationFailed(errors, code="IDN-1422-400")
        assert username is not None and isinstance(email, str)
        doc = {
            "username": username,
            "email": email.strip(),
            "enabled": enabled,
            "admin": admin,
            "roles": roles,
        }
        if password_hash:
            doc["passwordHash"] = password_hash
        return Built(doc=doc, name=username, alt_id=username)

    def _roles(self, actor: Actor, value: Any, errors: list[dict[str, str]]) -> dict[str, str]:
        """``{sandbox name or "*": role}``; the sandboxes must exist. Absent: Viewer everywhere."""
        if value is None:
            return {access.EVERY_SANDBOX: access.DEFAULT_USER_ROLE}
        if not isinstance(value, dict) or not value:
            errors.append(
                {"path": "roles", "message": 'must map sandbox names (or "*" for every sandbox) to roles'}
            )
            return {}
        known = {s.name for s in self.store.list_sandboxes(actor.org.id)} | {access.EVERY_SANDBOX}
        for sandbox, role in value.items():
            if sandbox not in known:
                errors.append({"path": f"roles.{sandbox}", "message": "no such sandbox in this organization"})
            elif problem := access.role_problem(role):
                errors.append({"path": f"roles.{sandbox}", "message": problem})
        return dict(value)

    def role(self, user: Resource, sandbox_name: str) -> str:
        """The user's role in ``sandbox_name`` (Admin for organization admins)."""
        found = access.role_in(user.doc.get("roles"), sandbox_name, user.doc.get("admin") is True)
        return found or access.DEFAULT_USER_ROLE

    def acting_in(self, actor: Actor, sandbox: Sandbox) -> Actor:
        """The same person or client acting in another sandbox of its organization, with the role it has
        there: a client's role is the same everywhere, a person's comes from their roles map."""
        if actor.username is None:
            return replace(actor, sandbox=sandbox)
        user = self.find(actor.org.id, actor.username)
        if user is None:
            return replace(actor, sandbox=sandbox, role=access.DEFAULT_USER_ROLE, permissions=access.VIEWER)
        role = self.role(user, sandbox.name)
        admin = user.doc.get("admin") is True
        return replace(actor, sandbox=sandbox, role=role, permissions=access.permissions_of(role, admin))

    def render(self, resource: Resource) -> dict[str, Any]:
        doc = render_org_level(resource)
        doc.setdefault("roles", {access.EVERY_SANDBOX: access.DEFAULT_USER_ROLE})
        doc.pop("passwordHash", None)
        doc["hasPassword"] = bool(resource.doc.get("passwordHash"))
        return doc

    def named(self, username: str) -> list[Resource]:
        """The users called ``username`` (any case) in every organization."""
        canonical = normalize_username(username)
        if canonical is None:
            return []
        return [u for u in self.store.scan_kind(self.kind) if u.doc.get("username") == canonical]

    def authenticate(self, username: str, password: str, org_id: str | None = None) -> Resource | None:
        """The enabled user whose username and password these are, of the organization ``org_id`` (of any
        organization when None), or None. Costs one scrypt check whether or not the user exists, so timing
        tells nothing."""
        candidates = [u for u in self.named(username) if org_id is None or u.scope.org_id == org_id]
        if not candidates:
            check_password(password, None)  # as slow as a real check
            return None
        found = None
        for user in candidates:
            if check_password(password, user.doc.get("passwordHash")) and user.doc.get("enabled") is True:
                found = user
        return found

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        actor = org_actor(actor)
        username = normalize_username(require_object(body).get("username"))
        if username is not None and self.find(actor.org.id, username) is not None:
            raise Conflict(
                f"A user named {username!r} already exists in this organization.",
                code="IDN-1409-409",
                report={"username": username},
            )
        return super().create(actor, body, ident)

    def get(self, actor: Actor, ident: str) -> Resource:
        """A user by id or by username."""
        scope = org_scope(actor.org.id)
        found = self.store.get(self.kind, scope, ident) or self.find(actor.org.id, ident)
        if found is None:
            raise self.not_found(ident)
        return found

    def set_enabled(self, actor: Actor, ident: str, enabled: bool) -> Resource:
        return self.update(actor, ident, {"enabled": enabled})

    def update(self, actor: Actor, ident: str, body: Any) -> Resource:
        """Change a user's email, roles, admin flag, enabled flag or password (the username stays)."""
        changes = require_object(body)
        unknown = sorted(set(changes) - {"email", "roles", "admin", "enabled", "password"})
        if unknown:
            raise ValidationFailed(
                [
                    {"path": k, "message": "cannot be changed" if k == "username" else "unknown field"}
                    for k in unknown
                ],
                code="IDN-1422-400",
            )
        actor = org_actor(actor)
        current = self.get(actor, ident)
        doc = {k: v for k, v in current.doc.items() if k != "password"}
        doc.setdefault("roles", {access.EVERY_SANDBOX: access.DEFAULT_USER_ROLE})
        updated_doc = {**doc, **changes}
        was_admin = current.doc.get("admin") is True and current.doc.get("enabled") is True
        if was_admin and not (updated_doc.get("admin") is True and updated_doc.get("enabled") is True):
            self._keep_an_admin(actor, current)
        updated = self.replace(actor, current, updated_doc)
        self._recent.clear()  # this process sees the change at once; others within the cache's TTL
        if "password" in changes or updated.doc.get("enabled") is not True:
            # A new password ends the sessions the old one opened (someone who knew it keeps none).
            self.store.delete_user_sessions(actor.org.id, current.id)
        return updated

    def _keep_an_admin(self, actor: Actor, leaving: Resource) -> None:
        """Refuse to disable or demote the organization's last enabled admin (nobody could manage users)."""
        others = [
            u
            for u in self.store.scan_kind(self.kind)
            if u.scope.org_id == actor.org.id
            and u.id != leaving.id
            and u.doc.get("admin") is True
            and u.doc.get("enabled") is True
        ]
        if not others:
            raise Conflict(
                f"{leaving.doc['username']!r} is the organization's last enabled admin: make another user "
                "an admin first.",
                code="IDN-1409-409",
                report={"username": leaving.doc["username"]},
            )

    def list_page(self, actor: Actor, query: listing.ListQuery) -> Listed:
        return listing.run(self.store, self.kind, org_scope(actor.org.id), query, self.render)

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No user with id or username {ident!r} in this organization.",
            code="IDN-1404-404",
            report={"id": ident, "type": self.label},
        )

"""Organizations, sandboxes and API clients, and the bootstrap of the default organization.

The default organization is the one whose tenant id is ``settings.default_tenant_id``. Bootstrap is
idempotent and runs under a file lock in the home, so a server and a CLI starting together agree; nodes
with homes of their own on one PostgreSQL database (docs/deployment.md) agree too: the one whose insert
loses takes what the other created.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from headwater.errors import BadRequest, Conflict
from headwater.services import access
from headwater.services.ids import new_hex, new_uuid, now_ms
from headwater.settings import Settings
from headwater.stores.metadata import AlreadyExists, ApiClient, MetadataStore, Org, Sandbox, Scope
from headwater.stores.secrets import SecretBox

SANDBOX_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Actor:
    """Who is acting, and where: the organization, sandbox and API client of a request."""

    org: Org
    sandbox: Sandbox
    client_id: str
    username: str | None = None  # a person signed in to the console; None for API clients
    role: str = "Admin"  # services/access.py; the CLI and the runtime act with every permission
    permissions: frozenset[str] = access.ALL

    def require(self, permission: str, what: str) -> None:
        """Refuse (403 naming ``permission``) unless the actor has it; ``what`` names the call."""
        if permission not in self.permissions:
            raise access.denied(permission, self.role, self.sandbox.name, what)

    @property
    def scope(self) -> Scope:
        return Scope(self.org.id, self.sandbox.id)

    @property
    def user(self) -> str:
        return self.username or f"{self.client_id}@AdobeID"


@dataclass(frozen=True)
class Credentials:
    org_id: str
    api_key: str
    client_secret: str
    sandbox_name: str
    tenant_id: str

    def as_json(self) -> dict[str, str]:
        return {
            "orgId": self.org_id,
            "apiKey": self.api_key,
            "clientSecret": self.client_secret,
            "sandboxName": self.sandbox_name,
            "tenantId": self.tenant_id,
        }


class Tenancy:
    def __init__(self, store: MetadataStore, box: SecretBox, settings: Settings) -> None:
        self.store = store
        self.box = box
        self.settings = settings

    def default_org(self) -> Org | None:
        return next(
            (o for o in self.store.list_orgs() if o.tenant_id == self.settings.default_tenant_id), None
        )

    def bootstrap(self) -> tuple[Credentials, bool]:
        """Ensure the default organization, its ``prod`` sandbox and one API client exist.

        Returns the credentials of the first client and whether anything was created.
        """
        with self._lock():
            created = False
            org = self.default_org()
            if org is None:
                try:
                    org = self.create_org(self.settings.default_org_name, self.settings.default_tenant_id)
                    created = True
                except Conflict:  # another node created it (the lock is per home; nodes may not share one)
                    org = self.default_org()
                    assert org is not None
            if self.store.get_sandbox(org.id, "prod") is None:
                with contextlib.suppress(Conflict):  # created by another node meanwhile
                    self.create_sandbox(org.id, "prod", "Production", "production")
                    created = True
            if not [c for c in self.store.list_clients(org.id) if c.enabled]:
                self.create_client(org.id, "default")
                created = True
            # The first client: nodes that each created one at once still agree on which they show.
            first = next(c for c in self.store.list_clients(org.id) if c.enabled)
            client_id, secret = first.client_id, self.client_secret(first)
        return Credentials(org.id, client_id, secret, "prod", org.tenant_id), created

    def create_org(self, name: str, tenant_id: str) -> Org:
        org = Org(id=f"{new_hex(12).upper()}@AdobeOrg", name=name, tenant_id=tenant_id, created_at=now_ms())
        try:
            self.store.create_org(org)
        except AlreadyExists as exc:
            raise Conflict(f"An organization with tenant id {tenant_id!r} already exists.") from exc
        return org

    def create_sandbox(
        self, org_id: str, name: str, title: str | None = None, kind: str = "development"
    ) -> Sandbox:
        if not SANDBOX_NAME.match(name):
            raise BadRequest(
                "A sandbox name is 1-63 lowercase letters, digits and hyphens, "
                "starting with a letter or digit.",
                report={"field": "name"},
            )
        sandbox = Sandbox(new_uuid(), org_id, name, title or name, kind, now_ms())
        try:
            self.store.create_sandbox(sandbox)
        except AlreadyExists as exc:
            raise Conflict(f"Sandbox {name!r} already exists in this organization.") from exc
        return sandbox

    def create_client(self, org_id: str, name: str, role: str = "Admin") -> tuple[str, str]:
        problem = access.role_problem(role)
        if problem:
            raise BadRequest(f"The role {role!r} {problem}.", report={"path": "role"})
        client_id = new_hex(16)
        secret = "p8e-" + secrets.token_urlsafe(32)
        sealed = self.box.seal(secret, f"client:{client_id}")
        self.store.create_client(ApiClient(client_id, org_id, name, sealed, True, now_ms(), role))
        return client_id, secret

    def client_secret(self, client: ApiClient) -> str:
        return self.box.open(client.sealed_secret, f"client:{client.client_id}")

    def check_client_secret(self, client: ApiClient, offered: str) -> bool:
        return hmac.compare_digest(self.client_secret(client).encode(), offered.encode())

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with open(self.settings.home / ".bootstrap.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

"""A typed view of a Microsoft Dynamics connection's auth params (and, re-exported from
connectors/http.py, the client's retry policy).

Tokens come from Azure AD (``tokenUrl``, default https://login.microsoftonline.com) for the scope
``{serviceUri}/.default``:

- Service Principal Based Authentication (``servicePrincipalId`` + ``servicePrincipalKey``): the client
  credentials grant, for an application user of the environment;
- Basic Authentication (``username`` + ``password``): the resource owner password grant through
  Microsoft's public sample client id (or ``servicePrincipalId`` when given); Azure AD refuses it for
  accounts that need MFA, so prefer a service principal.

``tenantId`` may be omitted: the tenant is then read from the environment's ``WWW-Authenticate``
challenge. Only the tenant is taken from it: tokens are always requested from ``tokenUrl``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from headwater.connectors.dynamics.errors import DynamicsLoginFailed

# Re-exported: a connection's retry policy is tuned where its config lives.
from headwater.connectors.http import RetryPolicy as RetryPolicy

DEFAULT_TOKEN_URL = "https://login.microsoftonline.com"
API_VERSION = "9.2"
# Microsoft's documented client id for Dataverse sample apps, usable for the password grant.
PUBLIC_CLIENT_ID = "51f81489-12ee-4a9e-aaae-a2591f45987d"

Grant = Literal["client_credentials", "password"]


@dataclass(frozen=True)
class DynamicsConfig:
    service_uri: str
    token_url: str = DEFAULT_TOKEN_URL
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    page_size: int = 5000  # records per page asked of the Web API (Prefer: odata.maxpagesize)
    timeout_seconds: float = 120.0

    @classmethod
    def from_auth(cls, auth: Mapping[str, Any]) -> DynamicsConfig:
        """Read a connection's auth params; raise :class:`DynamicsLoginFailed` if they cannot log in."""

        def text(key: str) -> str | None:
            value = auth.get(key)
            return str(value).strip() if value not in (None, "") else None

        service_uri = _base_url(text("serviceUri"), "serviceUri", "https://acme.crm.dynamics.com")
        token_url = _base_url(text("tokenUrl") or DEFAULT_TOKEN_URL, "tokenUrl", DEFAULT_TOKEN_URL)
        config = cls(
            service_uri=service_uri,
            token_url=token_url,
            tenant_id=text("tenantId"),
            client_id=text("servicePrincipalId"),
            client_secret=text("servicePrincipalKey"),
            username=text("username"),
            password=text("password"),
        )
        config.grant  # noqa: B018 - validates the combination of params now, not at the first request
        return config

    @property
    def grant(self) -> Grant:
        if self.client_id and self.client_secret:
            return "client_credentials"
        if self.username and self.password:
            return "password"
        raise DynamicsLoginFailed(
            "The connection has no usable Dynamics credentials: give servicePrincipalId and "
            "servicePrincipalKey (an application user of the environment), or username and password."
        )

    @property
    def scope(self) -> str:
        return f"{self.service_uri}/.default"

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.client_secret, self.password)


def _base_url(value: str | None, name: str, example: str) -> str:
    if value is None:
        raise DynamicsLoginFailed(f"The connection has no {name}: set it to a URL like {example}.")
    value = value.rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise DynamicsLoginFailed(f"{name} {value!r} is not a URL like {example}: fix the connection.")
    return value

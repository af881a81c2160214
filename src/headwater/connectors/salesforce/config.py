"""A typed view of a Salesforce connection's auth params (and, re-exported from
connectors/http.py, the client's retry policy).

Which login a connection uses follows from the params it has (see :attr:`SalesforceConfig.grant`):

- ``username`` + ``password`` + ``securityToken`` and no ``clientId``: the SOAP ``login()`` call, which
  needs no connected app (Basic Authentication in the connection spec); the token is appended to the
  password, and may be empty for orgs that trust the caller's IP range;
- ``clientId`` + ``clientSecret`` + ``username`` + ``password``: the OAuth 2.0 username-password grant
  (``securityToken``, when given, is appended to the password as Salesforce requires);
- ``clientId`` + ``clientSecret`` alone: the OAuth 2.0 client credentials grant (needs the org's My Domain
  URL as ``environmentUrl``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

# Re-exported: a connection's retry policy is tuned where its config lives.
from headwater.connectors.http import RetryPolicy as RetryPolicy
from headwater.connectors.salesforce.errors import SalesforceLoginFailed

DEFAULT_ENVIRONMENT_URL = "https://login.salesforce.com"
DEFAULT_API_VERSION = "59.0"

Grant = Literal["soap", "password", "client_credentials"]


@dataclass(frozen=True)
class SalesforceConfig:
    environment_url: str = DEFAULT_ENVIRONMENT_URL
    api_version: str = DEFAULT_API_VERSION
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    page_size: int = 2000  # records per query page asked of Salesforce (batchSize, 200..2000)
    timeout_seconds: float = 120.0

    @classmethod
    def from_auth(cls, auth: Mapping[str, Any]) -> SalesforceConfig:
        """Read a connection's auth params; raise :class:`SalesforceLoginFailed` if they cannot log in."""

        def text(key: str) -> str | None:
            value = auth.get(key)
            return str(value) if value not in (None, "") else None

        environment_url = (text("environmentUrl") or DEFAULT_ENVIRONMENT_URL).rstrip("/")
        parts = urlsplit(environment_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise SalesforceLoginFailed(
                f"environmentUrl {environment_url!r} is not a URL like https://login.salesforce.com: "
                "fix the connection's auth params."
            )
        version = (text("apiVersion") or DEFAULT_API_VERSION).lower().removeprefix("v")
        if not re.fullmatch(r"\d{2,3}\.0", version):
            raise SalesforceLoginFailed(
                f"apiVersion {version!r} is not a Salesforce API version like {DEFAULT_API_VERSION}: "
                "fix the connection's auth params."
            )
        config = cls(
            environment_url=environment_url,
            api_version=version,
            username=text("username"),
            password=text("password"),
            security_token=text("securityToken"),
            client_id=text("clientId"),
            client_secret=text("clientSecret"),
        )
        config.grant  # noqa: B018 - validates the combination of params now, not at the first request
        return config

    @property
    def grant(self) -> Grant:
        if self.client_id and self.client_secret:
            if self.username and self.password:
                return "password"
            if self.username or self.password:
                raise SalesforceLoginFailed(
                    "The connection has only one of username and password: give both for the OAuth "
                    "username-password grant, or neither for the client credentials grant."
                )
            return "client_credentials"
        if self.client_id or self.client_secret:
            raise SalesforceLoginFailed(
                "The connection has only one of clientId and clientSecret: give both (OAuth), or neither "
                "and log in with username, password and securityToken."
            )
        if self.username and self.password:
            return "soap"
        raise SalesforceLoginFailed(
            "The connection has no usable Salesforce credentials: give username, password and securityToken, "
            "or clientId and clientSecret (plus username and password for the username-password grant)."
        )

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.password, self.security_token, self.client_secret)

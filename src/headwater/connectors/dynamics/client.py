"""The Dataverse Web API protocol: Azure AD tokens, OData v4 requests with retries and one token
refresh, and paging by ``@odata.nextLink``.

Every request goes through :meth:`OutboundPolicy.client`, so the token URL, the environment and every
next link are checked before a byte is sent, and connected to the addresses that check resolved (no
second lookup a rebinding DNS could answer differently); the bearer token is only sent to
``serviceUri`` (a next link to another origin is refused). Retries (connectors/http.py): connect
errors, timeouts and 5xx are retried with jittered exponential backoff, 429 (service protection
limits) after its ``Retry-After``.
Tokens are renewed a minute before they expire, and once more on a 401, after which the request is
sent again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from headwater.connectors.dynamics.config import API_VERSION, PUBLIC_CLIENT_ID, DynamicsConfig
from headwater.connectors.dynamics.errors import (
    DynamicsEntityNotFound,
    DynamicsLoginFailed,
    DynamicsProtocolError,
    DynamicsQueryRejected,
    DynamicsRateLimited,
    DynamicsUnavailable,
)
from headwater.connectors.errors import ConnectorError
from headwater.connectors.http import (
    HttpClient,
    Records,
    RetryPolicy,
    Service,
    field_named,
    json_or_none,
    origin,
    scrub,
)
from headwater.connectors.outbound import OutboundPolicy

API = f"/api/data/v{API_VERSION}"
_LOGICAL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
_ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


@dataclass
class _Token:
    value: str = field(repr=False)
    renew_at: float  # time.monotonic() after which a new token is fetched first


class DynamicsClient(HttpClient):
    """One connection's access to one environment. Not thread-safe; ``close()`` releases the HTTP pool."""

    service = Service(
        name="Dynamics",
        unavailable=DynamicsUnavailable,
        rate_limited=DynamicsRateLimited,
        protocol_error=DynamicsProtocolError,
        # The token endpoint is not Dynamics: these two name only the host.
        unreachable="Could not reach {host} after {attempts} attempts ({error}); check the network and "
        "serviceUri, or retry later.",
        down="{host} answered HTTP {status} to {attempts} attempts; it is probably down or in maintenance. "
        "The run can be retried later.",
        wait_too_long="Dynamics at {host} asked to wait {seconds:g} s (service protection limits); the run "
        "can be retried after that.",
        still_limited="Dynamics at {host} still refused requests as too many after {attempts} attempts; "
        "retry later or lower the flow's frequency.",
    )

    def __init__(self, config: DynamicsConfig, outbound: OutboundPolicy, retry: RetryPolicy) -> None:
        super().__init__(outbound, retry, config.timeout_seconds)
        self.config = config
        self.tokens_fetched = 0
        self._token: _Token | None = None
        self._tenant = config.tenant_id

    # -- metadata and data -------------------------------------------------------------------------

    def entity_definitions(self) -> list[dict[str, Any]]:
        body = self.get_json(
            f"{API}/EntityDefinitions",
            params={"$select": "LogicalName,EntitySetName,DisplayName"},
            what="listing entities",
        )
        return [e for e in _value(body) if isinstance(e, dict)]

    def entity(self, name: str) -> dict[str, Any]:
        """The definition of entity ``name`` (its logical name, or its entity set name)."""
        if not _LOGICAL_NAME.match(name):
            raise DynamicsQueryRejected(
                f"tableName {name!r} is not a Dynamics entity name (e.g. contact): fix the source connection."
            )
        select = {"$select": "LogicalName,EntitySetName,PrimaryIdAttribute,DisplayName"}
        try:
            body = self.get_json(
                f"{API}/EntityDefinitions(LogicalName='{name.lower()}')",
                params=select,
                what=f"finding {name}",
            )
        except DynamicsEntityNotFound:
            params = {**select, "$filter": f"EntitySetName eq '{name}'"}
            found = _value(self.get_json(f"{API}/EntityDefinitions", params=params, what=f"finding {name}"))
            if not found or not isinstance(found[0], dict):
                raise DynamicsEntityNotFound(
                    f"Dynamics has no entity {name!r}: set tableName to a logical name the connection's "
                    "explore lists (e.g. contact)."
                ) from None
            body = found[0]
        if not isinstance(body, dict) or not isinstance(body.get("EntitySetName"), str):
            raise DynamicsEntityNotFound(f"Dynamics entity {name!r} cannot be read through the Web API.")
        return body

    def attributes(self, logical_name: str) -> list[dict[str, Any]]:
        body = self.get_json(
            f"{API}/EntityDefinitions(LogicalName='{logical_name}')/Attributes",
            params={"$select": "LogicalName,AttributeType,AttributeOf,IsValidForRead"},
            what=f"describing {logical_name}",
        )
        return [a for a in _value(body) if isinstance(a, dict)]

    def query(
        self, entity_set: str, select: list[str], where: str | None, top: int | None = None
    ) -> Iterator[Records]:
        """The records of one entity set, one list per page (up to ``page_size`` records each)."""
        params = {"$select": ",".join(select)}
        if where:
            params["$filter"] = where
        if top:
            params["$top"] = str(top)
        # The Prefer header must be sent again with every next link for the page size to hold.
        headers = {"Prefer": f"odata.maxpagesize={self.config.page_size}"}
        what = f"reading {entity_set}"
        first = self.get_json(f"{API}/{entity_set}", params=params, headers=headers, what=what)
        yield from self.paged(first, _value, _next_link, what=what, headers=headers)

    def authorized_get(
        self, target: str, *, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        return self._send(target, params=params, headers=headers)

    # -- tokens ------------------------------------------------------------------------------------

    def authenticate(self) -> str:
        """Fetch a new access token (see config.py for the grants) and keep it."""
        c = self.config
        tenant = self._tenant or self._discover_tenant()
        data = {"grant_type": c.grant, "scope": c.scope}
        if c.grant == "client_credentials":
            data.update(client_id=c.client_id or "", client_secret=c.client_secret or "")
        else:
            data.update(client_id=c.client_id or PUBLIC_CLIENT_ID, username=c.username or "")
            data["password"] = c.password or ""
        with field_named("tokenUrl"):
            response = self._request("POST", f"{c.token_url}/{tenant}/oauth2/v2.0/token", data=data)
        if response.status_code != 200:
            raise self._token_error(response)
        body = self.json(response, "fetching a token")
        token, expires_in = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str):
            raise DynamicsProtocolError("Azure AD's token response has no access_token.")
        lifetime = float(expires_in) if isinstance(expires_in, int | float | str) else 3600.0
        self._token = _Token(token, time.monotonic() + max(0.0, lifetime - 60.0))
        self.tokens_fetched += 1
        return token

    def _discover_tenant(self) -> str:
        """The tenant named by the environment's 401 challenge (when the connection has no tenantId)."""
        with field_named("serviceUri"):
            response = self._request("GET", f"{self.config.service_uri}{API}/")
        challenge = response.headers.get("WWW-Authenticate", "")
        match = re.search(r"authorization_uri=\"?([^\",\s]+)", challenge)
        tenant = urlsplit(match.group(1)).path.strip("/").split("/")[0] if match else ""
        if response.status_code != 401 or not _TENANT.match(tenant):
            raise DynamicsLoginFailed(
                f"Could not learn the Azure AD tenant from {self.config.service_uri} (HTTP "
                f"{response.status_code}): set tenantId in the connection, and check serviceUri."
            )
        self._tenant = tenant
        return tenant

    def _token_error(self, response: httpx.Response) -> ConnectorError:
        body = json_or_none(response)
        if not isinstance(body, dict) or "error" not in body:
            return DynamicsProtocolError(
                f"The token endpoint answered HTTP {response.status_code} without an OAuth error: check "
                f"tokenUrl ({self.config.token_url}) and tenantId."
            )
        error = str(body["error"])
        description = str(body.get("error_description", "")).split("\n")[0].split(" Trace ID")[0]
        detail = scrub(f"{error}: {description}", self.config.secrets)
        if self.config.grant == "client_credentials":
            advice = (
                "Check servicePrincipalId, servicePrincipalKey (the secret's value, not its id, and not "
                "expired) and tenantId."
            )
        else:
            advice = "Check username and password; accounts that need MFA must use a service principal."
        return DynamicsLoginFailed(f"Azure AD refused the token request ({detail}). {advice}")

    # -- sending -----------------------------------------------------------------------------------

    def _send(
        self, target: str, *, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        """An authenticated GET of ``target``, renewing the token once if it is refused."""
        url = self._url(target)
        renewed = False
        while True:
            token = self._token.value if self._token and time.monotonic() < self._token.renew_at else None
            token = token or self.authenticate()
            request_headers = {**_ODATA_HEADERS, **(headers or {}), "Authorization": f"Bearer {token}"}
            with field_named("serviceUri"):
                response = self._request("GET", url, params=params, headers=request_headers)
            if response.status_code != 401:
                return response
            if renewed:
                raise DynamicsLoginFailed(
                    "Dynamics refused a token Azure AD had just issued (401): make the service principal an "
                    "application user of the environment with a security role, and check serviceUri."
                )
            renewed, self._token = True, None

    def _request(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send with retries on connect errors, timeouts, 5xx and 429 (see the module docstring)."""
        return self.send(method, lambda: (url, headers or {}), **kwargs)

    def _url(self, target: str) -> str:
        if target.startswith("/"):
            return self.config.service_uri + target
        if _origin(target) != _origin(self.config.service_uri):
            raise DynamicsProtocolError(
                f"Dynamics pointed the next page at {_origin(target)}, not at {self.config.service_uri}; the "
                "token is not sent there. Check the connection's serviceUri."
            )
        return target

    def api_error(self, response: httpx.Response, what: str) -> ConnectorError:
        code, message = _error_of(response)
        detail = scrub(message, self.config.secrets)
        status = response.status_code
        if status == 404:
            return DynamicsEntityNotFound(
                f"Dynamics found nothing while {what} ({detail}): check tableName against the entities the "
                "connection's explore lists."
            )
        if status == 400:
            return DynamicsQueryRejected(
                f"Dynamics rejected the request while {what} ({code}: {detail}). Check the source "
                "connection's columns and the flow's delta column against the entity's attributes."
            )
        if status == 403:
            return DynamicsLoginFailed(
                f"Dynamics refused access while {what} ({detail}): give the application user a security "
                "role that can read this entity."
            )
        return DynamicsProtocolError(f"Dynamics answered HTTP {status} while {what} ({code}: {detail}).")


# -- helpers -----------------------------------------------------------------------------------------


def _origin(url: str) -> str:
    return origin(url).lower()


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an OData error body: ``{"error": {"code", "message"}}``."""
    body = json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", response.reason_phrase


def _next_link(page: Any) -> str | None:
    next_link = page.get("@odata.nextLink")
    if not next_link:
        return None
    if not isinstance(next_link, str):
        raise DynamicsProtocolError("Dynamics returned an @odata.nextLink that is not a URL.")
    return next_link


def _value(body: Any) -> list[Any]:
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise DynamicsProtocolError(
            "Dynamics' response has no 'value' list; it does not look like the Web API."
        )
    return value

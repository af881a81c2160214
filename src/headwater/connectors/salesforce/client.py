"""The Salesforce wire protocol: log in (SOAP ``login()`` or OAuth 2.0), call the REST API with retries
and one re-login, and page through SOQL query results by ``nextRecordsUrl``.

Every request goes through :meth:`OutboundPolicy.client`, so the login URL, the instance URL a login
returns and every page URL are checked before a byte is sent, and connected to the addresses that check
resolved (no second lookup a rebinding DNS could answer differently); the session id is only ever sent
to the instance URL the login returned. Retries (connectors/http.py, tuned by :class:`RetryPolicy`): connect
errors, timeouts and 5xx are retried with jittered exponential backoff, 429 after its ``Retry-After``; a
401 (expired or revoked session) triggers one fresh login per request, then the request is sent again.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import httpx

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
from headwater.connectors.salesforce.config import SalesforceConfig
from headwater.connectors.salesforce.errors import (
    SalesforceLoginFailed,
    SalesforceObjectNotFound,
    SalesforceProtocolError,
    SalesforceQueryRejected,
    SalesforceRateLimited,
    SalesforceUnavailable,
)

_LOGIN_ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">'
    "<env:Body><urn:login><urn:username>{username}</urn:username><urn:password>{password}</urn:password>"
    "</urn:login></env:Body></env:Envelope>"
)
# Error codes of a query or describe that mean "the request names something wrong", not "try later".
_QUERY_CODES = {"MALFORMED_QUERY", "INVALID_FIELD", "INVALID_QUERY_FILTER_OPERATOR", "INVALID_OPERATION"}
_NOT_FOUND_CODES = {"INVALID_TYPE", "NOT_FOUND"}


@dataclass(frozen=True)
class Session:
    token: str = field(repr=False)
    instance_url: str  # scheme://host[:port] of the org's instance

    def url(self, target: str) -> str:
        """An absolute URL for ``target`` (a path, or an absolute URL on the instance itself)."""
        if target.startswith("/"):
            return self.instance_url + target
        if origin(target) != origin(self.instance_url):
            raise SalesforceProtocolError(
                f"Salesforce pointed the next request at {origin(target)}, not at the instance "
                f"{self.instance_url}; the session is not sent there. Check the connection's environmentUrl."
            )
        return target


class SalesforceClient(HttpClient):
    """One connection's session with one org. Not thread-safe; ``close()`` releases the HTTP pool."""

    service = Service(
        name="Salesforce",
        unavailable=SalesforceUnavailable,
        rate_limited=SalesforceRateLimited,
        protocol_error=SalesforceProtocolError,
        unreachable="Could not reach Salesforce at {host} after {attempts} attempts ({error}); check the "
        "network and environmentUrl, or retry later.",
        down="Salesforce at {host} answered HTTP {status} to {attempts} attempts; it is probably down or in "
        "maintenance (see status.salesforce.com). The run can be retried later.",
        wait_too_long="Salesforce at {host} asked to wait {seconds:g} s before more requests; the run can be "
        "retried after that.",
        still_limited="Salesforce at {host} still refused requests as too many after {attempts} attempts; "
        "retry later or lower the flow's frequency.",
    )

    def __init__(self, config: SalesforceConfig, outbound: OutboundPolicy, retry: RetryPolicy) -> None:
        super().__init__(outbound, retry, config.timeout_seconds)
        self.config = config
        self.logins = 0
        self._session: Session | None = None

    @property
    def data_path(self) -> str:
        return f"/services/data/v{self.config.api_version}"

    # -- REST --------------------------------------------------------------------------------------

    def list_sobjects(self) -> list[dict[str, Any]]:
        body = self.get_json(f"{self.data_path}/sobjects", what="listing objects")
        return [o for o in _field(body, "sobjects", list) if isinstance(o, dict)]

    def describe(self, name: str) -> dict[str, Any]:
        body = self.get_json(f"{self.data_path}/sobjects/{name}/describe", what=f"describing {name}")
        if not isinstance(body, dict):
            raise SalesforceProtocolError(f"Salesforce's describe of {name} is not a JSON object.")
        return body

    def query(self, soql: str) -> Iterator[Records]:
        """The records of ``soql``, one list per page (up to ``page_size`` records each)."""
        headers = {"Sforce-Query-Options": f"batchSize={self.config.page_size}"}
        what = "running the query"
        first = self.get_json(f"{self.data_path}/query", params={"q": soql}, headers=headers, what=what)
        yield from self.paged(first, _records, _next_records_url, what=what, headers=headers)

    def authorized_get(
        self, target: str, *, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        return self._send("GET", target, authenticated=True, params=params, headers=headers)

    # -- login -------------------------------------------------------------------------------------

    def login(self) -> Session:
        """Log in afresh (the grant follows from the params, see config.py) and keep the session."""
        grant = self.config.grant
        with field_named("environmentUrl"):
            session = self._soap_login() if grant == "soap" else self._oauth_login(grant)
        # Checked here too, so that a login server naming a forbidden instance fails with that reason.
        self.outbound.check_url(session.instance_url)
        self._session = session
        self.logins += 1
        return session

    def _soap_login(self) -> Session:
        c = self.config
        body = _LOGIN_ENVELOPE.format(
            username=escape(c.username or ""), password=escape((c.password or "") + (c.security_token or ""))
        )
        response = self._send(
            "POST",
            f"{c.environment_url}/services/Soap/u/{c.api_version}",
            authenticated=False,
            content=body.encode(),
            headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
            transient=_soap_transient,
        )
        return self._login_result(response)

    def _login_result(self, response: httpx.Response) -> Session:
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            raise SalesforceProtocolError(
                f"Salesforce answered the SOAP login with HTTP {response.status_code} and no SOAP envelope: "
                f"check that environmentUrl ({self.config.environment_url}) is a Salesforce login URL."
            ) from None
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root.iter()}
        if "faultcode" in values:
            raise self._login_fault(values["faultcode"].rsplit(":", 1)[-1], values.get("faultstring", ""))
        if values.get("passwordExpired") == "true":
            raise SalesforceLoginFailed(
                "The Salesforce user's password has expired: log in to Salesforce to set a new one, then "
                "update the connection's password and securityToken."
            )
        server_url, session_id = values.get("serverUrl"), values.get("sessionId")
        if not server_url or not session_id:
            raise SalesforceProtocolError("Salesforce's login response has no serverUrl or sessionId.")
        return Session(session_id, origin(server_url))

    def _login_fault(self, code: str, message: str) -> ConnectorError:
        detail = scrub(message, self.config.secrets)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return SalesforceRateLimited(f"Salesforce refused the login for now ({detail}); retry later.")
        if code == "SERVER_UNAVAILABLE":
            return SalesforceUnavailable(f"Salesforce could not log in right now ({detail}); retry later.")
        return SalesforceLoginFailed(
            f"Salesforce refused the login ({code}: {detail}). Check the connection's username, password "
            "and securityToken (resetting the password emails a new token), and that environmentUrl is the "
            "org's login URL (https://test.salesforce.com for sandboxes)."
        )

    def _oauth_login(self, grant: str) -> Session:
        c = self.config
        data = {"grant_type": grant, "client_id": c.client_id or "", "client_secret": c.client_secret or ""}
        if grant == "password":
            data.update(username=c.username or "", password=(c.password or "") + (c.security_token or ""))
        response = self._send(
            "POST", f"{c.environment_url}/services/oauth2/token", authenticated=False, data=data
        )
        if response.status_code != 200:
            raise self._oauth_error(response, grant)
        body = self.json(response, "logging in")
        token, instance = body.get("access_token"), body.get("instance_url")
        if not isinstance(token, str) or not isinstance(instance, str):
            raise SalesforceProtocolError(
                "Salesforce's OAuth token response has no access_token or instance_url."
            )
        return Session(token, origin(instance))

    def _oauth_error(self, response: httpx.Response, grant: str) -> ConnectorError:
        body = json_or_none(response)
        if response.status_code >= 500 or not isinstance(body, dict) or "error" not in body:
            return SalesforceProtocolError(
                f"Salesforce answered the OAuth login with HTTP {response.status_code}: check that "
                f"environmentUrl ({self.config.environment_url}) is the org's login or My Domain URL."
            )
        error = str(body.get("error"))
        detail = scrub(f"{error}: {body.get('error_description', '')}", self.config.secrets)
        if error in ("invalid_client_id", "invalid_client"):
            advice = "Check clientId and clientSecret (the connected app's consumer key and secret)."
        elif grant == "password":
            advice = (
                "Check username and password (with the security token appended unless the org trusts this "
                "IP range) and that the connected app allows the OAuth username-password flow."
            )
        else:
            advice = (
                "The client credentials flow needs the org's My Domain URL as environmentUrl and a run-as "
                "user set on the connected app."
            )
        return SalesforceLoginFailed(f"Salesforce refused the OAuth login ({detail}). {advice}")

    # -- sending -----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        target: str,
        *,
        authenticated: bool,
        headers: Mapping[str, str] | None = None,
        transient: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries and, when ``authenticated``, one re-login (module docstring)."""
        response = self.send(
            method,
            lambda: self._prepare(target, headers, authenticated),
            transient=transient,
            renew=self.login if authenticated else None,
            **kwargs,
        )
        if authenticated and response.status_code == 401:
            raise SalesforceLoginFailed(
                "Salesforce refused a session it had just issued (401): check that the user may use "
                "the API (API Enabled permission) and that the org allows this login's IP range."
            )
        return response

    def _prepare(
        self, target: str, headers: Mapping[str, str] | None, authenticated: bool
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of one attempt: the session (logging in first if there is none) when
        ``authenticated``, built again on each attempt because a re-login may change both."""
        if not authenticated:
            return target, dict(headers or {})
        session = self._session or self.login()
        return session.url(target), {**(headers or {}), "Authorization": f"Bearer {session.token}"}

    def api_error(self, response: httpx.Response, what: str) -> ConnectorError:
        code, message = _error_of(response)
        detail = scrub(message, self.config.secrets)
        status = response.status_code
        if code in _NOT_FOUND_CODES or status == 404:
            return SalesforceObjectNotFound(
                f"Salesforce found nothing while {what} ({code or status}: {detail}). Check tableName "
                "against the objects the connection's explore lists."
            )
        if code == "REQUEST_LIMIT_EXCEEDED":
            return SalesforceRateLimited(
                f"The org's API request limit is used up ({detail}); runs resume once Salesforce's rolling "
                "24-hour window frees requests, or ask Salesforce for a higher limit."
            )
        if code == "INVALID_QUERY_LOCATOR":
            return SalesforceUnavailable(
                f"Salesforce dropped the query cursor while {what} ({detail}); retry the run."
            )
        if code in _QUERY_CODES or status == 400:
            return SalesforceQueryRejected(
                f"Salesforce rejected the request while {what} ({code or status}: {detail}). Check the "
                "source connection's columns and the flow's delta column against the object's describe."
            )
        if status == 403:
            return SalesforceLoginFailed(
                f"Salesforce refused access while {what} ({code or status}: {detail}): give the user the API "
                "Enabled permission and read access to the object."
            )
        return SalesforceProtocolError(f"Salesforce answered HTTP {status} while {what} ({code}: {detail}).")


# -- helpers -----------------------------------------------------------------------------------------


def _soap_transient(response: httpx.Response) -> bool:
    # SOAP faults (a refused login included) come back as HTTP 500: only a 5xx without one is retried.
    return response.status_code >= 500 and b"Fault>" not in response.content


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(errorCode, message) of a REST error body: ``[{"errorCode", "message"}]``."""
    body = json_or_none(response)
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if isinstance(body, dict):
        return str(body.get("errorCode") or body.get("error") or ""), str(
            body.get("message") or body.get("error_description") or ""
        )
    return "", response.reason_phrase


def _records(page: Any) -> Records:
    records: Records = _field(page, "records", list)
    return records


def _next_records_url(page: Any) -> str | None:
    if page.get("done", True):
        return None
    url: str = _field(page, "nextRecordsUrl", str)
    return url


def _field(body: Any, name: str, kind: type) -> Any:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, kind):
        raise SalesforceProtocolError(
            f"Salesforce's response has no {name!r}; it does not look like the REST API."
        )
    return value

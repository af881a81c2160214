"""How deliveries authenticate to a destination: no auth, HTTP Basic, or OAuth 2 client credentials (its
token shared by every delivery, fetched once and refreshed shortly before it expires), optionally over
mutual TLS.

    AuthError      the destination's credentials could not be obtained (errors.py); ``transient`` says
                   whether trying again later may help (token endpoint unreachable, 5xx, 408, 429) or
                   the connection's auth must be fixed first (4xx, an answer without a token, a bad
                   certificate)

The engine asks ``headers()`` before each request and, when the destination answers 401,
``unauthorized(used)`` whether sending again with fresh headers makes sense. Secrets and tokens never
appear in messages or logs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

from headwater.connectors.http_destination.client import HttpClient, Timeouts
from headwater.connectors.http_destination.errors import AuthError, TransportError

OAUTH = "OAuth 2 Client Credentials"
BASIC = "Basic Authentication"
NONE = "None"
TOKEN_TIMEOUTS = Timeouts(connect=5.0, read=10.0)
DEFAULT_EXPIRES_IN = 3600.0  # seconds, when the token endpoint does not say


class Authenticator:
    """No authentication (auth.specName "None"); the base of the others."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context  # for the HttpClient: extra CAs, client certificate (None: default)

    async def headers(self, client: HttpClient) -> list[tuple[str, str]]:
        """Headers to add to the next request."""
        return []

    async def unauthorized(self, client: HttpClient, used: list[tuple[str, str]]) -> bool:
        """The destination answered 401 to a request sent with ``used``: True when sending it again with
        fresh ``headers()`` may succeed."""
        return False

    def secret_values(self) -> tuple[str, ...]:
        """Credentials obtained at run time (OAuth access tokens, the latest few), to scrub from what is
        shown; the configured secrets are known from the params already."""
        return ()


class BasicAuth(Authenticator):
    """``Authorization: Basic base64(username:password)``, UTF-8."""

    def __init__(self, username: str, password: str, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context)
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._authorization = f"Basic {credentials}"

    async def headers(self, client: HttpClient) -> list[tuple[str, str]]:
        return [("Authorization", self._authorization)]

    def __repr__(self) -> str:
        return "BasicAuth(***)"


@dataclass(frozen=True, slots=True)
class _Token:
    authorization: str  # the header value: "Bearer <access token>"
    refresh_at: float  # clock time after which a new token is fetched


class ClientCredentials(Authenticator):
    """OAuth 2 client credentials (RFC 6749 section 4.4). Concurrent callers share one token request."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        credentials_location: str = "header",
        scope: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        form_items: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeouts: Timeouts = TOKEN_TIMEOUTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ssl_context)
        if urlsplit(token_url).scheme != "https":
            raise AuthError(
                "the OAuth accessTokenUrl must be an https:// URL (the client secret travels to it).",
                transient=False,
            )
        if credentials_location not in ("header", "body"):
            raise AuthError('credentialsLocation must be "header" or "body".', transient=False)
        self.token_url = token_url
        self._client_id, self._secret = client_id, client_secret
        self._in_header = credentials_location == "header"
        self._scope = scope
        self._extra_headers = dict(extra_headers or {})
        self._form_items = dict(form_items or {})
        self._timeouts = timeouts
        self._clock = clock
        self._token: _Token | None = None
        self._recent: deque[str] = deque(maxlen=4)  # access tokens lately in use, scrubbed from answers
        self._fetching: asyncio.Task[_Token] | None = None
        self.fetches = 0  # token requests sent, for metrics and tests

    def __repr__(self) -> str:
        return f"ClientCredentials({self.token_url!r}, client_id={self._client_id!r})"

    async def headers(self, client: HttpClient) -> list[tuple[str, str]]:
        token = self._token
        if token is None or self._clock() >= token.refresh_at:
            token = await self._shared_fetch(client)
        return [("Authorization", token.authorization)]

    async def unauthorized(self, client: HttpClient, used: list[tuple[str, str]]) -> bool:
        token = self._token
        if token is not None and ("Authorization", token.authorization) in used:
            self._token = None  # refused: the next headers() fetches a new one (once, for everybody)
        return True

    async def _shared_fetch(self, client: HttpClient) -> _Token:
        fetching = self._fetching
        if fetching is None:
            fetching = self._fetching = asyncio.ensure_future(self._fetch(client))
            fetching.add_done_callback(self._fetched)
        # shielded: a caller cancelled while waiting does not cancel the fetch the others wait for
        return await asyncio.shield(fetching)

    def _fetched(self, fetching: asyncio.Task[_Token]) -> None:
        self._fetching = None  # after a failure, the next headers() tries again
        if not fetching.cancelled():
            fetching.exception()  # retrieved here too, in case every waiter was cancelled

    async def _fetch(self, client: HttpClient) -> _Token:
        self.fetches += 1
        sent_at = self._clock()
        headers, body = self._token_request()
        try:
            response = await client.request("POST", self.token_url, headers, body, self._timeouts)
        except TransportError as exc:
            raise AuthError(
                f"the OAuth token endpoint could not be reached ({exc.kind}: {exc.message})",
                transient=exc.transient,
            ) from exc
        except ValueError as exc:  # extraHeaders that cannot be sent
            raise AuthError(f"the token request cannot be sent: {exc}", transient=False) from exc
        if response.status != 200:
            raise self._refusal(response.status, response.body, response.header("location"))
        self._token = self._parse_grant(response.body, sent_at)
        self._recent.append(self._token.authorization.partition(" ")[2])
        return self._token

    def secret_values(self) -> tuple[str, ...]:
        return tuple(self._recent)

    def _token_request(self) -> tuple[list[tuple[str, str]], bytes]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        form.update(self._form_items)
        headers = {"content-type": ("Content-Type", "application/x-www-form-urlencoded")}
        headers["accept"] = ("Accept", "application/json")
        if self._in_header:  # RFC 6749 2.3.1: each form-urlencoded, then Basic
            pair = f"{quote_plus(self._client_id, safe='')}:{quote_plus(self._secret, safe='')}"
            headers["authorization"] = ("Authorization", f"Basic {base64.b64encode(pair.encode()).decode()}")
        else:
            form["client_id"], form["client_secret"] = self._client_id, self._secret
        for name, value in self._extra_headers.items():
            headers[name.lower()] = (name, value)
        return list(headers.values()), urlencode(form).encode()

    def _refusal(self, status: int, body: bytes, location: str | None) -> AuthError:
        said = self._scrub(_oauth_error(body))
        if 300 <= status < 400:
            return AuthError(
                f"the OAuth token endpoint redirected ({status}) to {location or '(nowhere)'}; "
                "set accessTokenUrl to the final URL.",
                transient=False,
                token_status=status,
            )
        if status >= 500 or status in (408, 429):
            return AuthError(
                f"the OAuth token endpoint answered {status}{said}; retrying later.",
                transient=True,
                token_status=status,
            )
        return AuthError(
            f"the OAuth token endpoint refused the client credentials ({status}{said}); check clientId, "
            "clientSecret, credentialsLocation and scope.",
            transient=False,
            token_status=status,
        )

    def _parse_grant(self, body: bytes, sent_at: float) -> _Token:
        try:
            grant = json.loads(body)
        except ValueError:
            grant = None
        if not isinstance(grant, dict) or not isinstance(grant.get("access_token"), str):
            raise AuthError(
                "the OAuth token endpoint answered 200 without an access_token in a JSON object; check "
                "accessTokenUrl.",
                transient=False,
                token_status=200,
            )
        token = grant["access_token"]
        kind = str(grant.get("token_type") or "Bearer")
        kind = "Bearer" if kind.lower() == "bearer" else kind
        lifetime = _seconds(grant.get("expires_in"))
        early = min(60.0, 0.1 * lifetime)
        return _Token(f"{kind} {token}", sent_at + lifetime - early)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def build_authenticator(
    spec_name: str, params: Mapping[str, Any], *, ca_file: str | None = None
) -> Authenticator:
    """The authenticator of a destination connection. ``spec_name`` is one of "OAuth 2 Client
    Credentials", "Basic Authentication", "None" (the authSpec of http-destination.json); ``params`` are
    already decrypted. ``ca_file``: a PEM bundle trusted for outbound TLS besides the system store; the
    connection's own ``caCertificate`` (a PEM bundle stored with it) is trusted as well, for its token
    endpoint and its requests. AuthError (not transient) when the params cannot work."""
    ca_data = params.get(CA_CERTIFICATE) or None
    if ca_data is not None and not isinstance(ca_data, str):
        raise AuthError(f"{CA_CERTIFICATE} must be a PEM text.", transient=False)
    extra_cas = bool(ca_file or ca_data)
    if spec_name == NONE:
        return Authenticator(tls_context(ca_file, ca_data=ca_data) if extra_cas else None)
    if spec_name == BASIC:
        username, password = _required(params, spec_name, "username", "password")
        return BasicAuth(username, password, tls_context(ca_file, ca_data=ca_data) if extra_cas else None)
    if spec_name != OAUTH:
        raise AuthError(
            f"unknown auth spec {spec_name!r}; use one of: {OAUTH}, {BASIC}, {NONE}.", transient=False
        )
    token_url, client_id, secret = _required(params, spec_name, "accessTokenUrl", "clientId", "clientSecret")
    certificate, key = params.get("clientCertificate"), params.get("clientKey")
    if bool(certificate) != bool(key):
        raise AuthError("mutual TLS needs both clientCertificate and clientKey.", transient=False)
    context = None
    if certificate or extra_cas:
        context = tls_context(ca_file, certificate or None, key or None, ca_data=ca_data)
    return ClientCredentials(
        token_url,
        client_id,
        secret,
        credentials_location=str(params.get("credentialsLocation") or "header"),
        scope=str(params["scope"]) if params.get("scope") else None,
        extra_headers=_strings(params, "extraHeaders"),
        form_items=_strings(params, "formItems"),
        ssl_context=context,
    )


def tls_context(
    ca_file: str | None = None,
    client_certificate: str | None = None,
    client_key: str | None = None,
    *,
    ca_data: str | None = None,
) -> ssl.SSLContext:
    """Default verification (system CAs) plus ``ca_file`` and ``ca_data`` (PEM text) if given; with a PEM
    client certificate and key, for mutual TLS. AuthError (not transient) when a file or PEM cannot be
    loaded."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise AuthError(f"the CA bundle {ca_file} cannot be loaded ({exc}).", transient=False) from exc
    if ca_data:
        load_ca_data(context, ca_data)
    if client_certificate or client_key:
        if not (client_certificate and client_key):
            raise AuthError("mutual TLS needs both a client certificate and its key.", transient=False)
        _load_client_certificate(context, client_certificate, client_key)
    return context


CA_CERTIFICATE = "caCertificate"
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


def load_ca_data(context: ssl.SSLContext, ca_data: str) -> None:
    """Trust the certificates of the PEM bundle ``ca_data`` in ``context``. AuthError (not transient) when
    it is not one or more PEM certificates."""
    if _PEM_BEGIN not in ca_data:
        raise AuthError(
            f"{CA_CERTIFICATE} must be one or more PEM certificates ({_PEM_BEGIN} ...).", transient=False
        )
    try:
        context.load_verify_locations(cadata=ca_data)
    except (ValueError, ssl.SSLError) as exc:
        raise AuthError(
            f"{CA_CERTIFICATE} must be one or more PEM certificates ({_PEM_BEGIN} ...); it cannot be loaded.",
            transient=False,
        ) from exc


def check_ca_data(ca_data: object) -> str | None:
    """What is wrong with a ``caCertificate`` value (None: nothing), without echoing it."""
    if ca_data is None or ca_data == "":
        return None
    if not isinstance(ca_data, str):
        return "must be a PEM text"
    try:
        load_ca_data(ssl.create_default_context(), ca_data)
    except AuthError:
        return f"must be one or more PEM certificates ({_PEM_BEGIN} ... -----END CERTIFICATE-----)"
    return None


def _load_client_certificate(context: ssl.SSLContext, certificate: str, key: str) -> None:
    # load_cert_chain reads files only: the PEMs live in a private directory for the length of the call
    with tempfile.TemporaryDirectory(prefix="headwater-tls-") as directory:  # created 0700
        os.chmod(directory, 0o700)
        paths = []
        for name, text in (("client.pem", certificate), ("client-key.pem", key)):
            path = os.path.join(directory, name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
            paths.append(path)
        try:
            # an encrypted key gets an empty password instead of a prompt on the server's terminal
            context.load_cert_chain(paths[0], paths[1], password=lambda: b"")
        except (OSError, ssl.SSLError) as exc:
            raise AuthError(
                "the client certificate or key cannot be loaded: both must be PEM, the key unencrypted and "
                "matching the certificate.",
                transient=False,
            ) from exc


def _required(params: Mapping[str, Any], spec_name: str, *names: str) -> list[str]:
    missing = [name for name in names if not isinstance(params.get(name), str) or not params.get(name)]
    if missing:
        raise AuthError(f"{spec_name} needs {', '.join(missing)}.", transient=False)
    return [str(params[name]) for name in names]


def _strings(params: Mapping[str, Any], name: str) -> dict[str, str]:
    value = params.get(name) or {}
    if not isinstance(value, Mapping):
        raise AuthError(f"{name} must be an object of strings.", transient=False)
    return {str(k): str(v) for k, v in value.items()}


def _seconds(value: object) -> float:
    try:
        seconds = float(value) if isinstance(value, int | float | str) else DEFAULT_EXPIRES_IN
    except ValueError:
        return DEFAULT_EXPIRES_IN
    return seconds if seconds == seconds else DEFAULT_EXPIRES_IN  # NaN


def _oauth_error(body: bytes) -> str:
    """': error: description' from an RFC 6749 error answer, or ''."""
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(answer, dict) or not answer.get("error"):
        return ""
    said = f": {str(answer['error'])[:100]}"
    if answer.get("error_description"):
        said += f": {str(answer['error_description'])[:300]}"
    return said

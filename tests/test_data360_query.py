"""Salesforce's own Data Cloud connector (PyPI ``salesforce-cdp-connector``), unchanged, against a Headwater
server that speaks HTTPS with a throwaway CA: it connects with the JWT bearer flow (its assertion lives an
hour), client credentials and username-password, lists the data space's tables, and reads ingested rows
batch by batch through the Data Cloud Query API. Only the host and the credentials differ from a script
written for Salesforce; the CA reaches the client through REQUESTS_CA_BUNDLE (and httpx's SSL_CERT_FILE,
for the test's own setup calls).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from headwater.services.data360.keys import generate
from tests.conftest import make_settings
from tests.streaming_helpers import streaming, wait_rows
from tests.support import ApiClient, LiveServer, fresh_sandbox_client, role_client, start_server, token_for
from tests.test_data360_connectors import acme_schema, create_connector, deploy, upload
from tests.test_data360_identity import DOC_SCOPES, create_app, create_user
from tests.test_data360_ingest import cart, identity
from tests.test_oauth_consent import PASSWORD, Consent, sign_in

with warnings.catch_warnings():
    # 1.0.20 announces its successor (salesforce-datacloud-connector) on import; it is what users run today
    warnings.simplefilter("ignore", DeprecationWarning)
    from salesforcecdpconnector.connection import SalesforceCDPConnection
    from salesforcecdpconnector.exceptions import Error as ConnectorError

# The connector reads query batches with verify=False (its own choice): urllib3 warns about each.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
BATCH_ROWS = 10
CARTS = 25  # three batches


# --- a throwaway CA and a server certificate for 127.0.0.1 ---
def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca_and_server_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Headwater test CA"))
        .issuer_name(_name("Headwater test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


# --- the server, a data space with ingested rows, an app and its user ---
@dataclass
class Space:
    server: LiveServer
    api: ApiClient
    other: ApiClient  # another data space of the organization
    user: dict[str, Any]
    app: dict[str, Any]
    private_key: bytes
    engagement: str  # the Engagement stream's DLO name
    profile: str

    def connect(self, dataspace: str | None = None, **credentials: Any) -> SalesforceCDPConnection:
        return SalesforceCDPConnection(
            self.server.base_url, dataspace=dataspace or self.api.sandbox_name, **credentials
        )

    def jwt(self, dataspace: str | None = None) -> SalesforceCDPConnection:
        return self.connect(
            dataspace,
            username=self.user["username"],
            client_id=self.app["consumerKey"],
            private_key=self.private_key.decode(),
        )


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    folder = tmp_path_factory.mktemp("dcquery-tls")
    ca, certificate, key = make_ca_and_server_certificate(folder)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REQUESTS_CA_BUNDLE", str(ca))  # the connector (requests)
        env.setenv("SSL_CERT_FILE", str(ca))  # this test's httpx calls
        settings = make_settings(
            tmp_path_factory.mktemp("dcquery-home"),
            tls_cert_file=certificate,
            tls_key_file=key,
            data360_query_batch_rows=BATCH_ROWS,
        )
        server = start_server(settings)
        try:
            yield _set_up(server, folder)
        finally:
            server.stop()
            server.services.close()


def _set_up(server: LiveServer, folder: Path) -> Space:
    assert server.base_url.startswith("https://")
    c = server.creds
    token = token_for(server.base_url, c["apiKey"], c["clientSecret"])
    api = fresh_sandbox_client(server, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"], token)
    other = fresh_sandbox_client(server, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"], token)
    user = create_user(api, password=PASSWORD)
    keys = generate(folder / "app-keys")
    app = create_app(
        api,
        keys.certificate.read_text(),
        scopes=[*DOC_SCOPES, "cdp_query_api"],
        approvedUsers=[user["username"]],
        clientCredentialsFlowEnabled=True,
        clientCredentialsUser=user["username"],
        usernamePasswordFlowEnabled=True,
    )
    connector = create_connector(api, "Acme Query")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    made = deploy(api, connector["id"], ["cartAdd", "identity"], api.sandbox_name, refreshCadenceSeconds=0)
    assert made.status_code == 201, made.text
    streams = {s["category"]: s for s in made.json()["dataStreams"]}
    ingestion, _ = server.services.identity.issue_ingestion_token(
        api.org_id, _sandbox_id(server, api), user["username"]
    )
    events = [cart(f"e-{n:02d}", quantity=n) for n in range(CARTS)] + [identity("device-1")]
    with streaming(server, api):
        sent = httpx.post(
            f"{server.base_url}/server/events/{connector['sourceId']}",
            json={"events": events},
            headers={"Authorization": f"Bearer {ingestion}"},
        )
        assert sent.status_code == 204, sent.text
        wait_rows(server, api, streams["Engagement"]["dataSetId"], CARTS, timeout=30)
        wait_rows(server, api, streams["Profile"]["dataSetId"], 1, timeout=30)
    return Space(
        server,
        api,
        other,
        user,
        app,
        keys.private_key.read_bytes(),
        streams["Engagement"]["dataLakeObjectInfo"]["name"] + "__dll",
        streams["Profile"]["dataLakeObjectInfo"]["name"] + "__dll",
    )


def _sandbox_id(server: LiveServer, api: ApiClient) -> str:
    sandbox = server.services.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    return sandbox.id


# --- the connector's documented ways of connecting ---
def test_jwt_bearer_reads_ingested_rows_batch_by_batch(space: Space) -> None:
    cursor = space.jwt().cursor()
    cursor.execute(f"SELECT _id, _headwater.quantity AS quantity FROM {space.engagement} ORDER BY _id")
    assert len(cursor.data) == BATCH_ROWS and cursor.has_next is True  # the first batch only
    rows = cursor.fetchall()
    assert rows == [[f"e-{n:02d}", n] for n in range(CARTS)]
    assert [(d[0], d[1]) for d in cursor.description] == [("_id", "VARCHAR"), ("quantity", "DOUBLE")]


def test_pandas_dataframe_from_arrow_batches(space: Space) -> None:
    frame = space.jwt().get_pandas_dataframe(
        f"SELECT _id, _headwater.quantity AS quantity, timestamp FROM {space.engagement} ORDER BY _id"
    )
    assert list(frame["_id"]) == [f"e-{n:02d}" for n in range(CARTS)]  # every batch
    assert list(frame["quantity"]) == list(range(CARTS))
    assert str(frame["timestamp"].dtype).startswith("datetime64")


def test_client_credentials_and_username_password(space: Space) -> None:
    app = space.app
    secret = {"client_id": app["consumerKey"], "client_secret": app["consumerSecret"]}
    by_secret = space.connect(**secret).cursor()
    by_secret.execute(f"SELECT count(*) AS n FROM {space.engagement}")
    assert by_secret.fetchall() == [[CARTS]]
    by_password = space.connect(username=space.user["username"], password=PASSWORD, **secret).cursor()
    by_password.execute(f"SELECT _headwater.email AS email FROM {space.profile}")
    assert by_password.fetchall() == [["device-1@example.com"]]
    assert by_password.description[0][:2] == ("email", "VARCHAR")


def test_refresh_token_and_core_token(space: Space) -> None:
    """The connector's other way in: tokens of the web server flow (a user's consent in the console)."""
    browser = sign_in(space.server, space.user["username"])
    try:
        tokens = Consent(space.server, browser, space.user, space.app).tokens()
    finally:
        browser.close()
    secret = {"client_id": space.app["consumerKey"], "client_secret": space.app["consumerSecret"]}
    by_core = space.connect(
        core_token=tokens["access_token"], refresh_token=tokens["refresh_token"], **secret
    )
    cursor = by_core.cursor()
    cursor.execute(f"SELECT count(*) FROM {space.engagement}")
    assert cursor.fetchall() == [[CARTS]]
    # the connector revoked that access token after its exchange: the refresh token gets a new one
    by_refresh = space.connect(refresh_token=tokens["refresh_token"], **secret).cursor()
    by_refresh.execute(f"SELECT count(*) FROM {space.profile}")
    assert by_refresh.fetchall() == [[1]]


def test_list_tables(space: Space) -> None:
    tables = {t.name: t for t in space.jwt().list_tables()}
    assert set(tables) == {space.engagement, space.profile}
    carts = tables[space.engagement]
    assert carts.category == "Engagement" and tables[space.profile].category == "Profile"
    fields = {f.name: f.type for f in carts.fields}
    assert fields["_id"] == "STRING"
    assert fields["_headwater.quantity"] == "NUMBER" and fields["_headwater.eventId"] == "STRING"
    assert fields["timestamp"] == "DATE_TIME"
    only = space.jwt().list_tables(table_name=space.profile)
    assert [t.name for t in only] == [space.profile]


def test_another_data_space_does_not_see_these_tables(space: Space) -> None:
    elsewhere = space.jwt(dataspace=space.other.sandbox_name)
    assert elsewhere.list_tables() == []
    with pytest.raises(ConnectorError) as refused:
        elsewhere.cursor().execute(f"SELECT * FROM {space.engagement}")
    assert "status=400" in str(refused.value) and space.engagement in str(refused.value)


def test_bad_sql_answers_salesforce_errors(space: Space) -> None:
    with pytest.raises(ConnectorError) as refused:
        space.jwt().cursor().execute(f"SELEC _id FROM {space.engagement}")
    assert "status=400" in str(refused.value) and "errorCode" in str(refused.value)
    auth = space.jwt().authentication_helper
    token, instance = auth.get_token()
    assert instance == space.server.base_url.removeprefix("https://")  # a host, as Salesforce answers
    url = f"https://{instance}/api/v2/query"
    cases = [
        ({"sql": f"SELECT nope FROM {space.engagement}"}, 400),
        ({"sql": "SELECT * FROM read_csv('/etc/passwd')"}, 400),
        ({"query": "SELECT 1"}, 400),
    ]
    for body, status in cases:
        answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status, answer.text
        [error] = answer.json()
        assert set(error) == {"errorCode", "message"} and error["errorCode"] == "BAD_REQUEST"
    anonymous = httpx.post(url, json={"sql": "SELECT 1"})
    assert anonymous.status_code == 401
    assert anonymous.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    foreign = httpx.get(f"{url}/{'0' * 32}-10", headers={"Authorization": f"Bearer {token}"})
    assert foreign.status_code == 404 and foreign.json()[0]["errorCode"] == "NOT_FOUND"


# --- the token endpoint's refusals of the two secret-based flows ---
def _token(space: Space, **form: str) -> httpx.Response:
    return httpx.post(f"{space.server.base_url}/services/oauth2/token", data=form)


def test_secret_flows_are_off_unless_the_app_allows_them(space: Space) -> None:
    plain = create_app(space.api, space.app["certificate"])  # neither flag
    secret = {"client_id": plain["consumerKey"], "client_secret": plain["consumerSecret"]}
    for grant in ("client_credentials", "password"):
        refused = _token(
            space, grant_type=grant, username=space.user["username"], password=PASSWORD, **secret
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "unsupported_grant_type", refused.text
    ours = {"client_id": space.app["consumerKey"]}
    wrong_secret = _token(space, grant_type="client_credentials", client_secret="nope", **ours)
    assert wrong_secret.json()["error"] == "invalid_client"
    ours["client_secret"] = space.app["consumerSecret"]
    wrong_password = _token(
        space, grant_type="password", username=space.user["username"], password="wrong password", **ours
    )
    assert wrong_password.json() == {"error": "invalid_grant", "error_description": "authentication failure"}
    unknown = _token(space, grant_type="client_credentials", client_id="x.y", client_secret="z")
    assert unknown.json()["error"] == "invalid_client_id"


def test_client_credentials_need_an_execution_user_an_admin_names(space: Space) -> None:
    apps = "/data/core/identity/externalClientApps"
    body = {"name": "Run-as", "callbackUrl": "https://localhost/cb", "scopes": ["cdp_ingest_api"]}
    refused = space.api.post(apps, json={**body, "clientCredentialsFlowEnabled": True})
    assert refused.status_code == 400
    assert [e["path"] for e in refused.json()["report"]["errors"]] == ["clientCredentialsUser"]
    with role_client(space.server, space.api, "Developer") as developer:  # manage-apps, not manage-users
        own = developer.post(apps, json={**body, "clientCredentialsUser": space.user["username"]})
        assert own.status_code == 403 and "clientCredentialsUser" in own.json()["detail"]
        assert developer.post(apps, json={**body, "usernamePasswordFlowEnabled": True}).status_code == 201


def test_assertions_may_live_an_hour_not_more(space: Space) -> None:
    import time

    import jwt

    def assertion(ahead: int) -> str:
        claims = {
            "iss": space.app["consumerKey"],
            "sub": space.user["username"],
            "aud": space.server.base_url,
            "exp": int(time.time()) + ahead,
        }
        return jwt.encode(claims, space.private_key, algorithm="RS256")

    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert _token(space, grant_type=grant, assertion=assertion(3600)).status_code == 200
    refused = _token(space, grant_type=grant, assertion=assertion(2 * 3600))
    assert refused.json()["error"] == "invalid_grant" and "1 hour" in refused.json()["error_description"]


def test_junk_never_causes_a_server_error(space: Space) -> None:
    token, instance = space.jwt().authentication_helper.get_token()
    auth = {"Authorization": f"Bearer {token}"}
    base = f"https://{instance}"
    bodies: list[Any] = [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"sql": 5}',
        b'{"sql": ""}',
        b'{"sql": "SELECT 1; SELECT 2"}',
    ]
    for raw in bodies:
        answer = httpx.post(
            f"{base}/api/v2/query", content=raw, headers={**auth, "Content-Type": "application/json"}
        )
        assert answer.status_code == 400, (raw, answer.text)
        assert answer.json()[0]["errorCode"] == "BAD_REQUEST"
    for batch in ("x" * 5000, "..%2F..%2Fetc%2Fpasswd", f"{'a' * 32}-99999999999999", "-1"):
        answer = httpx.get(f"{base}/api/v2/query/{batch}", headers=auth)
        assert answer.status_code == 404, (batch, answer.text)
    for params in ({"entityType": "Nope"}, {"entityName": "\x00"}, {"entityCategory": "x" * 3000}):
        answer = httpx.get(f"{base}/api/v1/metadata", params=params, headers=auth)
        assert answer.status_code in (200, 400), (params, answer.text)
    platform = httpx.get(f"{base}/api/v1/metadata", headers={"Authorization": f"Bearer {space.api.token}"})
    assert platform.status_code == 401  # a platform token is not a Data 360 token


def test_tls_settings_go_together(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from headwater.settings import Settings

    _, certificate, key = make_ca_and_server_certificate(tmp_path)
    assert Settings(home=tmp_path, tls_cert_file=certificate, tls_key_file=key).base_url.startswith(
        "https://"
    )
    for wrong in (
        {"tls_cert_file": certificate},
        {"tls_cert_file": certificate, "tls_key_file": tmp_path / "no"},
    ):
        with pytest.raises(ValidationError, match="HEADWATER_TLS"):
            Settings(home=tmp_path, **wrong)  # type: ignore[arg-type]


def test_password_guesses_are_throttled_like_console_sign_ins(space: Space) -> None:
    guessed = create_user(space.api, password=PASSWORD)
    form = {
        "grant_type": "password",
        "client_id": space.app["consumerKey"],
        "client_secret": space.app["consumerSecret"],
        "username": guessed["username"],
    }
    for _ in range(5):  # the console's free failures per address and username
        assert _token(space, password="wrong password", **form).json()["error_description"] == (
            "authentication failure"
        )
    throttled = _token(space, password=PASSWORD, **form)  # even the right password waits now
    assert (
        throttled.status_code == 400 and "too many failed attempts" in throttled.json()["error_description"]
    )


def test_queries_need_the_cdp_query_api_scope(space: Space) -> None:
    def jwt_through(app: dict[str, Any]) -> SalesforceCDPConnection:
        key = space.private_key.decode()
        return space.connect(username=space.user["username"], client_id=app["consumerKey"], private_key=key)

    approved = {"approvedUsers": [space.user["username"]]}
    ingest_only = create_app(space.api, space.app["certificate"], **approved)  # document 000's scopes
    with pytest.raises(ConnectorError) as refused:
        jwt_through(ingest_only).cursor().execute(f"SELECT * FROM {space.engagement}")
    assert "status=403" in str(refused.value) and "cdp_query_api" in str(refused.value)
    query_only = create_app(space.api, space.app["certificate"], scopes=["api", "cdp_query_api"], **approved)
    token, instance = jwt_through(query_only).authentication_helper.get_token()
    sent = httpx.post(
        f"https://{instance}/api/v1/ingest/sources/Acme_Query/cartAdd",
        json={"data": []},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sent.status_code == 403 and "cdp_ingest_api" in sent.json()["detail"]

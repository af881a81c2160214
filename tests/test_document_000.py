"""Document 000 end to end, as a user walks it: a key pair and certificate from `headwater keys create`,
an external client app with the JWT bearer flow, an access token and an ingestion token, a server-to-server
connector with its schema (a refused update changes nothing), data streams in a data space, and events
sent with the ingestion token landing in the streams' datasets."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path

import httpx
import jwt

from tests.streaming_helpers import streaming, wait_rows
from tests.support import ApiClient, LiveServer
from tests.test_data360_connectors import SSOT, acme_schema
from tests.test_data360_identity import APPS, DOC_SCOPES, HEADWATER, USERS
from tests.test_data360_ingest import cart, identity


def test_document_000_server_to_server_ingestion_end_to_end(
    server: LiveServer, api: ApiClient, tmp_path: Path
) -> None:
    # Create the private/public key pair, the x509 certificate and the PKCS#8 private key.
    made = subprocess.run(
        [str(HEADWATER), "keys", "create", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    files = json.loads(made.stdout)
    certificate = Path(files["certificate"]).read_text()
    private_key = Path(files["privateKey"]).read_bytes()

    # The external client app: callback URL, the three scopes, JWT bearer flow with the certificate, no
    # PKCE, all users may self-authorize, relaxed IP restrictions. Note its consumer key.
    username = "integration@acme.example"
    # A User may send records (ingest-data); a user made without a role is a Viewer, who may not.
    assert api.post(USERS, json={"username": username, "roles": {"*": "User"}}).status_code == 201
    created = api.post(
        APPS,
        json={
            "name": "Acme server-to-server",
            "callbackUrl": "https://acme.example/oauth/callback",
            "scopes": DOC_SCOPES,
            "jwtBearerFlowEnabled": True,
            "certificate": certificate,
            "pkceRequired": False,
            "permittedUsers": "All users may self-authorize",
            "ipRelaxation": "Relax IP restrictions",
            # The document has the user authorize the app once in a browser; the JWT bearer flow needs that
            # approval, or (as here, with no browser) an organization admin's pre-approval of the user.
            "approvedUsers": [username],
        },
    )
    assert created.status_code == 201, created.text
    consumer_key = created.json()["consumerKey"]

    # The JWT bearer flow, then the exchange for a Data 360 token in the data space (this sandbox).
    claims = {
        "iss": consumer_key,
        "sub": username,
        "aud": server.settings.base_url,
        "exp": int(time.time()) + 170,
    }
    token = httpx.post(
        server.base_url + "/services/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": jwt.encode(claims, private_key, algorithm="RS256"),
        },
    )
    assert token.status_code == 200, token.text
    access = token.json()
    assert access["token_type"] == "Bearer" and "cdp_ingest_api" in access["scope"]
    exchanged = httpx.post(
        access["instance_url"] + "/services/a360/token",
        data={
            "grant_type": "urn:salesforce:grant-type:external:cdp",
            "subject_token": access["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "dataspace": api.sandbox_name,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    ingest = exchanged.json()
    bearer = {"Authorization": f"Bearer {ingest['access_token']}"}

    # The connector: app name, Server to Server; the schema uploaded, previewed, and kept as uploaded.
    connector = api.post(
        f"{SSOT}/connections",
        json={
            "label": "Acme Web Shop",
            "connectorType": "StreamingApp",
            "streamingAppType": "ServerToServer",
        },
    )
    assert connector.status_code == 201, connector.text
    connector_id, source_id = connector.json()["id"], connector.json()["sourceId"]
    schema = acme_schema()
    preview = api.post(f"{SSOT}/connections/{connector_id}/schema/actions/preview", json=schema)
    assert preview.status_code == 200, preview.text
    assert api.put(f"{SSOT}/connections/{connector_id}/schema", json=schema).status_code == 200
    stored = api.get(f"{SSOT}/connections/{connector_id}/schema")
    assert stored.status_code == 200 and stored.json() == schema

    # Update Schema may only add: removing a field is refused and nothing changes.
    shrunk = copy.deepcopy(schema)
    shrunk["records"][0]["externalDataTranFields"].pop()
    refused = api.put(f"{SSOT}/connections/{connector_id}/schema", json=shrunk)
    assert refused.status_code == 400, refused.text
    assert api.get(f"{SSOT}/connections/{connector_id}/schema").json() == schema

    # Data streams: New, the connector, its events, the data space, Deploy (continuous cadence here).
    deployed = api.post(
        f"{SSOT}/data-streams",
        json={
            "connectionId": connector_id,
            "events": ["cartAdd", "pageView", "identity"],
            "dataspace": api.sandbox_name,
            "refreshCadenceSeconds": 0,
        },
    )
    assert deployed.status_code == 201, deployed.text
    streams = {s["category"]: s for s in deployed.json()["dataStreams"]}
    assert set(streams) == {"Engagement", "Profile"}

    # Events from the server, with the ingestion token, land in the streams' datasets.
    with streaming(server, api):
        sent = httpx.post(
            f"http://{ingest['instance_url']}/server/events/{source_id}",  # a host, as Salesforce answers
            json={"events": [cart("evt-1"), cart("evt-1"), identity("device-7")]},
            headers=bearer,
        )
        assert sent.status_code == 204, sent.text
        carts = wait_rows(server, api, streams["Engagement"]["dataSetId"], 1)
        people = wait_rows(server, api, streams["Profile"]["dataSetId"], 1)
    assert [r["_id"] for r in carts] == ["evt-1"]
    assert people[0]["_headwater"]["email"] == "device-7@example.com"


def test_document_000_ingestion_needs_the_exchanged_token(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.base_url}/server/events/00000000-0000-0000-0000-000000000000", json={"events": []}
    )
    assert response.status_code == 401

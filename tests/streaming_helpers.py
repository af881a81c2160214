"""Building blocks of the streaming tests: an event schema, its dataset, and streaming flows into it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from headwater.runtime.streamsupervisor import StreamingSupervisor
from headwater.stores.metadata import Scope
from tests.flows_helpers import created_id, target_connection
from tests.support import ApiClient, LiveServer, wait_until

FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry"
HTTP_API = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
CUSTOMERIO = "96479064-7b8a-4d69-b9ed-21c5683837ea"
STREAMING_SPEC = "e77fde5a-22a8-11ed-861d-0242ac120002"
HTTP_NO_MAPPING = "d8a6f005-7eaf-4153-983e-e8574508b877"
HTTP_MAPPING = "c1a19761-d2c7-4702-b9fa-fe91f0613e81"
EVENT_FIELDS = ("cio_id", "email", "event_id", "metric", "object_type", "sent_at")


def scope_of(server: LiveServer, api: ApiClient) -> Scope:
    org = api.headers["x-gw-ims-org-id"]
    sandbox = server.services.store.get_sandbox(org, api.headers["x-sandbox-name"])
    assert sandbox is not None
    return Scope(org, sandbox.id)


class Supervisor(Protocol):
    def run_forever(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Supervisor)


@contextmanager
def supervising(supervisor: S) -> Iterator[S]:
    """Run a supervisor (micro-batchers, activation delivery) in a thread of this process while the
    block runs; stop it and wait for it afterwards."""
    thread = threading.Thread(target=supervisor.run_forever, daemon=True)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(timeout=15)


def streaming(server: LiveServer, api: ApiClient) -> ContextManager[StreamingSupervisor]:
    """Micro-batchers for the streaming flows of ``api``'s sandbox (only), running in this process."""
    return supervising(StreamingSupervisor(server.services, scopes={scope_of(server, api)}))


def event_schema(api: ApiClient, title: str = "Webhook events") -> str:
    tenant = "_headwater"
    fields = {name: {"type": "string", "title": name} for name in EVENT_FIELDS}
    fields["amount"] = {"type": "integer", "title": "amount"}
    group = api.post(
        f"{SR}/tenant/fieldgroups",
        json={
            "title": f"{title} fields",
            "description": "",
            "type": "object",
            "meta:intendedToExtend": ["https://ns.adobe.com/xdm/context/experienceevent"],
            "definitions": {"hook": {"properties": {tenant: {"type": "object", "properties": fields}}}},
            "allOf": [{"$ref": "#/definitions/hook"}],
        },
    )
    assert group.status_code == 201, group.text
    schema = api.post(
        f"{SR}/tenant/schemas",
        json={
            "type": "object",
            "title": title,
            "description": "",
            "allOf": [
                {"$ref": "https://ns.adobe.com/xdm/context/experienceevent"},
                {"$ref": group.json()["$id"]},
            ],
            "meta:class": "https://ns.adobe.com/xdm/context/experienceevent",
        },
    )
    assert schema.status_code == 201, schema.text
    return str(schema.json()["$id"])


def dataset_for(api: ApiClient, schema_id: str, name: str = "Events") -> str:
    response = api.post(
        "/data/foundation/catalog/dataSets",
        json={
            "name": name,
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"},
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()[0].split("/")[-1])


def webhook_mapping(api: ApiClient, schema_id: str, tenant: str = "_headwater") -> str:
    mappings = [
        ("data.identifiers.cio_id", "cio_id"),
        ("data.identifiers.email", "email"),
        ("event_id", "event_id"),
        ("metric", "metric"),
        ("object_type", "object_type"),
    ]
    response = api.post(
        "/data/foundation/conversion/mappingSets",
        json={
            "outputSchema": {
                "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
            },
            "mappings": [
                {
                    "destinationXdmPath": f"{tenant}.{dest}",
                    "sourceAttribute": src,
                    "identity": False,
                    "version": 0,
                }
                for src, dest in mappings
            ]
            + [
                {
                    "sourceType": "EXPRESSION",
                    "source": "to_integer(data.amount)",
                    "destination": f"{tenant}.amount",
                }
            ],
        },
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def customerio_flow(
    api: ApiClient, signing_key: str | None = None, name: str = "Customer.io"
) -> dict[str, Any]:
    """Document 004's pipeline: a Customer.io source (with a base connection holding a signing key when
    given), an event dataset, a mapping of the webhook's nested attributes, and the streaming flow."""
    body: dict[str, Any] = {
        "name": f"{name} source",
        "connectionSpec": {"id": CUSTOMERIO, "version": "1.0"},
        "data": {"format": "json"},
    }
    if signing_key is not None:
        base = api.post(
            f"{FS}/connections",
            json={
                "name": f"{name} webhook key",
                "connectionSpec": {"id": CUSTOMERIO, "version": "1.0"},
                "auth": {"specName": "Webhook Signing Key", "params": {"webhookSigningKey": signing_key}},
            },
        )
        assert base.status_code == 201, base.text
        body["baseConnectionId"] = base.json()["id"]
    source = created_id(api.post(f"{FS}/sourceConnections", json=body))
    schema_id = event_schema(api, f"{name} events")
    dataset_id = dataset_for(api, schema_id, f"{name} events")
    target = target_connection(api, schema_id, dataset_id)
    mapping = webhook_mapping(api, schema_id)
    flow = api.post(
        f"{FS}/flows",
        json={
            "name": f"{name} flow",
            "flowSpec": {"id": STREAMING_SPEC, "version": "1.0"},
            "sourceConnectionIds": [source],
            "targetConnectionIds": [target],
            "transformations": [{"name": "Mapping", "params": {"mappingId": mapping, "mappingVersion": 0}}],
        },
    )
    assert flow.status_code == 201, flow.text
    flow_id = flow.json()["id"]
    got = api.get(f"{FS}/flows/{flow_id}").json()["items"][0]
    return {
        "flowId": flow_id,
        "datasetId": dataset_id,
        "schemaId": schema_id,
        "inletUrl": got["options"]["inletUrl"],
    }


def http_api_source(
    api: ApiClient, name: str = "HTTP API", data_type: str = "xdm", auth_required: bool = False
) -> tuple[str, dict[str, Any], str]:
    """An HTTP API streaming connection and its source connection: (connection id, auth params with the
    inlet, source connection id)."""
    conn = api.post(
        f"{FS}/connections",
        json={
            "name": name,
            "connectionSpec": {"id": HTTP_API, "version": "1.0"},
            "auth": {
                "specName": "Streaming Connection",
                "params": {
                    "name": name,
                    "sourceId": "web",
                    "dataType": data_type,
                    "authenticationRequired": auth_required,
                },
            },
        },
    )
    assert conn.status_code == 201, conn.text
    conn_id = conn.json()["id"]
    params = api.get(f"{FS}/connections/{conn_id}").json()["items"][0]["auth"]["params"]
    source = created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": f"{name} source",
                "baseConnectionId": conn_id,
                "connectionSpec": {"id": HTTP_API, "version": "1.0"},
                "data": {"format": "json"},
            },
        )
    )
    return conn_id, params, source


def http_api_flow(
    api: ApiClient, auth_required: bool = False, mapping: bool = False, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An HTTP API streaming connection (inlet on the connection) with a flow into an event dataset."""
    conn_id, params, source = http_api_source(api, "HTTP API", "xdm", auth_required)
    schema_id = event_schema(api, "HTTP events")
    dataset_id = dataset_for(api, schema_id, "HTTP events")
    target = target_connection(api, schema_id, dataset_id)
    body: dict[str, Any] = {
        "name": "HTTP API flow",
        "flowSpec": {"id": HTTP_MAPPING if mapping else HTTP_NO_MAPPING, "version": "1.0"},
        "sourceConnectionIds": [source],
        "targetConnectionIds": [target],
        "options": options or {},
    }
    if mapping:
        body["transformations"] = [
            {"name": "Mapping", "params": {"mappingId": webhook_mapping(api, schema_id), "mappingVersion": 0}}
        ]
    flow = api.post(f"{FS}/flows", json=body)
    assert flow.status_code == 201, flow.text
    return {
        "connectionId": conn_id,
        "flowId": flow.json()["id"],
        "datasetId": dataset_id,
        "schemaId": schema_id,
        "inletId": params["inletId"],
        "inletUrl": params["inletUrl"],
    }


def rows(
    server: LiveServer, api: ApiClient, dataset_id: str, sql: str = "select * from dataset"
) -> list[dict[str, Any]]:
    lake = server.services.lake
    table = lake.load(scope_of(server, api), dataset_id)
    if table is None:
        return []
    return list(lake.query(table, sql).to_pylist())


def wait_rows(
    server: LiveServer, api: ApiClient, dataset_id: str, count: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll until the dataset holds ``count`` rows (and return them)."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal found
        found = rows(server, api, dataset_id)
        return len(found) >= count

    wait_until(enough, timeout=timeout, interval=0.1)
    return found


def cio_event(
    event_id: str, email: str = "ada@example.com", metric: str = "sent", amount: str = "3"
) -> dict[str, Any]:
    """A Customer.io reporting-webhook payload."""
    return {
        "data": {
            "action_id": 36,
            "campaign_id": 23,
            "customer_id": "user-123",
            "delivery_id": "RAECAAFwnUSneIa0ZXkmq8EdkAM==",
            "identifiers": {"cio_id": "d9c106000001", "email": email, "id": "user-123"},
            "recipient": email,
            "subject": "Did you get that thing I sent you?",
            "amount": amount,
        },
        "event_id": event_id,
        "metric": metric,
        "object_type": "email",
        "timestamp": 1613063089,
    }

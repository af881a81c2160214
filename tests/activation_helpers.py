"""Building blocks of the destination and activation tests: destinations on the sink, activation flows,
and an in-process activation supervisor scoped to one test's sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from typing import Any

from headwater.runtime.delivery.supervisor import ActivationSupervisor
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.streaming_helpers import http_api_source, scope_of, supervising
from tests.support import ApiClient, LiveServer

FS = "/data/foundation/flowservice"
HTTP_DESTINATION = "ce55fc04-f79b-4668-a8b7-2565a5c65ad4"
ACTIVATION = "cf0ccb51-d329-4dd2-a912-d3c87e068aa4"
DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
BODY = '{"email": "${email}", "name": "${name}", "amount": ${amount}}'


def connection_body(
    name: str = "ESP", auth: dict[str, Any] | None = None, icon: str = "email"
) -> dict[str, Any]:
    return {
        "name": name,
        "description": "Abandoned cart emails",
        "icon": icon,
        "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
        "auth": auth or {"specName": "None", "params": {}},
    }


def request_params(url: str, body: str | None = BODY, **extra: Any) -> dict[str, Any]:
    return {"method": "POST", "url": url, "body": body, **extra}


def destination(
    api: ApiClient,
    url: str,
    *,
    auth: dict[str, Any] | None = None,
    body: str | None = BODY,
    name: str = "ESP",
    **extra: Any,
) -> tuple[str, str]:
    """(connection id, target connection id) of a saved destination."""
    conn = created_id(api.post(f"{FS}/connections", json=connection_body(name, auth)))
    target = created_id(
        api.post(
            f"{FS}/targetConnections",
            json={
                "name": f"{name} request",
                "baseConnectionId": conn,
                "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
                "params": request_params(url, body, **extra),
            },
        )
    )
    return conn, target


def oauth(sink: Any, location: str = "header", **params: Any) -> dict[str, Any]:
    return {
        "specName": "OAuth 2 Client Credentials",
        "params": {
            "accessTokenUrl": sink.token_url,
            "clientId": sink.client_id,
            "clientSecret": sink.client_secret,
            "credentialsLocation": location,
            **params,
        },
    }


def basic(sink: Any) -> dict[str, Any]:
    return {
        "specName": "Basic Authentication",
        "params": {"username": sink.username, "password": sink.password},
    }


BINDINGS = {
    "email": {"source": "email"},
    "name": {"expression": 'concat(first, " ", last)'},
    "amount": {"source": "order.amount"},
}


def inlet_source(api: ApiClient) -> tuple[str, str]:
    """(source connection id, inlet URL path) of an HTTP API streaming connection."""
    _, params, source = http_api_source(api, "Web events", "raw")
    return source, "/collection/" + params["inletId"]


def dataset_source(api: ApiClient, dataset_id: str) -> str:
    return created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": "Dataset source",
                "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
                "data": {"format": "parquet"},
                "params": {"dataSetId": dataset_id},
            },
        )
    )


def activation_body(
    source: str, target: str, bindings: dict[str, Any] | None = None, name: str = "Activation", **options: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "flowSpec": {"id": ACTIVATION, "version": "1.0"},
        "sourceConnectionIds": [source],
        "targetConnectionIds": [target],
        "transformations": [{"name": "Variables", "params": {"bindings": bindings or BINDINGS}}],
        "options": options,
    }


def activation_flow(
    api: ApiClient, source: str, target: str, bindings: dict[str, Any] | None = None, **options: Any
) -> str:
    return created_id(api.post(f"{FS}/flows", json=activation_body(source, target, bindings, **options)))


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "first": "Ada", "last": f"L{n}", "order": {"amount": n}, **extra}


def activating(server: LiveServer, api: ApiClient) -> ContextManager[ActivationSupervisor]:
    """Activation delivery for the streaming activation flows of ``api``'s sandbox, in this process."""
    return supervising(ActivationSupervisor(server.services, scopes={scope_of(server, api)}))


def dead_letters(api: ApiClient, flow_id: str) -> list[dict[str, Any]]:
    response = api.get(f"{FS}/deadLetters", params={"property": f"flowId=={flow_id}"})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def flow_runs(api: ApiClient, flow_id: str) -> list[dict[str, Any]]:
    response = api.get(f"{FS}/runs", params={"property": f"flowId=={flow_id}"})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def delivery_totals(api: ApiClient, flow_id: str) -> dict[str, int]:
    totals = {"delivered": 0, "retried": 0, "failed": 0, "deadLettered": 0}
    for run in flow_runs(api, flow_id):
        summary = run["metrics"].get("deliverySummary") or {}
        for key in totals:
            totals[key] += int(summary.get(key) or 0)
    return totals


@contextmanager
def echoing_sink(server: LiveServer, client_secret: str) -> Iterator[SinkFake]:
    """An OAuth sink with ``client_secret``, trusted for outbound TLS by ``server`` while it runs, that
    answers every request with 400 and the request echoed (a careless API)."""
    with SinkFake(client_secret=client_secret) as fake:
        settings = server.services.settings
        before = settings.outbound_ca_file
        settings.outbound_ca_file = fake.ca_file
        fake.echo(400)
        try:
            yield fake
        finally:
            settings.outbound_ca_file = before

"""Issue 12, section 2, upgrading: an HTTP destination saved before request secrets were sealed holds its
header values, URL query value and OAuth extra headers and form items in clear in the metadata store.
Until it is sealed, every answer masks those places by the rule (a Viewer never sees them); starting the
services seals them once, with the associated data a save uses now, and delivery still sends the real
values.

The attack: save a destination, rewrite its documents in the store as the old code stored them (plain
values, no mark), read it as a Viewer, Test Request it against a sink that echoes the request, start the
services again, then look for the planted strings in the stored documents and every answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete

from headwater.services import destination_secrets, destinations
from headwater.services.ids import new_etag
from headwater.stores.metadata import Resource
from headwater.stores.metadata.tables import upgrade_marks
from tests.activation_helpers import FS, HTTP_DESTINATION, connection_body, echoing_sink
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.support import ApiClient, LiveServer, role_client

MASK = "********"
VARIABLES = {"email": "ada@example.com", "name": "Ada", "amount": 3}


def planted(name: str) -> str:
    return f"planted-{name}-{uuid.uuid4().hex}"


@pytest.fixture
def echo_sink(server: LiveServer) -> Iterator[SinkFake]:
    """An OAuth sink trusted for outbound TLS, echoing every request with 400."""
    with echoing_sink(server, planted("clientSecret")) as fake:
        yield fake


def stored(server: LiveServer, kind: str, ident: str) -> Resource:
    return next(r for r in server.services.store.scan_kind(kind) if r.id == ident)


def rewrite(server: LiveServer, resource: Resource, doc: dict[str, Any]) -> None:
    replaced = Resource(
        resource.kind, resource.id, resource.scope, doc, new_etag(), resource.name, resource.alt_id,
        resource.created_at, resource.updated_at, refs=list(resource.refs),
    )  # fmt: skip
    server.services.store.update(replaced, resource.etag)


def as_old_code_stored(server: LiveServer, conn_id: str, target_id: str, plants: dict[str, str]) -> None:
    """The destination's documents as the code before the rule stored them: the request's params plain
    (normalized, default headers filled in), the connection's extra headers and form items plain (its
    client secret sealed as it always was), and neither document marked."""
    conn = stored(server, "connection", conn_id)
    auth = dict(conn.doc["auth"])
    auth.pop(destination_secrets.SEALED_MARK)
    auth["params"] = {
        **auth["params"],
        "extraHeaders": {"X-Partner-Key": plants["extraHeader"], "Accept": "application/json"},
        "formItems": {"resource_key": plants["formItem"], "audience": "esp"},
    }
    rewrite(server, conn, {**conn.doc, "auth": auth})
    target = stored(server, "targetConnection", target_id)
    doc = {k: v for k, v in target.doc.items() if k != destination_secrets.SEALED_MARK}
    params = {k: v for k, v in doc["params"].items() if k != "urlSecret"}
    params["url"] = params["url"].split("?")[0] + "?api_key=" + plants["query"] + "&n=${amount}"
    params["headers"] = {**params["headers"], "X-Api-Key": plants["header"], "X-Email": "${email}"}
    rewrite(server, target, {**doc, "params": params})


def found(text: str, plants: dict[str, str]) -> list[str]:
    return [place for place, value in plants.items() if value in text]


def test_a_destination_saved_before_sealing_is_masked_then_sealed_and_still_sends_its_secrets(
    server: LiveServer, api: ApiClient, echo_sink: SinkFake
) -> None:
    sink = echo_sink
    plants = {place: planted(place) for place in ("header", "query", "extraHeader", "formItem")}
    auth = {
        "specName": "OAuth 2 Client Credentials",
        "params": {
            "accessTokenUrl": sink.token_url,
            "clientId": sink.client_id,
            "clientSecret": sink.client_secret,
            "extraHeaders": {"X-Partner-Key": "placeholder-value", "Accept": "application/json"},
            "formItems": {"resource_key": "placeholder-value", "audience": {"value": "esp", "secret": False}},
        },
    }
    name = "Legacy " + uuid.uuid4().hex[:6]
    conn_id = created_id(api.post(f"{FS}/connections", json=connection_body(name, auth)))
    body = {
        "name": f"{name} request",
        "baseConnectionId": conn_id,
        "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
        "params": {"method": "POST", "url": sink.https_url + "/api/${email}", "body": '{"e": "${email}"}'},
    }
    target_id = created_id(api.post(f"{FS}/targetConnections", json=body))
    as_old_code_stored(server, conn_id, target_id, plants)
    docs = [stored(server, "connection", conn_id).doc, stored(server, "targetConnection", target_id).doc]
    assert sorted(found(json.dumps(docs), plants)) == sorted(plants)  # in clear, as an old version left it

    viewer = role_client(server, api, "Viewer")
    paths = (
        f"{FS}/connections/{conn_id}",
        f"{FS}/targetConnections/{target_id}",
        f"{FS}/connections?limit=100",
    )

    def check_answers_and_delivery() -> None:
        for client in (api, viewer):
            for path in paths:
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.text)
                assert found(answer.text, plants) == [], answer.text[:2000]
        shown = viewer.get(f"{FS}/targetConnections/{target_id}").json()["items"][0]["params"]
        assert shown["headers"]["X-Api-Key"] == MASK and shown["headers"]["X-Email"] == "${email}"
        assert shown["url"].endswith(f"?api_key={MASK}&n=${{amount}}")
        shown_auth = viewer.get(f"{FS}/connections/{conn_id}").json()["items"][0]["auth"]["params"]
        assert shown_auth["extraHeaders"] == {"X-Partner-Key": MASK, "Accept": "application/json"}
        # every form item is a secret unless marked otherwise, and the old code had no marks
        assert shown_auth["formItems"] == {"resource_key": MASK, "audience": MASK}
        assert destination_secrets.SEALED_MARK not in json.dumps(shown_auth)

        sink.reset()  # forgets what it received, and its echo
        sink.echo(400)
        tested = api.post(f"{FS}/targetConnections/{target_id}/test", json={"variables": VARIABLES})
        assert tested.status_code == 200, tested.text
        assert tested.json()["response"]["status"] == 400  # the echo
        assert found(tested.text, plants) == [], tested.text[:2000]
        (got,) = sink.received(path="/api/")
        assert got.header("x-api-key") == plants["header"] and f"api_key={plants['query']}" in got.query
        (token_request,) = sink.token_requests
        assert dict(token_request.headers).get("x-partner-key") == plants["extraHeader"]
        assert (
            token_request.form["resource_key"] == plants["formItem"]
            and token_request.form["audience"] == "esp"
        )

    # Before the upgrade step: masked by the rule in every answer, sent for real
    check_answers_and_delivery()

    # Starting the services of a database from before the step (no upgrade mark yet) seals them; a
    # second start (or a second process) finds the mark and reads nothing
    with server.services.store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(delete(upgrade_marks).where(upgrade_marks.c.name == destination_secrets.SEALED_UPGRADE))
    assert not server.services.store.has_mark(destination_secrets.SEALED_UPGRADE)
    server.services.start()
    assert server.services.store.has_mark(destination_secrets.SEALED_UPGRADE)
    docs = [stored(server, "connection", conn_id).doc, stored(server, "targetConnection", target_id).doc]
    assert found(json.dumps(docs), plants) == [], docs
    assert all(destination_secrets.SEALED_MARK in json.dumps(doc) for doc in docs)
    assert destinations.seal_legacy(server.services.store, server.services.box) == 0
    check_answers_and_delivery()

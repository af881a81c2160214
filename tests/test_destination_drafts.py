"""Draft destinations (issue 16, document 003's "review and save"): a destination set up step by step
with AEP's ``mode=draft`` can be edited and tested, cannot be activated, and is immutable once published."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.activation_helpers import (
    FS,
    HTTP_DESTINATION,
    activation_body,
    basic,
    connection_body,
    destination,
    inlet_source,
    request_params,
)
from tests.fakes.sink import SinkFake
from tests.flows_helpers import created_id
from tests.support import ApiClient, unique


def _request(conn: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Request",
        "baseConnectionId": conn,
        "connectionSpec": {"id": HTTP_DESTINATION, "version": "1.0"},
        "params": request_params(url, **extra),
    }


def _one(api: ApiClient, collection: str, ident: str) -> dict[str, Any]:
    answer = api.get(f"{FS}/{collection}/{ident}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["items"][0])


def _patch(api: ApiClient, collection: str, ident: str, ops: list[dict[str, Any]]) -> Any:
    etag = api.get(f"{FS}/{collection}/{ident}").headers["etag"]
    return api.patch(f"{FS}/{collection}/{ident}", json=ops, headers={"If-Match": etag})


def test_a_draft_is_edited_and_tested_but_not_activated_until_published(
    api: ApiClient, sink: SinkFake
) -> None:
    name = unique("Draft ESP")
    conn = created_id(api.post(f"{FS}/connections?mode=draft", json=connection_body(name, basic(sink))))
    assert _one(api, "connections", conn)["state"] == "draft"
    # The draft's auth and description can still change (a published destination's cannot).
    answer = _patch(api, "connections", conn, [{"op": "replace", "path": "/description", "value": "v2"}])
    assert answer.status_code == 200, answer.text
    shown = _one(api, "connections", conn)
    assert shown["description"] == "v2" and shown["auth"]["params"]["password"] == "********"
    target = created_id(api.post(f"{FS}/targetConnections", json=_request(conn, sink.url + "/old")))
    assert _one(api, "targetConnections", target)["state"] == "draft"
    answer = _patch(
        api, "targetConnections", target, [{"op": "replace", "path": "/params/url", "value": sink.url + "/d"}]
    )
    assert answer.status_code == 200, answer.text
    # Its Test Request works: setting a destination up needs it.
    variables = {"email": "a@b.c", "name": "A", "amount": 1}
    tested = api.post(f"{FS}/targetConnections/{target}/test", json={"variables": variables}).json()
    assert tested["response"]["status"] == 200, tested
    assert (sink.received("/d")[-1].header("authorization") or "").startswith("Basic ")
    # An activation cannot feed a draft.
    source, _ = inlet_source(api)
    refused = api.post(f"{FS}/flows", json=activation_body(source, target))
    assert refused.status_code == 400, refused.text
    assert any(e["path"] == "targetConnectionIds[0]" for e in refused.json()["report"]["errors"])
    # Published: both parts enabled, no more edits, and activation works.
    published = api.post(f"{FS}/connections/{conn}/action?op=publish")
    assert published.status_code == 200, published.text
    assert _one(api, "connections", conn)["state"] == "enabled"
    assert _one(api, "targetConnections", target)["state"] == "enabled"
    again = _patch(api, "connections", conn, [{"op": "replace", "path": "/description", "value": "v3"}])
    assert again.status_code == 400 and again.json()["report"]["immutable"] is True
    assert api.post(f"{FS}/connections/{conn}/action?op=publish").status_code == 200  # idempotent
    made = api.post(f"{FS}/flows", json=activation_body(source, target))
    assert made.status_code == 201, made.text


def test_publishing_through_the_request_and_the_refusals(
    api: ApiClient, other_org_api: ApiClient, sink: SinkFake
) -> None:
    body = connection_body(unique("Draft"), basic(sink))
    conn = created_id(api.post(f"{FS}/connections?mode=draft", json=body))
    # Nothing to publish yet: a destination needs its request.
    empty = api.post(f"{FS}/connections/{conn}/action?op=publish")
    assert empty.status_code == 400 and empty.json()["report"]["field"] == "targetConnection"
    target = created_id(api.post(f"{FS}/targetConnections", json=_request(conn, sink.url + "/t")))
    assert other_org_api.post(f"{FS}/targetConnections/{target}/action?op=publish").status_code == 404
    wrong_op = api.post(f"{FS}/targetConnections/{target}/action?op=enable")
    assert wrong_op.status_code == 400 and wrong_op.json()["report"]["parameter"] == "op"
    assert api.post(f"{FS}/targetConnections/{target}/action?op=publish").status_code == 200
    assert _one(api, "connections", conn)["state"] == "enabled"
    # A request of a published destination is not a draft.
    late = api.post(f"{FS}/targetConnections?mode=draft", json=_request(conn, sink.url + "/late"))
    assert late.status_code == 400 and "baseConnectionId" in json.dumps(late.json()["report"])
    # Without mode=draft a destination is saved (and immutable) at once, as before.
    saved_conn, saved_target = destination(api, sink.url + "/s", auth=basic(sink), name=unique("Saved"))
    assert _one(api, "connections", saved_conn)["state"] == "enabled"
    assert _one(api, "targetConnections", saved_target)["state"] == "enabled"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("connections?mode=final", None),  # not a mode
        ("sourceConnections?mode=draft", {"name": "x", "data": {"format": "json"}}),  # not a destination
    ],
)
def test_modes_that_are_not_drafts_of_destinations_are_refused(
    api: ApiClient, sink: SinkFake, path: str, body: dict[str, Any] | None
) -> None:
    answer = api.post(f"{FS}/{path}", json=body or connection_body(unique("Mode"), basic(sink)))
    assert answer.status_code == 400, answer.text
    assert answer.json()["report"]["parameter"] == "mode"


def test_only_destination_connections_are_drafts(api: ApiClient) -> None:
    body = {
        "name": unique("Inlet"),
        "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
        "auth": {"specName": "Streaming Connection", "params": {"dataType": "xdm"}},
    }
    answer = api.post(f"{FS}/connections?mode=draft", json=body)
    assert answer.status_code == 400 and answer.json()["report"]["parameter"] == "mode"

"""Streaming inlets: messages posted over HTTP land in their flow's dataset, once, with their errors kept."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import httpx
import pytest

from tests.streaming_helpers import (
    FS,
    cio_event,
    customerio_flow,
    http_api_flow,
    rows,
    streaming,
    wait_rows,
)
from tests.support import ApiClient, LiveServer, wait_until


def _envelope(api: ApiClient, pipeline: dict[str, str], event_id: str, **fields: object) -> dict[str, object]:
    return {
        "header": {
            "schemaRef": {
                "id": pipeline["schemaId"],
                "contentType": "application/vnd.adobe.xed-full+json;version=1.0",
            },
            "imsOrgId": api.headers["x-gw-ims-org-id"],
            "datasetId": pipeline["datasetId"],
            "flowId": pipeline["flowId"],
        },
        "body": {
            "xdmMeta": {"schemaRef": {"id": pipeline["schemaId"]}},
            "xdmEntity": {
                "_id": event_id,
                "timestamp": "2026-11-23T10:00:00Z",
                "_headwater": {"email": "ada@example.com", "metric": "opened", **fields},
            },
        },
    }


def test_an_xdm_envelope_is_acknowledged_and_lands_once(server: LiveServer, api: ApiClient) -> None:
    pipeline = http_api_flow(api)
    assert pipeline["inletUrl"] == f"{server.settings.base_url}/collection/{pipeline['inletId']}"
    message = _envelope(api, pipeline, "evt-1")
    first = httpx.post(pipeline["inletUrl"], json=message)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["inletId"] == pipeline["inletId"]
    assert body["syncValidation"] == {"skipped": True}
    assert isinstance(body["receivedTimeMs"], int) and body["xactionId"].startswith(
        str(body["receivedTimeMs"])
    )
    # The same event sent again (a retry) does not make a second row.
    assert httpx.post(pipeline["inletUrl"], json=message).status_code == 200
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], 1)
        assert httpx.post(pipeline["inletUrl"], json=_envelope(api, pipeline, "evt-2")).status_code == 200
        landed = wait_rows(server, api, pipeline["datasetId"], 2)
    assert sorted(r["_id"] for r in landed) == ["evt-1", "evt-2"]
    assert landed[0]["_headwater"]["email"] == "ada@example.com"


def test_the_batch_inlet_answers_207_with_one_response_per_message_in_order(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = http_api_flow(api)
    batch_url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
    wrong_org = _envelope(api, pipeline, "evt-b")
    wrong_org["header"]["imsOrgId"] = "SOMEONE-ELSE@AdobeOrg"  # type: ignore[index]
    messages = [
        _envelope(api, pipeline, "evt-a"),
        wrong_org,
        "not an object",
        _envelope(api, pipeline, "evt-c"),
    ]
    response = httpx.post(batch_url, json={"messages": messages})
    assert response.status_code == 207, response.text
    answers = response.json()["responses"]
    assert len(answers) == 4
    assert "xactionId" in answers[0] and "xactionId" in answers[3]
    assert answers[1]["statusCode"] == 400 and "imsOrgId" in answers[1]["message"]
    assert answers[2]["statusCode"] == 400
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], 2)
    assert sorted(r["_id"] for r in landed) == ["evt-a", "evt-c"]
    # Even a batch whose every message is bad answers 207.
    assert httpx.post(batch_url, json={"messages": ["x"]}).status_code == 207
    assert httpx.post(batch_url, json={"nothing": []}).status_code == 400


def test_a_body_over_one_megabyte_is_refused_with_413(api: ApiClient) -> None:
    pipeline = http_api_flow(api)
    big = {"padding": "x" * (1024 * 1024)}
    assert httpx.post(pipeline["inletUrl"], json=big).status_code == 413
    batch_url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
    assert httpx.post(batch_url, json={"messages": [big]}).status_code == 413


def test_an_authenticated_inlet_wants_a_token_of_its_organization(
    server: LiveServer, api: ApiClient, other_org_api: ApiClient
) -> None:
    pipeline = http_api_flow(api, auth_required=True)
    message = _envelope(api, pipeline, "evt-auth")
    missing = httpx.post(pipeline["inletUrl"], json=message)
    assert missing.status_code == 401
    assert "token is empty" in missing.json()["report"]["message"]
    bad = httpx.post(pipeline["inletUrl"], json=message, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403
    foreign = httpx.post(
        pipeline["inletUrl"], json=message, headers={"Authorization": other_org_api.headers["Authorization"]}
    )
    assert foreign.status_code == 403
    good = httpx.post(
        pipeline["inletUrl"], json=message, headers={"Authorization": api.headers["Authorization"]}
    )
    assert good.status_code == 200, good.text


def test_unknown_inlets_and_bad_json_are_4xx(api: ApiClient, server: LiveServer) -> None:
    assert httpx.post(f"{server.base_url}/collection/{uuid.uuid4().hex}", json={}).status_code == 404
    pipeline = http_api_flow(api)
    response = httpx.post(
        pipeline["inletUrl"], content=b'{"header": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["report"]["message"]


def test_sync_validation_reports_violations_in_the_reference_shape(api: ApiClient) -> None:
    pipeline = http_api_flow(api)
    message = _envelope(api, pipeline, "evt-v", workEmail="ada@work.example")
    message["body"]["xdmEntity"]["_headwater"]["amount"] = "many"  # type: ignore[index]
    response = httpx.post(pipeline["inletUrl"] + "?syncValidation=true", json=message)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["title"] == "Invalid XDM Message Format"
    report = body["report"]["cause"]["_streamingValidation"][0]
    messages = [e["message"] for e in report["causingExceptions"]]
    assert any("extraneous key [workEmail] is not permitted" in m for m in messages)
    assert any(
        e["pointerToViolation"].startswith("#/_headwater") and "'many'" in e["message"]
        for e in report["causingExceptions"]
    ), report
    assert {"schemaLocation", "pointerToViolation", "causingExceptions", "message"} <= report.keys()
    good = httpx.post(pipeline["inletUrl"] + "?syncValidation=true", json=_envelope(api, pipeline, "evt-ok"))
    assert good.status_code == 200
    assert good.json()["syncValidation"] == {"status": "pass"}


def test_raw_json_is_routed_by_flow_id_and_shaped_by_the_mapping(server: LiveServer, api: ApiClient) -> None:
    pipeline = http_api_flow(api, mapping=True)
    response = httpx.post(
        pipeline["inletUrl"], json=cio_event("raw-1"), headers={"x-adobe-flow-id": pipeline["flowId"]}
    )
    assert response.status_code == 200, response.text
    query = httpx.post(
        pipeline["inletUrl"] + f"?x-adobe-flow-id={pipeline['flowId']}", json=cio_event("raw-2")
    )
    assert query.status_code == 200
    unknown = httpx.post(pipeline["inletUrl"], json=cio_event("raw-3"), headers={"x-adobe-flow-id": "nope"})
    assert unknown.status_code == 400
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], 2)
    assert sorted(r["_headwater"]["event_id"] for r in landed) == ["raw-1", "raw-2"]
    assert all(r["_headwater"]["amount"] == 3 for r in landed)


def test_customerio_webhooks_land_mapped_and_duplicates_are_dropped(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = customerio_flow(api)
    for event_id in (
        "01E4C4C6P79C12J5A6KPE6XNFD",
        "01E4C4C6P79C12J5A6KPE6XNFE",
        "01E4C4C6P79C12J5A6KPE6XNFD",
    ):
        assert httpx.post(pipeline["inletUrl"], json=cio_event(event_id)).status_code == 200
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], 2)
        # a redelivery after the first ones were committed is dropped too
        assert (
            httpx.post(pipeline["inletUrl"], json=cio_event("01E4C4C6P79C12J5A6KPE6XNFE")).status_code == 200
        )
        assert (
            httpx.post(pipeline["inletUrl"], json=cio_event("01E4C4C6P79C12J5A6KPE6XNFF")).status_code == 200
        )
        landed = wait_rows(server, api, pipeline["datasetId"], 3)
        runs = wait_until(
            lambda: [
                r
                for r in api.get(f"{FS}/runs", params={"property": f"flowId=={pipeline['flowId']}"}).json()[
                    "items"
                ]
                if r["metrics"]["recordSummary"]["inputRecordCount"] >= 5
            ],
            timeout=10,
        )
    assert len(landed) == 3
    first = next(r for r in landed if r["_id"] == "01E4C4C6P79C12J5A6KPE6XNFD")
    assert first["_headwater"]["cio_id"] == "d9c106000001"
    assert first["_headwater"]["email"] == "ada@example.com"
    assert first["_headwater"]["metric"] == "sent"
    assert first["timestamp"] is not None
    assert runs[0]["metrics"]["recordSummary"]["outputRecordCount"] == 3


def _signed(key: str, body: bytes, at: int | None = None) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    signature = hmac.new(key.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-CIO-Timestamp": stamp, "X-CIO-Signature": signature, "Content-Type": "application/json"}


def test_customerio_signatures_are_verified_when_the_connection_holds_a_key(
    server: LiveServer, api: ApiClient
) -> None:
    key = "whsec-" + uuid.uuid4().hex
    pipeline = customerio_flow(api, signing_key=key, name="Signed")
    body = httpx.Request("POST", "http://x", json=cio_event("signed-1")).content
    url = pipeline["inletUrl"]
    assert httpx.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 401
    assert httpx.post(url, content=body, headers=_signed("wrong-key", body)).status_code == 401
    stale = httpx.post(url, content=body, headers=_signed(key, body, at=int(time.time()) - 3600))
    assert stale.status_code == 401 and "stale" in stale.json()["report"]["message"]
    tampered = body.replace(b"signed-1", b"signed-2")
    assert httpx.post(url, content=tampered, headers=_signed(key, body)).status_code == 401
    good = httpx.post(url, content=body, headers=_signed(key, body))
    assert good.status_code == 200, good.text
    with streaming(server, api):
        landed = wait_rows(server, api, pipeline["datasetId"], 1)
    assert [r["_headwater"]["event_id"] for r in landed] == ["signed-1"]


def test_messages_that_fail_mapping_are_row_errors_of_the_flow_run(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = customerio_flow(api, name="Failing")
    assert httpx.post(pipeline["inletUrl"], json=cio_event("good-1")).status_code == 200
    assert httpx.post(pipeline["inletUrl"], json=cio_event("bad-1", amount="lots")).status_code == 200
    with streaming(server, api):
        wait_rows(server, api, pipeline["datasetId"], 1)
        run = wait_until(
            lambda: next(
                (
                    r
                    for r in api.get(
                        f"{FS}/runs", params={"property": f"flowId=={pipeline['flowId']}"}
                    ).json()["items"]
                    if r["metrics"]["recordSummary"]["failedRecordCount"] == 1
                ),
                None,
            ),
            timeout=10,
        )
    assert run["metrics"]["recordSummary"]["outputRecordCount"] == 1
    assert run["state"] == "inProgress"  # the hour's run stays open until the hour is over
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta", params={"path": "row_errors"})
    assert listing.status_code == 200, listing.text
    errors = api.get(listing.json()["data"][0]["_links"]["self"]["href"])
    assert errors.status_code == 200, errors.text
    assert "lots" in errors.text and "bad-1" in errors.text
    assert [r["_headwater"]["event_id"] for r in rows(server, api, pipeline["datasetId"])] == ["good-1"]


@pytest.mark.parametrize("flow_state", ["disabled"])
def test_a_disabled_flow_keeps_its_messages_until_enabled(
    server: LiveServer, api: ApiClient, flow_state: str
) -> None:
    pipeline = customerio_flow(api, name="Paused")
    flow = api.get(f"{FS}/flows/{pipeline['flowId']}").json()["items"][0]
    patched = api.patch(
        f"{FS}/flows/{pipeline['flowId']}",
        headers={"If-Match": flow["etag"]},
        json=[{"op": "replace", "path": "/state", "value": flow_state}],
    )
    assert patched.status_code == 200, patched.text
    assert httpx.post(pipeline["inletUrl"], json=cio_event("paused-1")).status_code == 200
    with streaming(server, api):
        flow = api.get(f"{FS}/flows/{pipeline['flowId']}").json()["items"][0]
        assert rows(server, api, pipeline["datasetId"]) == []
        enabled = api.patch(
            f"{FS}/flows/{pipeline['flowId']}",
            headers={"If-Match": flow["etag"]},
            json=[{"op": "replace", "path": "/state", "value": "enabled"}],
        )
        assert enabled.status_code == 200, enabled.text
        landed = wait_rows(server, api, pipeline["datasetId"], 1)
    assert landed[0]["_id"] == "paused-1"


def test_junk_at_an_inlet_is_never_a_server_error(api: ApiClient) -> None:
    from tests.test_robustness import JUNK_BODIES

    pipeline = http_api_flow(api, mapping=True)
    url = pipeline["inletUrl"]
    batch = url.replace("/collection/", "/collection/batch/")
    for body in JUNK_BODIES:
        for target in (url, batch, url + "?syncValidation=true"):
            assert httpx.post(target, json=body).status_code < 500, (target, body)
        assert httpx.post(batch, json={"messages": [body, body]}).status_code == 207
    for raw in (b'{"a": 1' + b"1" * 5000 + b"}", b"\xff\xfe", b"[" * 10_000):
        assert httpx.post(url, content=raw).status_code == 400
        assert httpx.post(batch, content=raw).status_code == 400

"""Values of the wrong type for a text field are validation errors, never stored as text (issue 16).

With ``?syncValidation=true`` a number, an object, an array or a boolean for a text field answers 400
naming the field's path; without it, the message becomes a row error naming the path, and the correct
messages still land."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.streaming_helpers import FS, http_api_flow, rows, streaming, wait_rows
from tests.support import ApiClient, LiveServer, wait_until

WRONG = [12345, {"x": 1}, [1, 2], True, 12.5]


def _envelope(api: ApiClient, pipeline: dict[str, str], event_id: str, email: object) -> dict[str, object]:
    return {
        "header": {
            "schemaRef": {"id": pipeline["schemaId"]},
            "imsOrgId": api.headers["x-gw-ims-org-id"],
            "datasetId": pipeline["datasetId"],
            "flowId": pipeline["flowId"],
        },
        "body": {
            "xdmMeta": {"schemaRef": {"id": pipeline["schemaId"]}},
            "xdmEntity": {
                "_id": event_id,
                "timestamp": "2026-11-23T10:00:00Z",
                "_headwater": {"email": email, "metric": "opened"},
            },
        },
    }


@pytest.fixture
def pipeline(api: ApiClient) -> dict[str, str]:
    return http_api_flow(api)


def test_sync_validation_refuses_a_wrong_type_for_a_text_field_naming_its_path(
    api: ApiClient, pipeline: dict[str, str]
) -> None:
    for value in WRONG:
        response = httpx.post(
            pipeline["inletUrl"] + "?syncValidation=true", json=_envelope(api, pipeline, "evt-w", value)
        )
        assert response.status_code == 400, (value, response.text)
        report = response.json()["report"]["cause"]["_streamingValidation"][0]
        found = [e for e in report["causingExceptions"] if e["pointerToViolation"] == "#/_headwater/email"]
        assert found, (value, report)
        assert found[0]["keyword"] == "type"
        assert "_headwater.email" in found[0]["message"]
        assert "expected type: String" in found[0]["message"]
    response = httpx.post(
        pipeline["inletUrl"] + "?syncValidation=true",
        json=_envelope(api, pipeline, "evt-ok", "ada@example.com"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["syncValidation"] == {"status": "pass"}


def test_wrong_types_sent_without_validation_are_row_errors_naming_the_path(
    server: LiveServer, api: ApiClient, pipeline: dict[str, str]
) -> None:
    for index, value in enumerate(WRONG):
        sent = httpx.post(pipeline["inletUrl"], json=_envelope(api, pipeline, f"bad-{index}", value))
        assert sent.status_code == 200, sent.text
    assert (
        httpx.post(pipeline["inletUrl"], json=_envelope(api, pipeline, "good", "ada@example.com")).status_code
        == 200
    )
    with streaming(server, api):
        wait_rows(server, api, pipeline["datasetId"], 1)
        run = wait_until(
            lambda: next(
                (
                    r
                    for r in api.get(
                        f"{FS}/runs", params={"property": f"flowId=={pipeline['flowId']}"}
                    ).json()["items"]
                    if r["metrics"]["recordSummary"]["failedRecordCount"] == len(WRONG)
                ),
                None,
            ),
            timeout=10,
        )
    landed = rows(server, api, pipeline["datasetId"])
    assert [(r["_id"], r["_headwater"]["email"]) for r in landed] == [("good", "ada@example.com")]
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta", params={"path": "row_errors"})
    assert listing.status_code == 200, listing.text
    errors = api.get(listing.json()["data"][0]["_links"]["self"]["href"])
    assert errors.status_code == 200, errors.text
    lines = [orjson.loads(line) for line in errors.text.splitlines() if line.strip()]
    text = errors.text
    assert len(lines) == len(WRONG), text
    for index in range(len(WRONG)):
        assert f"bad-{index}" in text
    assert text.count("_headwater.email") >= len(WRONG) and "expected type: String" in text

"""Profile-style streaming flows (an upsert key), deletions, and snapshot expiry of streaming tables."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from headwater.runtime.streaming import MicroBatcher
from tests.streaming_helpers import http_api_flow, rows, scope_of, streaming, wait_rows
from tests.support import ApiClient, LiveServer, wait_until

FS_RUNS = "/data/foundation/flowservice/runs"


def _message(pipeline: dict[str, str], event_id: str, email: str, metric: str) -> dict[str, object]:
    return {
        "header": {"flowId": pipeline["flowId"]},
        "body": {
            "xdmEntity": {
                "_id": event_id,
                "timestamp": "2026-11-23T10:00:00Z",
                "_headwater": {"email": email, "metric": metric},
            }
        },
    }


def _post(pipeline: dict[str, str], *messages: dict[str, object]) -> None:
    url = pipeline["inletUrl"].replace("/collection/", "/collection/batch/")
    response = httpx.post(url, json={"messages": list(messages)})
    assert response.status_code == 207
    assert all("xactionId" in r for r in response.json()["responses"]), response.text


def test_an_upsert_key_keeps_one_row_per_key_with_its_latest_values(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = http_api_flow(api, options={"upsertKey": "_headwater.email"})
    _post(
        pipeline,
        _message(pipeline, "1", "ada@example.com", "sent"),
        _message(pipeline, "2", "ada@example.com", "opened"),
        _message(pipeline, "3", "bob@example.com", "sent"),
    )
    with streaming(server, api):
        wait_rows(server, api, pipeline["datasetId"], 2)
        _post(pipeline, _message(pipeline, "4", "bob@example.com", "clicked"))

        def latest() -> bool:
            found = {
                r["_headwater"]["email"]: r["_headwater"]["metric"]
                for r in rows(server, api, pipeline["datasetId"])
            }
            return found == {"ada@example.com": "opened", "bob@example.com": "clicked"}

        wait_until(latest, timeout=20, interval=0.1)
        assert len(rows(server, api, pipeline["datasetId"])) == 2

        # A deletion by key (what the Ingestion API's DELETE publishes) removes the row.
        scope = scope_of(server, api)
        asyncio.run(
            server.services.streams.publish(
                scope, pipeline["flowId"], [{"key": "bob@example.com"}], kind="delete"
            )
        )
        wait_until(lambda: len(rows(server, api, pipeline["datasetId"])) == 1, timeout=20, interval=0.1)
    assert rows(server, api, pipeline["datasetId"])[0]["_headwater"]["email"] == "ada@example.com"


def test_expiring_snapshots_keeps_the_rows_and_the_log_position(server: LiveServer, api: ApiClient) -> None:
    pipeline = http_api_flow(api)
    flow = server.services.store.get("flow", scope_of(server, api), pipeline["flowId"])
    assert flow is not None
    batcher = MicroBatcher(server.services, flow)
    for i in range(4):  # four micro-batches, four snapshots
        _post(pipeline, _message(pipeline, f"e{i}", f"u{i}@example.com", "sent"))
        assert batcher.step().committed
    lake = server.services.lake
    table = lake.load(scope_of(server, api), pipeline["datasetId"])
    assert table is not None and len(table.snapshots()) == 4
    offset = lake.stream_offset(table, pipeline["flowId"])
    expired = lake.expire_snapshots(table, int(time.time() * 1000) + 1, keep=1)
    table = lake.load(scope_of(server, api), pipeline["datasetId"])
    assert table is not None
    assert expired == 3 and len(table.snapshots()) == 1
    assert lake.stream_offset(table, pipeline["flowId"]) == offset
    assert sorted(r["_id"] for r in rows(server, api, pipeline["datasetId"])) == ["e0", "e1", "e2", "e3"]
    # Nothing is read twice after the expiry: the next step finds no new records.
    assert not batcher.step().consumed


def test_a_streaming_run_covers_its_window_and_completes_when_the_window_is_over(
    server: LiveServer, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater.services import ledger as runtime

    monkeypatch.setattr(runtime, "RUN_WINDOW_MS", 2000)  # two-second windows instead of hours
    pipeline = http_api_flow(api)
    flow = server.services.store.get("flow", scope_of(server, api), pipeline["flowId"])
    assert flow is not None
    batcher = MicroBatcher(server.services, flow)
    _post(pipeline, _message(pipeline, "w1", "a@example.com", "sent"))
    assert batcher.step().committed
    first_window = int(time.time() * 1000) // 2000
    wait_until(lambda: int(time.time() * 1000) // 2000 != first_window, timeout=5, interval=0.05)
    _post(
        pipeline,
        _message(pipeline, "w2", "b@example.com", "sent"),
        _message(pipeline, "w3", "c@example.com", "sent"),
    )
    assert batcher.step().committed
    runs = api.get(
        "/data/foundation/flowservice/runs", params={"property": f"flowId=={pipeline['flowId']}"}
    ).json()["items"]
    by_state = {r["state"]: r for r in runs}
    assert set(by_state) == {"success", "inProgress"}, [r["state"] for r in runs]
    assert by_state["success"]["metrics"]["recordSummary"]["inputRecordCount"] == 1
    assert by_state["success"]["metrics"]["durationSummary"]["completedAtUTC"] is not None
    assert by_state["inProgress"]["metrics"]["recordSummary"]["outputRecordCount"] == 2


def test_a_dataset_is_deleted_with_its_batches_once_no_flow_writes_to_it(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = http_api_flow(api)
    flow = server.services.store.get("flow", scope_of(server, api), pipeline["flowId"])
    assert flow is not None
    _post(pipeline, _message(pipeline, "d1", "a@example.com", "sent"))
    assert MicroBatcher(server.services, flow).step().committed
    run = api.get(FS_RUNS, params={"property": f"flowId=={pipeline['flowId']}"}).json()["items"][0]
    batch_id = run["batchId"]
    assert api.get(f"/data/foundation/catalog/batches/{batch_id}").status_code == 200
    dataset = f"/data/foundation/catalog/dataSets/{pipeline['datasetId']}"
    # A flow still writes to it: refused, and nothing is deleted.
    refused = api.delete(dataset)
    assert refused.status_code == 409, refused.text
    assert api.get(f"/data/foundation/catalog/batches/{batch_id}").status_code == 200
    assert api.delete(f"/data/foundation/flowservice/flows/{pipeline['flowId']}").status_code == 204
    target = flow.doc["targetConnectionIds"][0]
    assert api.delete(f"/data/foundation/flowservice/targetConnections/{target}").status_code == 204
    assert api.delete(dataset).status_code == 200
    assert api.get(f"/data/foundation/catalog/batches/{batch_id}").status_code == 404
    assert server.services.lake.load(scope_of(server, api), pipeline["datasetId"]) is None

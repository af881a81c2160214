"""The Batch Ingestion API (``/data/foundation/import/batches``): create a batch, upload files (whole or
in chunks), complete it (the promotion runner puts it into the dataset in one commit, after COMPLETE
answered), abort; status and row errors in the Catalog.

Crashes during promotion: tests/test_batch_ingestion_crash.py; 1 GB: bench/batch_ingest.py."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from headwater.services.batchqueue import MAX_CRASHES, PromotionQueue
from headwater.stores.metadata import Scope
from tests.flows_helpers import CAT, dataset, profile_schema
from tests.support import ApiClient, LiveServer, role_client, wait_until

pytestmark = pytest.mark.usefixtures("promoter")

IMPORT = "/data/foundation/import/batches"
OCTETS = {"Content-Type": "application/octet-stream"}


def person(i: int, email: str | None = None) -> dict[str, Any]:
    return {
        "_id": f"id-{i}",
        "person": {"name": {"firstName": f"First{i}", "lastName": f"Last{i}"}},
        "personalEmail": {"address": email or f"person{i}@example.com"},
    }


def json_lines(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.fixture
def dataset_id(api: ApiClient) -> str:
    return dataset(api, profile_schema(api))


def create(api: ApiClient, dataset_id: str, fmt: str = "json", **extra: Any) -> str:
    response = api.post(IMPORT, json={"datasetId": dataset_id, "inputFormat": {"format": fmt}, **extra})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "loading"
    assert body["relatedObjects"] == [{"type": "dataSet", "id": dataset_id}]
    assert body["imsOrg"] == api.org_id and body["version"] == "1.0.0"
    return str(body["id"])


def upload(api: ApiClient, batch_id: str, dataset_id: str, name: str, data: bytes) -> None:
    url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/{name}"
    response = api.put(url, content=data, headers=OCTETS)
    assert response.status_code == 200, response.text


def complete(api: ApiClient, batch_id: str) -> dict[str, Any]:
    """COMPLETE (answered at once, as AEP's), then the batch once final, polled as an AEP client does."""
    response = api.post(f"{IMPORT}/{batch_id}?action=COMPLETE")
    assert response.status_code == 200, response.text
    assert response.json()[batch_id]["status"] in ("processing", "success", "failed")
    return final(api, batch_id)


def ingested_people(api: ApiClient, count: int = 3) -> tuple[str, str]:
    """A new dataset holding ``count`` people loaded by the Batch Ingestion API (a promoter must run):
    (dataset id, its table name)."""
    dataset_id = dataset(api, profile_schema(api))
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "people.json", json_lines([person(i) for i in range(count)]))
    assert complete(api, batch_id)["status"] == "success"
    doc = api.get(f"{CAT}/dataSets/{dataset_id}").json()[dataset_id]
    return dataset_id, str(doc["tags"]["adobe/pqs/table"][0])


def final(api: ApiClient, batch_id: str, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        batch = catalog_batch(api, batch_id)
        return batch if batch["status"] in ("success", "failed") else None

    return dict(wait_until(done, timeout=timeout, interval=0.05))


def catalog_batch(api: ApiClient, batch_id: str) -> dict[str, Any]:
    response = api.get(f"{CAT}/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()[batch_id])


def rows(api: ApiClient, dataset_id: str) -> list[dict[str, Any]]:
    response = api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=1000")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_a_json_file_lands_once_even_when_completed_twice(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "people.json", json_lines([person(i) for i in range(3)]))
    done = complete(api, batch_id)
    assert done["status"] == "success"
    again = complete(api, batch_id)
    assert again["status"] == "success"
    landed = rows(api, dataset_id)
    assert sorted(r["_id"] for r in landed) == ["id-0", "id-1", "id-2"]
    assert landed[0]["person"]["name"]["firstName"].startswith("First")
    batch = catalog_batch(api, batch_id)
    assert batch["status"] == "success"
    assert batch["metrics"]["inputRecordCount"] == 3
    assert batch["metrics"]["outputRecordCount"] == 3
    assert batch["metrics"]["failedRecordCount"] == 0
    assert batch["metrics"]["inputFileCount"] == 1
    assert batch["errors"] == []
    # A completed batch takes no more files.
    late = api.put(
        f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/late.json", content=b"{}\n", headers=OCTETS
    )
    assert late.status_code == 409, late.text


def test_a_retry_after_the_commit_but_before_the_batch_was_saved_adds_nothing(
    server: LiveServer, api: ApiClient, dataset_id: str
) -> None:
    """The crash window between the commit and the batch's update, reproduced in process: the batch is
    put back to ``processing`` with its file staged again; COMPLETE finds the batch's snapshot and only
    finishes the bookkeeping, from the counts the commit recorded."""
    batch_id = create(api, dataset_id)
    data = json_lines([person(1), person(2, email="bad")])
    upload(api, batch_id, dataset_id, "people.json", data)
    assert complete(api, batch_id)["status"] == "success"
    svc = server.services
    sandbox = svc.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    stored = svc.store.get("batch", Scope(api.org_id, sandbox.id), batch_id)
    assert stored is not None
    svc.ledger.save(stored, {"status": "processing", "metrics": {}, "errors": []})
    staged = svc.settings.warehouse_dir / "_ingest" / batch_id / dataset_id
    staged.mkdir(parents=True)
    (staged / "people.json").write_bytes(data)
    again = complete(api, batch_id)
    assert again["status"] == "success"
    assert again["metrics"]["inputRecordCount"] == 2 and again["metrics"]["failedRecordCount"] == 1
    assert [r["_id"] for r in rows(api, dataset_id)] == ["id-1"]
    assert not staged.exists()


def test_complete_answers_processing_and_a_runner_started_later_promotes_the_batch(
    server: LiveServer, api: ApiClient, dataset_id: str
) -> None:
    """No worker running: COMPLETE is accepted (``processing``) and the batch waits, durably queued; the
    runner's look at its start promotes it. A batch queued but never marked (COMPLETE died between the
    two writes) is promoted too."""
    runner = server.services.batch_promoter
    runner.stop()
    waiting = create(api, dataset_id)
    upload(api, waiting, dataset_id, "people.json", json_lines([person(1), person(2)]))
    response = api.post(f"{IMPORT}/{waiting}?action=COMPLETE")
    assert response.status_code == 200, response.text
    assert response.json()[waiting]["status"] == "processing"
    unmarked = create(api, dataset_id)
    upload(api, unmarked, dataset_id, "more.json", json_lines([person(3)]))
    svc = server.services
    sandbox = svc.store.get_sandbox(api.org_id, api.sandbox_name)
    assert sandbox is not None
    stored = svc.store.get("batch", Scope(api.org_id, sandbox.id), unmarked)
    assert stored is not None
    svc.batch_queue.enqueue(stored)
    assert catalog_batch(api, waiting)["status"] == "processing"
    assert catalog_batch(api, unmarked)["status"] == "loading"
    runner.start()
    assert final(api, waiting)["status"] == "success"
    assert final(api, unmarked)["metrics"]["outputRecordCount"] == 1
    assert sorted(r["_id"] for r in rows(api, dataset_id)) == ["id-1", "id-2", "id-3"]
    wait_until(lambda: not list(svc.batch_queue.entries()))  # removed once the batch was saved


def test_a_batch_whose_promotion_killed_its_runner_again_and_again_fails_instead_of_retrying_forever(
    server: LiveServer, api: ApiClient, dataset_id: str
) -> None:
    """Runners that claimed the batch and died (their leases expired, the batch never promoted: as out
    of memory would leave it) are counted; at the limit the next runner fails the batch, saying so,
    instead of promoting it (and dying) once more. A runner dying is a claim never finished: the short
    lease below stands for it."""
    runner = server.services.batch_promoter
    runner.stop()
    svc = server.services
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "people.json", json_lines([person(1)]))
    assert api.post(f"{IMPORT}/{batch_id}?action=COMPLETE").status_code == 200
    dying = PromotionQueue(svc.store, lease_seconds=0.001)
    for n in range(MAX_CRASHES):
        wait_until(lambda n=n: dying.claim_next(f"runner-{n}"), timeout=5, interval=0.005)
    runner.start()
    batch = final(api, batch_id)
    assert batch["status"] == "failed"
    [error] = batch["errors"]
    assert error["code"] == "INGEST-1500-500" and f"started {MAX_CRASHES} times" in error["description"]
    assert rows(api, dataset_id) == []
    wait_until(lambda: not list(svc.batch_queue.entries()))


def test_a_promotion_that_raised_is_given_back_without_counting_as_a_crash(
    server: LiveServer, api: ApiClient, dataset_id: str
) -> None:
    """The lake away for a while: each failed promotion gives its entry back, so no outage, however
    long, fails an acknowledged batch; a runner that died holding it (never gave it back) counts."""
    server.services.batch_promoter.stop()
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "people.json", json_lines([person(1)]))
    assert api.post(f"{IMPORT}/{batch_id}?action=COMPLETE").status_code == 200
    queue = PromotionQueue(server.services.store, lease_seconds=0.001)
    for n in range(MAX_CRASHES + 1):
        claimed = wait_until(lambda n=n: queue.claim_next(f"runner-{n}"), timeout=5, interval=0.005)
        assert claimed.doc["crashes"] == 0
        queue.release(claimed)
    died = wait_until(lambda: queue.claim_next("runner-dies"), timeout=5, interval=0.005)
    assert wait_until(lambda: queue.claim_next("next"), timeout=5, interval=0.005).doc["crashes"] == 1
    queue.release(died)  # too late: "next" holds it now, and keeps it
    [entry] = list(server.services.batch_queue.entries())
    assert entry.doc["worker"] == "next" and entry.doc["status"] == "claimed"


def test_a_gzipped_csv_file_with_dotted_headers_lands(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id, "csv")
    csv = (
        "_id,person.name.firstName,person.name.lastName,personalEmail.address\n"
        "c1,Ada,Lovelace,ada@example.com\n"
        "c2,Alan,Turing,alan@example.com\n"
    )
    upload(api, batch_id, dataset_id, "people.csv.gz", gzip.compress(csv.encode()))
    assert complete(api, batch_id)["status"] == "success"
    landed = {r["_id"]: r for r in rows(api, dataset_id)}
    assert set(landed) == {"c1", "c2"}
    assert landed["c2"]["person"]["name"]["lastName"] == "Turing"
    assert landed["c1"]["personalEmail"]["address"] == "ada@example.com"


def test_a_parquet_file_lands(api: ApiClient, dataset_id: str) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([person(i) for i in range(4)])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    batch_id = create(api, dataset_id, "parquet")
    upload(api, batch_id, dataset_id, "people.parquet", buffer.getvalue())
    assert complete(api, batch_id)["status"] == "success"
    assert sorted(r["_id"] for r in rows(api, dataset_id)) == [f"id-{i}" for i in range(4)]


def test_a_chunked_file_reassembles_and_a_chunk_sent_twice_counts_once(
    api: ApiClient, dataset_id: str
) -> None:
    batch_id = create(api, dataset_id)
    data = json_lines([person(i) for i in range(50)])
    url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/big.json"
    assert api.post(f"{url}?action=INITIALIZE").status_code == 201
    size = 1000
    spans = [(s, min(s + size, len(data)) - 1) for s in range(0, len(data), size)]
    # Out of order, the second chunk twice (once by PUT), the others by PATCH as AEP documents.
    for start, end in [spans[1], *spans[::-1], spans[1]]:
        method = api.put if (start, end) == spans[1] else api.patch
        headers = {**OCTETS, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
        response = method(url, content=data[start : end + 1], headers=headers)
        assert response.status_code == 200, response.text
    finished = api.post(f"{url}?action=COMPLETE")
    assert finished.status_code == 201, finished.text
    assert finished.json()["size"] == len(data)
    assert complete(api, batch_id)["status"] == "success"
    assert sorted(r["_id"] for r in rows(api, dataset_id)) == sorted(f"id-{i}" for i in range(50))


def test_a_chunked_file_with_a_gap_is_refused_naming_content_range(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id)
    url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/gap.json"
    assert api.post(f"{url}?action=INITIALIZE").status_code == 201
    response = api.patch(url, content=b"0123456789", headers={**OCTETS, "Content-Range": "bytes 0-9/30"})
    assert response.status_code == 200
    response = api.patch(url, content=b"0123456789", headers={**OCTETS, "Content-Range": "bytes 20-29/30"})
    assert response.status_code == 200
    gap = api.post(f"{url}?action=COMPLETE")
    assert gap.status_code == 400, gap.text
    assert gap.json()["report"]["field"] == "Content-Range"
    assert "10-19" in gap.json()["detail"]
    short = api.patch(url, content=b"short", headers={**OCTETS, "Content-Range": "bytes 10-19/30"})
    assert short.status_code == 400 and short.json()["report"]["field"] == "Content-Range"
    bad = api.patch(url, content=b"x", headers={**OCTETS, "Content-Range": "rows 1-2"})
    assert bad.status_code == 400 and bad.json()["report"]["field"] == "Content-Range"


def test_a_bad_row_is_a_row_error_and_the_others_land(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id)
    upload(
        api,
        batch_id,
        dataset_id,
        "people.json",
        json_lines([person(1), person(2, email="not-an-email"), person(3)]),
    )
    assert complete(api, batch_id)["status"] == "success"
    batch = catalog_batch(api, batch_id)
    assert batch["metrics"]["inputRecordCount"] == 3
    assert batch["metrics"]["outputRecordCount"] == 2
    assert batch["metrics"]["failedRecordCount"] == 1
    assert [e["recordCount"] for e in batch["errors"]] == [1]
    listing = api.get(f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors").json()
    assert listing["data"][0]["name"] == "row_errors.json"
    content = api.get(listing["data"][0]["_links"]["self"]["href"])
    errors = [json.loads(line) for line in content.text.splitlines()]
    assert len(errors) == 1
    assert errors[0]["_corrupt_record"]["personalEmail"]["address"] == "not-an-email"
    assert "personalEmail.address" in errors[0]["_errors"][0]["message"]
    assert sorted(r["_id"] for r in rows(api, dataset_id)) == ["id-1", "id-3"]


def test_over_the_partial_ingestion_percentage_nothing_lands(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id, partialIngestionPercentage=10)
    upload(api, batch_id, dataset_id, "p.json", json_lines([person(1), person(2, email="nope")]))
    done = complete(api, batch_id)
    assert done["status"] == "failed"
    assert done["errors"][0]["code"] == "INGEST-1212-400"
    assert rows(api, dataset_id) == []


def test_an_unparseable_file_fails_the_batch_and_nothing_lands(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "a-good.json", json_lines([person(1)]))
    upload(api, batch_id, dataset_id, "b-bad.json", b'{"_id": "x", "person": {\n')
    done = complete(api, batch_id)
    assert done["status"] == "failed"
    batch = catalog_batch(api, batch_id)
    assert batch["status"] == "failed"
    assert batch["errors"][0]["code"] == "INGEST-1401-400"
    assert "b-bad.json" in batch["errors"][0]["description"]
    assert rows(api, dataset_id) == []
    assert complete(api, batch_id)["status"] == "failed"  # final: completing again changes nothing


def test_abort_drops_the_batch(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "people.json", json_lines([person(1)]))
    upload(api, batch_id, dataset_id, "big.json", b" " * (3 << 20))  # over the 1 MB of control calls
    response = api.post(f"{IMPORT}/{batch_id}?action=ABORT")
    assert response.status_code == 200, response.text
    assert catalog_batch(api, batch_id)["status"] == "aborted"
    refused = api.post(f"{IMPORT}/{batch_id}?action=COMPLETE")
    assert refused.status_code == 409, refused.text
    assert rows(api, dataset_id) == []


def test_another_sandbox_cannot_see_or_complete_the_batch(
    api: ApiClient, other_sandbox_api: ApiClient, dataset_id: str
) -> None:
    batch_id = create(api, dataset_id)
    upload(api, batch_id, dataset_id, "people.json", json_lines([person(1)]))
    other = other_sandbox_api
    assert other.get(f"{CAT}/batches/{batch_id}").status_code == 404
    assert other.post(f"{IMPORT}/{batch_id}?action=COMPLETE").status_code == 404
    assert other.post(f"{IMPORT}/{batch_id}?action=ABORT").status_code == 404
    put = other.put(
        f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/x.json", content=b"{}\n", headers=OCTETS
    )
    assert put.status_code == 404
    assert catalog_batch(api, batch_id)["status"] == "loading"


def test_a_viewer_cannot_ingest(server: LiveServer, api: ApiClient, dataset_id: str) -> None:
    viewer = role_client(server, api, "Viewer")
    response = viewer.post(IMPORT, json={"datasetId": dataset_id, "inputFormat": {"format": "json"}})
    assert response.status_code == 403
    assert response.json()["report"]["permission"] == "ingest-data"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputFormat": {"format": "json"}}, "datasetId"),
        ({"datasetId": "nope", "inputFormat": {"format": "json"}}, "datasetId"),
        ({"datasetId": "DATASET", "inputFormat": {"format": "xml"}}, "inputFormat.format"),
        ({"datasetId": "DATASET"}, "inputFormat.format"),
        (
            {"datasetId": "DATASET", "inputFormat": {"format": "csv"}, "partialIngestionPercentage": "x"},
            "partialIngestionPercentage",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    api: ApiClient, dataset_id: str, body: dict[str, Any], field: str
) -> None:
    body = {k: (dataset_id if v == "DATASET" else v) for k, v in body.items()}
    response = api.post(IMPORT, json=body)
    assert response.status_code == 400, response.text
    assert [e["path"] for e in response.json()["report"]["errors"]] == [field]


def test_bad_requests_on_a_batch_name_what_is_wrong(api: ApiClient, dataset_id: str) -> None:
    batch_id = create(api, dataset_id)
    base = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files"
    hidden = api.put(f"{base}/.hidden", content=b"x", headers=OCTETS)
    assert hidden.status_code == 400 and hidden.json()["report"]["field"] == "fileName"
    nested = api.put(f"{base}/a/b.json", content=b"x", headers=OCTETS)
    assert nested.status_code == 400 and nested.json()["report"]["field"] == "fileName"
    wrong = api.put(f"{IMPORT}/{batch_id}/datasets/other/files/a.json", content=b"x", headers=OCTETS)
    assert wrong.status_code == 400 and wrong.json()["report"]["field"] == "datasetId"
    action = api.post(f"{IMPORT}/{batch_id}?action=EXPLODE")
    assert action.status_code == 400 and action.json()["report"]["parameter"] == "action"
    empty = api.post(f"{IMPORT}/{batch_id}?action=COMPLETE")
    assert empty.status_code == 400 and empty.json()["report"]["field"] == "batchId"
    assert api.post(f"{IMPORT}/NOSUCHBATCH?action=COMPLETE").status_code == 404
    not_json = api.post(IMPORT, content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    chunk = api.patch(f"{base}/never.json", content=b"x", headers={**OCTETS, "Content-Range": "bytes 0-0/1"})
    assert chunk.status_code == 404 and chunk.json()["report"]["field"] == "fileName"

"""The files beside the lake that every node must see (stores/objectfiles.py), on the home's folder and on
moto's S3 server on 127.0.0.1:

- the file store's contract (atomic writes, reads, listing, deletes, age-based sweeps) on both;
- row errors appended by a streaming run are one file to their readers, on S3 too (also through the API,
  over two micro-batches);
- with the lake on S3, a batch with a bad row keeps its row errors in the bucket, listed and downloaded
  through the API, readable by a node with another (empty) home, and none in the home's warehouse;
- a Query Service SELECT's rows are written to the bucket, read through the API and swept there; a Data
  Cloud Query API result's batches are kept there and served by another node;
- batch-ingestion staging in the bucket: a chunked upload (out of order, a chunk resent) lands once and
  leaves nothing staged; gaps, a short body, a changed total are refused as on a disk; parquet is read
  from an object.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.errors import LakeUnavailable, NotFound
from headwater.services.data360.queryapi import DataCloudQueries
from headwater.stores.objectfiles import ObjectFiles, object_files
from headwater.stores.rowerrors import RowErrorFiles
from tests.conftest import make_settings
from tests.fakes.s3 import S3Server
from tests.flows_helpers import CAT, dataset, profile_schema
from tests.streaming_helpers import cio_event, customerio_flow, streaming, wait_rows
from tests.support import ApiClient, LiveServer
from tests.test_batch_ingestion import (
    IMPORT,
    OCTETS,
    catalog_batch,
    complete,
    create,
    json_lines,
    person,
    upload,
)
from tests.test_query_service import QS, rows, run
from tests.test_security_streaming import row_errors, run_with


@pytest.fixture(params=["folder", "s3"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectFiles:
    """An empty area of a home's folder, or of a new bucket."""
    settings = make_settings(tmp_path / "home")
    if request.param == "s3":
        store: S3Server = request.getfixturevalue("s3_server")
        settings = make_settings(tmp_path / "home", **store.settings(store.new_bucket()))
    return object_files(settings, "_area", tmp_path / "home" / "area")


class Boom(Exception):
    pass


def test_a_write_is_whole_or_nothing_and_is_read_listed_and_deleted(files: ObjectFiles) -> None:
    assert files.stat("a/one.bin") is None and files.list() == [] and files.list("a") == []
    with files.writer("a/one.bin") as out:
        out.write(b"x" * 3_000_000)
        assert files.stat("a/one.bin") is None  # not visible while written
    with pytest.raises(Boom), files.writer("a/one.bin") as out:
        out.write(b"partial")
        raise Boom()
    assert files.read_bytes("a/one.bin") == b"x" * 3_000_000  # the earlier file, untouched
    assert [(e.key, e.size) for e in files.list("a")] == [("a/one.bin", 3_000_000)]  # no leftover
    with files.writer("a/two.bin") as out:
        out.write(b"two")
    with files.writer("a/empty.bin", keep_empty=False):
        pass
    assert sorted(e.key for e in files.list("a")) == ["a/one.bin", "a/two.bin"]
    with files.open("a/two.bin") as source:
        assert source.size() == 3 and source.read_at(1, 2) == b"o"
    with pytest.raises(FileNotFoundError):
        files.open("a/none.bin")
    with pytest.raises(FileNotFoundError):
        files.read_bytes("a/none.bin")
    files.delete("a/none.bin")  # no error
    files.delete_tree("a")
    assert files.list("a", recursive=True) == [] and files.stat("a/one.bin") is None


def test_a_complete_whose_node_died_while_deleting_the_chunks_answers_the_size_again(
    files: ObjectFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMPLETE writes the file, then deletes the chunks; a node killed after the first deletes (the
    multi-node test's kill -9 once did it) must leave an upload that a COMPLETE sent to another node
    finds complete, not one missing its first chunk."""
    import asyncio

    from headwater.services.batchingest import ChunkRange
    from headwater.services.ingeststaging import ObjectStaging

    staging, data = ObjectStaging(files), b"0123456789abcdef"

    async def body(piece: bytes) -> Any:
        yield piece

    staging.initialize("b1/d1", "people.csv")
    for start in (0, 8):
        span = ChunkRange(start, start + 7, len(data))
        asyncio.run(staging.put_chunk("b1/d1", "people.csv", span, body(data[start : start + 8])))
    real_delete, deleted = files.delete, []

    def dies_after_one(key: str) -> None:
        if deleted:
            raise Boom("killed")
        deleted.append(key)
        real_delete(key)

    monkeypatch.setattr(files, "delete", dies_after_one)
    with pytest.raises(Boom):
        staging.complete("b1/d1", "people.csv")
    monkeypatch.setattr(files, "delete", real_delete)
    assert staging.complete("b1/d1", "people.csv") == len(data)
    assert files.read_bytes("b1/d1/people.csv") == data


def test_a_sweep_deletes_what_is_older_than_the_horizon(files: ObjectFiles) -> None:
    for key in ("q1.arrow", "q2.arrow", "keep.txt"):
        with files.writer(key) as out:
            out.write(b"rows")
    written = files.stat("q1.arrow")
    assert written is not None
    assert files.sweep(written.written_ms - 60_000, ".arrow") == 0
    assert files.sweep(written.written_ms + 60_000, ".arrow") == 2
    assert [e.key for e in files.list()] == ["keep.txt"]


def test_micro_batches_row_errors_are_one_file_to_their_readers_and_a_retry_replaces_its_own(
    files: ObjectFiles,
) -> None:
    errors = RowErrorFiles(files)
    assert errors.size("b1") is None and b"".join(errors.chunks("b1")) == b""
    record = pa.record_batch([pa.array(["a", "b"])], names=["id"])

    class Error:
        def __init__(self, row: int) -> None:
            self.row, self.code, self.message = row, "E1", f"row {row} is wrong"

    # Micro-batches read from log offsets 0, 10 and 20; the last is retried (its first attempt's commit
    # was refused, or its worker died before it): its row errors replace the first attempt's.
    for offset, row in ((0, 0), (10, None), (20, 1), (20, 1)):
        with errors.writer("b1", stored=0, micro_batch=offset) as writer:
            if row is not None:  # a micro-batch without row errors adds nothing
                writer.add(record, [Error(row)])
    lines = [json.loads(line) for line in b"".join(errors.chunks("b1")).splitlines()]
    assert [(e["_row"], e["_corrupt_record"]["id"]) for e in lines] == [(0, "a"), (1, "b")]
    assert errors.size("b1") == sum(len(line) + 1 for line in b"".join(errors.chunks("b1")).splitlines())
    assert len(files.list("b1")) == 2
    errors.remove("b1")
    assert errors.size("b1") is None


def test_a_store_that_is_down_is_lake_unavailable(s3_server: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", **s3_server.settings(s3_server.new_bucket()))
    errors = RowErrorFiles.of(settings)
    s3_server.stop()
    try:
        with pytest.raises(LakeUnavailable) as caught, errors.writer("b1") as writer:
            writer.add_record({"a": 1}, [])
        assert "127.0.0.1" not in caught.value.detail
    finally:
        s3_server.start()


def test_a_bad_rows_errors_are_kept_in_the_bucket_and_served(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server, tmp_path: Path
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id)
    people = [person(1), person(2, email="not-an-email"), person(3)]
    upload(s3_api, batch_id, dataset_id, "people.json", json_lines(people))
    assert complete(s3_api, batch_id)["status"] == "success"
    assert catalog_batch(s3_api, batch_id)["metrics"]["failedRecordCount"] == 1

    listing = s3_api.get(f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors")
    assert listing.status_code == 200, listing.text
    [item] = listing.json()["data"]
    content = s3_api.get(item["_links"]["self"]["href"])
    assert content.status_code == 200 and item["length"] == len(content.content)
    [error] = [json.loads(line) for line in content.text.splitlines()]
    assert error["_corrupt_record"]["personalEmail"]["address"] == "not-an-email"

    settings = s3_live.settings
    assert settings.lake_url is not None
    bucket, prefix = settings.lake_url.removeprefix("s3://").split("/", 1)
    assert f"{bucket}/{prefix}/_errors/{batch_id}/row_errors.json" in s3_server.keys(bucket)
    assert not (settings.warehouse_dir / "_errors").exists()
    # Another node, with its own empty home and the same lake, reads the same row errors.
    other = make_settings(tmp_path / "other-home", **s3_server.settings(bucket, prefix))
    assert b"".join(RowErrorFiles.of(other).chunks(batch_id)) == content.content

    # Deleting the dataset deletes its batches' row errors from the bucket.
    assert s3_api.delete(f"{CAT}/dataSets/{dataset_id}").status_code in (200, 204)
    assert not [k for k in s3_server.keys(bucket) if f"/_errors/{batch_id}/" in k]


@pytest.fixture
def query_runner(s3_live: LiveServer) -> Iterator[None]:
    s3_live.services.query_job_runner.start()
    yield
    s3_live.services.query_job_runner.stop()


@pytest.mark.usefixtures("query_runner")
def test_a_selects_rows_are_kept_in_the_bucket_read_and_swept(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id)
    upload(s3_api, batch_id, dataset_id, "p.json", json_lines([person(i) for i in range(3)]))
    assert complete(s3_api, batch_id)["status"] == "success"
    doc = s3_api.get(f"{CAT}/dataSets/{dataset_id}").json()[dataset_id]
    table = doc["tags"]["adobe/pqs/table"][0]

    done = run(s3_api, f"SELECT _id FROM {table} ORDER BY _id")
    assert rows(s3_api, done) == [{"_id": f"id-{i}"} for i in range(3)]
    page = s3_api.get(f"{QS}/{done['id']}/results?start=2&limit=5").json()
    assert page["rows"] == [{"_id": "id-2"}] and page["_page"]["totalCount"] == 3

    settings = s3_live.settings
    assert settings.lake_url is not None
    bucket, prefix = settings.lake_url.removeprefix("s3://").split("/", 1)
    key = f"{bucket}/{prefix}/_queryresults/{done['id']}.arrow"
    assert key in s3_server.keys(bucket)
    assert not (settings.warehouse_dir / "_queryresults").exists()

    files = s3_live.services.query_jobs.result_files
    written_ms = files.written_ms(done["id"])
    assert written_ms is not None
    assert files.sweep(written_ms + 1000) >= 1
    assert key not in s3_server.keys(bucket)
    assert s3_api.get(f"{QS}/{done['id']}/results").status_code == 404


def _keys(live: LiveServer, s3_server: S3Server, part: str) -> list[str]:
    assert live.settings.lake_url is not None
    bucket = live.settings.lake_url.removeprefix("s3://").split("/", 1)[0]
    return [k for k in s3_server.keys(bucket) if part in k]


def test_a_chunked_upload_on_s3_lands_once_and_leaves_nothing_staged(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id)
    data = json_lines([person(i) for i in range(40)])
    url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/big.json"
    assert s3_api.post(f"{url}?action=INITIALIZE").status_code == 201
    spans = [(s, min(s + 700, len(data)) - 1) for s in range(0, len(data), 700)]
    # Out of order, the second chunk three times (once by PUT); a short body is refused and not kept.
    short = s3_api.patch(
        url, content=b"short", headers={**OCTETS, "Content-Range": f"bytes 0-99/{len(data)}"}
    )
    assert short.status_code == 400 and short.json()["report"]["field"] == "Content-Range"
    for start, end in [spans[1], *spans[::-1], spans[1]]:
        method = s3_api.put if (start, end) == spans[1] else s3_api.patch
        headers = {**OCTETS, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
        response = method(url, content=data[start : end + 1], headers=headers)
        assert response.status_code == 200, response.text
    staged = _keys(s3_live, s3_server, f"/_ingest/{batch_id}/")
    assert len(staged) == len(spans) + 1  # a chunk object per range, and the upload's marker
    finished = s3_api.post(f"{url}?action=COMPLETE")
    assert finished.status_code == 201, finished.text
    assert finished.json()["size"] == len(data)
    [assembled] = _keys(s3_live, s3_server, f"/_ingest/{batch_id}/")  # the chunks are gone
    assert assembled.endswith(f"/_ingest/{batch_id}/{dataset_id}/big.json")
    again = s3_api.post(f"{url}?action=COMPLETE")
    assert again.status_code == 201 and again.json()["size"] == len(data)
    assert complete(s3_api, batch_id)["status"] == "success"
    response = s3_api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=100")
    assert sorted(r["_id"] for r in response.json()["data"]) == sorted(f"id-{i}" for i in range(40))
    assert _keys(s3_live, s3_server, f"/_ingest/{batch_id}/") == []
    assert not (s3_live.settings.warehouse_dir / "_ingest").exists()


def test_a_gap_is_refused_and_a_parquet_file_is_read_from_the_bucket(
    s3_live: LiveServer, s3_api: ApiClient
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id, "parquet")
    url = f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/gap.parquet"
    assert s3_api.post(f"{url}?action=INITIALIZE").status_code == 201
    for span in ("0-9/30", "20-29/30"):
        headers = {**OCTETS, "Content-Range": f"bytes {span}"}
        assert s3_api.patch(url, content=b"0123456789", headers=headers).status_code == 200
    gap = s3_api.post(f"{url}?action=COMPLETE")
    assert gap.status_code == 400 and gap.json()["report"]["field"] == "Content-Range"
    assert "10-19" in gap.json()["detail"]
    other = s3_api.patch(url, content=b"0", headers={**OCTETS, "Content-Range": "bytes 10-10/31"})
    assert other.status_code == 400 and "total" in other.json()["detail"]
    none = s3_api.post(f"{IMPORT}/{batch_id}/datasets/{dataset_id}/files/none.parquet?action=COMPLETE")
    assert none.status_code == 404

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([person(i) for i in range(4)]), buffer)
    upload(s3_api, batch_id, dataset_id, "people.parquet", buffer.getvalue())
    assert s3_api.post(f"{url}?action=INITIALIZE").status_code == 201  # starts over: no chunk left
    assert complete(s3_api, batch_id)["status"] == "success"  # the pending upload is no file
    response = s3_api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=100")
    assert sorted(r["_id"] for r in response.json()["data"]) == [f"id-{i}" for i in range(4)]


def test_a_streaming_runs_row_errors_of_two_micro_batches_are_one_file(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server
) -> None:
    pipeline = customerio_flow(s3_api, name="Row errors on S3")
    with streaming(s3_live, s3_api), httpx.Client(timeout=30) as client:
        for step in range(2):  # one micro-batch after the other, each with a message that fails
            assert client.post(pipeline["inletUrl"], json={}).status_code == 200
            assert client.post(pipeline["inletUrl"], json=cio_event(f"ok-{step}")).status_code == 200
            wait_rows(s3_live, s3_api, pipeline["datasetId"], step + 1, timeout=30)
            run = run_with(s3_api, pipeline["flowId"], step + 1)
    stored = row_errors(s3_api, run)
    assert [e["_corrupt_record"] for e in stored] == [{}, {}]
    batch_id = run["activities"][0]["targetInfo"][0]["reference"]["ids"][0]
    objects = _keys(s3_live, s3_server, f"/_errors/{batch_id}/")
    names = [o.rpartition("/")[2].partition("-")[0] for o in objects]
    assert names == ["row_errors.json.stream"] * 2, objects  # one object per micro-batch


class _Rows:
    """What the Data Cloud Query API asks of the safe query engine: one SELECT's rows."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def run(self, actor: object, sql: str, aliases: object = None) -> _Rows:
        return self


class _NoEntities(DataCloudQueries):
    def entities(self, actor: Any) -> list[Any]:
        return []


def test_data_cloud_query_batches_are_kept_in_the_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home", data360_query_batch_rows=2, **s3_server.settings(s3_server.new_bucket())
    )
    table = pa.table({"n": list(range(5))})
    api = _NoEntities(settings, None, None, _Rows(table), None)  # type: ignore[arg-type]
    owner = SimpleNamespace(org=SimpleNamespace(id="o1"), sandbox=SimpleNamespace(id="s1"), user="u1")
    first = api.query(owner, {"sql": "SELECT n FROM t"})  # type: ignore[arg-type]
    assert first["data"] == [[0], [1]] and first["done"] is False
    assert settings.lake_url is not None
    bucket = settings.lake_url.removeprefix("s3://").split("/", 1)[0]
    assert any(k.endswith(f"/_dcquery/{first['queryId']}.arrow") for k in s3_server.keys(bucket))
    assert not (settings.home / "dcquery").exists()
    # Another node (another home, the same lake) serves the next batch; another user's call is a 404.
    other = make_settings(tmp_path / "other", data360_query_batch_rows=2, **s3_server.settings(bucket))
    node = _NoEntities(other, None, None, _Rows(table), None)  # type: ignore[arg-type]
    second = node.batch(owner, first["nextBatchId"])  # type: ignore[arg-type]
    assert second["data"] == [[2], [3]]
    stranger = SimpleNamespace(org=owner.org, sandbox=owner.sandbox, user="u2")
    with pytest.raises(NotFound):
        node.batch(stranger, first["nextBatchId"])  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        node.batch(owner, "0" * 32 + "-0")  # type: ignore[arg-type]

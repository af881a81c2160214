"""With the lake on S3 (moto's server on 127.0.0.1), the rest of what a node used to keep in its home is in
the lake's bucket, and a node with another, empty home reads it:

- uploads and Local Folder files (``_files/<org>/<sandbox>/``): a file uploaded through the API server is
  read by a flow run on a second node (its own empty home, the same metadata database and lake: a
  Local Folder connection on a relative rootPath) and by an Uploaded files connector on a third home;
  nothing lands in any home;
- the confinement holds on S3 as on a disk: ``..`` that climbs out of the sandbox's folder, absolute
  paths into the home, another sandbox's uploads and traversing source paths are refused;
- lookback keys (``_lookback/``) written by one node are read by another; a failing store fails;
- a folder in the bucket answers globs, folders, listings and refusals as the same folder on a disk;
- Data 360 bulk-ingest job files (``_ingestjobs/``) are stored, processed, read by another node and
  deleted with the job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater.connectors import registry
from headwater.connectors.base import ReadRequest
from headwater.connectors.errors import InvalidSourceParams, SourceNotFound
from headwater.connectors.files import roots
from headwater.connectors.files.client import Folder
from headwater.connectors.files.objects import ObjectFolder
from headwater.connectors.outbound import OutboundPolicy
from headwater.container import Services
from headwater.errors import LakeUnavailable
from headwater.runtime import lookback
from headwater.runtime.worker import Worker
from headwater.services.data360.bulkfiles import JobFiles
from headwater.settings import Settings
from tests.conftest import make_settings
from tests.fakes.s3 import S3Server
from tests.flows_helpers import FS
from tests.support import ApiClient, LiveServer, fresh_sandbox_client
from tests.test_batch_runs import contact, files_flow, rows, run_and_wait
from tests.test_data360_connectors import acme_schema, create_connector, deploy, upload
from tests.test_data360_ingest import (
    Deployed,
    create_job,
    identity_rows,
    ingestion_token,
    job_path,
    published,
    put_csv,
    scope_of,
    set_state,
    wait_state,
)
from tests.test_security_files import SECRET, assert_refused, local_folder, uploads_connection

UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"


def _bucket(live: LiveServer) -> tuple[str, str]:
    assert live.settings.lake_url is not None
    bucket, prefix = live.settings.lake_url.removeprefix("s3://").split("/", 1)
    return bucket, prefix


def _other_node(live: LiveServer, s3_server: S3Server, home: Path) -> Settings:
    """Settings of a node with an empty home of its own and the same lake."""
    return make_settings(home, **s3_server.settings(*_bucket(live)))


@pytest.fixture
def second_node(s3_live: LiveServer, s3_server: S3Server, tmp_path: Path) -> Iterator[Services]:
    """Another node: its own empty home, the server's metadata database, keys and lake, and a worker
    executing queued runs (the server runs none itself)."""
    keys = s3_live.settings.keys_dir
    settings = make_settings(
        tmp_path / "second-home",
        database_url=s3_live.settings.resolved_database_url,
        encryption_key=(keys / "encryption.key").read_text().strip(),
        token_signing_key=(keys / "token-signing.key").read_text().strip(),
        worker_poll_seconds=0.1,
        **s3_server.settings(*_bucket(s3_live)),
    )
    services = Services(settings)
    runner = Worker(services, name="second-node", schedule=False, streaming=False)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    yield services
    runner.stop()
    thread.join(timeout=10)
    services.close()


def _csv(people: list[dict[str, str]]) -> bytes:
    header = ",".join(people[0])
    return ("\n".join([header, *(",".join(p.values()) for p in people)]) + "\n").encode()


def test_an_upload_is_read_by_a_flow_run_on_a_node_with_another_home(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server, second_node: Services, tmp_path: Path
) -> None:
    conn = uploads_connection(s3_api)
    people = [contact(i, "2024-01-01 10:00:00") for i in range(3)]
    put = s3_api.put(f"{FS}/connections/{conn}/files/contacts.csv", content=_csv(people))
    assert put.status_code == 201, put.text
    bucket, prefix = _bucket(s3_live)
    area = f"{bucket}/{prefix}/_files/{s3_api.org_id}/{s3_api.sandbox_name}/uploads/{conn}"
    assert f"{area}/contacts.csv" in s3_server.keys(bucket)
    assert not (s3_live.settings.home / "files" / s3_api.org_id / s3_api.sandbox_name).exists()
    listed = s3_api.get(f"{FS}/connections/{conn}/files").json()["items"]
    assert listed == [{"path": "contacts.csv", "size": len(_csv(people))}]

    # The second node's worker runs a flow whose Local Folder connection (a relative rootPath) reads the
    # upload from the bucket: the rows land, and the worker's home holds no file.
    ids = files_flow(s3_api, Path(f"uploads/{conn}"))
    run = run_and_wait(s3_api, ids["flow"], "2024-01-01T10:00:00Z")
    assert run["state"] == "success", run["metrics"]["statusSummary"]
    assert sorted(r["_id"] for r in rows(s3_api, ids["dataset"])) == ["0", "1", "2"]
    assert not (second_node.settings.home / "files").exists()

    # An Uploaded files connector on yet another home reads the same upload.
    auth = {"_orgId": s3_api.org_id, "_sandboxName": s3_api.sandbox_name, "_connectionId": conn}
    other = _other_node(s3_live, s3_server, tmp_path / "other-home")
    connector = registry.connector_for(UPLOADED_FILES, auth, OutboundPolicy([]), other)
    request = ReadRequest(params={"path": "*.csv"}, data_format="delimited", batch_size=100)
    [batch] = list(connector.read(request))
    assert batch.column("email").to_pylist() == [p["email"] for p in people]
    assert not (tmp_path / "other-home" / "files").exists()

    # Nested files, a clash of a file and a folder (409 as on a disk), a delete.
    assert s3_api.put(f"{FS}/connections/{conn}/files/d/b.csv", content=b"a\n1\n").status_code == 201
    assert s3_api.put(f"{FS}/connections/{conn}/files/d", content=b"a\n").status_code == 409
    assert s3_api.put(f"{FS}/connections/{conn}/files/d/b.csv/c", content=b"a\n").status_code == 409
    explored = s3_api.get(f"{FS}/connections/{conn}/explore", params={"objectType": "root"})
    assert [(i["name"], i["type"]) for i in explored.json()] == [("contacts.csv", "file"), ("d", "folder")]
    assert s3_api.delete(f"{FS}/connections/{conn}/files/d/b.csv").status_code == 204
    assert s3_api.delete(f"{FS}/connections/{conn}/files/d/b.csv").status_code == 404
    assert [i["path"] for i in s3_api.get(f"{FS}/connections/{conn}/files").json()["items"]] == [
        "contacts.csv"
    ]
    # The connection deleted, its uploads go with it.
    assert s3_api.delete(f"{FS}/connections/{conn}").status_code == 204
    assert not [k for k in s3_server.keys(bucket) if k.startswith(f"{area}/")]


def test_paths_out_of_the_sandboxs_folder_are_refused_on_s3(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server
) -> None:
    conn = uploads_connection(s3_api)
    secret = f"id,email\n1,{SECRET}\n".encode()
    assert s3_api.put(f"{FS}/connections/{conn}/files/in/contacts.csv", content=secret).status_code == 201
    home = s3_live.settings.home
    own = f"uploads/{conn}"
    c = s3_live.creds
    with fresh_sandbox_client(s3_live, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"]) as other:
        for root in (
            "..",
            "../..",
            "a/../..",
            f"../{s3_api.sandbox_name}/{own}",  # another sandbox's uploads
            f"../../{s3_api.org_id}/{s3_api.sandbox_name}/{own}",
            "/",
            "/etc",
            str(home),
            str(home / "files" / s3_api.org_id / s3_api.sandbox_name),  # the home's folder is unused on S3
        ):
            assert_refused(local_folder(other, root))
        for answer in (
            other.get(f"{FS}/connections/{conn}/files"),
            other.put(f"{FS}/connections/{conn}/files/x.csv", content=b"a\n"),
        ):
            assert answer.status_code == 404, answer.text
    for path in ("%2e%2e/x.csv", "in/%2e%2e/%2e%2e/x.csv", ".hidden.csv", "a%00b.csv"):
        answer = s3_api.put(f"{FS}/connections/{conn}/files/{path}", content=b"a\n")
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["report"]["parameter"] == "path"
    for path in ("../x.csv", "in/../../x.csv"):  # the client resolves these dot segments before sending
        assert s3_api.put(f"{FS}/connections/{conn}/files/{path}", content=b"a\n").status_code in (404, 405)
    too_long = "/".join(["d" * 250] * 4) + "/f"  # a path the API takes, too long as an S3 key
    answer = s3_api.put(f"{FS}/connections/{conn}/files/{too_long}", content=b"a")
    assert answer.status_code == 400 and "keys hold at most" in answer.json()["detail"], answer.text
    for root in (".", "exports", own, f"{own}/in/.."):
        assert local_folder(s3_api, root).status_code == 201, root
    # A source path that climbs out of the root, or is absolute, is refused by the reader itself.
    connection = local_folder(s3_api, f"{own}/in").json()["id"]
    for name in ("../../x.csv", "/etc/passwd", "in/../../../contacts.csv"):
        answer = s3_api.get(
            f"{FS}/connections/{connection}/explore", params={"objectType": "table", "object": name}
        )
        assert answer.status_code == 400 and SECRET not in answer.text, (name, answer.text)
    bucket, _ = _bucket(s3_live)
    assert not [k for k in s3_server.keys(bucket) if "/_files/" in k and k.endswith("x.csv")]


def test_the_keys_a_root_names_in_the_bucket_stay_in_the_sandbox() -> None:
    place = roots.Place("ORG1@AdobeOrg", "prod")
    assert roots.confine_key(place, ".") == "ORG1@AdobeOrg/prod"
    assert roots.confine_key(place, "a/./b/../c/") == "ORG1@AdobeOrg/prod/a/c"
    for root in ("..", "a/../..", "../prod", "../../ORG1@AdobeOrg/prod"):
        with pytest.raises(InvalidSourceParams, match="HEADWATER_FILES_ROOTS"):
            roots.confine_key(place, root)
    for root in ("a\0b", "a\nb"):
        with pytest.raises(InvalidSourceParams):
            roots.confine_key(place, root)
    with pytest.raises(InvalidSourceParams):
        roots.confine_key(roots.Place("..", "prod"), ".")


def test_lookback_keys_written_by_one_node_are_read_by_another(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    one = make_settings(tmp_path / "one", **s3_server.settings(bucket))
    two = make_settings(tmp_path / "two", **s3_server.settings(bucket))
    digests = bytes(range(32))
    relative = lookback.write_keys(lookback.keys_files(one), "flow-1", "batch-1", digests)
    assert relative.startswith("flow-1/batch-1-") and relative.endswith(".keys")
    assert [k for k in s3_server.keys(bucket) if "/_lookback/flow-1/" in k] == [
        f"{bucket}/lake/_lookback/{relative}"
    ]
    assert not (one.warehouse_dir / "_lookback").exists()
    found = lookback.read_keys(lookback.keys_files(two), relative, 2)
    assert found is not None and sorted(found) == [digests[:16], digests[16:]]
    assert lookback.read_keys(lookback.keys_files(two), relative, 3) is None  # not what was written
    lookback.remove_keys(lookback.keys_files(two), relative)
    assert lookback.read_keys(lookback.keys_files(one), relative, 2) is None  # gone: no overlap
    s3_server.stop()
    try:
        with pytest.raises(LakeUnavailable):  # a store that fails fails the run, never "no overlap"
            lookback.read_keys(lookback.keys_files(two), relative, 2)
    finally:
        s3_server.start()


@pytest.fixture
def deployed(s3_live: LiveServer, s3_api: ApiClient) -> Iterator[Deployed]:
    connector = create_connector(s3_api, "Acme Ingest")
    assert upload(s3_api, connector["id"], acme_schema()).status_code == 200
    made = deploy(s3_api, connector["id"], ["cartAdd", "pageView", "identity"], s3_api.sandbox_name)
    assert made.status_code == 201, made.text
    streams = {s["category"]: s for s in made.json()["dataStreams"]}
    token = ingestion_token(s3_live, s3_api)
    with httpx.Client(base_url=s3_live.base_url, timeout=30) as client:
        yield Deployed(s3_api, connector, streams, token, s3_live.base_url, client)


def test_bulk_job_files_are_in_the_bucket_and_read_by_another_node(
    s3_live: LiveServer, s3_server: S3Server, deployed: Deployed, tmp_path: Path
) -> None:
    bucket, prefix = _bucket(s3_live)

    def objects() -> list[str]:
        return [k for k in s3_server.keys(bucket) if k.startswith(f"{bucket}/{prefix}/_ingestjobs/")]

    job = create_job(deployed)
    assert put_csv(deployed, job["id"], identity_rows("s3-1", "s3-2")).status_code == 202
    refused = put_csv(deployed, job["id"], "nonsense,header\r\n1,2\r\n")
    assert refused.status_code == 400, refused.text
    [stored] = objects()  # the refused file left nothing
    assert f"/{job['id']}/" in stored and not (s3_live.settings.home / "ingest-jobs").exists()
    # Another node reads the job's file from the bucket.
    scope = scope_of(s3_live, deployed.api)
    other = JobFiles(_other_node(s3_live, s3_server, tmp_path / "other"), 1 << 20)
    opened = other.source(scope, job["id"], stored.rpartition("/")[2])
    assert not isinstance(opened, Path)
    with opened() as source:
        assert source.read().decode() == identity_rows("s3-1", "s3-2")
    assert set_state(deployed, job["id"], "UploadComplete").status_code == 200
    done = wait_state(deployed, job["id"], ("JobComplete", "Failed"))
    assert done["state"] == "JobComplete" and done["numberRecordsProcessed"] == 2, done
    records = published(s3_live, deployed.streams["Profile"]["flowId"])
    assert [r["deviceId"] for _, r in records] == ["s3-1", "s3-2"]
    assert deployed.request("DELETE", job_path(job["id"])).status_code == 204
    assert objects() == []


def test_a_folder_in_the_bucket_answers_as_the_same_folder_on_a_disk(
    s3_server: S3Server, tmp_path: Path
) -> None:
    names = ["a.csv", "b.json", "in/c.csv", "in/deep/d.csv", ".hidden.csv", "in/.h/e.csv", "in/deep/.f.csv"]
    disk = tmp_path / "root"
    bucket = s3_server.new_bucket()
    store = s3_server.filesystem()
    for name in names:
        (disk / name).parent.mkdir(parents=True, exist_ok=True)
        (disk / name).write_bytes(name.encode())
        with store.open_output_stream(f"{bucket}/lake/_files/o/s/root/{name}") as out:
            out.write(name.encode())
    settings = make_settings(tmp_path / "home", **s3_server.settings(bucket))
    files = roots.bucket_files(settings)
    assert files is not None
    on_s3 = ObjectFolder.open(files, roots.confine_key(roots.Place("o", "s"), "root"), "root")
    on_disk = Folder.open(disk.resolve(), "root")
    for pattern in (
        "*.csv",
        "**/*.csv",
        "in",
        "in/*.csv",
        "in/**/*.csv",
        "a.csv",
        "?.csv",
        "[ab].*",
        "in/deep",
        ".",
    ):
        assert [i.path for i, _ in on_s3.match(pattern)] == [i.path for i, _ in on_disk.match(pattern)], (
            pattern
        )
    assert [i.size for i, _ in on_s3.match("**/*")] == [i.size for i, _ in on_disk.match("**/*")]
    for folder in ("", "in", "in/deep"):
        assert on_s3.entries(folder) == on_disk.entries(folder), folder
    for bad, error in (
        ("nope.csv", SourceNotFound),
        ("../x.csv", InvalidSourceParams),
        ("/etc/passwd", InvalidSourceParams),
    ):
        with pytest.raises(error):
            on_disk.match(bad)
        with pytest.raises(error):
            on_s3.match(bad)
    [(info, key)] = on_s3.match("in/c.csv")
    with on_s3.opener(key, info.path, None)() as stream:
        assert stream.read() == b"in/c.csv"
    with pytest.raises(InvalidSourceParams):  # a key that match did not return, outside the root
        on_s3.opener("o/s/other/x.csv", "x.csv", None)

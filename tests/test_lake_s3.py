"""The lake on S3-compatible object storage (HEADWATER_LAKE_URL), against moto's S3 server on 127.0.0.1:

- a batch through the Batch Ingestion API lands in the bucket (data and metadata files, none in the
  home's warehouse folder) and is read back through the API and by a query;
- an outage of the store during a commit is LakeUnavailable with nothing committed, and a retry once it
  is back commits once; COMPLETE while the store is down is a 503 (its files are staged there), and a
  batch whose promotion meets the outage waits and lands once afterwards;
- the settings are checked at start, the secret key is never shown, and the features that copy the
  warehouse as a folder (backup, restore) refuse, naming themselves.

The lake's contract tests (test_lake_increments.py, test_lake_catalog.py) run on the folder and on S3.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.errors import LakeUnavailable
from headwater.lake.iceberg import Lake
from headwater.lake.storage import io_properties, lake_location
from headwater.services.backup import Refused, backup_home
from headwater.settings import Settings
from headwater.stores.metadata import Scope
from tests.conftest import make_settings
from tests.fakes.s3 import SECRET_KEY, S3Server
from tests.flows_helpers import CAT, dataset, profile_schema
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_batch_ingestion import catalog_batch, complete, create, json_lines, person, upload

SCHEMA = pa.schema([("id", pa.string())])


def _bucket_and_prefix(settings: Settings) -> tuple[str, str]:
    assert settings.lake_url is not None
    bucket, prefix = settings.lake_url.removeprefix("s3://").split("/", 1)
    return bucket, prefix


def _dataset_rows(live: LiveServer, api: ApiClient, dataset_id: str) -> list[str]:
    response = api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=1000")
    assert response.status_code == 200, response.text
    return sorted(r["_id"] for r in response.json()["data"])


def test_a_batch_lands_in_the_bucket_and_is_read_back(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id)
    upload(s3_api, batch_id, dataset_id, "people.json", json_lines([person(i) for i in range(5)]))
    done = complete(s3_api, batch_id)
    assert done["status"] == "success", done
    assert _dataset_rows(s3_live, s3_api, dataset_id) == [f"id-{i}" for i in range(5)]

    services = s3_live.services
    sandbox = services.store.get_sandbox(s3_api.org_id, s3_api.sandbox_name)
    assert sandbox is not None
    table = services.lake.load(Scope(sandbox.org_id, sandbox.id), dataset_id)
    assert table is not None
    counted = services.lake.query(table, "SELECT count(*) AS n, count(DISTINCT _id) AS d FROM dataset")
    assert counted.to_pylist() == [{"n": 5, "d": 5}]

    bucket, prefix = _bucket_and_prefix(s3_live.settings)
    keys = s3_server.keys(bucket)
    assert table.location().startswith(f"s3://{bucket}/{prefix}/")
    assert any(k.endswith(".parquet") and "/data/" in k for k in keys), keys
    assert any(k.endswith(".metadata.json") for k in keys), keys
    assert table.metadata_location.startswith(f"s3://{bucket}/{prefix}/")
    warehouse = s3_live.settings.warehouse_dir
    assert not list(warehouse.rglob("*.parquet")) and not list(warehouse.rglob("*.avro"))


def test_an_outage_during_a_commit_commits_nothing_and_a_retry_commits_once(
    s3_server: S3Server, tmp_path: Path
) -> None:
    lake = Lake(make_settings(tmp_path / "home", **s3_server.settings(s3_server.new_bucket())))
    scope = Scope("org", "sb")
    table = lake.ensure_table(scope, "ds" + uuid.uuid4().hex[:8], SCHEMA)
    batch = pa.record_batch([pa.array(["a", "b", "c"])], schema=SCHEMA)
    files = lake.write_files(table, iter([batch]), SCHEMA)  # on the store; not visible yet
    checkpoint = {"flowId": "f1", "runId": "r1"}

    s3_server.stop()
    try:
        with pytest.raises(LakeUnavailable) as caught:
            lake.commit(table, files, checkpoint, once_per=("flowId", "runId"))
        assert "127.0.0.1" not in caught.value.detail and SECRET_KEY not in str(caught.value)
    finally:
        s3_server.start()

    fresh = lake.catalog.load_table(table.name())
    assert fresh.current_snapshot() is None  # the catalog row still names the table's first metadata
    snapshot_id, committed = lake.commit(fresh, files, checkpoint, once_per=("flowId", "runId"))
    assert committed
    again, committed_again = lake.commit(fresh, files, checkpoint, once_per=("flowId", "runId"))
    assert (again, committed_again) == (snapshot_id, False)
    rows = lake.scan(lake.catalog.load_table(table.name())).read_all().column("id").to_pylist()
    assert sorted(rows) == ["a", "b", "c"]


def test_a_batch_completed_while_the_store_is_down_lands_once_when_it_is_back(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id)
    upload(s3_api, batch_id, dataset_id, "people.json", json_lines([person(i) for i in range(4)]))
    caplog.set_level(logging.ERROR)

    def lake_failed() -> bool:
        return any(r.exc_info and isinstance(r.exc_info[1], LakeUnavailable) for r in list(caplog.records))

    url = f"/data/foundation/import/batches/{batch_id}?action=COMPLETE"
    s3_server.stop()
    try:  # the staged files are on the store too: COMPLETE is refused, nothing acknowledged
        refused = s3_api.post(url)
        assert refused.status_code == 503 and "LAKE-1503-503" in refused.text, refused.text
        assert "127.0.0.1" not in refused.text
        assert catalog_batch(s3_api, batch_id)["status"] == "loading"
    finally:
        s3_server.start()
    promoter = s3_live.services.batch_promoter
    promoter.stop()  # COMPLETE accepted while the store is up, then the store goes before promotion
    accepted = s3_api.post(url)
    assert accepted.status_code == 200, accepted.text
    caplog.clear()
    s3_server.stop()
    try:
        promoter.start()
        wait_until(lake_failed, timeout=30)  # the promotion tried, and the lake was away
        assert catalog_batch(s3_api, batch_id)["status"] == "processing"  # not failed: retried later
    finally:
        s3_server.start()
        promoter.start()
    done = complete(s3_api, batch_id)  # polled until final; the runner took the entry up again
    assert done["status"] == "success", done
    assert _dataset_rows(s3_live, s3_api, dataset_id) == [f"id-{i}" for i in range(4)]


def test_lake_settings_are_checked_at_start_and_the_secret_is_never_shown(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = "do-not-show-this-secret-key-0123456789"
    bad = [
        ({"lake_url": "s3://Bad_Bucket/x"}, "HEADWATER_LAKE_URL"),
        ({"lake_url": "gs://bucket/x"}, "HEADWATER_LAKE_URL"),
        ({"s3_endpoint": "http://127.0.0.1:9000"}, "without HEADWATER_LAKE_URL"),
        ({"lake_url": "s3://bucket", "s3_secret_access_key": secret}, "go together"),
        ({"lake_url": "s3://bucket", "s3_endpoint": "ftp://store:21"}, "HEADWATER_S3_ENDPOINT"),
    ]
    for values, named in bad:
        with pytest.raises(ValueError, match=named) as caught:
            make_settings(home, **values)
        assert secret not in str(caught.value)
    with pytest.raises(ValueError, match="plain http beyond loopback"):
        Settings(home=home, lake_url="s3://bucket", s3_endpoint="http://store.internal:9000")
    Settings(home=home, lake_url="s3://bucket", s3_endpoint="https://store.internal:9000")

    settings = make_settings(
        home,
        lake_url="s3://bucket/lake/",
        s3_access_key_id="key",
        s3_secret_access_key=secret,
        s3_path_style=True,
    )
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    assert lake_location(settings) == "s3://bucket/lake"
    props = io_properties(settings)
    assert props["s3.secret-access-key"] == secret  # only handed to pyiceberg's FileIO
    assert props["s3.force-virtual-addressing"] == "false" and props["s3.region"] == "us-east-1"
    local = make_settings(home)
    assert lake_location(local) == local.warehouse_dir.resolve().as_uri()
    assert io_properties(local) == {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}


def test_backup_refuses_a_lake_on_object_storage_naming_the_feature(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", lake_url="s3://bucket/lake")
    with pytest.raises(Refused, match="`headwater backup` is not available with the lake on object"):
        backup_home(settings, tmp_path / "backup")
    assert not (tmp_path / "backup").exists()


def test_a_dropped_table_leaves_no_object_and_a_changed_lake_url_is_refused_at_start(
    s3_server: S3Server, tmp_path: Path
) -> None:
    from headwater.services.backup.location import moved_home

    bucket = s3_server.new_bucket()
    settings = make_settings(tmp_path / "home", **s3_server.settings(bucket))
    lake = Lake(settings)
    scope = Scope("org", "sb")
    kept = lake.ensure_table(scope, "kept", SCHEMA)
    dropped = lake.ensure_table(scope, "dropped", SCHEMA)
    for table in (kept, dropped):
        batch = pa.record_batch([pa.array(["x"])], schema=SCHEMA)
        lake.commit(table, lake.write_files(table, iter([batch]), SCHEMA), {"runId": "r"})
    lake.drop(scope, "dropped")  # pyiceberg's purge, through the same FileIO
    keys = s3_server.keys(bucket)
    assert keys and not [k for k in keys if "/ds_dropped/" in k]
    assert [k for k in keys if "/ds_kept/" in k and k.endswith(".parquet")]

    assert moved_home(settings) is None
    elsewhere = make_settings(tmp_path / "home", **s3_server.settings(bucket, prefix="other"))
    problem = moved_home(elsewhere)
    assert problem is not None and "outside HEADWATER_LAKE_URL" in problem
    assert SECRET_KEY not in problem


def test_a_micro_batch_commits_with_its_log_position_once(lake_settings: Settings) -> None:
    """commit_stream's compare-and-swap of the log position, on the folder and on S3."""
    from pyiceberg.expressions import EqualTo

    lake = Lake(lake_settings)
    table = lake.ensure_table(Scope("org", "sb"), "st" + uuid.uuid4().hex[:8], SCHEMA)
    first = pa.record_batch([pa.array(["a", "b"])], schema=SCHEMA)
    files = lake.write_files(table, iter([first]), SCHEMA)
    table, committed = lake.commit_stream(table, files, "flow", 0, 2, {"runId": "r"})
    assert committed and lake.stream_offset(table, "flow") == 2
    stale = lake.catalog.load_table(table.name())
    again, committed_again = lake.commit_stream(stale, files, "flow", 0, 2, {"runId": "r"})
    assert not committed_again  # the position moved past 0: nothing added twice
    second = pa.record_batch([pa.array(["c"])], schema=SCHEMA)
    files = lake.write_files(again, iter([second]), SCHEMA)
    table, committed = lake.commit_stream(
        again, files, "flow", 2, 3, {"runId": "r"}, delete_filter=EqualTo("id", "a")
    )
    assert committed
    rows = lake.scan(lake.catalog.load_table(table.name())).read_all().column("id").to_pylist()
    assert sorted(rows) == ["b", "c"]


def test_the_cli_refuses_restore_naming_it_and_never_prints_the_secret(tmp_path: Path) -> None:
    from tests.test_cli import headwater

    secret = "cli-must-not-print-this-secret-0123456789"
    s3 = {"HEADWATER_LAKE_URL": "s3://bucket/lake", "HEADWATER_S3_SECRET_ACCESS_KEY": secret}
    refused = headwater(
        tmp_path / "home",
        "restore",
        str(tmp_path / "b"),
        str(tmp_path / "new"),
        HEADWATER_S3_ACCESS_KEY_ID="key",
        **s3,
    )
    assert refused.returncode == 1, refused.stderr
    assert "`headwater restore` is not available with the lake on object storage" in refused.stderr
    invalid = headwater(tmp_path / "home", "credentials", "--json", **s3)  # the key id is missing
    assert invalid.returncode == 2 and "go together" in invalid.stderr, invalid.stderr
    for result in (refused, invalid):
        assert secret not in result.stderr + result.stdout


def test_a_read_while_the_store_is_down_is_a_503_in_the_platform_shape(
    s3_live: LiveServer, s3_api: ApiClient, s3_server: S3Server
) -> None:
    dataset_id = dataset(s3_api, profile_schema(s3_api))
    batch_id = create(s3_api, dataset_id)
    upload(s3_api, batch_id, dataset_id, "people.json", json_lines([person(1)]))
    assert complete(s3_api, batch_id)["status"] == "success"
    s3_server.stop()
    try:
        response = s3_api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=10")
    finally:
        s3_server.start()
    assert response.status_code == 503, response.text
    body = response.json()
    assert "lake" in body["detail"].lower() and "127.0.0.1" not in response.text
    assert _dataset_rows(s3_live, s3_api, dataset_id) == ["id-1"]  # back with the store


def test_a_query_while_the_store_is_down_is_lake_unavailable(s3_server: S3Server, tmp_path: Path) -> None:
    lake = Lake(make_settings(tmp_path / "home", **s3_server.settings(s3_server.new_bucket())))
    table = lake.ensure_table(Scope("org", "sb"), "q", SCHEMA)
    batch = pa.record_batch([pa.array(["a", "b"])], schema=SCHEMA)
    lake.commit(table, lake.write_files(table, iter([batch]), SCHEMA), {"runId": "r"})
    table = lake.catalog.load_table(table.name())
    s3_server.stop()
    try:
        with pytest.raises(LakeUnavailable):
            lake.query(table, "SELECT count(*) AS n FROM dataset")
    finally:
        s3_server.start()
    assert lake.query(table, "SELECT count(*) AS n FROM dataset").to_pylist() == [{"n": 2}]

"""Each backend's unavailability is one named, transient error whose message names the backend only.

- the metadata database (PostgreSQL refusing or dropping connections, through the store and through the
  API: a 503 in the platform's error shape, never a 500, and service resumes by itself);
- the lake (its files cannot be written), while an error of the rows' own source passes through as is;
- the local streaming log (its stream folder cannot be written).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from headwater.errors import (
    HeadwaterError,
    LakeUnavailable,
    LogUnavailable,
    MetadataUnavailable,
    Transient,
    Unavailable,
)
from headwater.lake.iceberg import Lake
from headwater.runtime.streaming import describe_failure
from headwater.stores.log.local import LocalLog
from headwater.stores.metadata import Scope
from headwater.stores.metadata.postgresql import PostgresMetadataStore
from tests.conftest import POSTGRES_ADMIN_URL, make_settings
from tests.support import ApiClient, start_server, token_for, wait_until


def test_every_backend_error_is_transient_and_keeps_its_specifics_out_of_the_detail() -> None:
    for kind in (LogUnavailable, MetadataUnavailable, LakeUnavailable):
        error = kind("nats://10.1.2.3:4222 refused (secret-host)")
        assert isinstance(error, Unavailable | Transient | HeadwaterError)
        assert error.transient and error.status == 503
        assert "10.1.2.3" not in error.detail and "secret-host" not in error.detail
        assert "10.1.2.3" in str(error)  # logs and tracebacks keep the specifics
        assert describe_failure(error) == error.detail  # what a run document shows
    assert isinstance(LogUnavailable("x"), OSError)  # I/O guards written as ``except OSError`` still hold


def test_an_unreachable_postgresql_is_metadata_unavailable() -> None:
    store = PostgresMetadataStore("postgresql+psycopg://postgres@127.0.0.1:1/test")
    try:
        with pytest.raises(MetadataUnavailable) as caught:
            store.get_org("any")
        assert "127.0.0.1" not in caught.value.detail and "port 1" in str(caught.value)
    finally:
        store.close()


def _block(database: str, allow: bool) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )


def test_a_dropped_postgresql_connection_is_metadata_unavailable_and_the_pool_recovers(
    postgres_url: str,
) -> None:
    store = PostgresMetadataStore(postgres_url)
    try:
        store.migrate()
        assert store.get_org("nobody") is None
        database = postgres_url.rsplit("/", 1)[1]
        _block(database, allow=False)
        try:
            with pytest.raises(MetadataUnavailable):
                store.get_org("nobody")  # the pooled connection was terminated
            with pytest.raises(MetadataUnavailable):
                store.get_org("nobody")  # and no new one is let in
        finally:
            _block(database, allow=True)
        assert store.get_org("nobody") is None
    finally:
        store.close()


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[tuple[ApiClient, str]]:
    live = start_server(make_settings(tmp_path / "home", database_url=postgres_url.replace("+psycopg", "")))
    try:
        creds = live.creds
        token = token_for(live.base_url, creds["apiKey"], creds["clientSecret"])
        with ApiClient(
            live.base_url, token, creds["apiKey"], creds["orgId"], "prod", creds["tenantId"]
        ) as client:
            yield client, postgres_url.rsplit("/", 1)[1]
    finally:
        live.stop()
        live.services.close()


def test_the_api_answers_503_in_the_platform_shape_while_postgresql_is_down(
    pg_server: tuple[ApiClient, str],
) -> None:
    api, database = pg_server
    path = "/data/foundation/catalog/dataSets"
    assert api.get(path).status_code == 200
    _block(database, allow=False)
    try:
        response = api.get(path)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == 503 and body["report"]["code"] == "META-1503-503"
        assert "metadata database" in body["detail"] and "127.0.0.1" not in response.text
    finally:
        _block(database, allow=True)
    wait_until(lambda: api.get(path).status_code == 200, timeout=10)


def test_a_lake_that_cannot_be_written_is_lake_unavailable_and_a_source_error_is_its_own(
    tmp_path: Path,
) -> None:
    lake = Lake(make_settings(tmp_path / "home"))
    schema = pa.schema([("id", pa.string())])
    table = lake.ensure_table(Scope("org", "sandbox"), "ds" + uuid.uuid4().hex[:8], schema)
    rows = pa.record_batch([pa.array(["a", "b"])], schema=schema)

    def failing_source() -> Iterator[pa.RecordBatch]:
        yield rows
        raise FileNotFoundError(2, "No such file", "/upload/of/the/source.csv")

    with pytest.raises(FileNotFoundError):
        lake.write_files(table, failing_source(), schema)

    data = Path(table.location().removeprefix("file://")) / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.write_text("a file where the lake wants a folder")
    with pytest.raises(LakeUnavailable) as caught:
        lake.write_files(table, iter([rows]), schema)
    assert str(tmp_path) not in caught.value.detail


def test_a_local_log_that_cannot_be_written_is_log_unavailable(tmp_path: Path) -> None:
    log = LocalLog(str(tmp_path / "streams"))
    try:
        assert log.append("flow1", [b"{}"]) == [0]
        folder = next((tmp_path / "streams").glob("*flow1*"))
        shutil.rmtree(folder)
        folder.write_text("a file where the log wants a folder")
        with pytest.raises(LogUnavailable) as caught:
            log.append("flow1", [b"{}"])
        assert str(tmp_path) not in caught.value.detail and str(folder) in str(caught.value)
    finally:
        log.close()

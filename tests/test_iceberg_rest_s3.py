"""The Iceberg REST catalog with the lake on S3-compatible storage (moto's S3 server on 127.0.0.1):
pyiceberg's own RestCatalog, configured only with the catalog URI, a token and the warehouse (no S3
settings of its own), loads a dataset's table and scans its rows from the bucket with what the
load-table answer carries: the store's endpoint, region and addressing, and the read-only key of
HEADWATER_S3_READER_* when it asks for vended credentials (X-Iceberg-Access-Delegation). The answer never
holds the lake's own (writing) key; another sandbox sees nothing; the reader settings are checked.

moto accepts any key, so these tests show which key is handed out, not that it can only read: that is
the store's policy on the key (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchTableError

from headwater.lake.storage import reader_credentials, reader_properties
from headwater.settings import Settings
from tests.conftest import make_settings
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.support import ApiClient, LiveServer, fresh_sandbox_client, start_server
from tests.test_batch_ingestion import ingested_people

ICEBERG = "/iceberg/v1"
READER_KEY = "reader-key-id"
READER_SECRET = "reader-secret-only-reads-0123456789"
DELEGATION = "X-Iceberg-Access-Delegation"


@pytest.fixture(scope="module")
def live(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose lake is a new bucket, with a reader key to vend and the batch promoter running."""
    settings = make_settings(
        tmp_path_factory.mktemp("headwater-home-restvend"),
        s3_reader_access_key_id=READER_KEY,
        s3_reader_secret_access_key=READER_SECRET,
        **s3_server.settings(s3_server.new_bucket()),
    )
    server = start_server(settings)
    server.services.batch_promoter.start()
    yield server
    server.services.batch_promoter.stop()
    server.stop()
    server.services.close()


def sandbox_client(live: LiveServer) -> ApiClient:
    c = live.creds
    return fresh_sandbox_client(live, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"])


@pytest.fixture(scope="module")
def people(live: LiveServer) -> Iterator[tuple[ApiClient, str]]:
    """A sandbox with a dataset of three people, loaded by the Batch Ingestion API: (client, table)."""
    with sandbox_client(live) as api:
        yield api, ingested_people(api)[1]


def catalog(live: LiveServer, sandbox: str, token: str) -> RestCatalog:
    return RestCatalog("headwater", uri=f"{live.base_url}/iceberg", warehouse=sandbox, token=token)


def load_answer(live: LiveServer, api: ApiClient, table: str, delegation: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api.token}"}
    if delegation is not None:
        headers[DELEGATION] = delegation
    sandbox = api.sandbox_name
    path = f"{ICEBERG}/{sandbox}/namespaces/{sandbox}/tables/{table}"
    return httpx.get(live.base_url + path, headers=headers)


def no_lake_key_in(text: str) -> None:
    assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_pyiceberg_scans_the_table_from_s3_with_the_vended_reader_key(
    live: LiveServer, people: tuple[ApiClient, str], s3_server: S3Server
) -> None:
    api, table = people
    sandbox = api.sandbox_name
    cat = catalog(live, sandbox, api.token)
    assert not any(k.startswith("s3.") for k in cat.properties)  # nothing of S3 from the catalog config
    loaded = cat.load_table((sandbox, table))
    assert loaded.metadata_location.startswith("s3://lake-")
    assert loaded.io.properties["s3.access-key-id"] == READER_KEY
    assert loaded.io.properties["s3.secret-access-key"] == READER_SECRET
    rows = loaded.scan().to_arrow().sort_by("_id").to_pylist()
    assert [(r["_id"], r["person"]["name"]["firstName"]) for r in rows] == [
        (f"id-{i}", f"First{i}") for i in range(3)
    ]

    answer = load_answer(live, api, table, "vended-credentials")
    assert answer.status_code == 200, answer.text
    no_lake_key_in(answer.text)
    result = answer.json()
    assert result["config"] == {
        "s3.endpoint": s3_server.endpoint,
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false",
        "s3.path-style-access": "true",
        "s3.access-key-id": READER_KEY,
        "s3.secret-access-key": READER_SECRET,
    }
    location = result["metadata"]["location"]
    assert result["storage-credentials"] == [
        {
            "prefix": location + "/",
            "config": {"s3.access-key-id": READER_KEY, "s3.secret-access-key": READER_SECRET},
        }
    ]
    assert result["metadata-location"].startswith(location + "/metadata/")


def test_a_key_is_vended_only_to_a_client_that_asks_for_it(
    live: LiveServer, people: tuple[ApiClient, str], s3_server: S3Server
) -> None:
    api, table = people
    where = {
        "s3.endpoint": s3_server.endpoint,
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false",
        "s3.path-style-access": "true",
    }
    for delegation in (None, "", "remote-signing", "vended-credentials-please"):
        answer = load_answer(live, api, table, delegation)
        assert answer.status_code == 200, (delegation, answer.text)
        assert READER_SECRET not in answer.text, delegation
        no_lake_key_in(answer.text)
        assert answer.json()["config"] == where and "storage-credentials" not in answer.json()
    # A comma list, in any case and spacing: vended-credentials among them is honoured.
    asked = load_answer(live, api, table, "remote-signing , Vended-Credentials")
    assert asked.json()["config"]["s3.access-key-id"] == READER_KEY
    sandbox = api.sandbox_name
    head = httpx.head(
        f"{live.base_url}{ICEBERG}/{sandbox}/namespaces/{sandbox}/tables/{table}",
        headers={"Authorization": f"Bearer {api.token}", DELEGATION: "vended-credentials"},
    )
    assert head.status_code == 204 and head.content == b""


def test_another_sandbox_sees_nothing_and_gets_no_key(
    live: LiveServer, people: tuple[ApiClient, str]
) -> None:
    api, table = people
    with sandbox_client(live) as other:
        theirs = catalog(live, other.sandbox_name, api.token)
        assert theirs.list_tables(other.sandbox_name) == []
        with pytest.raises(NoSuchTableError):
            theirs.load_table((other.sandbox_name, table))
        missing = load_answer(live, other, table, "vended-credentials")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "NoSuchTableException"
        assert READER_SECRET not in missing.text and READER_KEY not in missing.text
        no_lake_key_in(missing.text)
    unauthenticated = httpx.get(
        f"{live.base_url}{ICEBERG}/{api.sandbox_name}/namespaces/{api.sandbox_name}/tables/{table}",
        headers={"Authorization": "Bearer not-a-token", DELEGATION: "vended-credentials"},
    )
    assert unauthenticated.status_code == 401 and READER_SECRET not in unauthenticated.text


def test_reader_key_settings_are_checked_and_never_the_lakes_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    lake = {"lake_url": "s3://bucket/lake", "s3_access_key_id": "writer", "s3_secret_access_key": "w" * 20}
    bad = [
        ({"s3_reader_access_key_id": READER_KEY}, "go together"),
        ({"s3_reader_secret_access_key": READER_SECRET}, "go together"),
        (
            {"s3_reader_access_key_id": "writer", "s3_reader_secret_access_key": READER_SECRET},
            "the lake's own",
        ),
    ]
    for values, named in bad:
        with pytest.raises(ValueError, match=named) as caught:
            make_settings(home, **lake, **values)
        assert READER_SECRET not in str(caught.value)
    with pytest.raises(ValueError, match="without HEADWATER_LAKE_URL"):
        make_settings(home, s3_reader_access_key_id=READER_KEY, s3_reader_secret_access_key=READER_SECRET)

    reading = make_settings(
        home, **lake, s3_reader_access_key_id=READER_KEY, s3_reader_secret_access_key=READER_SECRET
    )
    assert READER_SECRET not in repr(reading) and READER_SECRET not in str(reading.model_dump())
    assert reader_credentials(reading) == {
        "s3.access-key-id": READER_KEY,
        "s3.secret-access-key": READER_SECRET,
    }
    # No reader key: nothing is vended (the engine brings its own credentials); the store is still named.
    unset: Settings = make_settings(home, **lake)
    assert reader_credentials(unset) is None
    assert reader_properties(unset) == {
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "true",
        "s3.path-style-access": "false",
    }
    local = make_settings(home)
    assert reader_properties(local) == {} and reader_credentials(local) is None

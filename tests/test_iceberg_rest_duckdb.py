"""DuckDB reads a dataset through Headwater's Iceberg REST catalog: its own iceberg extension (from PyPI's
duckdb-extension-* wheels, in a side virtualenv because they are built for an older DuckDB than the one
Headwater embeds), configured only with the catalog's endpoint, the sandbox as warehouse and the client's
credentials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import ApiClient, LiveServer
from tests.test_batch_ingestion import ingested_people
from tests.test_iceberg_rest_s3 import live, people  # noqa: F401 (fixtures: a server whose lake is on S3)

ROOT = Path(__file__).resolve().parents[1]
DUCKDB_PYTHON = Path(os.environ.get("HEADWATER_TEST_DUCKDB_PYTHON", ROOT / ".venv-duckdb" / "bin" / "python"))

READER = ROOT / "tests" / "outside" / "duckdb_read.py"


PEOPLE = [[f"id-{i}", f"First{i}", f"person{i}@example.com"] for i in range(3)]


def duckdb_select(server: LiveServer, api: ApiClient, table: str) -> list[list[str]]:
    """The people of ``table`` as DuckDB reads them through the catalog, with the client's credentials."""
    args = {
        "id": api.api_key,
        "secret": server.creds["clientSecret"],
        "uri": f"{server.base_url}/iceberg",
        "warehouse": api.sandbox_name,
        "table": table,
    }
    assert DUCKDB_PYTHON.exists(), f"{DUCKDB_PYTHON} is missing: `make install` makes it"
    done = subprocess.run(
        [str(DUCKDB_PYTHON), str(READER), json.dumps(args)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows: list[list[str]] = json.loads(done.stdout)
    return rows


@pytest.mark.usefixtures("promoter")
def test_duckdb_reads_a_dataset_through_the_rest_catalog(server: LiveServer, api: ApiClient) -> None:
    _, table = ingested_people(api)
    assert duckdb_select(server, api, table) == PEOPLE


def test_duckdb_reads_a_dataset_on_s3_with_the_vended_reader_key(
    live: LiveServer,  # noqa: F811 (the imported fixture)
    people: tuple[ApiClient, str],  # noqa: F811
) -> None:
    api, table = people
    assert duckdb_select(live, api, table) == PEOPLE

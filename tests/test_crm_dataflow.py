"""Document 002's whole tutorial against the local Salesforce-compatible server, flow included: after a
run the dataset holds the mapped rows; after records change at the source, the next run adds only the
new and changed rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from headwater.runtime.worker import Worker
from tests.fakes.salesforce import SalesforceFake
from tests.support import ApiClient
from tests.test_batch_runs import rows, run_and_wait
from tests.test_tutorials import (
    DOC_002_FLOW,
    DOC_002_MAPPING,
    DOC_002_SCHEMA,
    DOC_002_SOURCE,
    DOC_002_TARGET,
    _send,
)

FS = "/data/foundation/flowservice"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def salesforce() -> Iterator[SalesforceFake]:
    fake = SalesforceFake().start()
    fake.add_object("Person", {"first_name": "string", "last_name": "string", "email": "email"})
    fake.insert(
        "Person",
        [
            {"first_name": f"Ada{i}", "last_name": f"Lovelace{i}", "email": f"ada{i}@example.com"}
            for i in range(40)
        ],
        modified=T0,
    )
    yield fake
    fake.stop()


def test_document_002_flow_moves_salesforce_rows_incrementally(
    api: ApiClient, worker: Worker, salesforce: SalesforceFake
) -> None:
    auth = salesforce.soap_auth()
    base = api.post(
        f"{FS}/connections",
        json={
            "name": "Salesforce",
            "auth": {"specName": "Basic Authentication", "params": auth},
            "connectionSpec": {"id": "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "version": "1.0"},
        },
    )
    assert base.status_code == 201, base.text
    source = _send(
        api,
        "POST",
        f"{FS}/sourceConnections",
        DOC_002_SOURCE,
        BASE_CONNECTION_ID=base.json()["id"],
        TABLE_PATH="Person",
    )
    explored = api.get(f"{FS}/connections/{base.json()['id']}/explore", params={"objectType": "root"})
    assert "Person" in {item["name"] for item in explored.json()}
    schema = _send(api, "POST", "/data/foundation/schemaregistry/tenant/schemas", DOC_002_SCHEMA)["$id"]
    dataset = api.post("/data/foundation/catalog/dataSets", json={"name": "CRM", "schemaRef": {"id": schema}})
    dataset_id = dataset.json()[0].split("/")[-1]
    target = _send(
        api, "POST", f"{FS}/targetConnections", DOC_002_TARGET, SCHEMA_ID=schema, DATASET_ID=dataset_id
    )
    mapping = _send(api, "POST", "/data/foundation/conversion/mappingSets", DOC_002_MAPPING, SCHEMA_ID=schema)
    flow = _send(
        api,
        "POST",
        f"{FS}/flows",
        DOC_002_FLOW.replace('"updatedAt"', '"LastModifiedDate"'),
        SOURCE_ID=source["id"],
        TARGET_ID=target["id"],
        MAPPING_ID=mapping["id"],
    )

    first = run_and_wait(api, flow["id"], (T0 + timedelta(hours=1)).isoformat())
    assert first["state"] == "success", first["metrics"]["statusSummary"]
    landed = rows(api, dataset_id)
    assert len(landed) == 40
    assert {r["person"]["name"]["firstName"] for r in landed} == {f"Ada{i}" for i in range(40)}
    assert {r["personalEmail"]["address"] for r in landed} == {f"ada{i}@example.com" for i in range(40)}

    changed = [r["Id"] for r in salesforce.records("Person")[:3]]
    salesforce.update("Person", changed, {"email": "new@example.com"}, modified=T0 + timedelta(hours=2))
    salesforce.insert(
        "Person",
        [{"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"}],
        modified=T0 + timedelta(hours=2),
    )
    second = run_and_wait(api, flow["id"], (T0 + timedelta(hours=3)).isoformat())
    assert second["metrics"]["recordSummary"]["inputRecordCount"] == 4
    landed = rows(api, dataset_id)
    assert len(landed) == 44
    assert sum(r["personalEmail"]["address"] == "new@example.com" for r in landed) == 3

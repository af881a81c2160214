"""Profile-enabled datasets and records landed in them, for the profile and audience tests."""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa

from tests.streaming_helpers import scope_of
from tests.support import ApiClient, LiveServer

SCHEMAS = "/data/foundation/schemaregistry/tenant/schemas"
DATASETS = "/data/foundation/catalog/dataSets"
PROFILE = "https://ns.adobe.com/xdm/context/profile"


def profile_dataset(api: ApiClient, name: str, *groups: str, klass: str = PROFILE) -> tuple[str, str]:
    """A schema of ``klass`` and ``groups`` enabled for profile (``union``) and a dataset of it tagged
    ``unifiedProfile: enabled:true``, as an AEP user makes them: (schema id, dataset id)."""
    schema = api.post(
        SCHEMAS,
        json={
            "type": "object",
            "title": f"{name} {uuid.uuid4().hex[:6]}",
            "allOf": [{"$ref": klass}, *({"$ref": g} for g in groups)],
            "meta:immutableTags": ["union"],
        },
    )
    assert schema.status_code == 201, schema.text
    schema_id = str(schema.json()["$id"])
    created = api.post(
        DATASETS,
        json={
            "name": f"{name} {uuid.uuid4().hex[:6]}",
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json"},
            "tags": {"unifiedProfile": ["enabled:true"]},
        },
    )
    assert created.status_code == 201, created.text
    return schema_id, str(created.json()[0].split("/")[-1])


def land(
    server: LiveServer, api: ApiClient, dataset_id: str, schema: pa.Schema, rows: list[dict[str, Any]]
) -> None:
    """Commit ``rows`` to the dataset's table as a flow's run does, then project them as its run does."""
    lake, scope = server.services.lake, scope_of(server, api)
    table = lake.ensure_table(scope, dataset_id, schema)
    files = lake.write_files(table, iter([pa.RecordBatch.from_pylist(rows, schema=schema)]), schema)
    lake.commit(table, files, {"runId": uuid.uuid4().hex})
    report = server.services.profile_projector.catch_up(scope, dataset_id)
    assert report is not None and report.rows == len(rows)

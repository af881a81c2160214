"""Flow plans (services/plans.py): one call resolves a flow by its kind; the version changes with any
document the plan was read from, and ``stale`` tells without resolving again."""

from __future__ import annotations

from headwater.catalog.ids import FlowKind
from headwater.runtime.executor import worker_actor
from tests.streaming_helpers import FS, http_api_flow, scope_of
from tests.support import ApiClient, LiveServer


def test_a_streaming_flow_resolves_to_its_dataset_schema_and_mapping(
    server: LiveServer, api: ApiClient
) -> None:
    pipeline = http_api_flow(api, mapping=True)
    scope = scope_of(server, api)
    flow = server.services.store.get("flow", scope, pipeline["flowId"])
    assert flow is not None
    actor = worker_actor(server.services, flow, api.sandbox_name)
    plans = server.services.plans
    plan = plans.resolve(actor, pipeline["flowId"])
    assert plan.kind is FlowKind.STREAMING and plan.source is None
    assert plan.dataset_id == pipeline["datasetId"]
    assert plan.schema is not None and "properties" in plan.schema
    assert plan.mapping is not None and plan.mapping.doc["mappings"]
    assert {kind for kind, _, _ in plan.documents} >= {"flow", "targetConnection", "dataSet", "mappingSet"}
    again = plans.resolve(actor, pipeline["flowId"])
    assert again.version == plan.version and not plans.stale(plan)

    etag = api.get(f"{FS}/flows/{pipeline['flowId']}").json()["items"][0]["etag"]
    renamed = api.patch(
        f"{FS}/flows/{pipeline['flowId']}",
        headers={"If-Match": etag},
        json=[{"op": "replace", "path": "/name", "value": "renamed"}],
    )
    assert renamed.status_code == 200, renamed.text
    assert plans.stale(plan)
    assert plans.resolve(actor, pipeline["flowId"]).version != plan.version

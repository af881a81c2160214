"""Issue 14's acceptance, end to end on real servers: records about the same person arrive by a CRM batch
flow (CRMID + email, from the Salesforce-compatible server), a streaming inlet (ECID + email, XDM with an
identityMap) and a Data 360 Profile stream (email, through the Ingestion API); a lookup by any of the
three identities returns one merged profile, with the attributes the merge policy picks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from headwater.runtime.worker import Worker
from tests.fakes.salesforce import SalesforceFake
from tests.profile_helpers import profile_dataset
from tests.streaming_helpers import http_api_source, streaming, target_connection
from tests.support import ApiClient, LiveServer, wait_until
from tests.test_batch_runs import run_and_wait
from tests.test_data360_connectors import SSOT, create_connector, deploy, event, field, upload
from tests.test_data360_ingest import ingestion_token
from tests.test_tutorials import DOC_002_FLOW, _send

FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry/tenant"
ENTITIES = "/data/core/ups/access/entities"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def salesforce() -> Iterator[SalesforceFake]:
    fake = SalesforceFake().start()
    fake.add_object("Person", {"crm_id": "string", "first_name": "string", "email": "email"})
    yield fake
    fake.stop()


@pytest.fixture
def projector(server: LiveServer) -> Iterator[None]:
    """The profile projector beside the worker, as `headwater serve` runs it."""
    server.services.profile_projector.start()
    yield
    server.services.profile_projector.stop()


def _crm(api: ApiClient, salesforce: SalesforceFake) -> tuple[str, str]:
    """A CRM flow: Salesforce Person → a profile dataset whose crmId is the primary identity (a descriptor)
    and whose email is an Email identity (the mapping's flag)."""
    group = api.post(
        f"{SR}/fieldgroups",
        json={
            "title": f"CRM ids {uuid.uuid4().hex[:6]}",
            "type": "object",
            "meta:intendedToExtend": [PROFILE],
            "definitions": {
                "crm": {
                    "properties": {
                        "_headwater": {"type": "object", "properties": {"crmId": {"type": "string"}}}
                    }
                }
            },
            "allOf": [{"$ref": "#/definitions/crm"}],
        },
    )
    assert group.status_code == 201, group.text
    schema_id, dataset_id = profile_dataset(
        api,
        "CRM people",
        "https://ns.adobe.com/xdm/context/profile-person-details",
        "https://ns.adobe.com/xdm/context/profile-personal-details",
        group.json()["$id"],
    )
    descriptor = api.post(
        f"{SR}/descriptors",
        json={
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema_id,
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": "/_headwater/crmId",
            "xdm:namespace": "CRMID",
            "xdm:property": "xdm:code",
            "xdm:isPrimary": True,
        },
    )
    assert descriptor.status_code == 201, descriptor.text
    base = api.post(
        f"{FS}/connections",
        json={
            "name": "Salesforce",
            "auth": {"specName": "Basic Authentication", "params": salesforce.soap_auth()},
            "connectionSpec": {"id": "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "version": "1.0"},
        },
    )
    assert base.status_code == 201, base.text
    columns = [{"name": c, "type": "string"} for c in ("crm_id", "first_name", "email")]
    source = api.post(
        f"{FS}/sourceConnections",
        json={
            "name": "People",
            "baseConnectionId": base.json()["id"],
            "data": {"format": "tabular"},
            "params": {"tableName": "Person", "columns": columns},
            "connectionSpec": {"id": "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5", "version": "1.0"},
        },
    ).json()
    target = target_connection(api, schema_id, dataset_id)
    mapping = api.post(
        "/data/foundation/conversion/mappingSets",
        json={
            "xdmSchema": schema_id,
            "xdmVersion": "1.0",
            "mappings": [
                {"sourceType": "ATTRIBUTE", "source": "crm_id", "destination": "_headwater.crmId"},
                {"sourceType": "ATTRIBUTE", "source": "first_name", "destination": "person.name.firstName"},
                {
                    "sourceType": "ATTRIBUTE",
                    "source": "email",
                    "destination": "personalEmail.address",
                    "identity": True,
                    "namespaceCode": "Email",
                },
            ],
        },
    )
    assert mapping.status_code == 201, mapping.text
    flow = _send(
        api,
        "POST",
        f"{FS}/flows",
        DOC_002_FLOW.replace('"updatedAt"', '"LastModifiedDate"'),
        SOURCE_ID=source["id"],
        TARGET_ID=target,
        MAPPING_ID=mapping.json()["id"],
    )
    return flow["id"], dataset_id


def _inlet(api: ApiClient) -> tuple[str, str, str]:
    """An HTTP API streaming flow (XDM, no mapping) into a profile dataset with an identityMap."""
    _, params, source = http_api_source(api, "Web profiles", "xdm")
    schema_id, dataset_id = profile_dataset(
        api,
        "Web people",
        "https://ns.adobe.com/xdm/context/profile-person-details",
        "https://ns.adobe.com/xdm/context/identitymap",
    )
    target = target_connection(api, schema_id, dataset_id)
    flow = api.post(
        f"{FS}/flows",
        json={
            "name": "Web profiles",
            "flowSpec": {"id": "d8a6f005-7eaf-4153-983e-e8574508b877", "version": "1.0"},
            "sourceConnectionIds": [source],
            "targetConnectionIds": [target],
        },
    )
    assert flow.status_code == 201, flow.text
    return flow.json()["id"], dataset_id, params["inletUrl"]


def _data360(server: LiveServer, api: ApiClient) -> tuple[str, str, str]:
    """A Data 360 connector whose Profile event is keyed by email, deployed into the api's sandbox."""
    connector = create_connector(api, f"Members {uuid.uuid4().hex[:6]}")
    member = event("member", "Profile", [field("email", "Email", True, True), field("tier")], pk="email")
    uploaded = upload(api, connector["id"], {"events": [member]})
    assert uploaded.status_code == 200, uploaded.text
    made = deploy(api, connector["id"], ["member"], api.sandbox_name)
    assert made.status_code == 201, made.text
    (stream,) = made.json()["dataStreams"]
    faster = api.patch(
        f"{SSOT}/data-streams/{stream['id']}",
        params={"dataspace": api.sandbox_name},
        json={"refreshCadenceSeconds": 0},
    )
    assert faster.status_code == 200, faster.text
    return connector["sourceId"], stream["dataSetId"], ingestion_token(server, api)


def _lookup(api: ApiClient, namespace: str, value: str, **extra: str) -> dict[str, Any] | None:
    params = {"schema.name": "_xdm.context.profile", "entityIdNS": namespace, "entityId": value, **extra}
    response = api.get(ENTITIES, params=params)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    (entity,) = response.json().values()
    return dict(entity)


def test_three_sources_about_one_person_are_one_profile(
    server: LiveServer, api: ApiClient, worker: Worker, salesforce: SalesforceFake, projector: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    email, crmid, ecid = f"ada.{tag}@example.com", f"CRM-{tag}", f"{uuid.uuid4().int:038d}"[:38]
    salesforce.insert("Person", [{"crm_id": crmid, "first_name": "Ada", "email": email}], modified=T0)
    crm_flow, crm_dataset = _crm(api, salesforce)
    web_flow, web_dataset, inlet = _inlet(api)
    source_id, d360_dataset, token = _data360(server, api)

    # The batch run: its people are in the profiles when the run has succeeded.
    run = run_and_wait(api, crm_flow, (T0 + timedelta(hours=1)).isoformat())
    assert run["state"] == "success", run["metrics"]["statusSummary"]
    by_crm = _lookup(api, "CRMID", crmid)
    assert by_crm is not None and by_crm["entity"]["person"]["name"]["firstName"] == "Ada"

    with streaming(server, api):
        message = {
            "header": {"flowId": web_flow, "datasetId": web_dataset},
            "body": {
                "xdmEntity": {
                    "identityMap": {"ECID": [{"id": ecid, "primary": True}], "Email": [{"id": email}]},
                    "person": {"name": {"firstName": "Ada L."}},
                }
            },
        }
        assert httpx.post(inlet, json=message).status_code == 200
        sent = httpx.post(
            f"{server.base_url}/api/v1/ingest/sources/{source_id}/member",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "data": [
                    {
                        "eventId": f"m-{tag}",
                        "dateTime": "2024-05-02T10:00:00.000Z",
                        "deviceId": "d-1",
                        "sessionId": "s-1",
                        "eventType": "member",
                        "category": "Profile",
                        "email": email,
                        "tier": "gold",
                    }
                ]
            },
        )
        assert sent.status_code in (200, 202), sent.text

        def merged() -> dict[str, Any] | None:
            found = _lookup(api, "ECID", ecid)
            return found if found is not None and len(found["sources"]) == 3 else None

        profile = wait_until(merged, timeout=30, interval=0.2)
        # A Profile delete through the Ingestion API takes that stream's record out of the profile.
        deleted = httpx.request(
            "DELETE",
            f"{server.base_url}/api/v1/ingest/sources/{source_id}/member",
            headers={"Authorization": f"Bearer {token}"},
            params={"ids": email},
        )
        assert deleted.status_code == 202, deleted.text

        def without_member() -> dict[str, Any] | None:
            found = _lookup(api, "ECID", ecid)
            return found if found is not None and d360_dataset not in found["sources"] else None

        after_delete = wait_until(without_member, timeout=30, interval=0.2)

    assert sorted(profile["sources"]) == sorted([crm_dataset, web_dataset, d360_dataset])
    assert _lookup(api, "CRMID", crmid) == after_delete == _lookup(api, "Email", email)
    entity = profile["entity"]
    assert sorted(entity["identityMap"]) == ["CRMID", "ECID", "Email"]
    assert entity["person"]["name"]["firstName"] == "Ada L."  # timestamp-ordered: the newest record wins
    assert entity["_headwater"]["tier"] == "gold"  # the Data 360 stream's attributes join it

    assert "tier" not in after_delete["entity"].get("_headwater", {})
    assert sorted(after_delete["sources"]) == sorted([crm_dataset, web_dataset])

    policy = api.post(
        "/data/core/ups/config/mergePolicies",
        json={
            "name": f"CRM first {tag}",
            "schema": {"name": "_xdm.context.profile"},
            "identityGraph": {"type": "pdg"},
            "attributeMerge": {
                "type": "dataSetPrecedence",
                "order": [crm_dataset, web_dataset, d360_dataset],
            },
        },
    )
    assert policy.status_code == 200, policy.text
    crm_first = _lookup(api, "ECID", ecid, mergePolicyId=policy.json()["id"])
    assert crm_first is not None and crm_first["entity"]["person"]["name"]["firstName"] == "Ada"

"""Builders for Flow Service resources used across tests (bodies as the reference documents send them)."""

from __future__ import annotations

from typing import Any

from tests.support import ApiClient

FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry"
CAT = "/data/foundation/catalog"
CONV = "/data/foundation/conversion"
SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
SSC = "b66ab34-8619-49cb-96d1-39b37ede86ea"
DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
CRM_FLOW_SPEC = "9753525b-82c7-4dce-8a9b-5ccfce2b9876"


def created_id(response: Any) -> str:
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def salesforce_connection(api: ApiClient, name: str = "Salesforce", password: str = "s3cret-pw") -> str:
    return created_id(
        api.post(
            f"{FS}/connections",
            json={
                "name": name,
                "auth": {
                    "specName": "Basic Authentication",
                    "params": {
                        "username": "ada@example.com",
                        "password": password,
                        "securityToken": "tok-123",
                    },
                },
                "connectionSpec": {"id": SALESFORCE, "version": "1.0"},
            },
        )
    )


def source_connection(api: ApiClient, base_id: str, name: str = "Contacts") -> str:
    return created_id(
        api.post(
            f"{FS}/sourceConnections",
            json={
                "name": name,
                "baseConnectionId": base_id,
                "data": {"format": "tabular"},
                "params": {"tableName": "Contact", "columns": [{"name": "Email", "type": "string"}]},
            },
        )
    )


def profile_schema(api: ApiClient) -> str:
    response = api.post(
        f"{SR}/tenant/schemas",
        json={
            "type": "object",
            "title": "CRM profile",
            "description": "",
            "allOf": [
                {"$ref": "https://ns.adobe.com/xdm/context/profile"},
                {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
                {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
            ],
            "meta:containerId": "tenant",
            "meta:resourceType": "schemas",
            "meta:xdmType": "object",
            "meta:class": "https://ns.adobe.com/xdm/context/profile",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["$id"])


def dataset(api: ApiClient, schema_id: str) -> str:
    response = api.post(
        f"{CAT}/dataSets",
        json={
            "name": "CRM data",
            "schemaRef": {
                "id": schema_id,
                "contentType": "application/vnd.adobe.xed-full-notext+json; version=1",
            },
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()[0].split("/")[-1])


def target_connection(api: ApiClient, schema_id: str, dataset_id: str) -> str:
    return created_id(
        api.post(
            f"{FS}/targetConnections",
            json={
                "name": "Lake",
                "data": {
                    "schema": {"id": schema_id, "version": "application/vnd.adobe.xed-full+json;version=1.0"}
                },
                "params": {"dataSetId": dataset_id},
                "connectionSpec": {"id": DATA_LAKE, "version": "1.0"},
            },
        )
    )


def mapping_set(api: ApiClient, schema_id: str) -> str:
    response = api.post(
        f"{CONV}/mappingSets",
        json={
            "version": 0,
            "xdmSchema": schema_id,
            "xdmVersion": "1.0",
            "id": None,
            "mappings": [
                {
                    "destinationXdmPath": "personalEmail.address",
                    "sourceAttribute": "Email",
                    "identity": False,
                    "identityGroup": None,
                    "namespaceCode": None,
                    "version": 0,
                }
            ],
        },
    )
    return created_id(response)


def flow_body(source_id: str, target_id: str, mapping_id: str, **schedule: Any) -> dict[str, Any]:
    return {
        "name": "CRM flow",
        "description": "",
        "flowSpec": {"id": CRM_FLOW_SPEC, "version": "1.0"},
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
        "transformations": [
            {
                "name": "Copy",
                "params": {
                    "deltaColumn": {"name": "LastModifiedDate", "dateFormat": "YYYY-MM-DD", "timezone": "UTC"}
                },
            },
            {"name": "Mapping", "params": {"mappingId": mapping_id}},
        ],
        "scheduleParams": schedule or {"startTime": "1567411548", "frequency": "minute", "interval": "30"},
    }


def crm_pipeline(api: ApiClient) -> dict[str, str]:
    """Connection, source, schema, dataset, target, mapping: everything a CRM flow needs."""
    conn = salesforce_connection(api)
    source = source_connection(api, conn)
    schema = profile_schema(api)
    ds = dataset(api, schema)
    target = target_connection(api, schema, ds)
    mapping = mapping_set(api, schema)
    return {
        "connection": conn,
        "source": source,
        "schema": schema,
        "dataset": ds,
        "target": target,
        "mapping": mapping,
    }

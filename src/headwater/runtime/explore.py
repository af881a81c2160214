"""Exploring a connection: what it can read (tables, objects, files) and one table's columns and rows."""

from __future__ import annotations

from typing import Any

from headwater.connectors import registry
from headwater.connectors.errors import ConnectorError
from headwater.errors import BadRequest, HeadwaterError
from headwater.services.container import Services
from headwater.services.tenancy import Actor


def explore_connection(
    services: Services, actor: Actor, ident: str, object_type: str, name: str | None
) -> dict[str, Any] | list[dict[str, Any]]:
    connection = services.connections.get(actor, ident)
    spec_id = connection.doc["connectionSpec"]["id"]
    if not registry.supports(spec_id):
        raise BadRequest(f"Connections of spec {spec_id} cannot be explored.", code="FLOW-1424-400")
    auth = {**services.connections.secret_params(actor, connection), "_connectionId": connection.id}
    connector = registry.connector_for(spec_id, auth, services.outbound, services.settings)
    try:
        if object_type == "root":
            return [item.as_json() for item in connector.explore()]
        if object_type == "table" and name:
            schema = connector.describe(name)
            preview = connector.preview(name, 10)
            columns = [
                {"name": f.name, "type": str(f.type), "meta": {"originalType": str(f.type)}} for f in schema
            ]
            return {"format": "flat", "schema": {"columns": columns}, "data": preview.to_pylist()}
        raise BadRequest(
            "objectType must be root, or table with object=NAME.",
            code="FLOW-1400-400",
            report={"parameter": "objectType"},
        )
    except ConnectorError as exc:
        error = HeadwaterError(exc.message, code=exc.code)
        error.status = 503 if exc.transient else 400
        raise error from exc
    finally:
        connector.close()

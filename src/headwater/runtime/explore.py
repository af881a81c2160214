"""Exploring a connection: what it can read (tables, objects, files) and one table's columns and rows."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from headwater.connectors import registry
from headwater.connectors.errors import ConnectorError
from headwater.engines.xdm_arrow import type_name
from headwater.errors import BadRequest, HeadwaterError
from headwater.runtime.context import Runtime
from headwater.services.tenancy import Actor


def explore_connection(
    services: Runtime, actor: Actor, ident: str, object_type: str, name: str | None
) -> dict[str, Any] | list[dict[str, Any]]:
    connection = services.connections.get(actor, ident)
    spec_id = connection.doc["connectionSpec"]["id"]
    if not registry.supports(spec_id):
        raise BadRequest(f"Connections of spec {spec_id} cannot be explored.", code="FLOW-1424-400")
    connector = _connector(services, actor, connection, spec_id)
    try:
        if object_type == "root":
            return [item.as_json() for item in connector.explore()]
        if object_type == "table" and name:
            schema = connector.describe(name)
            preview = connector.preview(name, 10)
            columns = [_column(f) for f in schema]
            return {"format": "flat", "schema": {"columns": columns}, "data": preview.to_pylist()}
        raise BadRequest(
            "objectType must be root, or table with object=NAME.",
            code="FLOW-1400-400",
            report={"parameter": "objectType"},
        )
    except ConnectorError as exc:
        raise _client_error(exc) from exc
    finally:
        connector.close()


def _connector(services: Runtime, actor: Actor, connection: Any, spec_id: str) -> Any:
    auth = {
        **services.connections.secret_params(actor, connection),
        "_connectionId": connection.id,
        "_orgId": actor.org.id,  # files connectors are confined to their sandbox (connectors/files/roots.py)
        "_sandboxName": actor.sandbox.name,
    }
    try:
        return registry.connector_for(spec_id, auth, services.outbound, services.settings)
    except ConnectorError as exc:  # the saved settings are refused before anything is read
        raise _client_error(exc) from exc


def test_connection(services: Runtime, actor: Actor, ident: str) -> dict[str, Any]:
    """``GET /connections/{id}/test``: reach the source with the connection's saved settings (the
    listing explore's root returns, which needs the credentials to work) and answer ``{}``; the refusal
    as the API's error (400, 503 when retrying may help). A connection whose spec Headwater does not
    reach out to (streaming inlets, destinations) has nothing to test: ``{}``."""
    connection = services.connections.get(actor, ident)
    spec_id = connection.doc["connectionSpec"]["id"]
    if not registry.supports(spec_id):
        return {}
    connector = _connector(services, actor, connection, spec_id)
    try:
        connector.explore()
    except ConnectorError as exc:
        raise _client_error(exc) from exc
    finally:
        connector.close()
    return {}


def _column(field: pa.Field) -> dict[str, Any]:
    """A column as AEP's explore lists it: ``type`` in XDM's words (string, integer, number, boolean,
    date, date-time, object, array, map), ``meta.originalType`` the source's own type where the connector
    knows it (its field metadata), else the type as read."""
    original = (field.metadata or {}).get(b"originalType")
    return {
        "name": field.name,
        "type": type_name(field.type),
        "meta": {"originalType": original.decode() if original else str(field.type)},
    }


def _client_error(exc: ConnectorError) -> HeadwaterError:
    """A connector's refusal as the API's error: 503 when retrying may help, else 400, with its words."""
    error = HeadwaterError(exc.message, code=exc.code)
    error.status = 503 if exc.transient else 400
    error.title = "Service Unavailable" if exc.transient else "Connection refused by the source"
    return error

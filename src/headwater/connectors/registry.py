"""Which connector reads which connection spec. Imports are lazy: a connector's libraries load only
when a flow or an explore request needs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headwater.catalog.ids import (
    DYNAMICS,
    LOCAL_FILES,
    POSTGRESQL,
    SALESFORCE,
    SALESFORCE_SERVICE_CLOUD,
    UPLOADED_FILES,
)

if TYPE_CHECKING:
    from headwater.connectors.base import SourceConnector
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

_SOURCES = {
    SALESFORCE: "headwater.connectors.salesforce.reader:SalesforceConnector",
    SALESFORCE_SERVICE_CLOUD: "headwater.connectors.salesforce.reader:SalesforceConnector",
    DYNAMICS: "headwater.connectors.dynamics.reader:DynamicsConnector",
    LOCAL_FILES: "headwater.connectors.files.reader:LocalFilesConnector",
    UPLOADED_FILES: "headwater.connectors.files.reader:UploadedFilesConnector",
    POSTGRESQL: "headwater.connectors.postgresql.reader:PostgresConnector",
}


def supports(spec_id: str) -> bool:
    return spec_id in _SOURCES


def connector_for(
    spec_id: str, auth: dict[str, Any], outbound: OutboundPolicy, settings: Settings
) -> SourceConnector:
    """The connector for connection spec ``spec_id``; KeyError if none reads it."""
    module_name, _, class_name = _SOURCES[spec_id].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    connector: SourceConnector = cls(auth, outbound, settings)
    return connector

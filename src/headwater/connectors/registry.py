"""Which connector reads which connection spec. Imports are lazy: a connector's libraries load only
when a flow or an explore request needs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater.connectors.base import SourceConnector
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
SALESFORCE_SERVICE_CLOUD = "b66ab34-8619-49cb-96d1-39b37ede86ea"
DYNAMICS = "38ad80fe-8b06-4938-94f4-d4ee80266b07"
LOCAL_FILES = "c79513cd-ceb9-437a-812d-a5b148aceb4c"
UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"
POSTGRESQL = "deb251f1-86be-44d2-ae93-634cd683b572"

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

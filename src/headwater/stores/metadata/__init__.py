"""The metadata store: tenancy and every control-plane resource.

``base.MetadataStore`` is the interface; ``sql.SqlMetadataStore`` implements it once for SQLAlchemy;
``sqlite`` and ``postgresql`` hold what differs per database. ``open_store`` picks one from a URL.
"""

from headwater.stores.metadata.base import (
    AUDIT_FILTERS,
    AlreadyExists,
    ApiClient,
    AuditEvent,
    ConsoleSession,
    MetadataStore,
    MissingReference,
    Org,
    Page,
    QueuedRun,
    Resource,
    RunPartition,
    Sandbox,
    Scope,
    StaleWrite,
    StillReferenced,
)
from headwater.stores.metadata.factory import open_store

__all__ = [
    "AUDIT_FILTERS",
    "AlreadyExists",
    "ApiClient",
    "AuditEvent",
    "ConsoleSession",
    "MetadataStore",
    "MissingReference",
    "Org",
    "Page",
    "QueuedRun",
    "Resource",
    "RunPartition",
    "Sandbox",
    "Scope",
    "StaleWrite",
    "StillReferenced",
    "open_store",
]

"""Roles and permissions: who may do what, in which sandbox.

A person has one role per sandbox (``user.roles``: sandbox name -> role, ``"*"`` for every sandbox not
named); an API client has one role for all the sandboxes of its organization. A role is a set of
permissions (:data:`ROLES`). Organization-wide permissions (:data:`ORG_PERMISSIONS`: users, sandboxes, the
audit log) need more than an Admin role in one sandbox: a user with ``admin: true`` or an API client whose
role is Admin, so an Admin of a development sandbox cannot make themselves Admin of production.

Every call of the API needs a permission: ``read`` for reads, the one :data:`ROUTES` names for a write
(and for the few reads that are not for everyone). A write whose body decides what it touches asks the
service layer for more (a destination connection needs ``manage-destinations`` although it is posted to
``/connections``, which needs ``manage-sources``): :meth:`Actor.require`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.errors import Forbidden

READ = "read"
MANAGE_SOURCES = "manage-sources"  # source connections, their files, Data 360 connectors
MANAGE_DATAFLOWS = "manage-dataflows"  # flows, mapping sets, Data 360 data streams
RUN_DATAFLOWS = "run-dataflows"  # start runs
INGEST_DATA = "ingest-data"  # send records through Data 360's Ingestion API (a person's ingestion token)
MANAGE_SCHEMAS = "manage-schemas"  # schemas, field groups, descriptors
MANAGE_DATASETS = "manage-datasets"
MANAGE_DESTINATIONS = "manage-destinations"  # destinations, activation flows, test requests, dead letters
MANAGE_APPS = "manage-apps"  # external client apps
MANAGE_USERS = "manage-users"  # organization-wide
MANAGE_SANDBOXES = "manage-sandboxes"  # organization-wide
VIEW_AUDIT_LOG = "view-user-activity-log"  # organization-wide (AEP's name for the permission)
# Issue 14, with AEP's permission ids (/permissions/<id> in its access-control API):
MANAGE_IDENTITY_NAMESPACES = "manage-identity-namespaces"  # custom identity namespaces
MANAGE_PROFILE_CONFIGS = "manage-profile-configs"  # merge policies
VIEW_PROFILES = "view-profiles"  # read merged profiles and their events: personal data, not for Viewers
MANAGE_SEGMENTS = "manage-segments"  # segment definitions, their jobs, profile export jobs
# AEP's "Manage Queries": run Query Service queries and read their rows (services/queryservice.py).
MANAGE_QUERIES = "manage-queries"

ORG_PERMISSIONS = frozenset({MANAGE_USERS, MANAGE_SANDBOXES, VIEW_AUDIT_LOG})
VIEWER = frozenset({READ})
# Document 003: "Team members with a User, Developer, or Admin role ... can connect to an external
# destination": a User holds manage-destinations.
USER = VIEWER | {
    MANAGE_SOURCES,
    MANAGE_DATAFLOWS,
    RUN_DATAFLOWS,
    INGEST_DATA,
    VIEW_PROFILES,
    MANAGE_SEGMENTS,
    MANAGE_DESTINATIONS,
    MANAGE_QUERIES,
}
DEVELOPER = USER | {
    MANAGE_SCHEMAS,
    MANAGE_DATASETS,
    MANAGE_APPS,
    MANAGE_IDENTITY_NAMESPACES,
    MANAGE_PROFILE_CONFIGS,
}
ADMIN = DEVELOPER
ROLES: Mapping[str, frozenset[str]] = {
    "Admin": ADMIN,
    "Developer": DEVELOPER,
    "User": USER,
    "Viewer": VIEWER,
}
ALL = ADMIN | ORG_PERMISSIONS
DEFAULT_USER_ROLE = "Viewer"  # a person with no role named for a sandbox (least privilege)
EVERY_SANDBOX = "*"

FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry/tenant"
IDN = "/data/core/identity"
IDNS = "/data/core/idnamespace/identities"
MERGE_POLICIES = "/data/core/ups/config/mergePolicies"
SEGMENT_DEFINITIONS = "/data/core/ups/segment/definitions"
SSOT = "/services/data/{version}/ssot"
IMPORT = "/data/foundation/import/batches"
QUERIES = "/data/foundation/query/queries"
QUERY_TEMPLATES = "/data/foundation/query/query-templates"
IMPORT_FILE = f"{IMPORT}/{{batchId}}/datasets/{{datasetId}}/files/{{fileName:path}}"


def _crud(path: str, permission: str, methods: tuple[str, ...] = ("PATCH", "DELETE")) -> dict[str, str]:
    routes = {f"POST {path}": permission}
    routes.update({f"{m} {path}/{{ident}}": permission for m in methods})
    return routes


def _registry(kind: str) -> dict[str, str]:
    item = f"{SR}/{kind}/{{ident:path}}"
    return {
        f"POST {SR}/{kind}": MANAGE_SCHEMAS,
        **{f"{m} {item}": MANAGE_SCHEMAS for m in ("PUT", "PATCH", "DELETE")},
    }


# "METHOD path template" -> the permission the call needs (a GET not listed needs READ). tests/test_roles.py
# checks that every write of the API is listed here.
ROUTES: Mapping[str, str] = {
    **_crud(f"{FS}/connections", MANAGE_SOURCES),
    **_crud(f"{FS}/sourceConnections", MANAGE_SOURCES),
    **_crud(f"{FS}/targetConnections", MANAGE_SOURCES),
    f"PUT {FS}/connections/{{ident}}/files/{{path:path}}": MANAGE_SOURCES,
    f"DELETE {FS}/connections/{{ident}}/files/{{path:path}}": MANAGE_SOURCES,
    **_crud(f"{FS}/flows", MANAGE_DATAFLOWS),
    f"POST {FS}/flows/{{ident}}/action": MANAGE_DATAFLOWS,
    f"POST {FS}/runs": RUN_DATAFLOWS,
    f"POST {FS}/targetConnections/test": MANAGE_DESTINATIONS,
    f"POST {FS}/targetConnections/{{ident}}/test": MANAGE_DESTINATIONS,
    f"POST {FS}/connections/{{ident}}/action": MANAGE_DESTINATIONS,
    f"POST {FS}/targetConnections/{{ident}}/action": MANAGE_DESTINATIONS,
    f"DELETE {FS}/deadLetters/{{ident}}": MANAGE_DESTINATIONS,
    f"POST {FS}/deadLetters/{{ident}}/replay": MANAGE_DESTINATIONS,
    f"POST {FS}/deadLetters/replay": MANAGE_DESTINATIONS,
    **_registry("fieldgroups"),
    **_registry("mixins"),
    **_registry("schemas"),
    f"POST {SR}/descriptors": MANAGE_SCHEMAS,
    f"PUT {SR}/descriptors/{{ident}}": MANAGE_SCHEMAS,
    f"DELETE {SR}/descriptors/{{ident}}": MANAGE_SCHEMAS,
    **_crud("/data/foundation/catalog/dataSets", MANAGE_DATASETS),
    "POST /data/foundation/conversion/mappingSets/preview": READ,  # changes nothing
    **_crud("/data/foundation/conversion/mappingSets", MANAGE_DATAFLOWS, ("PUT", "DELETE")),
    "GET /data/foundation/sandbox-management/sandboxes": READ,
    "POST /data/foundation/sandbox-management/sandboxes": MANAGE_SANDBOXES,
    f"POST {IDN}/users": MANAGE_USERS,
    f"PATCH {IDN}/users/{{ident}}": MANAGE_USERS,
    f"POST {IDN}/users/{{ident}}/action": MANAGE_USERS,
    **_crud(f"{IDN}/externalClientApps", MANAGE_APPS),
    "GET /data/foundation/audit/events": VIEW_AUDIT_LOG,
    f"POST {IDNS}": MANAGE_IDENTITY_NAMESPACES,
    f"PUT {IDNS}/{{ident}}": MANAGE_IDENTITY_NAMESPACES,
    **_crud(MERGE_POLICIES, MANAGE_PROFILE_CONFIGS, ("PUT", "PATCH", "DELETE")),
    "GET /data/core/ups/access/entities": VIEW_PROFILES,  # merged profiles are personal data
    f"GET {IDN}/cluster/members": VIEW_PROFILES,
    f"GET {IDN}/cluster/history": VIEW_PROFILES,
    **_crud(SEGMENT_DEFINITIONS, MANAGE_SEGMENTS),  # reading definitions needs read only
    "POST /data/core/ups/segment/jobs": MANAGE_SEGMENTS,
    "POST /data/core/ups/preview": VIEW_PROFILES,  # a preview lists profiles; an estimate only counts
    "GET /data/core/ups/preview/{ident}": VIEW_PROFILES,
    "DELETE /data/core/ups/preview/{ident}": VIEW_PROFILES,
    # An export copies merged profiles into a dataset (readable with read): the service asks for
    # manage-segments as well (services/profiles/exports.py).
    "POST /data/core/ups/export/jobs": VIEW_PROFILES,
    "DELETE /data/core/ups/export/jobs/{ident}": MANAGE_SEGMENTS,
    **_crud(f"{SSOT}/connections", MANAGE_SOURCES),
    f"PUT {SSOT}/connections/{{ident}}/schema": MANAGE_SOURCES,
    f"POST {SSOT}/connections/{{ident}}/schema/actions/preview": READ,
    **_crud(f"{SSOT}/data-streams", MANAGE_DATAFLOWS),
    f"POST {SSOT}/data-streams/actions/preview": READ,
    # The Batch Ingestion API (api/routes/batchingest.py): sending data, like the inlets and Data 360's.
    f"POST {IMPORT}": INGEST_DATA,
    f"POST {IMPORT}/{{batchId}}": INGEST_DATA,
    **{f"{m} {IMPORT_FILE}": INGEST_DATA for m in ("PUT", "PATCH", "POST")},
    # Query Service (api/routes/queryservice.py): CTAS and INSERT INTO ask for more in the service.
    **_crud(QUERIES, MANAGE_QUERIES),
    **_crud(f"{QUERY_TEMPLATES}", MANAGE_QUERIES, ("PUT", "DELETE")),
    f"GET {QUERIES}/{{ident}}/results": MANAGE_QUERIES,  # the rows are the datasets' data
    # The PostgreSQL endpoint's credentials: it asks for manage-queries too (pgwire/backend.py).
    "GET /data/foundation/query/connection_parameters": MANAGE_QUERIES,
}


def route_permission(method: str, path_template: str) -> str | None:
    """The permission a call needs; None for a write that is not in :data:`ROUTES` (refused: fail closed)."""
    method = "GET" if method == "HEAD" else method
    found = ROUTES.get(f"{method} {path_template}")
    if found is None and method == "GET":
        return READ
    return found


def role_problem(value: Any) -> str | None:
    if value not in ROLES:
        return "must be one of " + ", ".join(ROLES)
    return None


def role_in(roles: Mapping[str, str] | None, sandbox_name: str, admin: bool) -> str | None:
    """A person's role in ``sandbox_name``: Admin for organization admins, else the one named for the
    sandbox, else the one for every sandbox, else :data:`DEFAULT_USER_ROLE`."""
    if admin:
        return "Admin"
    roles = roles or {}
    return roles.get(sandbox_name) or roles.get(EVERY_SANDBOX) or DEFAULT_USER_ROLE


def permissions_of(role: str, org_admin: bool) -> frozenset[str]:
    granted = ROLES.get(role, VIEWER)
    return granted | ORG_PERMISSIONS if org_admin else granted


def denied(permission: str, role: str, sandbox: str, what: str) -> Forbidden:
    return Forbidden(
        f"The {role} role does not have the permission {permission!r} that {what} needs"
        + ("." if permission in ORG_PERMISSIONS else f" in sandbox {sandbox!r}."),
        code="HW-1403-403",
        report={"permission": permission, "role": role, "sandbox": sandbox},
    )

"""Table definitions of the metadata store (the Alembic migrations create exactly these)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
# Plain json on every backend: documents are never queried inside, and json keeps the client's key order.
Json = JSON()

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("tenant_id", String(40), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

sandboxes = Table(
    "sandboxes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("org_id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("title", String(200), nullable=False),
    Column("type", String(20), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_sandboxes_org_name"),
)

api_clients = Table(
    "api_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("org_id", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("sealed_secret", Json, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("role", String(20), nullable=False, server_default="Admin"),  # services/access.py ROLES
)

resources = Table(
    "resources",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("id", String(200), nullable=False),
    Column("org_id", String(64), nullable=False),
    Column("sandbox_id", String(64), nullable=False),
    Column("name", Text, nullable=True),
    Column("alt_id", String(300), nullable=True),
    Column("doc", Json, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Lead with the id so the planner never prefers these over the ordered scope index for lists.
    UniqueConstraint("id", "kind", "org_id", "sandbox_id", name="uq_resources_id_scope"),
    UniqueConstraint("alt_id", "kind", "org_id", "sandbox_id", name="uq_resources_alt_scope"),
    Index("ix_resources_scope_created", "kind", "org_id", "sandbox_id", "created_at", "seq"),
)

resource_refs = Table(
    "resource_refs",
    metadata,
    Column("org_id", String(64), primary_key=True),
    Column("sandbox_id", String(64), primary_key=True),
    Column("from_kind", String(40), primary_key=True),
    Column("from_id", String(200), primary_key=True),
    Column("to_kind", String(40), primary_key=True),
    Column("to_id", String(200), primary_key=True),
    Index("ix_refs_target", "org_id", "sandbox_id", "to_kind", "to_id"),
)

run_queue = Table(
    "run_queue",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("org_id", String(64), nullable=False),
    Column("sandbox_id", String(64), nullable=False),
    Column("flow_id", String(64), nullable=False),
    Column("scheduled_for", BigInteger, nullable=True),  # schedule slot (epoch ms); NULL for ad hoc runs
    Column("enqueued_at", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | done
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    UniqueConstraint("flow_id", "scheduled_for", name="uq_run_queue_flow_slot"),
    Index("ix_run_queue_claim", "state", "enqueued_at"),
)

# Every write through the API, allowed or refused (services/audit.py); append-only.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("org_id", String(64), nullable=False),
    Column("sandbox_name", String(100), nullable=True),  # NULL: an organization-level call
    Column("at", BigInteger, nullable=False),  # epoch ms
    Column("user", String(200), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("role", String(20), nullable=False),
    Column("action", String(20), nullable=False),  # create | update | delete | execute
    Column("permission", String(40), nullable=False),
    Column("asset_type", String(60), nullable=False),
    Column("asset_id", String(400), nullable=True),
    Column("method", String(10), nullable=False),
    Column("path", String(2000), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("outcome", String(10), nullable=False),  # allow | deny | fail
    Column("failure_code", String(40), nullable=True),  # the error's code when not allowed
    Column("address", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Index("ix_audit_events_org_at", "org_id", "at"),
)

# Signed-in console sessions (edge/session.py): a cookie works only while its row exists.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 hex of the cookie's session secret
    Column("org_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_console_sessions_user", "org_id", "user_id"),
    Index("ix_console_sessions_expires", "expires_at"),
)

# One-time upgrade steps that need more than SQL (the encryption key, the rules of a service): a row once
# the step is done, so later starts skip it.
upgrade_marks = Table(
    "upgrade_marks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("done_at", BigInteger, nullable=False),
)

# The partitions of a batch run split over several workers (runtime/partitions.py): each is claimed
# under a lease like a run, and records the data files it wrote (not yet committed) when it is done.
run_partitions = Table(
    "run_partitions",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("org_id", String(64), nullable=False),
    Column("sandbox_id", String(64), nullable=False),
    Column("spec", JSON, nullable=False),  # what to read: the files and the run's window
    Column("state", String(16), nullable=False),  # queued | running | done
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("output", JSON, nullable=True),  # once done: the data files written and the counts
    Index("ix_run_partitions_claim", "state", "run_id"),
)

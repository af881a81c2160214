"""The metadata store interface and its records.

Resources are JSON documents of a ``kind`` (connection, flow, schema, dataSet, ...) scoped to one
organization and sandbox. A resource may reference others (a flow its connections); the store keeps
those references so that deleting a referenced resource fails atomically with :class:`StillReferenced`.
Writes are optimistic: ``update`` takes the etag the caller read and fails with :class:`StaleWrite` if
another writer got there first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

OrderColumn = Literal["createdAt", "updatedAt", "name", "id"]


class Scope(NamedTuple):
    org_id: str
    sandbox_id: str


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    tenant_id: str
    created_at: int


@dataclass(frozen=True)
class Sandbox:
    id: str
    org_id: str
    name: str
    title: str
    type: str
    created_at: int


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    org_id: str
    name: str
    sealed_secret: dict[str, str]
    enabled: bool
    created_at: int
    role: str = "Admin"


@dataclass(frozen=True)
class AuditEvent:
    """One call that changed (or tried to change) something: who, where, what, and how it ended."""

    id: str
    org_id: str
    sandbox_name: str | None
    at: int
    user: str
    client_id: str
    role: str
    action: str
    permission: str
    asset_type: str
    asset_id: str | None
    method: str
    path: str
    status_code: int
    outcome: str
    address: str | None = None
    request_id: str | None = None
    failure_code: str | None = None


# The audit log's filterable columns: AuditEvent field -> the comparisons a filter may use on it.
AUDIT_FILTERS = {
    "sandbox_name": ("==",),
    "user": ("==",),
    "client_id": ("==",),
    "role": ("==",),
    "action": ("==",),
    "permission": ("==",),
    "asset_type": ("==",),
    "asset_id": ("==",),
    "outcome": ("==",),
    "status_code": ("==",),
    "at": (">=", "<=", ">", "<"),
}


@dataclass
class Resource:
    kind: str
    id: str
    scope: Scope
    doc: dict[str, Any]
    etag: str
    name: str | None = None
    alt_id: str | None = None
    created_at: int = 0
    updated_at: int = 0
    refs: list[tuple[str, str]] = field(default_factory=list)  # (kind, id) this resource points at


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in console session: it exists until sign-out, expiry, or its user's password change or
    disabling ends it. ``id`` is the SHA-256 digest (hex) of the secret the cookie carries, so reading the
    database gives no usable session."""

    id: str
    org_id: str
    user_id: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms


@dataclass(frozen=True)
class QueuedRun:
    """A run waiting for (or held by) a worker."""

    run_id: str
    scope: Scope
    flow_id: str
    scheduled_for: int | None  # the schedule slot (epoch ms) it runs for; None for ad hoc runs
    enqueued_at: int
    state: str = "queued"  # queued | running | done
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0


@dataclass(frozen=True)
class RunPartition:
    """One part of a batch run read by whichever worker claims it (runtime/partitions.py)."""

    run_id: str
    part: int
    scope: Scope
    spec: dict[str, Any]  # what to read
    state: str = "queued"  # queued | running | done
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0
    output: dict[str, Any] | None = None  # once done: what it wrote and counted


@dataclass(frozen=True)
class Page:
    items: list[Resource]
    total: int | None = None


class StoreError(Exception):
    """Base of the store's own errors; services translate them into HTTP errors."""


class AlreadyExists(StoreError):
    pass


class StaleWrite(StoreError):
    """The etag given to ``update`` is not the current one (or the resource is gone)."""


class MissingReference(StoreError):
    """A resource being written references one that does not exist (or was deleted meanwhile)."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} does not exist")
        self.kind = kind
        self.ident = ident


class StillReferenced(StoreError):
    def __init__(self, referrers: Sequence[tuple[str, str]]) -> None:
        super().__init__(f"referenced by {list(referrers)}")
        self.referrers = list(referrers)


class MetadataStore(ABC):
    """Everything the control plane persists. Implementations are thread-safe."""

    #: Reads are local and sub-millisecond (embedded SQLite): callers may run them on an event loop.
    reads_inline: bool = False
    #: Only one write transaction runs at a time (SQLite): callers should queue writes, not threads.
    single_writer: bool = False

    # --- schema ---
    @abstractmethod
    def migrate(self) -> None:
        """Bring the database to the current schema revision (safe to call from several processes)."""

    @abstractmethod
    def close(self) -> None: ...

    # --- tenancy ---
    @abstractmethod
    def create_org(self, org: Org) -> None: ...

    @abstractmethod
    def get_org(self, org_id: str) -> Org | None: ...

    @abstractmethod
    def list_orgs(self) -> list[Org]: ...

    @abstractmethod
    def create_sandbox(self, sandbox: Sandbox) -> None: ...

    @abstractmethod
    def get_sandbox(self, org_id: str, name: str) -> Sandbox | None: ...

    @abstractmethod
    def list_sandboxes(self, org_id: str) -> list[Sandbox]: ...

    @abstractmethod
    def create_client(self, client: ApiClient) -> None: ...

    @abstractmethod
    def get_client(self, client_id: str) -> ApiClient | None: ...

    @abstractmethod
    def list_clients(self, org_id: str) -> list[ApiClient]: ...

    @abstractmethod
    def set_client_enabled(self, client_id: str, enabled: bool) -> bool: ...

    # --- the audit log ---
    @abstractmethod
    def append_audit(self, events: list[AuditEvent]) -> None:
        """Append ``events`` in one transaction (one commit for a whole group)."""

    @abstractmethod
    def list_audit(
        self, org_id: str, filters: list[tuple[str, str, Any]], limit: int, offset: int = 0
    ) -> tuple[list[AuditEvent], int]:
        """The organization's events matching every ``(field, op, value)`` of ``filters`` (fields and ops
        from :data:`AUDIT_FILTERS`), newest first, ``limit`` of them from ``offset``; and how many match."""

    # --- console sessions ---
    @abstractmethod
    def create_session(self, session: ConsoleSession) -> None:
        """Store a new session (and delete a few expired ones: the table stays small)."""

    @abstractmethod
    def get_session(self, session_id: str) -> ConsoleSession | None:
        """The session with this digest, expired or not (the caller judges ``expires_at``)."""

    @abstractmethod
    def delete_session(self, session_id: str) -> bool:
        """End one session (sign-out); False when there was none."""

    @abstractmethod
    def delete_user_sessions(self, org_id: str, user_id: str) -> int:
        """End every session of a user (password changed, user disabled); how many ended."""

    # --- upgrade marks ---
    @abstractmethod
    def has_mark(self, name: str) -> bool:
        """Whether the one-time upgrade step ``name`` is done."""

    @abstractmethod
    def set_mark(self, name: str) -> None:
        """Record the step ``name`` as done (again is fine: several processes may finish it together)."""

    # --- resources ---
    @abstractmethod
    def insert(self, resource: Resource) -> None:
        """Insert a new resource and its references. :class:`AlreadyExists` if the id or alt id is taken."""

    @abstractmethod
    def get(self, kind: str, scope: Scope, ident: str) -> Resource | None: ...

    @abstractmethod
    def get_by_alt_id(self, kind: str, scope: Scope, alt_id: str) -> Resource | None: ...

    @abstractmethod
    def get_many(self, kind: str, scope: Scope, idents: Iterable[str]) -> dict[str, Resource]: ...

    @abstractmethod
    def update(self, resource: Resource, expected_etag: str) -> None:
        """Replace doc, name, etag, updated_at and references if the stored etag is ``expected_etag``."""

    @abstractmethod
    def delete(self, kind: str, scope: Scope, ident: str) -> bool:
        """Delete a resource. False if absent; :class:`StillReferenced` if another resource points at it."""

    @abstractmethod
    def referrers(self, scope: Scope, kind: str, ident: str) -> list[tuple[str, str]]:
        """The (kind, id) of every resource that references ``kind``/``ident``."""

    @abstractmethod
    def scan_kind(self, kind: str) -> Iterator[Resource]:
        """Every resource of ``kind`` in every organization and sandbox (for the scheduler)."""

    # --- the run queue ---
    @abstractmethod
    def enqueue_run(self, run: QueuedRun) -> bool:
        """Queue a run; False when the flow already has a run for that schedule slot."""

    @abstractmethod
    def claim_run(
        self, worker: str, lease_ms: int, now_ms: int, run_id: str | None = None
    ) -> QueuedRun | None:
        """Atomically take the oldest queued run (or ``run_id`` only), or a running one whose lease expired.

        Two workers never hold the same run: the claim is one conditional UPDATE.
        """

    @abstractmethod
    def renew_lease(self, run_id: str, worker: str, until_ms: int) -> bool:
        """Extend the lease; False when the worker lost it (another worker took the run over)."""

    @abstractmethod
    def finish_run(self, run_id: str, worker: str) -> bool:
        """Mark the run done; False when the worker no longer holds it."""

    # --- the partitions of a run ---
    @abstractmethod
    def add_partitions(
        self, run_id: str, scope: Scope, specs: Sequence[dict[str, Any]]
    ) -> list[RunPartition]:
        """Queue ``specs`` as the partitions of ``run_id``, all in one transaction, unless the run has
        partitions already (an earlier attempt queued them): the run's partitions as stored."""

    @abstractmethod
    def claim_partition(
        self,
        worker: str,
        lease_ms: int,
        now_ms: int,
        run_id: str | None = None,
        part: int | None = None,
        max_attempts: int | None = None,
    ) -> RunPartition | None:
        """Atomically take a queued partition (of ``run_id`` only, when given; that one partition, with
        ``part``), or a running one whose lease expired (taken fewer than ``max_attempts`` times, when
        given); oldest run first. Two workers never hold the same partition."""

    @abstractmethod
    def renew_partition(self, run_id: str, part: int, worker: str, until_ms: int) -> bool:
        """Extend the partition's lease; False when the worker lost it."""

    @abstractmethod
    def finish_partition(self, run_id: str, part: int, worker: str, output: dict[str, Any]) -> bool:
        """Record ``output`` and mark the partition done, only while ``worker`` holds it (a
        compare-and-set: of two attempts, one finishes). False when the worker lost it."""

    @abstractmethod
    def partitions(self, run_id: str) -> list[RunPartition]:
        """The run's partitions in order (empty for a run that was not split)."""

    @abstractmethod
    def last_slot(self, flow_id: str) -> int | None:
        """The latest schedule slot queued for ``flow_id``."""

    @abstractmethod
    def list(
        self,
        kind: str,
        scope: Scope,
        *,
        order: OrderColumn = "createdAt",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
        count: bool = False,
    ) -> Page:
        """A page of resources of ``kind`` in ``scope`` in a stable order (ties broken by insertion)."""

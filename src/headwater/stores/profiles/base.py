"""The profile serving store: the copy of identities, profile fragments and experience events that
lookups and segment jobs read. The lake keeps the history; this store keeps what is current.

Everything is scoped by :class:`Scope` (organization, sandbox): no call of one scope reads or changes
another's rows.

- **Identities** map ``(namespace code, id)`` to a cluster id (int64). :meth:`ProfileStore.apply_graph`
  writes the graph's decisions (new assignments, merged clusters, refused links) in one transaction.
- **Fragments**: one per record key ``(dataset, namespace, id)`` (the record's primary identity). A write
  replaces the whole stored fragment when its ``ts_ms`` is at least the stored one: the last write by
  timestamp wins, and on a tie the later arrival.
- **Experience events**: once per ``(dataset, event_id)``; writing one again (a replay) changes nothing.
- **Projection cursors**: per dataset, the last lake snapshot projected. :meth:`ProfileStore.project`
  writes a snapshot's rows and moves the cursor in one transaction, so a crash never loses or doubles
  a snapshot.

Errors: :class:`StaleCursor` (a ``StoreError`` of the metadata store's family) when ``project`` expected
another cursor; ``ValueError`` for rows that do not belong to the dataset being written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.stores.metadata.base import Scope, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "UNCHECKED",
    "ClusterMerge",
    "EventCursor",
    "ExperienceEvent",
    "Fragment",
    "GraphUpdate",
    "IdentityKey",
    "Profile",
    "ProfileStore",
    "ProjectionCursor",
    "RefusedLink",
    "Scope",
    "StaleCursor",
]

#: An identity: (namespace code, id).
IdentityKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Fragment:
    """One record's profile attributes, keyed by (dataset_id, namespace, id): its primary identity."""

    dataset_id: str
    namespace: str
    id: str
    attributes: dict[str, Any]  # the record's XDM fields
    ts_ms: int  # orders writes of one key: ingestion time or the XDM timestamp, as the caller decides
    batch_id: str  # the lake batch or snapshot that wrote it (deletes by batch)


@dataclass(frozen=True, slots=True)
class ExperienceEvent:
    dataset_id: str
    namespace: str  # the event's primary identity
    id: str
    ts_ms: int
    event_id: str  # the XDM _id: unique within the dataset
    batch_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, order=True)
class EventCursor:
    """Where a page of events ended. Events are ordered by (ts_ms, event_id, dataset_id), newest first."""

    ts_ms: int
    event_id: str
    dataset_id: str


@dataclass(frozen=True, slots=True)
class RefusedLink:
    """A link between two identities the graph refused to follow (a limit), and why."""

    ns_a: str
    id_a: str
    ns_b: str
    id_b: str
    reason: str
    at_ms: int
    dataset_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterMerge:
    cluster_from: int
    cluster_to: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class GraphUpdate:
    """What one step of the identity graph decided.

    ``merged`` moves every member of ``from`` to ``to`` (chains such as a->b, b->c are followed, so a's
    members end in c); then ``assignments`` set each listed identity's cluster, inserting identities not
    seen before (their ``first_seen_ms`` is the update's time) and moving those already stored.
    """

    assignments: Sequence[tuple[str, str, int]] = ()  # (namespace, id, cluster_id)
    merged: Sequence[tuple[int, int]] = ()  # (cluster_from, cluster_to)
    refused: Sequence[RefusedLink] = ()


@dataclass(frozen=True, slots=True)
class ProjectionCursor:
    snapshot_id: int
    state: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class Profile:
    """A cluster as a lookup sees it: its identities and every dataset's fragment of them."""

    cluster_id: int
    members: list[IdentityKey]  # sorted
    fragments: list[Fragment] = field(default_factory=list)  # sorted by ts_ms, then dataset, key


class StaleCursor(StoreError):
    """``project`` expected another projection cursor: another projector moved it first. Nothing was
    written; read the cursor again and project from there."""


class _Unchecked:
    def __repr__(self) -> str:
        return "UNCHECKED"


#: ``project(..., expected_snapshot_id=UNCHECKED)``: move the cursor whatever it was.
UNCHECKED = _Unchecked()


class ProfileStore(ABC):
    """The serving store. Implementations are thread-safe; every write call is one transaction, durable
    when it returns. Batched calls take sequences (hundreds of thousands of rows are fine: they are
    written in chunks inside the one transaction)."""

    # --- identities and the graph ---
    @abstractmethod
    def clusters_of(self, scope: Scope, keys: Sequence[IdentityKey]) -> dict[IdentityKey, int]:
        """The cluster of each stored identity among ``keys`` (identities not stored are absent)."""

    @abstractmethod
    def members(self, scope: Scope, cluster_ids: Sequence[int]) -> list[tuple[int, str, str]]:
        """Every identity of the given clusters as (cluster_id, namespace, id), sorted."""

    @abstractmethod
    def apply_graph(self, scope: Scope, update: GraphUpdate, at_ms: int) -> None:
        """Write the graph's decisions in one transaction (see :class:`GraphUpdate`); merges are recorded
        in the cluster history and refused links appended, both at ``at_ms``."""

    @abstractmethod
    def next_cluster_ids(self, count: int) -> int:
        """Reserve ``count`` new cluster ids, unique in the whole store (every scope, every process):
        the range ``[first, first + count)``; returns ``first``. Committed on return, never handed out
        again even if the caller does not use them."""

    @abstractmethod
    def refused_links(
        self, scope: Scope, limit: int, before: int | None = None
    ) -> tuple[list[RefusedLink], int | None]:
        """Refused links newest first, ``limit`` of them, older than the position ``before`` (None: from
        the newest); and the position to pass for the next page (None when there is none)."""

    @abstractmethod
    def cluster_history(self, scope: Scope, cluster_id: int) -> list[ClusterMerge]:
        """Merges into or out of ``cluster_id``, newest first."""

    # --- fragments ---
    @abstractmethod
    def put_fragments(self, scope: Scope, dataset_id: str, fragments: Sequence[Fragment]) -> None:
        """Upsert fragments of ``dataset_id``: each replaces the stored one of its key when its ``ts_ms``
        is at least the stored one. Within one call, the last of equal ``ts_ms`` for a key wins."""

    @abstractmethod
    def delete_fragments(self, scope: Scope, dataset_id: str, batch_ids: Sequence[str] | None = None) -> int:
        """Delete the dataset's fragments written by ``batch_ids`` (None: all of them); how many went.
        A fragment a batch replaced is not restored: the projection re-reads the lake for it."""

    @abstractmethod
    def fragments_of(self, scope: Scope, keys: Sequence[IdentityKey]) -> list[Fragment]:
        """Every dataset's fragment of each identity in ``keys``, sorted by (ts_ms, dataset_id, key)."""

    # --- experience events ---
    @abstractmethod
    def put_events(self, scope: Scope, dataset_id: str, events: Sequence[ExperienceEvent]) -> None:
        """Insert events of ``dataset_id``; one whose ``event_id`` the dataset has already is skipped."""

    @abstractmethod
    def delete_events(self, scope: Scope, dataset_id: str, batch_ids: Sequence[str] | None = None) -> int:
        """Delete the dataset's events written by ``batch_ids`` (None: all of them); how many went."""

    @abstractmethod
    def events_of(
        self, scope: Scope, keys: Sequence[IdentityKey], limit: int, after: EventCursor | None = None
    ) -> tuple[list[ExperienceEvent], EventCursor | None]:
        """Events of the identities ``keys``, newest first, at most ``limit``, starting after ``after``;
        and the cursor of the next page (None when this page is the last)."""

    # --- projection ---
    @abstractmethod
    def project(
        self,
        scope: Scope,
        dataset_id: str,
        snapshot_id: int,
        *,
        at_ms: int,
        fragments: Sequence[Fragment] = (),
        events: Sequence[ExperienceEvent] = (),
        graph: GraphUpdate | None = None,
        delete_batch_ids: Sequence[str] = (),
        state: str = "",
        expected_snapshot_id: int | _Unchecked | None = UNCHECKED,
    ) -> None:
        """In one transaction: move the dataset's cursor to ``snapshot_id`` (with ``state``), delete the
        fragments and events of ``delete_batch_ids``, apply ``graph``, write ``fragments`` and
        ``events``. All of it or nothing is durable when the call ends.

        With ``expected_snapshot_id`` (None: no cursor yet), the cursor moves only from that snapshot:
        otherwise :class:`StaleCursor` and nothing is written. Two projectors of one dataset thus never
        both apply a snapshot."""

    @abstractmethod
    def cursor(self, scope: Scope, dataset_id: str) -> ProjectionCursor | None:
        """The dataset's projection cursor, None before its first projection."""

    # --- lookup ---
    @abstractmethod
    def lookup(self, scope: Scope, key: IdentityKey) -> Profile | None:
        """The profile of the cluster ``key`` belongs to (one round trip), None for an unknown identity."""

    # --- bulk reads for segment jobs ---
    @abstractmethod
    def iter_fragments(self, scope: Scope, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Every fragment of the scope as Arrow batches of columns cluster_id (int64, null when the key
        has no identity row), dataset_id, namespace, id, ts_ms (int64), attributes (JSON text). The
        iterator holds a database connection until exhausted or closed."""

    @abstractmethod
    def iter_events(self, scope: Scope, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Every event of the scope as Arrow batches of columns cluster_id, dataset_id, namespace, id,
        ts_ms, event_id, body (JSON text); as :meth:`iter_fragments`."""

    # --- life cycle ---
    @abstractmethod
    def drop_dataset(self, scope: Scope, dataset_id: str) -> None:
        """Delete the dataset's fragments, events and projection cursor (identities stay: the graph spans
        datasets)."""

    @abstractmethod
    def drop_sandbox(self, scope: Scope) -> None:
        """Delete every row of the scope, in every table."""

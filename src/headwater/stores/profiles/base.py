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
- **Segment membership**: per (segment, cluster) a status, ``realized`` or ``exited``, and the time of
  its last change. :meth:`ProfileStore.apply_membership` writes the changes of one evaluation and appends
  one :class:`Transition` each, in one transaction; transitions are read in ``seq`` order (activation).
  When the graph merges cluster a into c, a's memberships fold into c's (realized wins, see
  :meth:`ProfileStore.apply_graph`) without a transition: the caller re-evaluates c.
- **Projection cursors**: per dataset, the last lake snapshot projected. :meth:`ProfileStore.project`
  writes a snapshot's rows and moves the cursor in one transaction, so a crash never loses or doubles
  a snapshot.

Errors: :class:`StaleCursor` (a ``StoreError`` of the metadata store's family) when ``project`` expected
another cursor; :class:`MembershipMoved` (the same family) when ``apply_membership`` finds a cluster
changing status that it was given no profile for; ``ValueError`` for rows that do not belong to the
dataset being written.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.stores.metadata.base import Scope, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "EXITED",
    "REALIZED",
    "UNCHECKED",
    "ClusterMerge",
    "EventCursor",
    "ExperienceEvent",
    "Fragment",
    "GraphSplit",
    "GraphUpdate",
    "IdentityKey",
    "IdentityLink",
    "MembershipMoved",
    "Profile",
    "ProfileStore",
    "ProjectionCursor",
    "RefusedLink",
    "Scope",
    "StaleCursor",
    "StoredLink",
    "Transition",
    "TransitionSignal",
]

#: Membership statuses, as AEP's segmentMembership has them.
REALIZED = "realized"
EXITED = "exited"

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
class IdentityLink:
    """An identity of a record beside the record's anchor (its primary identity, else its first; the
    anchor beside itself): where the graph saw the identity, and the link that joined it to the anchor
    unless the graph refused that link (then the identity is written beside itself)."""

    namespace: str
    id: str
    anchor_namespace: str
    anchor_id: str

    @property
    def key(self) -> IdentityKey:
        return (self.namespace, self.id)

    @property
    def anchor(self) -> IdentityKey:
        return (self.anchor_namespace, self.anchor_id)


@dataclass(frozen=True, slots=True)
class StoredLink:
    """An :class:`IdentityLink` as stored: by a dataset, at the generation (lake snapshot) of the step
    that last wrote it."""

    dataset_id: str
    link: IdentityLink
    generation: int


@dataclass(frozen=True, slots=True)
class GraphSplit:
    """What a sweep decided (services/profiles/graphstep.py ``split``): the identities that move to
    another cluster (a cluster that lost the links holding it together splits), and those no dataset
    holds any more (they leave the graph)."""

    assignments: Sequence[tuple[str, str, int]] = ()  # (namespace, id, cluster_id)
    removed: Sequence[IdentityKey] = ()


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


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a cluster's membership in a segment, as activation delivers it."""

    seq: int  # strictly increasing per store across all segments (gaps allowed), in commit order
    segment_id: str
    cluster_id: int
    status: str  # REALIZED (entered) or EXITED
    at_ms: int
    profile: dict[str, Any]  # the merged profile entity at that moment (attributes + identityMap)


class MembershipMoved(StoreError):
    """``apply_membership`` found a cluster changing status that ``profiles`` has no entity for: another
    writer changed the membership since the caller read it. Nothing was written; read the memberships
    again (``memberships_of``), merge the profiles of the clusters that now change, and call again."""


class StaleCursor(StoreError):
    """``project`` expected another projection cursor: another projector moved it first. Nothing was
    written; read the cursor again and project from there."""


class TransitionSignal:
    """Wakes this process's readers of transitions (audience activation) once ``apply_membership`` has
    committed some; readers in other processes poll ``last_transition_seq``. A counter, and per (scope,
    segment) the count at its last write, so that a write between two waits is not missed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._last: dict[tuple[Scope, str], int] = {}

    def notify(self, scope: Scope, segment_id: str) -> None:
        """The segment's new transitions are durable (called after the commit)."""
        with self._cond:
            self._count += 1
            self._last[scope, segment_id] = self._count
            self._cond.notify_all()

    def count(self) -> int:
        """How many writes were notified so far (the ``seen`` of a first :meth:`wait`)."""
        with self._cond:
            return self._count

    def wait(self, seen: int, timeout: float) -> tuple[int, frozenset[tuple[Scope, str]]]:
        """Once the count differs from ``seen``, or after ``timeout`` seconds: (the count now, the
        segments written since ``seen``). Pass the count returned as the next ``seen``."""
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen, timeout)
            written = frozenset(key for key, n in self._last.items() if n > seen)
            return self._count, written


class _Unchecked:
    def __repr__(self) -> str:
        return "UNCHECKED"


#: ``project(..., expected_snapshot_id=UNCHECKED)``: move the cursor whatever it was.
UNCHECKED = _Unchecked()


class ProfileStore(ABC):
    """The serving store. Implementations are thread-safe; every write call is one transaction, durable
    when it returns. Batched calls take sequences (hundreds of thousands of rows are fine: they are
    written in chunks inside the one transaction)."""

    #: Notified after each ``apply_membership`` that wrote transitions, once they are durable (this
    #: process's writes only).
    transitions_written: TransitionSignal

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
        in the cluster history and refused links appended, both at ``at_ms``.

        Segment memberships of a merged-away cluster move to the cluster it ends in, per segment: realized
        if either was realized (since the earlier realization), else exited (since the later exit). No
        transition is written: the caller re-evaluates the surviving cluster, whose transitions then
        carry the merged profile."""

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

    @abstractmethod
    def links_of(self, scope: Scope, keys: Sequence[IdentityKey]) -> list[StoredLink]:
        """Every dataset's stored links whose identity (not anchor) is among ``keys``."""

    @abstractmethod
    def stale_links(self, scope: Scope, dataset_id: str, keep: int | None) -> list[StoredLink]:
        """The dataset's stored links of a generation other than ``keep`` (None: all of them)."""

    @abstractmethod
    def sweep(
        self,
        scope: Scope,
        dataset_id: str,
        keep: int | None,
        split: GraphSplit,
        *,
        at_ms: int,
        expected_snapshot_id: int | None = None,
        drop: bool = False,
    ) -> None:
        """In one transaction: delete the dataset's links of a generation other than ``keep`` (None: all),
        apply ``split`` (assignments; removed identities deleted), and either (``drop``) delete the
        dataset's fragments, events and cursor, or (``expected_snapshot_id``) clear the cursor's state,
        which must be at that snapshot (else :class:`StaleCursor`, nothing written)."""

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
        links: Sequence[IdentityLink] = (),
        delete_batch_ids: Sequence[str] = (),
        state: str = "",
        expected_snapshot_id: int | _Unchecked | None = UNCHECKED,
    ) -> None:
        """In one transaction: move the dataset's cursor to ``snapshot_id`` (with ``state``), delete the
        fragments and events of ``delete_batch_ids``, apply ``graph``, write ``fragments``, ``events``
        and ``links`` (at generation ``snapshot_id``). All of it or nothing is durable when the call
        ends.

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

    # --- segment membership ---
    @abstractmethod
    def apply_membership(
        self,
        scope: Scope,
        segment_id: str,
        evaluated: Sequence[int],
        qualifying: Collection[int],
        profiles: Mapping[int, dict[str, Any]],
        at_ms: int,
    ) -> list[Transition]:
        """Record one evaluation of ``segment_id`` over the clusters ``evaluated``, in one transaction.

        Each evaluated cluster in ``qualifying`` that is not realized (no row, or exited) becomes
        realized; each evaluated cluster not in ``qualifying`` that is realized becomes exited; each
        such change writes the membership row (since ``at_ms``) and appends a :class:`Transition` with
        ``profiles[cluster]``. Unchanged clusters write nothing. Returns the transitions written, in seq
        order. Writers of membership are serialized store-wide (the seq counter's row), so seq order is
        commit order.

        ``ValueError`` when ``qualifying`` holds a cluster not in ``evaluated``; :class:`MembershipMoved`
        when a changing cluster has no entry in ``profiles`` (nothing is written either way)."""

    @abstractmethod
    def memberships_of(
        self, scope: Scope, cluster_ids: Sequence[int]
    ) -> dict[int, dict[str, tuple[str, int]]]:
        """cluster -> segment -> (status, since_ms) for each of ``cluster_ids`` with any membership."""

    @abstractmethod
    def segment_count(self, scope: Scope, segment_id: str) -> int:
        """How many clusters are realized in ``segment_id``."""

    @abstractmethod
    def segment_members(
        self,
        scope: Scope,
        segment_id: str,
        limit: int,
        after_cluster: int | None = None,
        status: str = REALIZED,
    ) -> list[int]:
        """Clusters of ``segment_id`` whose membership is ``status`` (realized by default; EXITED for
        those that left it), in ascending order, ``limit`` of them, above ``after_cluster`` (None: from
        the first)."""

    @abstractmethod
    def transitions(self, scope: Scope, segment_id: str, after_seq: int, limit: int) -> list[Transition]:
        """The segment's transitions with ``seq > after_seq``, ascending, at most ``limit``."""

    @abstractmethod
    def last_transition_seq(self, scope: Scope, segment_id: str) -> int:
        """The seq of the segment's last transition; 0 when it has none."""

    @abstractmethod
    def drop_segment(self, scope: Scope, segment_id: str) -> None:
        """Delete the segment's memberships and transitions."""

    # --- life cycle ---
    @abstractmethod
    def drop_dataset(self, scope: Scope, dataset_id: str) -> None:
        """Delete the dataset's fragments, events and projection cursor. Its identities and links stay
        (the graph spans datasets) until a :meth:`sweep` takes out those no rewrite saw again."""

    @abstractmethod
    def drop_sandbox(self, scope: Scope) -> None:
        """Delete every row of the scope, in every table."""

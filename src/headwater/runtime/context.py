"""What the runtime needs of the process it runs in: the one edge between the runners and the wiring.

The runners (executor, micro-batchers, activation, the worker loop) receive a :class:`Runtime`, never
the container: this Protocol names every collaborator they use, so the runtime's dependencies are read
here, not found by following attributes. The container (headwater/container.py) satisfies it
structurally; a test or a bench may hand any object that does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.lake.iceberg import Lake
    from headwater.runtime.profiles import ProfileProjector
    from headwater.runtime.segmentjobs import JobRunner, SegmentJobRunner
    from headwater.services.flowservice import Connections, TargetConnections
    from headwater.services.ledger import RunLedger
    from headwater.services.plans import Plans
    from headwater.services.runs import Batches, Runs
    from headwater.services.specs import SpecCatalog
    from headwater.services.streaming import Streams
    from headwater.services.tenancy import Tenancy
    from headwater.settings import Settings
    from headwater.stores.locks import Locks
    from headwater.stores.metadata import MetadataStore
    from headwater.stores.profiles import ProfileStore
    from headwater.stores.secrets import SecretBox


class Runtime(Protocol):
    """The collaborators of every runner (read-only)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> MetadataStore: ...

    @property
    def lake(self) -> Lake: ...

    @property
    def locks(self) -> Locks: ...

    @property
    def profile_projector(self) -> ProfileProjector: ...

    @property
    def segment_job_runner(self) -> SegmentJobRunner: ...

    @property
    def export_job_runner(self) -> JobRunner: ...

    @property
    def batch_promoter(self) -> JobRunner: ...

    @property
    def query_job_runner(self) -> JobRunner: ...

    @property
    def profiles(self) -> ProfileStore: ...

    @property
    def streams(self) -> Streams: ...

    @property
    def plans(self) -> Plans: ...

    @property
    def ledger(self) -> RunLedger: ...

    @property
    def runs(self) -> Runs: ...

    @property
    def batches(self) -> Batches: ...

    @property
    def connections(self) -> Connections: ...

    @property
    def target_connections(self) -> TargetConnections: ...

    @property
    def specs(self) -> SpecCatalog: ...

    @property
    def tenancy(self) -> Tenancy: ...

    @property
    def box(self) -> SecretBox: ...

    @property
    def outbound(self) -> OutboundPolicy: ...

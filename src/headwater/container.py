"""The composition root: every service of one Headwater process, built from the settings and wired
together. Wiring only: entry points (server, worker, CLI) and the request entry points of api/ and web/
import it; services and the HTTP edge never do (tests/test_layering.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.services.cache import TtlCache
from headwater.services.specs import SpecCatalog, catalog
from headwater.services.tenancy import Tenancy
from headwater.services.tokens import TokenService
from headwater.settings import Settings
from headwater.stores.locks import open_locks
from headwater.stores.metadata import ApiClient, MetadataStore, Org, Resource, Sandbox, open_store
from headwater.stores.secrets import SecretBox

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from headwater.services.tenancy import Actor


def services(request: HTTPConnection) -> Services:
    """The container of the application serving ``request`` (headwater/server.py puts it on the state)."""
    found: Services = request.app.state.services
    return found


class Services:
    """Every service of the process, each built with the collaborators it uses (in dependency order:
    stores and caches, then the platform services, Data 360, and the HTTP edge's parts)."""

    def __init__(self, settings: Settings, store: MetadataStore | None = None) -> None:
        from headwater.process import secure_home

        self.settings = settings
        # Before anything writes into the home: every file from here on is private (HEADWATER_UMASK).
        secure_home(settings.home, settings.umask)
        self.store = store or open_store(settings.resolved_database_url)
        self.box = SecretBox.from_settings(settings)
        self.tokens = TokenService(settings)
        self.locks = open_locks(settings)  # which process does what: deployment-wide on PostgreSQL
        self.tenancy = Tenancy(self.store, self.box, settings, self.locks)
        self.specs: SpecCatalog = catalog()
        self.clients: TtlCache[str, ApiClient | None] = TtlCache(2.0, self.store.get_client)
        self.sandboxes: TtlCache[tuple[str, str], Sandbox | None] = TtlCache(
            2.0, lambda key: self.store.get_sandbox(*key)
        )
        self.orgs: TtlCache[str, Org | None] = TtlCache(2.0, self.store.get_org)
        self._platform()
        self._data360()
        self._edge()

    def _platform(self) -> None:
        """Streams, the lake and outbound policy first: the Flow Service, Catalog and Conversion services
        use them."""
        from headwater.connectors.outbound import OutboundPolicy
        from headwater.lake.iceberg import Lake
        from headwater.services.catalogsvc import DataSets
        from headwater.services.conversion import MappingSets
        from headwater.services.destinations import DeadLetters
        from headwater.services.flowservice import Connections, Flows, SourceConnections, TargetConnections
        from headwater.services.icebergrest import IcebergCatalog
        from headwater.services.identity_namespaces import IdentityNamespaces
        from headwater.services.ledger import RunLedger
        from headwater.services.merge_policies import MergePolicies
        from headwater.services.plans import Plans
        from headwater.services.queries import Queries
        from headwater.services.queryaccel import AcceleratedStore
        from headwater.services.runs import Batches, Runs
        from headwater.services.schemas import SchemaRegistry
        from headwater.services.streaming import Streams

        settings, store, box, specs = self.settings, self.store, self.box, self.specs
        self.streams = Streams(settings, store, box)
        self.lake = Lake(settings)
        self.outbound = OutboundPolicy.from_settings(settings)
        self.namespaces = IdentityNamespaces(store)
        self.schemas = SchemaRegistry(store, self.namespaces)
        self.datasets = DataSets(store, settings, self.schemas)
        self.merge_policies = MergePolicies(store, self.datasets)
        self.mapping_sets = MappingSets(store, self.schemas, self.namespaces)
        self.target_connections = TargetConnections(
            store, specs, self.streams, box, self.outbound, self.schemas
        )
        self.connections = Connections(
            store, specs, self.streams, settings, box, self.outbound, self.target_connections
        )
        self.source_connections = SourceConnections(store, specs, self.streams)
        self.flows = Flows(store, specs, self.streams, settings, box, self.mapping_sets)
        self.runs = Runs(store, self.flows)
        self.batches = Batches(store)
        accelerated = AcceleratedStore(store, self.merge_policies, self.namespaces)
        self.queries = Queries(settings, store, self.datasets, self.lake, accelerated)
        self.iceberg_catalog = IcebergCatalog(store, self.datasets, self.lake)
        # A deleted dataset's table goes with it (after the metadata commit), not left behind as orphan files.
        self.datasets.on_deleted(lambda actor, dataset: self.lake.drop(actor.scope, dataset.id))
        self.dead_letters = DeadLetters(store)
        self.ledger = RunLedger(store)
        self.plans = Plans(
            store,
            self.flows,
            self.connections,
            self.source_connections,
            self.target_connections,
            self.datasets,
            self.schemas,
            self.mapping_sets,
        )

        self._profiles()
        self._queries()

    def _queries(self) -> None:
        """Query Service queries (``/data/foundation/query/queries``) and their runner."""
        from headwater.runtime.queryjobs import QueryServices, query_job_runner
        from headwater.services.queryservice import QueryJobs
        from headwater.services.querytemplates import QueryTemplates

        self.query_templates = QueryTemplates(self.store)
        self.query_jobs = QueryJobs(
            self.store, self.settings, self.queries, self.datasets, self.schemas, self.query_templates
        )
        self.query_job_runner = query_job_runner(  # a worker starts it
            QueryServices(
                settings=self.settings,
                store=self.store,
                jobs=self.query_jobs,
                queries=self.queries,
                lake=self.lake,
                datasets=self.datasets,
                schemas=self.schemas,
            )
        )

    def _profiles(self) -> None:
        """The profile store on the metadata database, the lake's projection into it, and lookups."""
        from headwater.engines.identity.graph import Limits
        from headwater.services.profiles.lookup import ProfileLookup
        from headwater.services.profiles.projection import Projection
        from headwater.stores.metadata.sql import SqlMetadataStore
        from headwater.stores.profiles.factory import open_profile_store

        assert isinstance(self.store, SqlMetadataStore)
        self.profiles = open_profile_store(self.store)
        crmid = self.namespace_number("CRMID")
        limits = Limits(self.settings.identity_graph_max_identities, frozenset({crmid}))
        self._segments()
        self.projection = Projection(
            self.lake,
            self.profiles,
            self.namespace_number,
            limits,
            self.settings.profile_chunk_rows,
            self.segments.reevaluate_quietly,
        )
        self.profile_lookup = ProfileLookup(self.profiles, self.merge_policies)
        # A deleted dataset leaves profiles: its fragments, events, and the identities only it held.
        self.datasets.on_deleted(self._forget_dataset)
        self._exports()
        self._batch_ingestion()
        from headwater.runtime.profiles import ProfileProjector

        self.profile_projector = ProfileProjector(
            self.store, self.lake, self.projection, self.locks
        )  # a worker starts it

    def _forget_dataset(self, actor: Actor, dataset: Resource) -> None:
        self.projection.forget(actor.scope, dataset.id)

    def _segments(self) -> None:
        """Segment definitions, their evaluation (batch and streaming) and segment jobs."""
        from headwater.runtime.segmentjobs import SegmentJobRunner
        from headwater.services.segments.definitions import SegmentDefinitions
        from headwater.services.segments.evaluation import Segments
        from headwater.services.segments.jobs import SegmentJobs
        from headwater.services.segments.previews import Previews

        self.segment_definitions = SegmentDefinitions(self.store, self.merge_policies, self.profiles)
        self.segments = Segments(self.profiles, self.segment_definitions, self.merge_policies)
        self.segment_jobs = SegmentJobs(self.store, self.segment_definitions, self.segments)
        self.segment_previews = Previews(self.store, self.segments)
        self.segment_job_runner = SegmentJobRunner(self.segment_jobs)  # a worker starts it

    def _exports(self) -> None:
        """Profile export jobs (``/data/core/ups/export/jobs``) and their runner."""
        from headwater.runtime.exportjobs import ExportServices, export_job_runner
        from headwater.services.profiles.exportrequest import ExportRequests
        from headwater.services.profiles.exports import ProfileExportJobs

        requests = ExportRequests(self.datasets, self.schemas, self.segment_definitions, self.merge_policies)
        self.profile_exports = ProfileExportJobs(self.store, requests)
        self.export_job_runner = export_job_runner(  # a worker starts it
            ExportServices(
                settings=self.settings,
                store=self.store,
                jobs=self.profile_exports,
                lake=self.lake,
                profiles=self.profiles,
                schemas=self.schemas,
                batches=self.batches,
                policies=self.merge_policies,
                definitions=self.segment_definitions,
                segments=self.segments,
            )
        )

    def _batch_ingestion(self) -> None:
        """The Batch Ingestion API's staging, its promotion queue and the queue's runner."""
        from headwater.runtime.batchpromotion import BatchPromotions
        from headwater.runtime.segmentjobs import JobRunner
        from headwater.services.batchingest import BatchIngestion
        from headwater.services.batchqueue import PromotionQueue

        self.batch_ingestion = BatchIngestion(self.batches, self.datasets, self.settings)
        self.batch_queue = PromotionQueue(self.store, self.settings.run_lease_seconds)
        self.batch_promoter = JobRunner(  # a worker starts it
            BatchPromotions(self, self.batch_ingestion, self.batch_queue),
            name="batch",
            poll_seconds=4 * self.settings.worker_poll_seconds,  # an idle worker's longest wait for runs
        )

    @staticmethod
    def namespace_number(code: str) -> int:
        """A namespace code as the graph numbers it: a standard namespace's id, else a stable hash."""
        import zlib

        from headwater.engines.identity.namespaces import standard

        found = standard(code)
        return found.id if found is not None else -(zlib.crc32(code.lower().encode()) + 1)

    def namespaces_by_id(self, ident: str) -> str | None:
        """The code of the standard namespace numbered ``ident`` (AEP's ``nsId``)."""
        from headwater.engines.identity.namespaces import standard

        found = standard(int(ident)) if ident.strip().isdigit() else None
        return found.code if found is not None else None

    def _data360(self) -> None:
        from headwater.services.data360.connectors import IngestionConnectors
        from headwater.services.data360.datastreams import Platform
        from headwater.services.data360.identity import Data360Identity

        self.identity = Data360Identity(self.store, self.box, self.settings, self.tokens, self.sandboxes)
        platform = Platform(
            self.schemas,
            self.datasets,
            self.connections,
            self.source_connections,
            self.target_connections,
            self.mapping_sets,
            self.flows,
            self.namespaces,
        )
        self.ingestion_connectors = IngestionConnectors(
            self.store, self.settings, platform, self.identity, self.sandboxes, self.orgs, self.streams
        )
        from headwater.services.data360.queryapi import DataCloudQueries

        self.data_cloud_queries = DataCloudQueries(
            self.settings, self.store, self.schemas, self.queries, self.identity
        )

    def _edge(self) -> None:
        """The console's sessions and sign-in throttle, and the authenticator of every HTTP request."""
        from headwater.edge.auth import Authenticator
        from headwater.edge.session import SessionSigner, Throttle

        self.sessions = SessionSigner(self.tokens.signing_key, self.store)
        self.sign_in_throttle = Throttle()
        self.authenticator = Authenticator(
            self.settings,
            self.tokens,
            self.clients,
            self.sandboxes,
            self.orgs,
            self.sessions,
            self.identity.users,
        )

    def start(self) -> bool:
        """Migrate the metadata store and make sure the default organization exists.

        Returns True when this call created the default organization (its first start).
        """
        self.store.migrate()
        from headwater.services.destinations import seal_legacy

        seal_legacy(
            self.store, self.box
        )  # destinations saved before their request secrets were sealed (needs the key)
        _, created = self.tenancy.bootstrap()
        return created

    def close(self) -> None:
        self.locks.close()
        self.streams.close()
        self.store.close()

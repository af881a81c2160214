"""The composition root: every service of one Headwater process, built from the settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from headwater.services.specs import SpecCatalog, catalog
from headwater.services.tenancy import Tenancy
from headwater.services.tokens import TokenService
from headwater.settings import Settings
from headwater.stores.metadata import ApiClient, MetadataStore, Org, Sandbox, open_store
from headwater.stores.secrets import SecretBox

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small read-through cache for hot lookups (API clients, sandboxes) on every request."""

    def __init__(self, ttl_seconds: float, loader: Callable[[K], V], max_size: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.loader = loader
        self.max_size = max_size
        self._data: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V:
        now = time.monotonic()
        hit = self._data.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = self.loader(key)
        with self._lock:
            if len(self._data) >= self.max_size:
                self._data.clear()
            self._data[key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class Services:
    def __init__(self, settings: Settings, store: MetadataStore | None = None) -> None:
        from headwater.connectors.outbound import OutboundPolicy
        from headwater.lake.iceberg import Lake
        from headwater.services.catalogsvc import DataSets
        from headwater.services.conversion import MappingSets
        from headwater.services.flowservice import Connections, Flows, SourceConnections, TargetConnections
        from headwater.services.ledger import RunLedger
        from headwater.services.plans import Plans
        from headwater.services.runs import Batches, Runs
        from headwater.services.schemas import SchemaRegistry

        self.settings = settings
        from headwater.process import secure_home

        # Before anything writes into the home: every file from here on is private (HEADWATER_UMASK).
        secure_home(settings.home, settings.umask)
        self.store = store or open_store(settings.resolved_database_url)
        self.box = SecretBox.from_settings(settings)
        self.tokens = TokenService(settings)
        self.tenancy = Tenancy(self.store, self.box, settings)
        self.specs: SpecCatalog = catalog()
        self.clients: TtlCache[str, ApiClient | None] = TtlCache(2.0, self.store.get_client)
        self.sandboxes: TtlCache[tuple[str, str], Sandbox | None] = TtlCache(
            2.0, lambda key: self.store.get_sandbox(*key)
        )
        self.orgs: TtlCache[str, Org | None] = TtlCache(2.0, self.store.get_org)
        self.schemas = SchemaRegistry(self)
        self.datasets = DataSets(self)
        self.mapping_sets = MappingSets(self)
        self.connections = Connections(self)
        self.source_connections = SourceConnections(self)
        self.target_connections = TargetConnections(self)
        self.flows = Flows(self)
        self.runs = Runs(self)
        self.batches = Batches(self)
        self.ledger = RunLedger(self.store)
        self.plans = Plans(
            self.store,
            self.flows,
            self.connections,
            self.source_connections,
            self.target_connections,
            self.datasets,
            self.schemas,
            self.mapping_sets,
        )
        self.lake = Lake(settings)
        from headwater.services.queries import Queries

        self.queries = Queries(self)
        # A deleted dataset's table goes with it (after the metadata commit), not left behind as orphan files.
        self.datasets.on_deleted(lambda actor, dataset: self.lake.drop(actor.scope, dataset.id))
        self.outbound = OutboundPolicy.from_settings(settings)
        from headwater.services.data360.connectors import IngestionConnectors
        from headwater.services.data360.identity import Data360Identity
        from headwater.services.streaming import Streams

        self.identity = Data360Identity(self)
        self.ingestion_connectors = IngestionConnectors(self)
        self.streams = Streams(self)
        from headwater.services.destinations import DeadLetters

        self.dead_letters = DeadLetters(self)
        from headwater.web.session import SessionSigner, Throttle

        self.sessions = SessionSigner(self.tokens.signing_key, self.store)
        self.sign_in_throttle = Throttle()

    def start(self) -> bool:
        """Migrate the metadata store and make sure the default organization exists.

        Returns True when this call created the default organization (its first start).
        """
        self.store.migrate()
        from headwater.services.destinations import seal_legacy

        seal_legacy(self)  # destinations saved before their request secrets were sealed (needs the key)
        _, created = self.tenancy.bootstrap()
        return created

    def close(self) -> None:
        self.streams.close()
        self.store.close()

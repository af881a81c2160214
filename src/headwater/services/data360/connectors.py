"""Server-to-server ingestion connectors, their JSON event-type schemas, and data streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headwater.services.container import Services


class IngestionConnectors:
    def __init__(self, services: Services) -> None:
        self.services = services

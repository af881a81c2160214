"""External client apps, the OAuth 2.0 JWT bearer flow, and the Data 360 token exchange.

CONTRACT used by other modules (keep these signatures):

    IngestPrincipal(org_id, sandbox_id, username, scopes)
    Data360Identity(services)
        .issue_ingestion_token(org_id: str, sandbox_id: str, username: str) -> tuple[str, int]
            an ingestion token (as /services/a360/token returns) and its lifetime in seconds
        .verify_ingestion_token(token: str) -> IngestPrincipal | None
            None when the token is malformed, expired, not an ingestion token or its user is disabled
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headwater.services.container import Services


@dataclass(frozen=True)
class IngestPrincipal:
    org_id: str
    sandbox_id: str
    username: str
    scopes: tuple[str, ...]


class Data360Identity:
    def __init__(self, services: Services) -> None:
        self.services = services

    def issue_ingestion_token(self, org_id: str, sandbox_id: str, username: str) -> tuple[str, int]:
        raise NotImplementedError

    def verify_ingestion_token(self, token: str) -> IngestPrincipal | None:
        raise NotImplementedError

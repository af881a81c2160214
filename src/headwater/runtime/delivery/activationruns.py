"""The runs of an activation flow.

A streaming activation has one run per hour (like streaming ingestion flows), created by its first
delivery and completed once the hour is over. A dataset activation's runs are ordinary queued runs
(scheduled or on demand). Either way a run's metrics say records in (taken), out (delivered) and failed
(dead-lettered), and ``metrics.deliverySummary`` adds retried and failed attempts and latency p50/p99.
The run ledger writes the documents (services/ledger.py); this module says when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.runtime.delivery.engine import Stats
from headwater.services.ids import now_ms
from headwater.services.ledger import Hourly, RunLedger
from headwater.services.ledger_hourly import close_activation_hours
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.runtime.context import Runtime


def account(services: Runtime, flow: Resource, stats: Stats) -> None:
    """Add a period's counts to the streaming activation run of the current hour."""
    ledger: RunLedger = services.ledger
    now = now_ms()
    run = ledger.get(flow.scope, RunLedger.hour_run_id(Hourly.ACTIVATION, flow.id, now))
    if run is None:
        close_activation_hours(ledger, flow.scope, flow.id, now)
        run = ledger.open_hour(Hourly.ACTIVATION, flow.scope, flow.id, flow.doc.get("sandboxName"), now)
        if run is None:
            return
    ledger.add_delivery(run, stats)

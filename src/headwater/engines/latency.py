"""The latency histogram of deliveries: the bucket bounds every activation run's ``deliverySummary``
counts in (runtime/delivery/engine.py fills it, the console reads p50/p99 over several runs from it)."""

from __future__ import annotations

#: Upper bounds (ms) of the latency histogram buckets; the last bucket takes everything above.
LATENCY_BOUNDS = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
    1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000, 20_000, 30_000, 60_000,
    120_000, 300_000, 600_000, 1_800_000, 3_600_000, 14_400_000,
)  # fmt: skip

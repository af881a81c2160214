"""Multi-node throughput (issue 17): the scenario of tests/test_multinode.py with a larger load, on 2 API
servers and 2 workers (separate processes, each its own empty home, sharing PostgreSQL, NATS JetStream
and an S3 bucket on moto), with `kill -9` of one worker and one API server mid-load, beside a single-node
baseline measured in the same run: 1 API server and 1 worker on the same shared services, the same load,
no kill.

Three loads at once, each from a thread of this process through a round-robin client that fails over
(tests/multinode_load.py): batches of XDM events to a streaming inlet, raw events to a streaming
activation's inlet (delivered to the sink fake), and CSV batches through the Batch Ingestion API.
Streaming and batches are sent back to back (closed loop), the activation's requests at
--activation-rate (so that it is still sending when the kill comes). records/s counts what was
acknowledged (streaming messages, activated records, batch rows), from the first request to the last
record found (in the lake, at the sink); ratio is multi-node over single-node.

Exactly once is checked as the test checks it; a broken guarantee is printed and exits 1 (the figures
still print). Everything runs on this machine's cores: on 2 cores, 4 Headwater processes, PostgreSQL,
NATS, moto and the load share them, so the ratio says what the failover costs here, not what more
machines would add.

    .venv/bin/python bench/multinode.py [--scale 5] [--rate 1000] [--no-kill] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.fakes.s3 import S3Server  # noqa: E402
from tests.fakes.sink import SinkFake  # noqa: E402
from tests.multinode_harness import Cluster, fresh_database  # noqa: E402
from tests.multinode_partitions import PARTITIONED  # noqa: E402
from tests.multinode_scenario import Outcome, Size, run  # noqa: E402


def measure(root: Path, s3: S3Server, size: Size, apis: int, workers: int, kill: bool) -> Outcome:
    with fresh_database() as url, SinkFake() as sink:
        cluster = Cluster(root, url, s3, api_servers=apis, workers=workers, extra_env=PARTITIONED)
        try:
            cluster.start()
            return run(cluster, sink, size, kill=kill)
        finally:
            cluster.stop()


def line(name: str, o: Outcome) -> str:
    rows = sum(b.rows for b in o.batches.outcomes if b.status == "success")
    return (
        f"{name:<42} {o.records / o.load_seconds:>9,.0f} records/s  ({o.load_seconds:6.1f} s: "
        f"{len(o.stream.acked):,} streamed, {len(o.activation.acked):,} activated, {rows:,} batch rows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=5, help="times the test's shortened load")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="requests/s of each load (1000: back to back)"
    )
    parser.add_argument(
        "--activation-rate",
        type=float,
        default=10.0,
        help="requests/s of the activation load (25 records each): paced, so it is still sending at the kill",
    )
    parser.add_argument("--no-kill", action="store_true", help="no kill -9 on the multi-node run")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    base = Size()
    size = replace(
        base,
        stream_batches=base.stream_batches * args.scale,
        stream_rate=args.rate,
        activation_batches=base.activation_batches * args.scale,
        activation_rate=args.activation_rate,
        batches=base.batches * args.scale,
        sink_delay=0.0,
        settle_seconds=300.0,
    )
    print(f"{platform.node()} {os.cpu_count()} cores; load x{args.scale}, {args.rate:g} requests/s per load")
    s3 = S3Server()
    s3.start()
    failed = False
    try:
        with tempfile.TemporaryDirectory(prefix="bench-multinode-") as work:
            single = None
            if not args.skip_baseline:
                single = measure(Path(work) / "single", s3, size, 1, 1, kill=False)
                print(line("1 API server + 1 worker", single))
            multi = measure(Path(work) / "multi", s3, size, 2, 2, kill=not args.no_kill)
            kill = "" if args.no_kill else ", kill -9 of 1+1"
            print(line(f"2 API servers + 2 workers{kill}", multi))
            if single is not None:
                ratio = (multi.records / multi.load_seconds) / (single.records / single.load_seconds)
                print(f"ratio {ratio:.2f}x the single node")
            for name, outcome in (("single", single), ("multi", multi)):
                if outcome is None:
                    continue
                for problem in outcome.problems:
                    failed = True
                    print(f"{name}: PROBLEM {problem}")
    finally:
        s3.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

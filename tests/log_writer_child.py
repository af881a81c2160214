"""A process that appends to a streaming log from several threads and prints each acknowledged record.

    python tests/log_writer_child.py local <directory> <stream> [--segment-bytes N] [options]
    python tests/log_writer_child.py jetstream <url>,<stream_name>,<subject_prefix> <stream> [options]

Each line printed is ``<offset> <payload>``, written only after ``append`` returned (the record is
acknowledged). With ``--records 0`` it appends until killed (the crash tests SIGKILL it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import threading

from headwater.stores.log.base import StreamLog


def open_log(kind: str, where: str, segment_bytes: int) -> StreamLog:
    if kind == "local":
        from headwater.stores.log.local import LocalLog

        return LocalLog(where, segment_bytes=segment_bytes)
    from headwater.stores.log.jetstream import JetStreamLog

    url, stream_name, subject_prefix = where.split(",")
    return JetStreamLog(url, stream_name=stream_name, subject_prefix=subject_prefix)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["local", "jetstream"])
    parser.add_argument("where")
    parser.add_argument("stream")
    parser.add_argument("--tag", default="w")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--records", type=int, default=0, help="per thread; 0 = until killed")
    parser.add_argument("--max-batch", type=int, default=5)
    parser.add_argument("--pad", type=int, default=200, help="payload padding, bytes")
    parser.add_argument("--segment-bytes", type=int, default=64 << 20)
    args = parser.parse_args()
    log = open_log(args.kind, args.where, args.segment_bytes)
    out = threading.Lock()

    def work(thread: int) -> None:
        rng = random.Random(thread)
        counter = itertools.count()
        written = 0
        while args.records == 0 or written < args.records:
            size = rng.randint(1, args.max_batch)
            if args.records:
                size = min(size, args.records - written)
            payloads = [
                json.dumps(
                    {"w": args.tag, "t": thread, "i": next(counter), "pad": "x" * args.pad},
                    separators=(",", ":"),
                ).encode()
                for _ in range(size)
            ]
            offsets = log.append(args.stream, payloads)
            lines = "".join(f"{o} {p.decode()}\n" for o, p in zip(offsets, payloads, strict=True))
            with out:
                sys.stdout.write(lines)
                sys.stdout.flush()
            written += size

    threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()


if __name__ == "__main__":
    main()

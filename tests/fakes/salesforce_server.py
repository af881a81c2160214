"""Run the Salesforce-compatible server on its own, for the README and for trying flows by hand.

    .venv/bin/python -m tests.fakes.salesforce_server --records 50 [--port 0]

Adds a ``Person`` object (first_name, last_name, email) with N records modified at 2024-05-01T08:00:00Z,
prints one JSON line with the connection's auth params (``environmentUrl``, username, password,
securityToken) once it listens, and serves until interrupted or terminated.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from datetime import UTC, datetime

from tests.fakes.salesforce import SalesforceFake

MODIFIED = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50)
    args = parser.parse_args()
    fake = SalesforceFake().start()
    fake.add_object("Person", {"first_name": "string", "last_name": "string", "email": "email"})
    fake.insert(
        "Person",
        [
            {"first_name": f"Ada{i}", "last_name": f"Lovelace{i}", "email": f"ada{i}@example.com"}
            for i in range(args.records)
        ],
        modified=MODIFIED,
    )
    print(json.dumps(fake.soap_auth()), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()


if __name__ == "__main__":
    main()

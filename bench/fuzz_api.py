"""Fuzz every operation of Headwater's OpenAPI with schemathesis, with valid credentials, for a bounded
time, and report every answer of 500 or more.

Runs all of schemathesis's phases (examples, coverage, fuzzing, stateful) with the one check that no
client input may fail: ``not_a_server_error``. Without ``--url`` a server is started in this process on a
fresh home (SQLite), so a run never touches real data.

    .venv/bin/python bench/fuzz_api.py [--seconds 180] [--url http://127.0.0.1:8080 --client-id ID
                                        --client-secret SECRET --org ORG --sandbox prod]

Exit status 0 when no 5xx was found; otherwise schemathesis's output names each failing request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Outcome:
    returncode: int
    output: str

    @property
    def server_errors(self) -> bool:
        return self.returncode != 0


def token(base_url: str, client_id: str, secret: str) -> str:
    answer = httpx.post(
        base_url + "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def platform_headers(base_url: str, creds: dict[str, str]) -> dict[str, str]:
    """The headers of a platform call in the prod sandbox, with a fresh token for ``creds``."""
    return {
        "Authorization": f"Bearer {token(base_url, creds['apiKey'], creds['clientSecret'])}",
        "x-api-key": creds["apiKey"],
        "x-gw-ims-org-id": creds["orgId"],
        "x-sandbox-name": "prod",
    }


def fuzz(base_url: str, headers: dict[str, str], seconds: float, workers: int = 1) -> Outcome:
    """Run schemathesis against ``base_url`` for about ``seconds`` seconds with ``headers`` on every
    request; the outcome's output is schemathesis's report."""
    report = Path(tempfile.mkdtemp(prefix="headwater-fuzz-"))
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-time",
        str(int(max(seconds, 1))),
        "--workers",
        str(workers),
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report-dir",
        str(report),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false"}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 300, check=False, env=env, cwd=report
    )
    return Outcome(done.returncode, done.stdout + done.stderr)


def _local_server() -> tuple[object, str, dict[str, str]]:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from tests.conftest import make_settings
    from tests.support import start_server

    live = start_server(make_settings(Path(tempfile.mkdtemp(prefix="headwater-fuzz-home-"))))
    return live, live.base_url, platform_headers(live.base_url, live.creds)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180, help="time budget of the whole run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--url", help="a running server (default: start one on a fresh home)")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--org")
    parser.add_argument("--sandbox", default="prod")
    args = parser.parse_args()
    live = None
    if args.url:
        base = args.url.rstrip("/")
        headers = {
            "Authorization": f"Bearer {token(base, args.client_id, args.client_secret)}",
            "x-api-key": args.client_id,
            "x-gw-ims-org-id": args.org,
            "x-sandbox-name": args.sandbox,
        }
    else:
        live, base, headers = _local_server()
    try:
        outcome = fuzz(base, headers, args.seconds, args.workers)
    finally:
        if live is not None:
            live.stop()  # type: ignore[attr-defined]
    print(outcome.output)
    print("5xx found" if outcome.server_errors else "no 5xx found")
    return 1 if outcome.server_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

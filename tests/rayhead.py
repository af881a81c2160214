"""A real Ray head on loopback for the Ray engine's tests and bench/partitioned_runs.py: `ray start --head
--block` in a session of its own (its workers change process group, not session, so the session is what
is killed), with token authentication and no usage statistics."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def ray_env(port: int) -> dict[str, str]:
    """What the workers and the head share to run partitions on a Ray cluster at 127.0.0.1:``port``."""
    return {
        "HEADWATER_PARTITION_ENGINE": "ray",
        "HEADWATER_RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's own setting: its nodes bind 127.0.0.1
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's token authentication, as docs/configuration.md asks of a deployment's cluster (and
        # independent of a token a user's ~/.ray may hold)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }


def session(sid: int) -> list[int]:
    """The processes of session ``sid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


@dataclass
class RayHead:
    process: subprocess.Popen[bytes]
    temp: str

    def stop(self) -> None:
        for pid in session(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)


def start_head(env: dict[str, str], cpus: int) -> RayHead:
    """A Ray head of ``cpus`` CPUs at ``env``'s HEADWATER_RAY_ADDRESS, with ``env``, returned once it
    accepts connections."""
    port = int(env["HEADWATER_RAY_ADDRESS"].rpartition(":")[2])
    temp = tempfile.mkdtemp(prefix="hwray-", dir="/tmp")  # Ray's socket paths must stay short
    command = [RAY, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}"]
    command += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    command += ["--object-store-memory=100000000"]  # tasks return a bool: the minimum is plenty
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    head = RayHead(process, temp)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return head
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                head.stop()
                raise RuntimeError("the Ray head did not start") from None
            time.sleep(0.1)

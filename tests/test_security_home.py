"""The home is readable by its owner only (issue 12, section 5b).

`metadata.db` (password hashes, sealed secrets, audit), its WAL, the lake's Parquet and metadata files,
uploads and stream segments used to be created 0644 in 0755 folders: any local user of the host could
read them. A real `headwater serve`, started with the permissive umask a shell usually has (022) on a
home an operator made 0755, runs a CSV batch flow, takes a streaming message and an upload; then no file
or folder of the home may be readable, writable or searchable by group or others.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.streaming_helpers import http_api_flow
from tests.support import ApiClient, free_port, token_for, wait_until
from tests.test_batch_runs import FS, contact, files_flow, run_and_wait, write_csv
from tests.test_streaming_inlets import _envelope

EXE = str(Path(sys.executable).with_name("headwater"))
UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"
CAT = "/data/foundation/catalog"


@dataclass
class Served:
    home: Path
    env: dict[str, str]
    api: ApiClient


def _env(home: Path, data: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(
        {
            "HEADWATER_HOME": str(home),
            "HEADWATER_PORT": str(port),
            "HEADWATER_ENVIRONMENT": "development",
            "HEADWATER_OUTBOUND_ALLOW": "127.0.0.1",
            "HEADWATER_FILES_ROOTS": str(data),
            "HEADWATER_WORKER_POLL_SECONDS": "0.1",
            "HEADWATER_STREAM_FLUSH_SECONDS": "0.2",
            "HEADWATER_LOG_LEVEL": "warning",
        }
    )
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    home, data = tmp_path / "home", tmp_path / "data"
    data.mkdir()
    home.mkdir(mode=0o755)  # made by an operator before the first start
    home.chmod(0o755)
    port = free_port()
    env = _env(home, data, port)
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        # umask=0o022: what a login shell hands the server. Headwater must not depend on the caller's.
        server = subprocess.Popen([EXE, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=err, umask=0o022)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, log.read_text(errors="replace")
        try:
            return httpx.get(base + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=90)
        creds = json.loads(_cli(env, "credentials", "--json").stdout)
        token = token_for(base, creds["apiKey"], creds["clientSecret"])
        with ApiClient(base, token, creds["apiKey"], creds["orgId"], "prod", creds["tenantId"]) as api:
            yield Served(home, env, api)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120, umask=0o022)
    assert result.returncode == 0, result.stderr
    return result


def _open_to_others(home: Path) -> list[str]:
    """Every path under ``home`` (itself included) with any permission bit for group or others."""
    found = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not stat.S_ISLNK(path.lstat().st_mode) and mode & 0o077:
            found.append(f"{oct(mode)} {path.relative_to(home.parent)}")
    return found


def _preview(api: ApiClient, dataset_id: str) -> list[dict[str, Any]]:
    response = api.get(f"{CAT}/dataSets/{dataset_id}/preview?limit=100")
    data: list[dict[str, Any]] = response.json().get("data", []) if response.status_code == 200 else []
    return data


def test_nothing_in_the_home_is_open_to_other_users_after_a_full_run(served: Served, tmp_path: Path) -> None:
    api = served.api
    # A CSV batch flow, run by the server's embedded worker (lake files, metadata, checkpoints).
    # One row with a bad email becomes a row error (its own file).
    people = [contact(i, "2024-01-01 10:00:00") for i in range(20)]
    people.append(contact(20, "2024-01-01 10:00:00", email="not-an-email"))
    write_csv(tmp_path / "data" / "contacts.csv", people)
    batch = files_flow(api, tmp_path / "data")
    assert run_and_wait(api, batch["flow"], "2024-01-01T11:00:00Z")["state"] == "partialSuccess"

    # A streaming message (stream log segments, then a streaming commit).
    pipeline = http_api_flow(api)
    accepted = httpx.post(pipeline["inletUrl"], json=_envelope(api, pipeline, "evt-1"), timeout=30)
    assert accepted.status_code == 200, accepted.text
    wait_until(lambda: _preview(api, pipeline["datasetId"]), timeout=90, interval=0.2)

    # An upload (the sandbox's uploads area).
    uploads = api.post(
        f"{FS}/connections",
        json={"name": "Uploads", "connectionSpec": {"id": UPLOADED_FILES, "version": "1.0"}},
    )
    assert uploads.status_code == 201, uploads.text
    put = api.put(f"{FS}/connections/{uploads.json()['id']}/files/in/contacts.csv", content=b"id\n1\n")
    assert put.status_code == 201, put.text

    # A CLI command on the same home, from a shell with the usual umask.
    _cli(served.env, "datasets", "query", batch["dataset"], "--json", "SELECT count(*) AS n FROM dataset")

    home = served.home
    kinds = {p.suffix for p in home.rglob("*") if p.is_file()}
    # The metadata DB, Parquet data, Iceberg metadata and manifests, stream segments, keys: all there.
    assert {".db", ".parquet", ".json", ".avro", ".log", ".key"} <= kinds, sorted(kinds)
    assert list(home.rglob("metadata.db-wal")), "the SQLite WAL is there while the server runs"
    assert list(home.rglob("contacts.csv")), "the upload is in the home"
    assert list(home.rglob("row_errors.json")), "the batch's row errors are in the home"
    assert _open_to_others(home) == []


@pytest.fixture
def restored_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_home_from_before_is_narrowed_on_start_and_a_group_umask_is_honoured(
    tmp_path: Path, restored_umask: None
) -> None:
    from headwater.process import secure_home

    old = tmp_path / "old-home"
    (old / "keys").mkdir(parents=True, mode=0o755)
    for path in (old, old / "keys"):
        path.chmod(0o755)
    key = old / "keys" / "encryption.key"
    key.write_text("k")
    key.chmod(0o644)
    secure_home(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert stat.S_IMODE((old / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (old / "new.db").write_text("x")
    assert stat.S_IMODE((old / "new.db").stat().st_mode) == 0o600

    # HEADWATER_UMASK=027 shares with the owner's group; others never get a bit, even when asked (000).
    shared = tmp_path / "shared-home"
    secure_home(shared, "000")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o770
    secure_home(shared, "027")
    (shared / "lake.parquet").write_text("x")
    assert stat.S_IMODE((shared / "lake.parquet").stat().st_mode) == 0o640
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750


def test_an_umask_that_is_not_octal_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from headwater.settings import Settings

    with pytest.raises(ValidationError, match="umask"):
        Settings(home=tmp_path, umask="0o77")

"""The ``headwater`` command as a user runs it: the installed console script, in real processes.

Every command reads the same ``HEADWATER_*`` settings as the server, so the CLI and a running server on
the same home (or the same PostgreSQL database) see the same organization, sandboxes and clients.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.stores.metadata import open_store
from tests.support import free_port, wait_until

HEADWATER = Path(sys.executable).parent / "headwater"
CREDENTIAL_KEYS = {"orgId", "apiKey", "clientSecret", "sandboxName", "tenantId"}
SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
SPECS = "/data/foundation/flowservice/connectionSpecs"


def cli_env(home: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(
        {
            "HEADWATER_HOME": str(home),
            "HEADWATER_ENVIRONMENT": "development",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
    )
    env.update(variables)
    return env


def headwater(home: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HEADWATER), *args], env=cli_env(home, **variables), capture_output=True, text=True, timeout=90
    )


def credentials(home: Path, **variables: str) -> dict[str, str]:
    result = headwater(home, "credentials", "--json", **variables)
    assert result.returncode == 0, result.stderr
    creds: dict[str, str] = json.loads(result.stdout)
    return creds


def get_token(base_url: str, client_id: str, secret: str) -> str:
    response = httpx.post(
        base_url + "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    return str(body["access_token"])


def platform_get(
    base_url: str, path: str, token: str, api_key: str, org_id: str, sandbox: str
) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": api_key,
        "x-gw-ims-org-id": org_id,
        "x-sandbox-name": sandbox,
    }
    return httpx.get(base_url + path, headers=headers, timeout=30)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# --- without a server ---


def test_credentials_json_prints_the_default_organization(home: Path) -> None:
    creds = credentials(home)
    assert set(creds) == CREDENTIAL_KEYS
    assert creds["sandboxName"] == "prod"
    assert creds["orgId"].endswith("@AdobeOrg")
    assert creds["tenantId"] == "headwater"
    assert all(creds.values())
    assert credentials(home) == creds


def test_credentials_follow_the_default_tenant_setting(home: Path) -> None:
    assert credentials(home, HEADWATER_DEFAULT_TENANT_ID="acmecorp")["tenantId"] == "acmecorp"


def test_sandboxes_create_and_list(home: Path) -> None:
    created = headwater(home, "sandboxes", "create", "marketing", "--title", "Marketing")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "marketing"

    listed = headwater(home, "sandboxes", "list")
    assert listed.returncode == 0, listed.stderr
    sandboxes = {s["name"]: s for s in map(json.loads, listed.stdout.splitlines())}
    assert set(sandboxes) == {"prod", "marketing"}
    assert sandboxes["marketing"]["title"] == "Marketing"


def test_sandboxes_create_duplicate_fails_readably(home: Path) -> None:
    assert headwater(home, "sandboxes", "create", "marketing").returncode == 0
    again = headwater(home, "sandboxes", "create", "marketing")
    assert again.returncode != 0
    assert "already exists" in " ".join(again.stderr.split())
    assert "Traceback" not in again.stderr
    names = [json.loads(line)["name"] for line in headwater(home, "sandboxes", "list").stdout.splitlines()]
    assert names.count("marketing") == 1


@pytest.mark.parametrize("name", ["Bad Name!", "UPPER", "under_score", "x" * 64])
def test_sandboxes_create_invalid_name_fails_readably(home: Path, name: str) -> None:
    result = headwater(home, "sandboxes", "create", name)
    assert result.returncode != 0
    assert "sandbox name" in " ".join(result.stderr.split()).lower()
    assert "Traceback" not in result.stderr
    names = [json.loads(line)["name"] for line in headwater(home, "sandboxes", "list").stdout.splitlines()]
    assert names == ["prod"]


def test_clients_create_prints_new_credentials(home: Path) -> None:
    default = credentials(home)
    result = headwater(home, "clients", "create", "--name", "etl")
    assert result.returncode == 0, result.stderr
    client = json.loads(result.stdout)
    assert set(client) == {"orgId", "apiKey", "clientSecret", "role"} and client["role"] == "Admin"
    assert client["orgId"] == default["orgId"]
    assert client["apiKey"] != default["apiKey"]
    assert client["clientSecret"] != default["clientSecret"]


@pytest.mark.postgres
def test_credentials_use_the_configured_postgresql_database(home: Path, postgres_url: str) -> None:
    creds = credentials(home, HEADWATER_DATABASE_URL=postgres_url)
    assert set(creds) == CREDENTIAL_KEYS
    assert credentials(home, HEADWATER_DATABASE_URL=postgres_url) == creds
    assert not (home / "metadata.db").exists()
    store = open_store(postgres_url)
    try:
        assert store.get_org(creds["orgId"]) is not None
        client = store.get_client(creds["apiKey"])
        assert client is not None and client.org_id == creds["orgId"]
    finally:
        store.close()


# --- with a server ---


@dataclass
class Served:
    home: Path
    base_url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


def serve(home: Path, logs: Path, **variables: str) -> Iterator[Served]:
    port = free_port()
    out, err = logs / "serve.stdout", logs / "serve.stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [str(HEADWATER), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=cli_env(home, **variables),
            stdout=stdout,
            stderr=stderr,
        )
    served = Served(home, f"http://127.0.0.1:{port}", process, out, err)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"headwater serve exited with {process.returncode}:\n{served.logs()}")
        try:
            return httpx.get(served.base_url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=60)
        yield served
    finally:
        served.stop()


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    yield from serve(home, tmp_path)


def test_serve_answers_health(served: Served) -> None:
    response = httpx.get(served.base_url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_cli_credentials_work_against_a_running_server(served: Served) -> None:
    creds = credentials(served.home)
    token = get_token(served.base_url, creds["apiKey"], creds["clientSecret"])
    response = platform_get(served.base_url, SPECS, token, creds["apiKey"], creds["orgId"], "prod")
    assert response.status_code == 200, response.text
    assert response.json()["items"]
    one = platform_get(
        served.base_url, f"{SPECS}/{SALESFORCE}", token, creds["apiKey"], creds["orgId"], "prod"
    )
    assert one.status_code == 200, one.text
    assert [spec["id"] for spec in one.json()["items"]] == [SALESFORCE]


def test_client_created_by_cli_gets_a_token_from_a_running_server(served: Served) -> None:
    result = headwater(served.home, "clients", "create")
    assert result.returncode == 0, result.stderr
    client = json.loads(result.stdout)
    token = get_token(served.base_url, client["apiKey"], client["clientSecret"])
    response = platform_get(served.base_url, SPECS, token, client["apiKey"], client["orgId"], "prod")
    assert response.status_code == 200, response.text


def test_sandbox_created_by_cli_is_usable_on_a_running_server(served: Served) -> None:
    assert headwater(served.home, "sandboxes", "create", "staging").returncode == 0
    creds = credentials(served.home)
    token = get_token(served.base_url, creds["apiKey"], creds["clientSecret"])
    response = platform_get(served.base_url, SPECS, token, creds["apiKey"], creds["orgId"], "staging")
    assert response.status_code == 200, response.text


def test_first_serve_announces_the_default_organization(served: Served) -> None:
    creds = credentials(served.home)
    served.stop()
    logs = " ".join(served.logs().split())
    assert "Created the default organization" in logs
    assert creds["orgId"] in logs
    assert "headwater credentials --json" in logs


def test_serve_tells_how_to_get_credentials_and_never_logs_secrets(home: Path, tmp_path: Path) -> None:
    # Debug level turns the access log on: the most a server ever writes.
    servers = serve(home, tmp_path, HEADWATER_LOG_LEVEL="debug")
    served = next(servers)
    try:
        creds = credentials(home)
        extra = json.loads(headwater(home, "clients", "create").stdout)
        secrets = [creds["clientSecret"], extra["clientSecret"], "p8e-wrong-secret-offered-by-a-caller"]
        get_token(served.base_url, creds["apiKey"], creds["clientSecret"])
        get_token(served.base_url, extra["apiKey"], extra["clientSecret"])
        refused = httpx.post(
            served.base_url + "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["apiKey"],
                "client_secret": secrets[2],
            },
            timeout=30,
        )
        assert refused.status_code == 401
        assert secrets[2] not in refused.text
    finally:
        servers.close()  # stops the server, so every log line is written
    logs = served.logs()
    assert "headwater credentials" in logs
    for secret in secrets:
        assert secret not in logs

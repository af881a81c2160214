"""Fixtures shared by the whole suite. Everything runs against real servers on 127.0.0.1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from headwater.runtime.worker import Worker
from headwater.settings import Settings
from tests.support import ApiClient, LiveServer, free_port, fresh_sandbox_client, start_server, token_for

POSTGRES_ADMIN_URL = os.environ.get(
    "HEADWATER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def make_settings(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "environment": "development",
        "outbound_allow": "127.0.0.1",
        "port": free_port(),
        "default_tenant_id": "headwater",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server; every API test runs once per metadata backend."""
    home = tmp_path_factory.mktemp(f"headwater-home-{request.param}")
    if request.param == "sqlite":
        live = start_server(make_settings(home))
        yield live
        live.stop()
        live.services.close()
        return
    with _postgres_database() as url:
        live = start_server(make_settings(home, database_url=url))
        yield live
        live.stop()
        live.services.close()


@pytest.fixture(scope="session")
def worker(server: LiveServer) -> Iterator[Worker]:
    """A worker on the test server's services executing queued runs. It does not schedule: flows of
    other tests (some point at hosts beyond loopback) must not run; tests drive the scheduler themselves."""
    import threading

    runner = Worker(server.services, name="test-worker", schedule=False, streaming=False)
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    yield runner
    runner.stop()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def default_token(server: LiveServer) -> str:
    return token_for(server.base_url, server.creds["apiKey"], server.creds["clientSecret"])


@pytest.fixture
def api(server: LiveServer, default_token: str) -> Iterator[ApiClient]:
    """A client of the default organization in a fresh, empty sandbox."""
    c = server.creds
    with fresh_sandbox_client(
        server, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"], default_token
    ) as client:
        yield client


@pytest.fixture
def other_sandbox_api(server: LiveServer, default_token: str) -> Iterator[ApiClient]:
    """Same organization and client as ``api``, another fresh sandbox."""
    c = server.creds
    with fresh_sandbox_client(
        server, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"], default_token
    ) as client:
        yield client


@pytest.fixture(scope="session")
def other_org(server: LiveServer) -> dict[str, str]:
    tenancy = server.services.tenancy
    org = tenancy.create_org("Other organization", "othertenant")
    tenancy.create_sandbox(org.id, "prod")
    client_id, secret = tenancy.create_client(org.id, "other")
    token = token_for(server.base_url, client_id, secret)
    return {
        "orgId": org.id,
        "apiKey": client_id,
        "clientSecret": secret,
        "tenantId": org.tenant_id,
        "token": token,
    }


@pytest.fixture
def other_org_api(server: LiveServer, other_org: dict[str, str]) -> Iterator[ApiClient]:
    """A client of another organization (tenant ``othertenant``) in a fresh sandbox."""
    o = other_org
    with fresh_sandbox_client(
        server, o["orgId"], o["apiKey"], o["clientSecret"], o["tenantId"], o["token"]
    ) as client:
        yield client


@contextmanager
def _postgres_database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = "hw_test_" + uuid.uuid4().hex[:12]
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    with _postgres_database() as url:
        yield url

"""Fixtures shared by the whole suite. Everything runs against real servers on 127.0.0.1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater.runtime.worker import Worker
from headwater.settings import Settings
from tests.fakes.s3 import S3Server
from tests.fakes.sink import SinkFake
from tests.support import (
    POSTGRES_ADMIN_URL,
    ApiClient,
    LiveServer,
    free_port,
    fresh_postgres_database,
    fresh_sandbox_client,
    start_server,
    token_for,
)


def make_settings(home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "environment": "development",
        "outbound_allow": "127.0.0.1",
        "port": free_port(),
        "default_tenant_id": "headwater",
        # Tests keep their files in pytest's tmp folders, beside the homes (which stay refused).
        "files_roots": str(home.parent),
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


@pytest.fixture
def promoter(server: LiveServer) -> Iterator[None]:
    """The test server's batch promoter (what a worker runs beside its runs: completed ingestion batches
    into the lake), for one test; stopped after it, not left polling a database the session drops."""
    server.services.batch_promoter.start()
    yield
    server.services.batch_promoter.stop()


@pytest.fixture
def query_runner(server: LiveServer, promoter: None) -> Iterator[None]:
    """The test server's Query Service runner (and its promoter: test data comes by batch ingestion)."""
    server.services.query_job_runner.start()  # idempotent: a test may stop and start it again
    yield
    server.services.query_job_runner.stop()


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
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    with fresh_postgres_database(admin_url=POSTGRES_ADMIN_URL) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-protocol server (moto) on 127.0.0.1, for the lake on object storage."""
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_live(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server (one per test module) whose lake is a new bucket on :func:`s3_server`; a promotion
    whose lake failed is taken up again after 1.5 s (its lease), so an outage test does not wait the
    default 30 s."""
    home = tmp_path_factory.mktemp("headwater-home-s3")
    settings = make_settings(
        home, run_lease_seconds=1.5, worker_poll_seconds=0.1, **s3_server.settings(s3_server.new_bucket())
    )
    live = start_server(settings)
    live.services.batch_promoter.start()
    yield live
    live.services.batch_promoter.stop()
    live.stop()
    live.services.close()


@pytest.fixture
def s3_api(s3_live: LiveServer) -> Iterator[ApiClient]:
    c = s3_live.creds
    with fresh_sandbox_client(s3_live, c["orgId"], c["apiKey"], c["clientSecret"], c["tenantId"]) as client:
        yield client


@pytest.fixture(params=["folder", "s3"])
def lake_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of a new home whose lake is its warehouse folder, or a new bucket on :func:`s3_server`:
    the lake's contract tests run on both."""
    if request.param == "folder":
        return make_settings(tmp_path / "home")
    store: S3Server = request.getfixturevalue("s3_server")
    return make_settings(tmp_path / "home", **store.settings(store.new_bucket()))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    with _postgres_database() as url:
        yield url


@pytest.fixture(scope="class")
def postgres_class_url() -> Iterator[str]:
    """A fresh PostgreSQL database shared by the tests of one class (each isolates its rows otherwise,
    e.g. by a scope of its own), dropped afterwards."""
    with _postgres_database() as url:
        yield url


@pytest.fixture
def sink(server: LiveServer) -> Iterator[SinkFake]:
    """A destination sink on 127.0.0.1 whose test CA the server trusts for outbound TLS (as
    HEADWATER_OUTBOUND_CA_FILE would make it)."""
    from tests.fakes.sink import SinkFake

    with SinkFake() as fake:
        settings = server.services.settings
        before = settings.outbound_ca_file
        settings.outbound_ca_file = fake.ca_file
        try:
            yield fake
        finally:
            settings.outbound_ca_file = before


# --- the web console ---
CHROMIUM = os.environ.get("HEADWATER_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CONSOLE_USER, CONSOLE_PASSWORD = "admin@example.com", "correct horse battery staple"


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own (SQLite) for the browser tests, with an admin who can sign in."""
    from headwater.services.users import actor_for

    live = start_server(make_settings(tmp_path_factory.mktemp("headwater-console")))
    org = live.services.store.get_org(live.creds["orgId"])
    assert org is not None
    body = {"username": CONSOLE_USER, "admin": True, "password": CONSOLE_PASSWORD}
    live.services.identity.users.create(actor_for(org, "test"), body)
    yield live
    live.stop()
    live.services.close()


@pytest.fixture(scope="session")
def console_api(console_server: LiveServer) -> Iterator[ApiClient]:
    """An API client of the console server's organization, sandbox prod (for setting things up)."""
    c = console_server.creds
    token = token_for(console_server.base_url, c["apiKey"], c["clientSecret"])
    with ApiClient(console_server.base_url, token, c["apiKey"], c["orgId"], "prod", c["tenantId"]) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, headless. Per module: Playwright's sync API keeps an event
    loop running in the main thread while it is open, and ``asyncio.run`` in later tests would refuse it."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (.ci/run installs Debian's chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def console(browser: Any, console_server: LiveServer) -> Iterator[Any]:
    """A signed-in console page (1280x800) of the console server's admin."""
    context = browser.new_context(base_url=console_server.base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/console/login")
    page.get_by_label("Username").fill(CONSOLE_USER)
    page.get_by_label("Password").fill(CONSOLE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/sources")
    yield page
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Save what the page shows to docs/screenshots/<name>.png (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


# --- console sign-in as other people (tests/test_console_roles.py, tests/test_console_users.py) ---
@dataclass
class ConsoleOrg:
    """An organization of its own on the console server: its users, sandboxes and audit log are the
    test's alone."""

    org: Any  # headwater.stores.metadata.Org
    admin: str  # username of its organization admin
    password: str

    def add_user(self, live: LiveServer, username: str, **fields: Any) -> dict[str, Any]:
        """A user of this organization who can sign in with ``self.password``."""
        from headwater.services.users import actor_for

        body = {"username": username, "password": self.password, **fields}
        user = live.services.identity.users.create(actor_for(self.org, "test"), body)
        return live.services.identity.users.render(user)


def console_org(live: LiveServer, sandboxes: tuple[str, ...] = ("prod",)) -> ConsoleOrg:
    """A new organization on ``live`` with ``sandboxes`` and an organization admin."""
    suffix = uuid.uuid4().hex[:8]
    org = live.services.tenancy.create_org(f"Acme {suffix}", f"acme{suffix}")
    for name in sandboxes:
        live.services.tenancy.create_sandbox(org.id, name)
    made = ConsoleOrg(org, f"owner-{suffix}@acme.example", "a long passphrase for tests")
    made.add_user(live, made.admin, admin=True)
    return made


@pytest.fixture
def console_as(browser: Any, console_server: LiveServer) -> Iterator[Any]:
    """``console_as(username, password, landing="/console/sources")``: a new browser context (1280x800)
    signed in through the sign-in page as that person, on ``landing``. The contexts close afterwards."""
    from urllib.parse import quote

    contexts: list[Any] = []

    def sign_in(username: str, password: str, landing: str = "/console/sources") -> Any:
        context = browser.new_context(
            base_url=console_server.base_url, viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/console/login?next=" + quote(landing, safe=""))
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**" + landing)
        return page

    yield sign_in
    for context in contexts:
        context.close()

"""Test support: a live Headwater server in a thread, and API clients scoped to fresh sandboxes."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from headwater.api.serving import server_config
from headwater.container import Services
from headwater.server import create_app
from headwater.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes (then AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class LiveServer:
    base_url: str
    services: Services
    settings: Settings
    creds: dict[str, str]
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(settings: Settings) -> LiveServer:
    services = Services(settings)
    services.start()
    creds, _ = services.tenancy.bootstrap()
    app = create_app(settings, services)
    # The configuration `headwater serve` uses (header timeout, protocol), on the settings' port.
    config = server_config(app, settings, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # HTTPS when the settings name a certificate (the client then needs its CA: SSL_CERT_FILE for httpx)
    base_url = f"{'https' if settings.tls_enabled else 'http'}://127.0.0.1:{settings.port}"

    def healthy() -> bool:
        try:
            return httpx.get(base_url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=20)
    return LiveServer(base_url, services, settings, creds.as_json(), server, thread)


class ApiClient(httpx.Client):
    """An httpx client with every platform header set for one organization and sandbox."""

    def __init__(self, base_url: str, token: str, api_key: str, org_id: str, sandbox: str, tenant_id: str):
        super().__init__(
            base_url=base_url,
            timeout=30,
            headers={
                "Authorization": f"Bearer {token}",
                "x-api-key": api_key,
                "x-gw-ims-org-id": org_id,
                "x-sandbox-name": sandbox,
            },
        )
        self.token = token
        self.api_key = api_key
        self.org_id = org_id
        self.sandbox_name = sandbox
        self.tenant_id = tenant_id


def token_for(base_url: str, client_id: str, secret: str) -> str:
    response = httpx.post(
        base_url + "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def fresh_sandbox_client(
    live: LiveServer, org_id: str, client_id: str, secret: str, tenant_id: str, token: str | None = None
) -> ApiClient:
    name = "t" + uuid.uuid4().hex[:12]
    live.services.tenancy.create_sandbox(org_id, name)
    token = token or token_for(live.base_url, client_id, secret)
    return ApiClient(live.base_url, token, client_id, org_id, name, tenant_id)


def role_client(live: LiveServer, api: ApiClient, role: str) -> ApiClient:
    """A new API client of ``api``'s organization with ``role``, working in ``api``'s sandbox."""
    client_id, secret = live.services.tenancy.create_client(api.org_id, f"{role} client", role)
    token = token_for(live.base_url, client_id, secret)
    return ApiClient(live.base_url, token, client_id, api.org_id, api.sandbox_name, api.tenant_id)


def unique(prefix: str) -> str:
    """A name no other test uses (servers are shared across tests)."""
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def watch_page(page: Any) -> list[str]:
    """A browser page's script errors and console errors, collected as they happen. Chromium logs
    "Failed to load resource" for every 4xx answer; the console shows those in words, so they are left out."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    return problems


class HeldRequests:
    """A browser page's requests to one URL, left unanswered (as a slow server would) until released."""

    def __init__(self, page: Any, method: str) -> None:
        self.page = page
        self.method = method
        self.holding = True
        self.routes: list[Any] = []

    def hold(self, route: Any) -> None:
        if route.request.method == self.method and self.holding:
            self.routes.append(route)
        else:
            route.continue_()

    def asked(self) -> bool:
        """True once the page asked and waits (evaluate lets Playwright call ``hold``: poll this)."""
        return bool(self.page.evaluate("true") and self.routes)

    def release(self) -> None:
        self.holding = False
        while self.routes:
            self.routes.pop(0).continue_()


@contextmanager
def held_back(page: Any, url: Any, method: str = "GET") -> Iterator[HeldRequests]:
    """Hold the page's ``method`` requests to ``url`` (a glob or re.Pattern) until ``release()`` or the
    end of the block: for tests of what a page does while it still waits for an answer."""
    held = HeldRequests(page, method)
    page.route(url, held.hold)
    try:
        yield held
    finally:
        held.release()
        page.unroute(url)


POSTGRES_ADMIN_URL = os.environ.get(
    "HEADWATER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_postgres_database(prefix: str = "hw_test_", admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A new PostgreSQL database on the test server (its SQLAlchemy URL), dropped afterwards however its
    users left it."""
    import psycopg

    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""The ``headwater`` command. Every command reads the same ``HEADWATER_*`` settings as the server."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from headwater.services.container import Services
from headwater.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Headwater: a self-hosted customer data platform core.")
sandboxes_app = typer.Typer(no_args_is_help=True, help="Sandboxes of the default organization.")
clients_app = typer.Typer(no_args_is_help=True, help="API clients of the default organization.")
app.add_typer(sandboxes_app, name="sandboxes")
app.add_typer(clients_app, name="clients")
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _services() -> Services:

    services = Services(_settings())
    services.start()
    return services


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default HEADWATER_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default HEADWATER_PORT or 8080).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (each serves every API).")] = 1,
) -> None:
    """Start the HTTP server."""
    import os

    import uvicorn

    if host:
        os.environ["HEADWATER_HOST"] = host
    if port:
        os.environ["HEADWATER_PORT"] = str(port)
    settings = _settings()
    services = Services(settings)
    created = services.start()  # migrate and bootstrap once, before any worker starts
    creds, _ = services.tenancy.bootstrap()
    services.close()
    if created:
        console.print(
            f"[green]Created the default organization[/green] {creds.org_id} "
            f"(tenant {creds.tenant_id}, sandbox prod)."
        )
    console.print(
        f"Headwater on {settings.base_url}  ·  credentials: [bold]headwater credentials --json[/bold]"
        f"  ·  API docs: {settings.base_url}/docs"
    )
    uvicorn.run(
        "headwater.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
    )


@app.command()
def credentials(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the default organization's credentials (creating the organization when absent)."""
    services = _services()
    try:
        creds, _ = services.tenancy.bootstrap()
    finally:
        services.close()
    if as_json:
        sys.stdout.write(json.dumps(creds.as_json()) + "\n")
        return
    table = Table(show_header=False)
    for key, value in creds.as_json().items():
        table.add_row(key, value)
    Console().print(table)


@sandboxes_app.command("create")
def sandboxes_create(
    name: str,
    title: Annotated[str | None, typer.Option(help="Display title.")] = None,
) -> None:
    """Create a sandbox in the default organization."""
    from headwater.errors import HeadwaterError

    services = _services()
    try:
        org = services.tenancy.default_org()
        assert org is not None
        sandbox = services.tenancy.create_sandbox(org.id, name, title)
    except HeadwaterError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    finally:
        services.close()
    sys.stdout.write(json.dumps({"id": sandbox.id, "name": sandbox.name, "title": sandbox.title}) + "\n")


@sandboxes_app.command("list")
def sandboxes_list() -> None:
    """List the sandboxes of the default organization."""
    services = _services()
    try:
        org = services.tenancy.default_org()
        assert org is not None
        for sandbox in services.store.list_sandboxes(org.id):
            sys.stdout.write(
                json.dumps({"id": sandbox.id, "name": sandbox.name, "title": sandbox.title}) + "\n"
            )
    finally:
        services.close()


@clients_app.command("create")
def clients_create(name: Annotated[str, typer.Option(help="A name for the client.")] = "cli") -> None:
    """Create an API client in the default organization and print its credentials once."""
    services = _services()
    try:
        org = services.tenancy.default_org()
        assert org is not None
        client_id, secret = services.tenancy.create_client(org.id, name)
    finally:
        services.close()
    sys.stdout.write(json.dumps({"orgId": org.id, "apiKey": client_id, "clientSecret": secret}) + "\n")


if __name__ == "__main__":
    app()

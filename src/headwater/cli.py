"""The ``headwater`` command. Every command reads the same ``HEADWATER_*`` settings as the server."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from headwater.container import Services
from headwater.services.tenancy import Actor
from headwater.settings import Settings


def _flags_without_a_type() -> None:
    """``--help`` shows ``<bool>`` beside every flag (typer 0.29 gives flags a value type they do not
    take: ``--wait <bool>`` reads as if it wanted a value). Flags show no type; options keep theirs."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()
app = typer.Typer(no_args_is_help=True, help="Headwater: a self-hosted customer data platform core.")
sandboxes_app = typer.Typer(no_args_is_help=True, help="Sandboxes of the default organization.")
clients_app = typer.Typer(no_args_is_help=True, help="API clients of the default organization.")
app.add_typer(sandboxes_app, name="sandboxes")
app.add_typer(clients_app, name="clients")
console = Console(stderr=True)
from headwater.cli_backup import backup, restore  # noqa: E402
from headwater.cli_data360 import keys_app, users_app  # noqa: E402
from headwater.cli_flows import datasets_app, flows_app  # noqa: E402

app.add_typer(flows_app, name="flows")
app.add_typer(datasets_app, name="datasets")

app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.command()(backup)
app.command()(restore)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _refuse_moved_home(settings: Settings) -> None:
    """Stop a server or worker on a home moved by hand: its lake names the old folder (cli_backup.py)."""
    import os

    from headwater.process import file_mask
    from headwater.services.backup.location import moved_home

    os.umask(file_mask(settings.umask))  # opening the database may create its -shm and -wal files
    problem = moved_home(settings)
    if problem:
        console.print(f"[red]{problem}[/red]", highlight=False)
        raise typer.Exit(1)


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
    run_flows: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker", help="Run flows in the server (off when `headwater worker`s do)."
        ),
    ] = True,
) -> None:
    """Start the HTTP server."""
    import os

    if host:
        os.environ["HEADWATER_HOST"] = host
    if port:
        os.environ["HEADWATER_PORT"] = str(port)
    if not run_flows:
        os.environ["HEADWATER_EMBEDDED_WORKER"] = "false"
    settings = _settings()
    _refuse_moved_home(settings)
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
    if settings.pgwire_port is not None:
        console.print(
            f"Query Service PostgreSQL endpoint on {settings.pgwire_host}:{settings.pgwire_port}  ·  "
            "user {org id}, password an access token, database {sandbox}:all"
        )
    from headwater.api import serving

    serving.raise_file_limit()
    serving.run(
        serving.server_config(
            "headwater.server:create_app",
            settings,
            factory=True,
            workers=workers,
            log_level=settings.log_level,
            access_log=settings.log_level == "debug",
        )
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
def clients_create(
    name: Annotated[str, typer.Option(help="A name for the client.")] = "cli",
    role: Annotated[
        str, typer.Option(help="Its role in every sandbox: Admin, Developer, User or Viewer.")
    ] = "Admin",
) -> None:
    """Create an API client in the default organization and print its credentials once."""
    from headwater.errors import HeadwaterError

    services = _services()
    try:
        org = services.tenancy.default_org()
        assert org is not None
        client_id, secret = services.tenancy.create_client(org.id, name, role)
    except HeadwaterError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    finally:
        services.close()
    out = {"orgId": org.id, "apiKey": client_id, "clientSecret": secret, "role": role}
    sys.stdout.write(json.dumps(out) + "\n")


def _actor(services: Services, sandbox: str) -> Actor:
    org = services.tenancy.default_org()
    box = services.store.get_sandbox(org.id, sandbox) if org else None
    if org is None or box is None:
        console.print(f"[red]No sandbox {sandbox!r} in the default organization.[/red]")
        raise typer.Exit(1)
    return Actor(org=org, sandbox=box, client_id="headwater-cli")


@app.command()
def worker() -> None:
    """Run flows: schedule due runs and execute queued ones (alone, beside `serve --no-worker`)."""
    import signal

    from headwater.runtime.worker import Worker

    _refuse_moved_home(_settings())
    services = _services()
    runner = Worker(services)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    console.print(f"Headwater worker {runner.name} on {_safe_db(services.settings.resolved_database_url)}")
    from headwater.process import tune_garbage_collector

    tune_garbage_collector()
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        runner.stop()
    finally:
        services.close()


def _safe_db(url: str) -> str:
    return url.split("@", 1)[-1] if "@" in url else url


if __name__ == "__main__":
    app()

"""``headwater flows`` and ``headwater datasets``.

``flows run`` asks the running server to run a flow (``POST /flowservice/runs``, as any API client does)
and, with ``--wait``, follows the run through the API with a progress bar: the run executes in the
server's workers, with the server's settings (its outbound allow-list, its files roots, its secrets), not
in this process. The lists and ``datasets query`` read the home directly, like ``sandboxes list``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Callable

    from headwater.container import Services
    from headwater.services.tenancy import Actor
    from headwater.stores.metadata import Resource

flows_app = typer.Typer(no_args_is_help=True, help="Dataflows of the default organization.")
datasets_app = typer.Typer(no_args_is_help=True, help="Datasets of the default organization.")
console = Console(stderr=True)

FS = "/data/foundation/flowservice"
FINAL_STATES = ("success", "partialSuccess", "failed")
_POLL_SECONDS = 0.5


def _services() -> Services:
    from headwater.cli import _services as open_services

    return open_services()


def _actor(services: Services, sandbox: str) -> Actor:
    from headwater.cli import _actor as actor_of

    return actor_of(services, sandbox)


class ServerClient:
    """The default organization's first API client, talking to the server at ``base_url``."""

    def __init__(self, base_url: str, creds: dict[str, str], sandbox: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=30)
        token = self.http.post(
            "/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["apiKey"],
                "client_secret": creds["clientSecret"],
            },
        )
        if token.status_code != 200:
            raise _Refused(
                f"the server refused the CLI's credentials ({token.status_code}): {token.text[:300]}"
            )
        self.http.headers.update(
            {
                "Authorization": f"Bearer {token.json()['access_token']}",
                "x-api-key": creds["apiKey"],
                "x-gw-ims-org-id": creds["orgId"],
                "x-sandbox-name": sandbox,
            }
        )

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _Refused(_message(response))
        found: dict[str, Any] = response.json()
        return found

    def close(self) -> None:
        self.http.close()


class _Refused(Exception):
    pass


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}: {response.text[:300]}"
    detail = (
        body.get("detail") or body.get("message") or body.get("title") if isinstance(body, dict) else None
    )
    return f"{response.status_code}: {detail or response.text[:300]}"


@flows_app.command("run")
def flows_run(
    flow_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and show its progress.")] = False,
    sandbox: Annotated[str, typer.Option(help="Sandbox of the flow.")] = "prod",
    window_start: Annotated[str | None, typer.Option(help="windowStartTime (epoch s or ISO 8601).")] = None,
    window_end: Annotated[str | None, typer.Option(help="windowEndTime (epoch s or ISO 8601).")] = None,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="HEADWATER_URL", help="The server's URL (default HEADWATER_PUBLIC_URL or host:port)."
        ),
    ] = None,
) -> None:
    """Ask the running server to run a flow now; with --wait, follow the run, then summarize it."""
    services = _services()
    try:
        creds, _ = services.tenancy.bootstrap()
        base_url = server or _local_url(services.settings.base_url)
    finally:
        services.close()
    params = {k: v for k, v in (("windowStartTime", window_start), ("windowEndTime", window_end)) if v}
    try:
        client = ServerClient(base_url, creds.as_json(), sandbox)
    except httpx.TransportError as exc:
        console.print(
            f"[red]No Headwater server answers at {base_url}[/red] ({exc.__class__.__name__}). Start it with "
            "`make run` (or `headwater serve`), or pass --server / HEADWATER_URL."
        )
        raise typer.Exit(1) from exc
    except _Refused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    try:
        run = client.call("POST", f"{FS}/runs", json={"flowId": flow_id, "params": params})
        if not wait:
            sys.stdout.write(json.dumps({"id": run["id"], "flowId": flow_id}) + "\n")
            return
        final = _follow(client, str(run["id"]))
    except _Refused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        console.print(f"[red]Lost the server at {base_url}:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        client.close()
    _print_summary(final)
    if final["state"] == "failed":
        raise typer.Exit(1)


def _local_url(base_url: str) -> str:
    """The server's own URL as this machine reaches it (a wildcard bind is reached on loopback)."""
    return base_url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")


def _follow(client: ServerClient, run_id: str) -> dict[str, Any]:
    """Poll the run until it ends, showing records in and the rate."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} records"),
        TextColumn("{task.fields[rate]:,.0f} records/s"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"run {run_id[:8]} queued", total=None, rate=0.0)
        while True:
            run: dict[str, Any] = client.call("GET", f"{FS}/runs/{run_id}")["items"][0]  # AEP: a list of one
            summary = (run.get("metrics") or {}).get("recordSummary") or {}
            records = int(summary.get("inputRecordCount") or 0)
            elapsed = max(time.monotonic() - started, 1e-6)
            state = run.get("state") or "queued"
            waiting = " (waiting for a worker)" if state == "queued" and elapsed > 10 else ""
            progress.update(
                task,
                description=f"run {run_id[:8]} {state}{waiting}",
                completed=records,
                rate=records / elapsed,
            )
            if state in FINAL_STATES:
                return run
            time.sleep(_POLL_SECONDS)


def _print_summary(run: dict[str, Any]) -> None:
    records = run["metrics"]["recordSummary"]
    status = run["metrics"]["statusSummary"]
    table = Table(title=f"run {run['id']}", show_header=False)
    table.add_row("status", run["state"])
    table.add_row("records in", f"{records['inputRecordCount']:,}")
    table.add_row("records out", f"{records['outputRecordCount']:,}")
    table.add_row("records failed", f"{records['failedRecordCount']:,}")
    window = run["metrics"]["durationSummary"].get("extensions") or {}
    table.add_row("window", f"{window.get('windowStart') or '-'} .. {window.get('windowEnd') or '-'}")
    for error in status.get("errors") or []:
        table.add_row("error", f"{error.get('code')}: {error.get('message')}")
    Console().print(table)


@flows_app.command("list")
def flows_list(sandbox: Annotated[str, typer.Option(help="Sandbox of the flows.")] = "prod") -> None:
    """List the sandbox's flows, one JSON object a line (newest first)."""

    def shown(flow: Resource) -> dict[str, Any]:
        doc = flow.doc
        return {
            "id": flow.id,
            "name": doc.get("name"),
            "state": doc.get("state"),
            "flowSpec": (doc.get("flowSpec") or {}).get("id"),
            "sourceConnectionIds": doc.get("sourceConnectionIds"),
            "targetConnectionIds": doc.get("targetConnectionIds"),
            "scheduleParams": doc.get("scheduleParams"),
        }

    _print_newest_first("flow", sandbox, shown)


@datasets_app.command("list")
def datasets_list(sandbox: Annotated[str, typer.Option(help="Sandbox of the datasets.")] = "prod") -> None:
    """List the sandbox's datasets, one JSON object a line (newest first)."""

    def shown(dataset: Resource) -> dict[str, Any]:
        doc, tags = dataset.doc, dataset.doc.get("tags") or {}
        return {
            "id": dataset.id,
            "name": doc.get("name"),
            "schema": (doc.get("schemaRef") or {}).get("id"),
            "table": (tags.get("adobe/pqs/table") or [None])[0],
            "profileEnabled": "enabled:true" in (tags.get("unifiedProfile") or []),
        }

    _print_newest_first("dataSet", sandbox, shown)


def _print_newest_first(kind: str, sandbox: str, shown: Callable[[Resource], dict[str, Any]]) -> None:
    """Every ``kind`` resource of the sandbox as ``shown`` gives it, one JSON line each, newest first."""
    services = _services()
    try:
        actor = _actor(services, sandbox)
        found = services.store.list(kind, actor.scope).items
        for resource in sorted(found, key=lambda r: r.created_at, reverse=True):
            sys.stdout.write(json.dumps(shown(resource)) + "\n")
    finally:
        services.close()


@datasets_app.command("query")
def datasets_query(
    dataset_id: str,
    sql: str,
    sandbox: Annotated[str, typer.Option(help="Sandbox of the dataset.")] = "prod",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Query a dataset with one DuckDB SELECT over its current snapshot; the table is named `dataset`.

    The other datasets of the sandbox are tables too, by their table name (tag adobe/pqs/table). The
    query reads nothing else (no files, extensions or settings) and is bounded by the HEADWATER_QUERY_*
    settings.
    """
    from rich.markup import escape

    from headwater.errors import HeadwaterError
    from headwater.lake.query import bound_address_space

    services = _services()
    try:
        actor = _actor(services, sandbox)
        try:
            services.datasets.get(actor, dataset_id)
        except HeadwaterError as exc:
            console.print(f"[red]{exc.detail}[/red]")
            raise typer.Exit(1) from exc
        if services.lake.load(actor.scope, dataset_id) is None:
            console.print("[yellow]The dataset has no data yet.[/yellow]")
            raise typer.Exit(0)
        # A one-shot process: bound its whole address space, so values DuckDB does not count stop too.
        bound_address_space(services.settings.query_memory_mb)
        try:
            result = services.queries.run(actor, sql, dataset_id)
        except HeadwaterError as exc:
            console.print(f"[red]Query failed:[/red] {escape(exc.detail)}", highlight=False)
            raise typer.Exit(1) from exc
        _print_rows(result.table, as_json)
        if result.truncated:
            console.print(
                f"[yellow]Showing the first {result.table.num_rows:,} rows; the query has more "
                "(HEADWATER_QUERY_MAX_ROWS, HEADWATER_QUERY_MAX_RESULT_MB). Add a LIMIT or aggregate."
                "[/yellow]"
            )
    finally:
        services.close()


def _print_rows(result: Any, as_json: bool) -> None:
    if as_json:
        for row in result.to_pylist():
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return
    out = Table()
    for name in result.column_names:
        out.add_column(name)
    for row in result.to_pylist():
        cells = (json.dumps(v, default=str) if isinstance(v, dict | list) else str(v) for v in row.values())
        out.add_row(*cells)
    Console().print(out)


@datasets_app.command("remove-orphans")
def datasets_remove_orphans(
    older_than_days: Annotated[
        float, typer.Option(help="Only files last written longer ago than this (longer than any run).")
    ] = 3.0,
    delete: Annotated[bool, typer.Option("--delete", help="Delete them (else only list them).")] = False,
) -> None:
    """Find the data files of every dataset of the lake that no snapshot references (left by attempts
    that never committed, or referenced only by expired snapshots), and with --delete remove them.

    Prints one JSON line per table with orphans; a file younger than --older-than-days is kept (a run
    may be writing it now). Safe beside running servers and workers: nothing reads such a file.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from headwater.lake.orphans import sweep_table
    from headwater.services.ids import now_ms

    if older_than_days < 0:
        console.print("[red]--older-than-days must be 0 or more[/red]")
        raise typer.Exit(2)
    services = _services()
    limit = now_ms() - int(older_than_days * 86_400_000)
    try:
        tables = sorted(services.lake.metadata_locations())
        found = removed_bytes = 0
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console, transient=not console.is_terminal) as progress:
            task = progress.add_task("sweeping tables", total=len(tables))
            for identifier in tables:
                table = services.lake.catalog.load_table(identifier)
                sweep = sweep_table(table, limit, remove=delete)
                progress.advance(task)
                if sweep.skipped:
                    console.print(f"[yellow]{'.'.join(identifier)}: {sweep.skipped}[/yellow]")
                if sweep.orphans:
                    found += len(sweep.orphans)
                    removed_bytes += sweep.bytes
                    line = {
                        "table": ".".join(identifier),
                        "orphans": len(sweep.orphans),
                        "bytes": sweep.bytes,
                        "deleted": delete,
                        "files": sweep.orphans,
                    }
                    print(json.dumps(line))
        verb = "deleted" if delete else "found (add --delete to remove them)"
        console.print(f"{found} orphan data files, {removed_bytes:,} bytes, {verb}")
    finally:
        services.close()

"""``headwater backup`` and ``headwater restore``: copy a home while its server runs, and put a copy in
place as a new home (docs/operations.md). JSON on stdout, messages and progress bars on stderr, like the
other commands."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True)


class _Bars:
    """The backup's progress (services/backup/copying.py ``Progress``) as one bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def stage(self, name: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total or 0)
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)


@contextmanager
def _bars() -> Iterator[_Bars]:
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=not console.is_terminal) as progress:
        yield _Bars(progress)


def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder for the backup, outside the home.")],
) -> None:
    """Back this home up into DEST while the server runs: the metadata database and lake catalog (as of
    one moment), every file their snapshots reference, keys, the streaming log and the files folders."""
    from headwater.cli import _settings
    from headwater.process import file_mask
    from headwater.services.backup import BackupError, backup_home
    from headwater.services.backup.backup import summary

    settings = _settings()
    os.umask(file_mask(settings.umask))  # the backup holds the keys: as private as the home
    try:
        with _bars() as bars:
            manifest = backup_home(settings, dest, bars)
    except BackupError as exc:
        console.print(f"[red]Backup failed:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    sys.stdout.write(json.dumps(summary(manifest, dest.expanduser().resolve())) + "\n")
    console.print(
        f"Backed up {settings.home} into {dest}. It holds the home's keys: keep it as safe as the home."
    )
    if settings.stream_log != "local":
        console.print(
            "[yellow]Streaming messages not yet committed are in JetStream, not in the backup: a restore "
            "beside the same JetStream resumes them.[/yellow]"
        )


def restore(
    source: Annotated[Path, typer.Argument(help="A folder written by `headwater backup`.")],
    home: Annotated[Path, typer.Argument(help="The new home: a folder not there yet, or empty.")],
) -> None:
    """Restore a backup as the home HOME, moving every path that named the old home; then start
    Headwater with HEADWATER_HOME=HOME."""
    from headwater.cli import _settings
    from headwater.lake.storage import local_only
    from headwater.process import file_mask
    from headwater.services.backup import BackupError, restore_home

    settings = _settings()
    refused = local_only(settings, "`headwater restore`")
    if refused:
        console.print(f"[red]Restore refused:[/red] {refused}", highlight=False)
        raise typer.Exit(1)
    os.umask(file_mask(settings.umask))
    try:
        with _bars() as bars:
            restored = restore_home(source, home, bars)
    except BackupError as exc:
        console.print(f"[red]Restore refused:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    out = restored.as_json()
    sys.stdout.write(json.dumps(out) + "\n")
    console.print(f"Restored {source} into {restored.home}. Start it with HEADWATER_HOME={restored.home}.")
    for name in out["keysToSetAgain"]:
        setting = "HEADWATER_ENCRYPTION_KEY" if name == "encryption.key" else "HEADWATER_TOKEN_SIGNING_KEY"
        console.print(f"[yellow]The backup holds no {name}: set {setting} as the old home had it.[/yellow]")
    if os.environ.get("HEADWATER_DATABASE_URL"):
        console.print("[yellow]Unset HEADWATER_DATABASE_URL: the restored home has its metadata.db.[/yellow]")

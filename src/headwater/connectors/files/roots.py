"""Which folders of the server a files connection may read: an allow list, never a deny list.

A Local Folder connection of sandbox S in organization O may read a folder only when, once symlinks and
``..`` are resolved, it lies inside

- S's files folder, ``HOME/files/O/S/`` (created on first use; a relative ``rootPath`` names a folder
  inside it, ``.`` the folder itself), or
- one of the operator's folders in ``HEADWATER_FILES_ROOTS`` (shared by every organization and sandbox),

and whatever those say, never

- inside ``/proc``, ``/sys`` or ``/dev`` (the server's environment, memory and devices),
- inside Headwater's home except S's own files folder (keys, metadata, the lake, and the files folders of
  other sandboxes and organizations, uploads included), or a folder that contains the home.

Another Headwater instance's home on the same host is outside every default root, so it is unreachable
unless the operator lists a folder containing it. Uploads ("Uploaded files" connections) land in
``HOME/files/O/S/uploads/<connection id>/``, inside the same per-sandbox area.

The check runs when a connection is saved (a 400 naming the setting) and again each time a connector
opens its folder, since the folders may have changed since (a symlink planted after the save); the reader
checks each file once more after opening it (``client.opener``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.connectors.errors import InvalidSourceParams

if TYPE_CHECKING:
    from headwater.settings import Settings

SETTING = "HEADWATER_FILES_ROOTS"
NEVER_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
_NAME = re.compile(r"^[A-Za-z0-9@._-]{1,128}$")


class RootRefused(InvalidSourceParams):
    """A ``rootPath`` outside the folders files connections may read. The message names the setting."""


@dataclass(frozen=True)
class Place:
    """The organization and sandbox a connection belongs to (``Actor.org.id``, ``Actor.sandbox.name``)."""

    org_id: str
    sandbox: str

    @classmethod
    def of(cls, auth: dict[str, Any]) -> Place | None:
        """The place the runtime put in a connector's auth params (``_orgId``, ``_sandboxName``)."""
        org, sandbox = auth.get("_orgId"), auth.get("_sandboxName")
        if org is None and sandbox is None:
            return None
        if not (isinstance(org, str) and isinstance(sandbox, str)):
            raise InvalidSourceParams("_orgId and _sandboxName must name the connection's organization.")
        return cls(org, sandbox)


def sandbox_area(settings: Settings, place: Place, *, create: bool = False) -> Path:
    """``HOME/files/{org}/{sandbox}``, made (0700) when ``create`` and missing."""
    for name in (place.org_id, place.sandbox):
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise InvalidSourceParams(f"{name!r} cannot name a files folder.")
    area = settings.home / "files" / place.org_id / place.sandbox
    if create:
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
    return area


def uploads_area(settings: Settings, place: Place, connection_id: str) -> Path:
    """The folder of an "Uploaded files" connection, made when missing. Files uploaded before uploads
    moved into the sandbox's area (``HOME/uploads/<id>``) are moved here on first use."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", connection_id):
        raise InvalidSourceParams("_connectionId must be a connection id.")
    area = sandbox_area(settings, place, create=True) / "uploads" / connection_id
    legacy = settings.home / "uploads" / connection_id
    if not area.exists() and legacy.is_dir() and not legacy.is_symlink():
        area.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(legacy, area)
    area.mkdir(mode=0o700, parents=True, exist_ok=True)
    return area


def operator_roots(settings: Settings) -> list[Path]:
    """The folders of ``HEADWATER_FILES_ROOTS`` (``os.pathsep``-separated absolute paths), resolved."""
    return [Path(entry).resolve() for entry in settings.files_roots_entries]


def confine(settings: Settings, place: Place | None, root_path: str) -> Path:
    """The resolved folder ``root_path`` names, if a connection of ``place`` may read it; else
    :class:`RootRefused`. Does not require the folder to exist (the reader says so when it opens it).
    With no ``place`` only the operator's roots are allowed, and a relative path is refused."""
    if "\0" in root_path:
        raise InvalidSourceParams("rootPath may not contain NUL characters.")
    area = sandbox_area(settings, place, create=True).resolve() if place else None
    path = Path(root_path).expanduser()
    if not path.is_absolute():
        if area is None:
            raise RootRefused(f"rootPath {root_path!r} must be an absolute path.")
        path = area / path
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise _refused(root_path) from None
    if not _allowed(settings, area, resolved):
        raise _refused(root_path)
    return resolved


def _allowed(settings: Settings, area: Path | None, resolved: Path) -> bool:
    if any(resolved.is_relative_to(never.resolve()) for never in NEVER_ROOTS):
        return False
    home = settings.home.resolve()
    if home.is_relative_to(resolved):  # the home itself, or a folder containing it
        return False
    if resolved.is_relative_to(home):  # inside the home: only this sandbox's own area
        return area is not None and resolved.is_relative_to(area)
    return any(resolved.is_relative_to(root) for root in operator_roots(settings))


def _refused(root_path: str) -> RootRefused:
    return RootRefused(
        f"rootPath {root_path!r} is outside the folders a Local Folder connection may read: use a path "
        "relative to this sandbox's files folder (HEADWATER_HOME/files/<org id>/<sandbox name>/), or ask "
        f"the operator to add the folder to {SETTING}. /proc, /sys, /dev and Headwater's home are never "
        "readable."
    )


def save_errors(settings: Settings, place: Place, params: dict[str, Any]) -> list[dict[str, str]]:
    """What is wrong with a Local Folder connection's auth params as it is saved, as
    ``{"path", "message"}`` items: a ``rootPath`` outside the allowed folders, or a name the runtime
    reserves (``_orgId``, ``_sandboxName``, ``_connectionId``)."""
    errors = [
        {"path": f"auth.params.{key}", "message": "is reserved: names starting with '_' are set by Headwater"}
        for key in params
        if key.startswith("_")
    ]
    root = params.get("rootPath")
    if isinstance(root, str) and root.strip():
        try:
            confine(settings, place, root)
        except InvalidSourceParams as exc:
            errors.append({"path": "auth.params.rootPath", "message": exc.message})
    return errors

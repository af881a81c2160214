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

With the lake on object storage (``HEADWATER_LAKE_URL=s3://bucket/prefix``) S's files folder is the prefix
``<prefix>/_files/O/S/`` of the lake's bucket instead, so every node reads the same files (uploads
included; an operator puts a Local Folder connection's files there with any S3 tool). A relative
``rootPath`` names a prefix inside it; with no symlinks on S3 the check is lexical: ``..`` may not climb
above it, and it is S's whatever the path. An absolute ``rootPath`` still names a folder of the node's
disk, allowed only inside ``HEADWATER_FILES_ROOTS`` (which every node must then mount alike); the home's
own ``files/`` folder is unused, and refused.

The check runs when a connection is saved (a 400 naming the setting) and again each time a connector
opens its folder, since the folders may have changed since (a symlink planted after the save); the reader
checks each file once more after opening it (``client.opener``).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from headwater.connectors.errors import InvalidSourceParams
from headwater.stores.objectfiles import ObjectFiles, object_files, on_objects

if TYPE_CHECKING:
    from headwater.settings import Settings

SETTING = "HEADWATER_FILES_ROOTS"
NEVER_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
_NAME = re.compile(r"^[A-Za-z0-9@._-]{1,128}$")
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
AREA = "_files"  # the lake's prefix of the sandboxes' files folders, with the lake on S3


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


def _check_place(place: Place) -> None:
    for name in (place.org_id, place.sandbox):
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise InvalidSourceParams(f"{name!r} cannot name a files folder.")


def _check_connection(connection_id: str) -> None:
    if not _CONNECTION_ID.fullmatch(connection_id):
        raise InvalidSourceParams("_connectionId must be a connection id.")


def sandbox_area(settings: Settings, place: Place, *, create: bool = False) -> Path:
    """``HOME/files/{org}/{sandbox}``, made (0700) when ``create`` and missing."""
    _check_place(place)
    area = settings.home / "files" / place.org_id / place.sandbox
    if create:
        area.mkdir(mode=0o700, parents=True, exist_ok=True)
    return area


def uploads_area(settings: Settings, place: Place, connection_id: str) -> Path:
    """The folder of an "Uploaded files" connection, made when missing. Files uploaded before uploads
    moved into the sandbox's area (``HOME/uploads/<id>``) are moved here on first use."""
    _check_connection(connection_id)
    area = sandbox_area(settings, place, create=True) / "uploads" / connection_id
    legacy = settings.home / "uploads" / connection_id
    if not area.exists() and legacy.is_dir() and not legacy.is_symlink():
        area.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(legacy, area)
    area.mkdir(mode=0o700, parents=True, exist_ok=True)
    return area


def remove_uploads(settings: Settings, place: Place, connection_id: str) -> None:
    """Delete every file uploaded to an "Uploaded files" connection (it was deleted): its folder, its
    legacy folder, or its prefix of the bucket. Nothing is made on the way."""
    _check_connection(connection_id)
    files = bucket_files(settings)
    if files is not None:
        files.delete_tree(uploads_prefix(place, connection_id))
        return
    for area in (
        sandbox_area(settings, place, create=False) / "uploads" / connection_id,
        settings.home / "uploads" / connection_id,
    ):
        if area.is_dir() and not area.is_symlink():
            shutil.rmtree(area)


# --- with the lake on S3 ---
def bucket_files(settings: Settings) -> ObjectFiles | None:
    """The sandboxes' files folders in the lake's bucket (``<HEADWATER_LAKE_URL>/_files``) with the lake
    on object storage; None with the lake in the home (the folders are then ``HOME/files``)."""
    return object_files(settings, AREA, settings.home / "files") if on_objects(settings) else None


def in_bucket(settings: Settings, place: Place | None, root_path: str) -> bool:
    """Whether ``root_path`` names a prefix of the bucket: a relative path, with the lake on S3."""
    return on_objects(settings) and place is not None and not Path(root_path).expanduser().is_absolute()


def sandbox_prefix(place: Place) -> str:
    """S's files folder as a key prefix of :func:`bucket_files`, ``{org}/{sandbox}``."""
    _check_place(place)
    return f"{place.org_id}/{place.sandbox}"


def uploads_prefix(place: Place, connection_id: str) -> str:
    """The prefix of an "Uploaded files" connection in the bucket, ``{org}/{sandbox}/uploads/{id}``."""
    _check_connection(connection_id)
    return f"{sandbox_prefix(place)}/uploads/{connection_id}"


def confine_key(place: Place, root_path: str) -> str:
    """The prefix of :func:`bucket_files` that the relative ``root_path`` names inside S's folder, or
    :class:`RootRefused` when it climbs above it. Lexical: S3 has no symlinks, so the names are the
    objects' names (a ``..`` of a key is never resolved by the store)."""
    if "\0" in root_path or any(ord(c) < 32 or c == "\x7f" for c in root_path):
        raise InvalidSourceParams("rootPath may not contain NUL or other control characters.")
    parts: list[str] = []
    for part in PurePosixPath(root_path).parts:
        if part == "..":
            if not parts:
                raise _refused(root_path, in_bucket=True)
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join([sandbox_prefix(place), *parts])


def operator_roots(settings: Settings) -> list[Path]:
    """The folders of ``HEADWATER_FILES_ROOTS`` (``os.pathsep``-separated absolute paths), resolved."""
    return [Path(entry).resolve() for entry in settings.files_roots_entries]


def confine(settings: Settings, place: Place | None, root_path: str) -> Path:
    """The resolved folder ``root_path`` names, if a connection of ``place`` may read it; else
    :class:`RootRefused`. Does not require the folder to exist (the reader says so when it opens it).
    With no ``place`` only the operator's roots are allowed, and a relative path is refused."""
    if "\0" in root_path:
        raise InvalidSourceParams("rootPath may not contain NUL characters.")
    # With the lake on S3 the sandbox's files are in the bucket (confine_key): none in the home.
    own = place is not None and not on_objects(settings)
    area = sandbox_area(settings, place, create=True).resolve() if place and own else None
    path = Path(root_path).expanduser()
    if not path.is_absolute():
        if area is None:
            raise RootRefused(f"rootPath {root_path!r} must be an absolute path.")
        path = area / path
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise _refused(root_path, on_objects(settings)) from None
    if not _allowed(settings, area, resolved):
        raise _refused(root_path, on_objects(settings))
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


def _refused(root_path: str, in_bucket: bool = False) -> RootRefused:
    own = (
        "HEADWATER_LAKE_URL/_files/<org id>/<sandbox name>/ in the lake's bucket"
        if in_bucket
        else "HEADWATER_HOME/files/<org id>/<sandbox name>/"
    )
    return RootRefused(
        f"rootPath {root_path!r} is outside the folders a Local Folder connection may read: use a path "
        f"relative to this sandbox's files folder ({own}), or ask the operator to add the folder to "
        f"{SETTING}. /proc, /sys, /dev and Headwater's home are never readable."
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
            if place is not None and in_bucket(settings, place, root):
                confine_key(place, root)
            else:
                confine(settings, place, root)
        except InvalidSourceParams as exc:
            errors.append({"path": "auth.params.rootPath", "message": exc.message})
    return errors

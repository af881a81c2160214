"""Where the lake's files live: the home's warehouse folder (the embedded default) or S3-compatible object
storage (``HEADWATER_LAKE_URL=s3://bucket/prefix``).

Either way the files are written and read through pyiceberg's :class:`~pyiceberg.io.pyarrow.PyArrowFileIO`
(pyarrow's own ``LocalFileSystem`` or ``S3FileSystem``); this module only turns the settings into the
catalog's location and FileIO properties. The catalog itself (pointer to each table's current metadata
file, the commit's compare-and-swap) stays in the metadata database, so a commit is atomic on S3 as on a
disk: every data, manifest and metadata file is written before the catalog row names it.

Some features read the warehouse as a folder (backup, restore, moving a home): on object storage they
are refused (:func:`local_only`), naming the feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headwater.settings import Settings

# pyiceberg's property names (pyiceberg/io/__init__.py).
_IO_IMPL = "py-io-impl"
_PYARROW_IO = "pyiceberg.io.pyarrow.PyArrowFileIO"
# A store that does not answer fails the request within these, instead of the SDK's minutes.
_CONNECT_TIMEOUT_S = "5"
_REQUEST_TIMEOUT_S = "30"


def on_object_storage(settings: Settings) -> bool:
    return settings.lake_url is not None


def warehouse_location(warehouse_dir: Path) -> str:
    """The location of a local lake: the prefix of every path its catalog writes (lake/relocate.py
    moves them when a home moves)."""
    return warehouse_dir.resolve().as_uri()


def lake_location(settings: Settings) -> str:
    """The location the catalog is opened with: ``s3://bucket/prefix`` or the warehouse folder's URI."""
    if settings.lake_url is not None:
        return settings.lake_url.rstrip("/")
    return warehouse_location(settings.warehouse_dir)


def io_properties(settings: Settings) -> dict[str, str]:
    """The catalog's FileIO properties: every table it loads reads and writes through them. They hold
    the secret key: never log or show them."""
    if settings.lake_url is None:
        return {_IO_IMPL: _PYARROW_IO}
    props = {
        _IO_IMPL: _PYARROW_IO,
        # A region given means pyiceberg does not ask AWS where the bucket is (a network call to AWS).
        "s3.region": settings.s3_region,
        "s3.force-virtual-addressing": "false" if settings.s3_path_style else "true",
        "s3.connect-timeout": _CONNECT_TIMEOUT_S,
        "s3.request-timeout": _REQUEST_TIMEOUT_S,
    }
    if settings.s3_endpoint is not None:
        props["s3.endpoint"] = settings.s3_endpoint.rstrip("/")
    if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
        props["s3.access-key-id"] = settings.s3_access_key_id
        props["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
    return props


def reader_properties(settings: Settings) -> dict[str, str]:
    """What an outside engine needs to find the lake's files on object storage, no secret in it: the
    endpoint, region and addressing (pyiceberg's and Iceberg Java's S3 property names). Empty for a
    local lake (its ``file://`` paths need nothing)."""
    if settings.lake_url is None:
        return {}
    props = {
        "s3.region": settings.s3_region,
        "s3.force-virtual-addressing": "false" if settings.s3_path_style else "true",
        # Iceberg Java's name for the same thing (S3FileIOProperties.PATH_STYLE_ACCESS).
        "s3.path-style-access": "true" if settings.s3_path_style else "false",
    }
    if settings.s3_endpoint is not None:
        props["s3.endpoint"] = settings.s3_endpoint.rstrip("/")
    return props


def reader_credentials(settings: Settings) -> dict[str, str] | None:
    """The read-only key vended to outside engines (HEADWATER_S3_READER_*), or None when none is set.
    Never the lake's own (writing) key: the settings refuse a reader key equal to it."""
    key_id, secret = settings.s3_reader_access_key_id, settings.s3_reader_secret_access_key
    if settings.lake_url is None or key_id is None or secret is None:
        return None
    return {"s3.access-key-id": key_id, "s3.secret-access-key": secret.get_secret_value()}


def local_only(settings: Settings, feature: str) -> str | None:
    """Why ``feature`` (which reads the warehouse as a folder) is refused with the lake on object
    storage; None when the lake is the home's folder."""
    if not on_object_storage(settings):
        return None
    return (
        f"{feature} is not available with the lake on object storage (HEADWATER_LAKE_URL="
        f"{settings.lake_url}): it copies the warehouse as a folder. Use the bucket's own versioning or "
        "replication for the lake, and back up the metadata database (docs/operations.md)."
    )

"""What a files connection and its source connections say, checked and normalized.

Auth params (local-files): ``rootPath``, the absolute path of the folder the connection is confined to.
Source params (both specs): ``path`` (a file, a folder or a glob relative to the root), ``columnDelimiter``,
``quoteChar``, ``escapeChar``, ``encoding``, ``header``, ``compressionType`` and, optionally, ``columns``.
The format itself (delimited | json | parquet) comes from the source connection's ``data.format``; when a
caller has none (explore, preview), it is inferred from the file's suffix.

Nothing here touches the file system or imports pyarrow.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from headwater.connectors.errors import InvalidSourceParams

FORMATS = ("delimited", "json", "parquet")
COMPRESSIONS = ("gzip", "zstd")

_SUFFIX_FORMATS = {
    ".csv": "delimited",
    ".tsv": "delimited",
    ".txt": "delimited",
    ".psv": "delimited",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SUFFIX_COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}

DEFAULT_BLOCK_SIZE = 4 << 20
"""Bytes parsed at a time. Memory per open file is a small multiple of this, whatever the file's size."""


@dataclass(frozen=True)
class FileInfo:
    """One readable file: ``path`` relative to the connection's root (``/``-separated), as a runtime
    checkpoint records it; a file whose ``size`` or ``mtime_ns`` changed is a new version of it."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class DelimitedOptions:
    delimiter: str = ","
    quote_char: str | None = '"'  # None: quoting is off
    escape_char: str | None = None  # None: a quote inside quotes is written twice
    header: bool = True
    infer_types: bool = False  # False: every column is read as a string


@dataclass(frozen=True)
class SourceParams:
    path: str
    encoding: str  # a Python codec name; "utf-8" needs no transcoding
    compression: str | None  # "gzip" | "zstd"; None: inferred per file from its suffix
    columns: tuple[str, ...] | None
    delimited: DelimitedOptions
    block_size: int = DEFAULT_BLOCK_SIZE


def root_path(auth: dict[str, Any]) -> str:
    value = auth.get("rootPath")
    if not isinstance(value, str) or not value.strip():
        raise InvalidSourceParams("The connection has no rootPath: set auth.params.rootPath to a folder.")
    return value


def source_params(params: dict[str, Any], options: dict[str, Any] | None = None) -> SourceParams:
    """The checked source params; :class:`InvalidSourceParams` names the first bad one."""
    options = options or {}
    path = params.get("path")
    if not isinstance(path, str) or not path.strip():
        raise InvalidSourceParams("The source connection has no path: set params.path to a file or glob.")
    return SourceParams(
        path=path.strip(),
        encoding=_encoding(params.get("encoding")),
        compression=_compression(params.get("compressionType")),
        columns=column_names(params.get("columns")),
        delimited=DelimitedOptions(
            delimiter=_char(params, "columnDelimiter", ",", required=True) or ",",
            quote_char=_char(params, "quoteChar", '"'),
            escape_char=_char(params, "escapeChar", None),
            header=_bool(params, "header", True),
            infer_types=bool(options.get("infer_types", False)),
        ),
        block_size=_block_size(options.get("block_size")),
    )


def column_names(value: Any) -> tuple[str, ...] | None:
    """``columns`` as names: a list of strings or of ``{"name": ...}`` objects (as in tabular specs)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise InvalidSourceParams("params.columns must be a non-empty list of column names.")
    names = [c.get("name") if isinstance(c, dict) else c for c in value]
    if not all(isinstance(n, str) and n for n in names):
        raise InvalidSourceParams('Each entry of params.columns must be a name or {"name": ...}.')
    return tuple(str(n) for n in names)


def format_for(path: str, declared: str | None) -> str:
    """``declared`` when it is a file format, else the format the suffix names."""
    if declared in FORMATS:
        return declared
    suffixes = [s.lower() for s in _suffixes(path)]
    if suffixes and suffixes[-1] in _SUFFIX_COMPRESSIONS:
        suffixes.pop()
    fmt = _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InvalidSourceParams(
            f"Cannot tell the format of {path!r} from its name: set the source connection's data.format "
            "to delimited, json or parquet."
        )
    return fmt


def compression_for(path: str, declared: str | None) -> str | None:
    if declared is not None:
        return declared
    suffixes = _suffixes(path)
    return _SUFFIX_COMPRESSIONS.get(suffixes[-1].lower()) if suffixes else None


def _suffixes(path: str) -> list[str]:
    name = path.rsplit("/", 1)[-1]
    parts = name.split(".")
    return ["." + p for p in parts[1:]] if len(parts) > 1 else []


def _encoding(value: Any) -> str:
    if value is None or value == "":
        return "utf-8"
    try:
        return codecs.lookup(str(value)).name
    except LookupError:
        raise InvalidSourceParams(
            f"Unknown encoding {value!r}: use a standard name such as UTF-8 or ISO-8859-1."
        ) from None


def _compression(value: Any) -> str | None:
    if value is None or value == "none":
        return None
    if value not in COMPRESSIONS:
        raise InvalidSourceParams(f"compressionType must be none, gzip or zstd, not {value!r}.")
    return str(value)


def _char(params: dict[str, Any], name: str, default: str | None, required: bool = False) -> str | None:
    value = params.get(name, default)
    if value is None or (value == "" and not required):
        return None
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
        raise InvalidSourceParams(f"params.{name} must be a single character other than a line break.")
    return value


def _bool(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidSourceParams(f"params.{name} must be true or false.")
    return value


def _block_size(value: Any) -> int:
    if value is None:
        return DEFAULT_BLOCK_SIZE
    if not isinstance(value, int) or not 1 << 16 <= value <= 1 << 30:
        raise InvalidSourceParams("options.block_size must be an integer between 64 KiB and 1 GiB.")
    return value

"""How file-system and parsing failures become connector errors (see ``connectors/errors.py``).

    FileNotFoundError, NotADirectoryError   -> SourceNotFound      (terminal: fix params.path)
    PermissionError                         -> InvalidSourceParams (terminal: fix the file's permissions)
    other OSError (I/O, stale NFS handle)   -> SourceUnavailable   (transient: retry later)
    pyarrow.ArrowInvalid, decode errors,    -> InvalidSourceParams (terminal: the bytes do not match the
    decompression errors                                            declared format or its options)

Messages name the file relative to the connection's root, never the server's absolute paths.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from headwater.connectors.errors import (
    ConnectorError,
    InvalidSourceParams,
    SourceNotFound,
    SourceUnavailable,
)

_TERMINAL_OS_ERRORS = {errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}


def translate(exc: BaseException, path: str) -> ConnectorError:
    """The connector error for ``exc``, raised while reading ``path`` (relative to the root)."""
    import pyarrow as pa

    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return SourceNotFound(f"{path} does not exist under the connection's folder; check params.path.")
    if isinstance(exc, PermissionError):
        return InvalidSourceParams(f"Headwater may not read {path}: grant the server's user read access.")
    if isinstance(exc, UnicodeError):
        return InvalidSourceParams(f"{path} is not valid text in the declared encoding; set params.encoding.")
    if isinstance(exc, ValueError | pa.ArrowException) and not isinstance(exc, OSError):
        return InvalidSourceParams(
            f"{path} cannot be parsed with the source connection's format and options: {_first_line(exc)}"
        )
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno not in _TERMINAL_OS_ERRORS:
        return SourceUnavailable(f"Reading {path} failed ({exc.strerror or exc}); the run can be retried.")
    return InvalidSourceParams(f"{path} cannot be read: {_first_line(exc)}")


@contextmanager
def reading(path: str) -> Iterator[None]:
    """Translate whatever escapes the block into a connector error about ``path``."""
    import pyarrow as pa

    try:
        yield
    except ConnectorError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise translate(exc, path) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

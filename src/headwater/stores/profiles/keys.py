"""Helpers the SQL profile store's parts share: chunked key lists and JSON text.

Reads ask for many keys at once, grouped by namespace, so that every query is an index range over
``(scope_key, namespace, id)`` with at most :data:`CHUNK` ids in its IN list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import and_

from headwater.stores.profiles.base import IdentityKey

CHUNK = 500  # keys per IN list; rows per executemany


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def by_namespace(keys: Iterable[IdentityKey]) -> dict[str, list[str]]:
    grouped: dict[str, dict[str, None]] = {}
    for namespace, ident in keys:
        grouped.setdefault(namespace, {})[ident] = None
    return {namespace: list(ids) for namespace, ids in grouped.items()}


def key_chunks(keys: Iterable[IdentityKey]) -> Iterator[tuple[str, Sequence[str]]]:
    """``keys`` as (namespace, up to :data:`CHUNK` of its ids)."""
    for namespace, ids in by_namespace(keys).items():
        for chunk in chunks(ids):
            yield namespace, chunk


def key_filters(namespace_col: Any, id_col: Any, keys: Iterable[IdentityKey]) -> Iterator[Any]:
    """Conditions selecting ``keys``, at most :data:`CHUNK` ids each, one namespace each."""
    for namespace, chunk in key_chunks(keys):
        yield and_(namespace_col == namespace, id_col.in_(chunk))

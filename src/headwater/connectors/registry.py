"""Every connector Headwater has, one folder each under ``headwater/connectors/``, and which connector
reads which connection spec.

A source connector registers with one line of :data:`SOURCES`: its folder, and for each connection spec
file in that folder (``spec.json``, or ``spec-<variant>.json`` when one folder holds several) the class
of its ``reader.py`` that reads connections of that spec. The spec's id is the one its JSON file
states. Systems with a connection spec but no batch reader (streaming inlets, destinations) list their
spec files in :data:`OTHERS`. The contract suite (tests/connectors/) runs every entry of
:data:`SOURCES`, and the catalog (services/specs.py) serves every spec file named here.

Imports are lazy: a connector's libraries load only when a flow or an explore request needs it.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from headwater.connectors.base import SourceConnector
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

# One line per source connector: folder -> {spec file: the class of its reader.py that reads it}.
SOURCES: dict[str, dict[str, str]] = {
    "salesforce": {"spec.json": "SalesforceConnector", "spec-service-cloud.json": "SalesforceConnector"},
    "dynamics": {"spec.json": "DynamicsConnector"},
    "files": {"spec-local.json": "LocalFilesConnector", "spec-uploaded.json": "UploadedFilesConnector"},
    "postgresql": {"spec.json": "PostgresConnector"},
}

# Folders whose connection specs have no source connector: folder -> its spec files.
OTHERS: dict[str, tuple[str, ...]] = {
    "customerio": ("spec.json",),
    "http_streaming": ("spec.json",),
    "http_destination": ("spec.json",),
}


@dataclass(frozen=True)
class SourceEntry:
    """One registered (spec, reader class) pair: the spec's id, its folder, file and connector class."""

    spec_id: str
    folder: str
    spec_file: str
    class_name: str

    @property
    def module(self) -> str:
        return f"headwater.connectors.{self.folder}.reader"


def spec_files() -> list[Traversable]:
    """Every connection spec file of a connector folder named in :data:`SOURCES` or :data:`OTHERS`."""
    root = resources.files("headwater") / "connectors"
    named = [(folder, file) for folder, files in SOURCES.items() for file in files]
    named += [(folder, file) for folder, files in OTHERS.items() for file in files]
    return [root / folder / file for folder, file in named]


@functools.lru_cache(maxsize=1)
def sources() -> dict[str, SourceEntry]:
    """The registered source connectors by the id of the connection spec they read."""
    root = resources.files("headwater") / "connectors"
    found: dict[str, SourceEntry] = {}
    for folder, files in SOURCES.items():
        for file, class_name in files.items():
            spec_id = str(orjson.loads((root / folder / file).read_bytes())["id"])
            found[spec_id] = SourceEntry(spec_id, folder, file, class_name)
    return found


def supports(spec_id: str) -> bool:
    return spec_id in sources()


def connector_class(spec_id: str) -> type[SourceConnector]:
    """The connector class for connection spec ``spec_id``; KeyError if none reads it."""
    entry = sources()[spec_id]
    cls: type[SourceConnector] = getattr(importlib.import_module(entry.module), entry.class_name)
    return cls


def connector_for(
    spec_id: str, auth: dict[str, Any], outbound: OutboundPolicy, settings: Settings
) -> SourceConnector:
    """The connector for connection spec ``spec_id``; KeyError if none reads it."""
    return connector_class(spec_id)(auth, outbound, settings)

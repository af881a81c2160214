"""One stand-in per source connector folder: the connector's own stand-in server (or folder, or
database), seeded with the contract's rows and made to fail the ways the contract asks.

The contract (tests/connectors/test_contract.py) seeds ``count`` rows whose key is returned by
:meth:`StandIn.seed` and whose delta column holds ``start + i * step`` for the i-th key, plus, where the
source can hold them, rows whose delta is null. A new source connector adds one class here, named in
:data:`STAND_INS` under its folder; the contract fails for a registered folder without one.
"""

from __future__ import annotations

import errno
import os
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from headwater.connectors.base import ReadRequest, SourceConnector
from headwater.connectors.http import RetryPolicy
from headwater.connectors.outbound import OutboundPolicy
from headwater.connectors.registry import SourceEntry, connector_class
from headwater.settings import Settings
from tests.conftest import make_settings
from tests.support import free_port

Seeded = tuple[list[str], list[str]]  # the keys of the rows with a delta, and of those without
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)
LOCAL = OutboundPolicy(["127.0.0.1"])


class StandIn(ABC):
    """What the contract needs of one registered (spec, connector) pair; ``close`` releases it all."""

    table: ClassVar[str]  # the object the contract explores, describes, previews and reads
    key: ClassVar[str]  # its row key column
    delta: ClassVar[str]  # its delta column
    missing: ClassVar[str]  # an object that does not exist
    data_format: ClassVar[str] = "tabular"
    null_deltas: ClassVar[bool] = False  # the source can hold rows whose delta is null
    credentials: ClassVar[bool] = True  # the connector holds credentials a server can refuse

    def __init__(self, entry: SourceEntry, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.entry = entry
        self.request = request
        self.tmp_path = tmp_path
        self.settings: Settings = make_settings(tmp_path / "home")
        self._made: list[SourceConnector] = []
        self._cleanups: list[Callable[[], None]] = []

    def make(self, auth: dict[str, Any], **kwargs: Any) -> SourceConnector:
        connector = connector_class(self.entry.spec_id)(auth, LOCAL, self.settings, **kwargs)
        self._made.append(connector)
        return connector

    def read_request(self, name: str | None = None, **kwargs: Any) -> ReadRequest:
        return ReadRequest(params=self.params(name or self.table), data_format=self.data_format, **kwargs)

    def params(self, name: str) -> dict[str, Any]:
        return {"tableName": name}

    def pages_requested(self) -> int | None:
        """How many pages the server served since seeding (None: the source has no pages to count)."""
        return None

    @abstractmethod
    def connector(self, page_size: int | None = None) -> SourceConnector:
        """A connector of the seeded source; ``page_size`` rows per server page where it has pages."""

    @abstractmethod
    def seed(
        self, count: int, start: datetime, step: timedelta, nulls: int = 0
    ) -> tuple[list[str], list[str]]:
        """Add ``count`` rows (the i-th with delta ``start + i * step``) and ``nulls`` rows whose delta is
        null; the keys of each, in that order."""

    @abstractmethod
    def refusing(self) -> SourceConnector:
        """A connector whose credentials the source refuses."""

    @abstractmethod
    def unavailable(self) -> SourceConnector:
        """A connector whose source fails as a server that is down (5xx, or nothing listening)."""

    def close(self) -> None:
        for connector in self._made:
            connector.close()
        for cleanup in reversed(self._cleanups):
            cleanup()


class SalesforceStandIn(StandIn):
    table, key, delta, missing = "Contact", "Id", "SystemModstamp", "NoSuchObject__c"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from tests.fakes.salesforce import SalesforceFake

        self.fake = SalesforceFake().start()
        self._cleanups.append(self.fake.stop)

    def connector(self, page_size: int | None = None) -> SourceConnector:
        return self.make(self.fake.soap_auth(), retry=FAST, page_size=page_size)

    def seed(
        self, count: int, start: datetime, step: timedelta, nulls: int = 0
    ) -> tuple[list[str], list[str]]:
        assert nulls == 0, "SystemModstamp is never null"
        keys = self.fake.generate(self.table, count, start=start, step=step)
        self.fake.reset_log()
        return keys, []

    def pages_requested(self) -> int:
        return self.fake.count("/query")

    def refusing(self) -> SourceConnector:
        return self.make({**self.fake.soap_auth(), "password": "not-the-password"}, retry=FAST)

    def unavailable(self) -> SourceConnector:
        self.fake.fail(503, times=None)
        return self.connector()


class DynamicsStandIn(StandIn):
    table, key, delta, missing = "contact", "contactid", "modifiedon", "nosuchentity"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from tests.fakes.dynamics import DynamicsFake

        self.fake = DynamicsFake().start()
        self._cleanups.append(self.fake.stop)

    def connector(self, page_size: int | None = None) -> SourceConnector:
        return self.make(self.fake.service_principal_auth(), retry=FAST, page_size=page_size)

    def seed(
        self, count: int, start: datetime, step: timedelta, nulls: int = 0
    ) -> tuple[list[str], list[str]]:
        assert nulls == 0, "modifiedon is never null"
        keys = self.fake.generate(self.table, count, start=start, step=step)
        self.fake.reset_log()
        return keys, []

    def pages_requested(self) -> int:
        return self.fake.count("/contacts")

    def refusing(self) -> SourceConnector:
        auth = {**self.fake.service_principal_auth(), "servicePrincipalKey": "not-the-secret"}
        return self.make(auth, retry=FAST)

    def unavailable(self) -> SourceConnector:
        self.fake.fail(503, times=None)
        return self.connector()


class FilesStandIn(StandIn):
    """A CSV file in a temporary folder (local-files) or in the connection's upload area
    (uploaded-files); the delta column holds ISO 8601 instants."""

    table, key, delta, missing = "contacts.csv", "id", "updated_at", "missing.csv"
    data_format = "delimited"
    null_deltas = True
    credentials = False  # a folder: nothing to refuse

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if self.entry.spec_file == "spec-uploaded.json":
            self.auth: dict[str, Any] = {
                "_connectionId": "c-1",
                "_orgId": "ORG1@AdobeOrg",
                "_sandboxName": "prod",
            }
            self.root = self.settings.home / "files" / "ORG1@AdobeOrg" / "prod" / "uploads" / "c-1"
        else:
            self.root = self.tmp_path / "data"
            self.auth = {"rootPath": str(self.root)}
        self.root.mkdir(parents=True)

    def params(self, name: str) -> dict[str, Any]:
        return {"path": name}

    def connector(self, page_size: int | None = None) -> SourceConnector:
        return self.make(self.auth)

    def seed(
        self, count: int, start: datetime, step: timedelta, nulls: int = 0
    ) -> tuple[list[str], list[str]]:
        keys = [f"r{i:05d}" for i in range(count)]
        null_keys = [f"n{i:05d}" for i in range(nulls)]
        lines = [f"{self.key},{self.delta}"]
        lines += [f"{k},{(start + i * step).isoformat()}" for i, k in enumerate(keys)]
        lines += [f"{k}," for k in null_keys]
        (self.root / self.table).write_text("\n".join(lines) + "\n")
        return keys, null_keys

    def refusing(self) -> SourceConnector:
        raise NotImplementedError("a folder holds no credentials")

    def unavailable(self) -> SourceConnector:
        """Every file open fails with EIO, as a failing disk or a stale network mount would."""
        from headwater.connectors.files import client

        def failing_open(*args: Any, **kwargs: Any) -> int:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        patched = types.SimpleNamespace(**{n: getattr(os, n) for n in dir(os) if not n.startswith("__")})
        patched.open = failing_open
        monkeypatch = self.request.getfixturevalue("monkeypatch")
        monkeypatch.setattr(client, "os", patched)
        return self.connector()


class FilesOnS3StandIn(FilesStandIn):
    """The same files in the lake's bucket (moto's S3 server on 127.0.0.1), as a sandbox's files folder is
    with ``HEADWATER_LAKE_URL`` on S3: the uploads prefix, or a relative rootPath inside the sandbox's
    prefix (``_files/ORG1@AdobeOrg/prod/data``)."""

    def __init__(self, *args: Any) -> None:
        StandIn.__init__(self, *args)
        self.s3 = self.request.getfixturevalue("s3_server")
        self.bucket = self.s3.new_bucket()
        self.settings = make_settings(self.tmp_path / "home", **self.s3.settings(self.bucket))
        self.root = self.tmp_path / "seeded"  # written here, then put into the bucket
        self.root.mkdir()
        place = {"_orgId": "ORG1@AdobeOrg", "_sandboxName": "prod"}
        if self.entry.spec_file == "spec-uploaded.json":
            self.auth = {"_connectionId": "c-1", **place}
            self.prefix = f"{self.bucket}/lake/_files/ORG1@AdobeOrg/prod/uploads/c-1"
        else:
            self.auth = {"rootPath": "data", **place}
            self.prefix = f"{self.bucket}/lake/_files/ORG1@AdobeOrg/prod/data"

    def seed(
        self, count: int, start: datetime, step: timedelta, nulls: int = 0
    ) -> tuple[list[str], list[str]]:
        keys, null_keys = super().seed(count, start, step, nulls)
        with self.s3.filesystem().open_output_stream(f"{self.prefix}/{self.table}") as out:
            out.write((self.root / self.table).read_bytes())
        return keys, null_keys

    def unavailable(self) -> SourceConnector:
        """The store stops answering (and is started again, its objects kept, when the test ends)."""
        self._cleanups.append(self.s3.start)
        self.s3.stop()
        return self.connector()


class PostgresStandIn(StandIn):
    """A table in a fresh database of the local PostgreSQL; a refusing server for the password."""

    table, key, delta, missing = "public.contacts", "id", "updated_at", "public.missing"
    null_deltas = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        url: str = self.request.getfixturevalue("postgres_url")
        self.dsn = url.replace("postgresql+psycopg://", "postgresql://")

    def connector(self, page_size: int | None = None) -> SourceConnector:
        return self.make({"connectionString": self.dsn})

    def seed(
        self, count: int, start: datetime, step: timedelta, nulls: int = 0
    ) -> tuple[list[str], list[str]]:
        import psycopg

        keys = [f"r{i:05d}" for i in range(count)]
        null_keys = [f"n{i:05d}" for i in range(nulls)]
        rows = [(k, start + i * step) for i, k in enumerate(keys)] + [(k, None) for k in null_keys]
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute("CREATE TABLE contacts (id text PRIMARY KEY, updated_at timestamptz)")
            with db.cursor() as cursor:
                cursor.executemany("INSERT INTO contacts VALUES (%s, %s)", rows)
        return keys, null_keys

    def refusing(self) -> SourceConnector:
        from tests.fakes.postgres import RefusingServer

        server = RefusingServer()
        self._cleanups.append(server.close)
        auth = {
            "server": "127.0.0.1",
            "port": server.port,
            "database": "crm",
            "username": "hwtest",
            "password": "not-the-password",
            "sslMode": "disable",
        }
        return self.make(auth)

    def unavailable(self) -> SourceConnector:
        return self.make({"connectionString": f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x"})


# Every folder of connectors/registry.py's SOURCES has its stand-in here (the contract checks it).
STAND_INS: dict[str, type[StandIn]] = {
    "salesforce": SalesforceStandIn,
    "dynamics": DynamicsStandIn,
    "files": FilesStandIn,
    "postgresql": PostgresStandIn,
}


# Folders whose connectors also read another backend, with its stand-in: the contract runs on both.
VARIANTS: dict[str, dict[str, type[StandIn]]] = {"files": {"s3": FilesOnS3StandIn}}


def stand_in_for(
    entry: SourceEntry, request: pytest.FixtureRequest, tmp_path: Path, variant: str = ""
) -> Iterator[StandIn]:
    """The stand-in of ``entry``'s folder (or of its ``variant``), closed afterwards; fails when the
    folder has none."""
    if entry.folder not in STAND_INS:
        pytest.fail(
            f"connectors/{entry.folder} is registered but has no stand-in in tests/connectors/standins.py"
        )
    kind = VARIANTS[entry.folder][variant] if variant else STAND_INS[entry.folder]
    stand_in = kind(entry, request, tmp_path)
    try:
        yield stand_in
    finally:
        stand_in.close()

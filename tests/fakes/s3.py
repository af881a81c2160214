"""An S3-protocol server on 127.0.0.1: moto's server mode (werkzeug, in a thread of the test process).
The lake's clients (pyarrow's S3FileSystem through pyiceberg) talk HTTP to it, unpatched.

Its buckets are kept in moto's process-wide state, so :meth:`S3Server.stop` and :meth:`S3Server.start`
model an outage of the store and its return, on the same port, with the objects still there.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support import free_port

ACCESS_KEY = "headwater-test"
SECRET_KEY = "headwater-test-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    port: int = field(default_factory=free_port)
    _server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def filesystem(self) -> Any:
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
            connect_timeout=2,
            request_timeout=5,
        )

    def new_bucket(self) -> str:
        """A new empty bucket (one per test keeps tests apart)."""
        name = f"lake-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        from pyarrow import fs

        found = self.filesystem().get_file_info(fs.FileSelector(bucket, recursive=True))
        return sorted(f.path for f in found if f.type == fs.FileType.File)

    def settings(self, bucket: str, prefix: str = "lake") -> dict[str, object]:
        """The HEADWATER_* settings of a lake in ``bucket`` on this server."""
        return {
            "lake_url": f"s3://{bucket}/{prefix}",
            "s3_endpoint": self.endpoint,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
            "s3_path_style": True,
        }

"""One typed settings object, read from ``HEADWATER_*`` environment variables.

Every field documents itself where it is declared. Values that would weaken security are refused
unless ``HEADWATER_ENVIRONMENT=development``; see :meth:`Settings.refuse_insecure_values`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_WILDCARDS = {"*", "0.0.0.0/0", "::/0", "0.0.0.0", "::"}
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# Metadata endpoints outside link-local (Alibaba Cloud, AWS over IPv6): never reachable whatever the list
# says (connectors/outbound.py), so an entry naming one is a mistake worth refusing.
_METADATA = (ipaddress.ip_network("100.100.100.200/32"), ipaddress.ip_network("fd00:ec2::254/128"))


class Settings(BaseSettings):
    """Headwater's configuration. The CLI and the server read the same object."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore")

    environment: Literal["production", "development"] = Field(
        "production",
        description="'development' relaxes the refusals of insecure values (loopback outbound hosts).",
    )
    home: Path = Field(
        Path("./.headwater"),
        description="Folder for everything Headwater keeps: metadata DB, warehouse, logs, generated keys.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store. Default: SQLite file 'metadata.db' in the home. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port the HTTP server listens on.")
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate (chain) the HTTP server presents: with HEADWATER_TLS_KEY_FILE, the "
        "server speaks HTTPS only, and its default base URL is https://host:port. Salesforce's clients "
        "(the Data Cloud connector) reach their instance over HTTPS only.",
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of HEADWATER_TLS_CERT_FILE (unencrypted); both or neither."
    )
    public_url: str | None = Field(
        None,
        description="Base URL clients use to reach this server (inlet URLs). Default http://host:port "
        "(https:// with HEADWATER_TLS_CERT_FILE).",
    )
    encryption_key: str | None = Field(
        None,
        description="Base64url 32-byte key that encrypts secrets at rest. Default: generated into "
        "HOME/keys/encryption.key on first run. Losing it makes stored secrets unreadable.",
    )
    token_signing_key: str | None = Field(
        None,
        description="Secret (>= 32 bytes) that signs access tokens. Default: generated into "
        "HOME/keys/token-signing.key on first run.",
    )
    token_lifetime_seconds: int = Field(
        86400, ge=60, description="Lifetime of access tokens from /ims/token/v3 (reference: 24 hours)."
    )
    outbound_allow: str = Field(
        "",
        description="Comma list of hosts or CIDRs that connectors and destinations may reach over plain HTTP "
        "or at private addresses. Empty by default.",
    )
    outbound_ca_file: str | None = Field(
        None,
        description="PEM bundle of extra certificate authorities trusted for outbound TLS (destinations, "
        "token endpoints), besides the system store: for destinations behind a private CA.",
    )
    default_org_name: str = Field("Default organization", description="Name of the bootstrap organization.")
    default_tenant_id: str = Field(
        "headwater",
        pattern=r"^[a-z][a-z0-9]{2,39}$",
        description="Tenant id of the bootstrap organization (tenant field groups live under _{tenantId}).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")
    embedded_worker: bool = Field(
        True,
        description="Run flows in the server process. Set false when separate `headwater worker`s run them.",
    )
    run_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a worker holds a run (or a batch it promotes) without renewing; after that "
        "another takes it over.",
    )
    worker_poll_seconds: float = Field(
        0.5,
        gt=0,
        description="How often an idle worker looks for runs queued by other processes, at first: while "
        "none come it looks less often, down to every 4x this. Runs queued in its own process start at once.",
    )
    run_partition_bytes: int = Field(
        0,
        ge=0,
        description="A batch run over a files source is split into partitions of about this many bytes of "
        "files (whole files, in path order), read and mapped by whichever workers claim them, and "
        "committed once; a source that fits one partition runs unsplit. 0 (the default) never splits: "
        "on one machine an unsplit run is faster (docs/benchmarks.md); set it (e.g. 268435456) where "
        "workers run on several machines.",
    )
    run_partition_min_files: int = Field(
        2,
        ge=2,
        description="A batch run is split into partitions only when its source lists at least this many "
        "files (a single file is never split).",
    )
    partition_engine: Literal["queue", "ray"] = Field(
        "queue",
        description="What executes the partitions of a split run: `queue` (the default), every `headwater "
        "worker` claims them from the metadata store; `ray`, the run's owner submits one Ray task per "
        "partition to the Ray cluster of HEADWATER_RAY_ADDRESS (needs the `ray` extra: `pip install "
        "'headwater[ray]'`). Either way a partition is claimed under a lease and the run commits once.",
    )
    ray_address: str = Field(
        "",
        description="The Ray cluster of HEADWATER_PARTITION_ENGINE=ray (`host:port` of its head, as `ray "
        "start --head` prints it). Empty (the default): each worker starts a local Ray cluster of its own "
        "machine's cores, bound to loopback. Every Ray node must run with the workers' HEADWATER_* "
        "environment (it reads the metadata store and the lake as a worker does).",
    )
    identity_graph_max_identities: int = Field(
        50,
        ge=2,
        le=10_000,
        description="The identity graph's limit: identities per cluster (AEP's graph limit is 50). A link"
        " that would make a cluster larger is refused and recorded, so a shared device id or a test email"
        " does not merge many people into one profile.",
    )
    profile_chunk_rows: int = Field(
        50_000,
        ge=100,
        description="Rows per profile-store transaction when a dataset is first read into the profiles or"
        " rebuilt after a rewrite: on SQLite each holds the one write lock, shared with the API's writes.",
    )
    stream_log: str = Field(
        "local",
        description="Where acknowledged streaming messages are kept until committed to datasets: 'local' (a "
        "log in HOME/streams, synced to disk before each acknowledgement) or a NATS JetStream URL "
        "(nats://host:4222) for several servers.",
    )
    stream_flush_seconds: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="How often (at most) a continuous streaming flow commits to its dataset's table.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="How long a client has to send a request's line and headers once it starts one (or "
        "opens a connection); past it the server answers 408 and closes the connection.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How long the server waits for the next bytes of a request body it is reading; past it "
        "the request is answered 408 and the connection closed.",
    )
    files_roots: str = Field(
        "",
        description="Folders of the server, besides each sandbox's HOME/files/{org id}/{sandbox name}/ (in "
        "the lake's bucket with HEADWATER_LAKE_URL on S3: _files/{org id}/{sandbox name}/), that "
        "Local Folder connections of every organization and sandbox may read: absolute paths separated by "
        "os.pathsep (':' on POSIX), like PATH. Empty by default. /proc, /sys, /dev and Headwater's home "
        "(other than the sandbox's own files folder) are never readable, whatever this says.",
    )
    outbound_allow_metadata_database: bool = Field(
        False,
        description="Let PostgreSQL source connections read Headwater's own metadata database (the server "
        "and database of HEADWATER_DATABASE_URL). Off by default: it holds password hashes, sealed secrets "
        "and every organization's configuration.",
    )
    query_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest a query over datasets (`headwater datasets query`) runs."
    )
    query_memory_mb: int = Field(
        1024, ge=64, le=1_048_576, description="Memory one query over datasets may use (DuckDB's limit)."
    )
    query_threads: int = Field(2, ge=1, le=256, description="Threads one query over datasets may use.")
    query_max_rows: int = Field(
        100_000, ge=1, description="Most rows a query over datasets returns; the rest are cut off, saying so."
    )
    query_max_result_mb: int = Field(
        256, ge=1, description="Most Arrow data (MB) a query over datasets returns; the rest is cut off."
    )
    query_results_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="How long the rows of a Query Service SELECT stay readable at "
        "/data/foundation/query/queries/{id}/results before they are deleted.",
    )
    pgwire_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of Query Service's PostgreSQL wire endpoint (psql, psycopg, BI tools; the password "
        "is an access token). Unset: the endpoint is off. It starts and stops with `headwater serve`.",
    )
    pgwire_host: str = Field(
        "127.0.0.1",
        description="Address the PostgreSQL wire endpoint binds to. Beyond loopback it needs a certificate "
        "(HEADWATER_PGWIRE_TLS_CERT_FILE) outside development: the password is an access token.",
    )
    pgwire_tls_cert_file: str | None = Field(
        None,
        description="PEM certificate (chain) of the PostgreSQL wire endpoint. With its key set, clients may "
        "use sslmode=require; plaintext is then accepted from loopback peers only.",
    )
    pgwire_tls_key_file: str | None = Field(
        None, description="PEM private key of HEADWATER_PGWIRE_TLS_CERT_FILE."
    )
    data360_query_batch_rows: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Rows per batch of the Data Cloud Query API (POST /api/v2/query): a result with more "
        "rows answers a nextBatchId for the next batch (GET /api/v2/query/{nextBatchId}).",
    )
    umask: str = Field(
        "077",
        pattern=r"^0?[0-7]{3}$",
        description="File mode creation mask (octal) of every Headwater process: 077 makes everything in "
        "the home readable by its owner only; 027 lets the owner's group read it (for an operator who "
        "shares the lake with a group). Bits for others are always masked.",
    )

    lake_url: str | None = Field(
        None,
        description="Where the lake (Iceberg data and metadata files) lives: s3://bucket/prefix on "
        "S3-compatible object storage, through pyiceberg's and pyarrow's S3 file IO. Unset: the folder "
        "HOME/warehouse. Row errors, query results, batch-ingestion staging, the sandboxes' files "
        "folders (uploads included: _files/), lookback keys and bulk-ingest job files go under the same "
        "prefix. Set it before the first dataset is written: existing tables are not moved.",
    )
    s3_endpoint: str | None = Field(
        None,
        description="Base URL of a self-hosted S3-compatible store (http(s)://host:port: MinIO, Ceph, "
        "Garage). Unset: AWS S3. Plain http beyond loopback only in development.",
    )
    s3_region: str = Field("us-east-1", description="Region of the lake's bucket.")
    s3_access_key_id: str | None = Field(
        None,
        description="Access key id for the lake's bucket. Unset (with the secret): the AWS SDK's default "
        "credentials (AWS_* environment, ~/.aws, instance profile).",
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="Secret access key of HEADWATER_S3_ACCESS_KEY_ID. Never logged or shown."
    )
    s3_reader_access_key_id: str | None = Field(
        None,
        description="Access key id the Iceberg REST catalog vends to outside engines (a client sending "
        "X-Iceberg-Access-Delegation: vended-credentials) so they read the lake's files. Give it read "
        "access (s3:GetObject, s3:ListBucket) to the lake's prefix only. Unset: no key is vended; engines "
        "use their own credentials. Never the lake's own key (refused).",
    )
    s3_reader_secret_access_key: SecretStr | None = Field(
        None,
        description="Secret access key of HEADWATER_S3_READER_ACCESS_KEY_ID. Never logged; handed only to "
        "authenticated catalog clients that may read the sandbox.",
    )
    s3_path_style: bool = Field(
        False,
        description="Path-style addressing (endpoint/bucket/key) instead of virtual-hosted "
        "(bucket.endpoint/key): what most self-hosted stores need.",
    )

    @field_validator("files_roots")
    @classmethod
    def _absolute_files_roots(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(os.pathsep)):
            if entry and ("\0" in entry or not Path(entry).expanduser().is_absolute()):
                raise ValueError(f"HEADWATER_FILES_ROOTS entry {entry!r} must be an absolute folder")
        return value

    trusted_proxies: str = Field(
        "",
        description="Comma list of addresses or CIDRs of the reverse proxies in front of Headwater. From a "
        "peer in this list, the client address is the right-most X-Forwarded-For entry that is not a trusted "
        "proxy (sign-in throttling, audit, external client apps' IP ranges). Empty by default: the client is "
        "the TCP peer and no forwarding header is believed.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if entry and _as_network(entry) is None:
                raise ValueError(f"HEADWATER_TRUSTED_PROXIES entry {entry!r} must be an IP address or CIDR")
        return value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def refuse_insecure_values(self) -> Settings:
        """Refuse settings that weaken security unless running in development."""
        problems: list[str] = []
        for entry in self.outbound_allow_entries:
            if entry in _WILDCARDS:
                problems.append(f"HEADWATER_OUTBOUND_ALLOW may not contain the wildcard {entry!r}")
                continue
            net = _as_network(entry)
            if net is not None and _overlaps(net, _LINK_LOCAL):
                problems.append(
                    f"HEADWATER_OUTBOUND_ALLOW entry {entry!r} covers the link-local/metadata range"
                )
            if net is not None and _inside(net, _METADATA):
                problems.append(f"HEADWATER_OUTBOUND_ALLOW entry {entry!r} is a cloud metadata address")
            if self.environment != "development" and net is not None and _overlaps(net, _LOOPBACK):
                problems.append(
                    f"HEADWATER_OUTBOUND_ALLOW entry {entry!r} covers loopback (development only)"
                )
        for name in ("encryption_key", "token_signing_key"):
            value = getattr(self, name)
            if value is not None and len(value) < 32:
                problems.append(f"HEADWATER_{name.upper()} must be at least 32 characters")
        if self.environment != "development" and self.token_lifetime_seconds > 86400:
            problems.append("HEADWATER_TOKEN_LIFETIME_SECONDS may not exceed 86400 outside development")
        problems.extend(self._pgwire_problems())
        problems.extend(self._lake_problems())
        if self.partition_engine == "ray" and importlib.util.find_spec("ray") is None:
            problems.append(
                "HEADWATER_PARTITION_ENGINE=ray needs the ray extra: pip install 'headwater[ray]'"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append(
                "HEADWATER_TLS_CERT_FILE and HEADWATER_TLS_KEY_FILE go together: set both or neither"
            )
        for name in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                problems.append(f"HEADWATER_{name.upper()} {str(path)!r} is not a readable file")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _pgwire_problems(self) -> list[str]:
        if (self.pgwire_tls_cert_file is None) != (self.pgwire_tls_key_file is None):
            return ["HEADWATER_PGWIRE_TLS_CERT_FILE and HEADWATER_PGWIRE_TLS_KEY_FILE go together"]
        host = _as_network(self.pgwire_host) if self.pgwire_host != "localhost" else _LOOPBACK[0]
        loopback = host is not None and _inside(host, _LOOPBACK)
        if self.pgwire_port is not None and self.pgwire_port == self.port:
            return ["HEADWATER_PGWIRE_PORT must differ from HEADWATER_PORT (the HTTP server's)"]
        plaintext = self.pgwire_port is not None and not loopback and not self.pgwire_tls_cert_file
        if plaintext and self.environment != "development":
            return [
                f"HEADWATER_PGWIRE_HOST {self.pgwire_host!r} is beyond loopback: set "
                "HEADWATER_PGWIRE_TLS_CERT_FILE and _KEY_FILE (passwords are access tokens)"
            ]
        return []

    def _lake_problems(self) -> list[str]:
        s3 = (
            "s3_endpoint",
            "s3_access_key_id",
            "s3_secret_access_key",
            "s3_reader_access_key_id",
            "s3_reader_secret_access_key",
        )
        if self.lake_url is None:
            named = [f"HEADWATER_{n.upper()}" for n in s3 if getattr(self, n) is not None]
            return [f"{', '.join(named)} set without HEADWATER_LAKE_URL"] if named else []
        problems = [p for p in (_lake_url_problem(self.lake_url),) if p]
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            problems.append(
                "HEADWATER_S3_ACCESS_KEY_ID and HEADWATER_S3_SECRET_ACCESS_KEY go together: set both "
                "or neither"
            )
        if self.s3_endpoint is not None:
            problems.extend(_endpoint_problems(self.s3_endpoint, self.environment))
        return problems + self._reader_key_problems()

    def _reader_key_problems(self) -> list[str]:
        if (self.s3_reader_access_key_id is None) != (self.s3_reader_secret_access_key is None):
            return [
                "HEADWATER_S3_READER_ACCESS_KEY_ID and HEADWATER_S3_READER_SECRET_ACCESS_KEY go together: "
                "set both or neither"
            ]
        if self.s3_reader_access_key_id is not None and self.s3_reader_access_key_id == self.s3_access_key_id:
            return [
                "HEADWATER_S3_READER_ACCESS_KEY_ID is the lake's own (writing) key: the catalog would hand "
                "it to every reader. Make a key that can only read the lake's prefix"
            ]
        return []

    @cached_property
    def files_roots_entries(self) -> list[str]:
        """The folders of ``files_roots``, as written (``~`` expanded)."""
        return [str(Path(e.strip()).expanduser()) for e in self.files_roots.split(os.pathsep) if e.strip()]

    @cached_property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        """The networks of ``trusted_proxies``."""
        found = (_as_network(e.strip()) for e in self.trusted_proxies.split(",") if e.strip())
        return tuple(n for n in found if n is not None)

    @cached_property
    def outbound_allow_entries(self) -> list[str]:
        return [e.strip().lower() for e in self.outbound_allow.split(",") if e.strip()]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'metadata.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def streams_dir(self) -> Path:
        return self.home / "streams"

    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls_enabled else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")

    @property
    def tls_enabled(self) -> bool:
        """Whether the HTTP server speaks HTTPS (a certificate and its key are set)."""
        return self.tls_cert_file is not None and self.tls_key_file is not None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _as_network(entry: str) -> Network | None:
    """The network an allow-list entry names; IPv4-mapped IPv6 (::ffff:a.b.c.d) counts as IPv4."""
    if entry == "localhost":
        return ipaddress.ip_network("127.0.0.1/32")
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
        mapped = net.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{mapped}/{max(0, net.prefixlen - 96)}", strict=False)
    return net


def _lake_url_problem(url: str) -> str | None:
    """s3://bucket[/prefix], the bucket named by S3's rules (lowercase, 3-63 characters)."""
    import re

    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9!_.*'()/-]*)?", url)
    if match is None or "//" in (match.group(2) or ""):
        return f"HEADWATER_LAKE_URL {url!r} must be s3://bucket or s3://bucket/prefix"
    return None


def _endpoint_problems(endpoint: str, environment: str) -> list[str]:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return [f"HEADWATER_S3_ENDPOINT {endpoint!r} must be http(s)://host[:port]"]
    host = _as_network(parts.hostname)
    loopback = host is not None and _inside(host, _LOOPBACK)
    if parts.scheme == "http" and not loopback and environment != "development":
        return [f"HEADWATER_S3_ENDPOINT {endpoint!r} is plain http beyond loopback (development only)"]
    return []


def _overlaps(net: Network, ranges: tuple[Network, ...]) -> bool:
    return any(net.version == r.version and net.overlaps(r) for r in ranges)


def _inside(net: Network, ranges: tuple[Network, ...]) -> bool:
    return any(net.version == r.version and net.subnet_of(r) for r in ranges)  # type: ignore[arg-type]


def load_settings() -> Settings:
    """Read the settings from the environment (and fail with a readable message)."""
    return Settings()

"""Streaming logs: local (default) and NATS JetStream. See base.py for the contract."""

from __future__ import annotations

from headwater.stores.log.base import LogRecord, StreamLog

__all__ = ["LogRecord", "StreamLog", "open_log"]


def open_log(url: str, directory: str) -> StreamLog:
    """The log ``HEADWATER_STREAM_LOG`` names: 'local' (files in ``directory``) or nats://host:port."""
    if url.startswith("nats://") or url.startswith("tls://"):
        from headwater.stores.log.jetstream import JetStreamLog

        return JetStreamLog(url)
    if url != "local":
        raise ValueError(f"HEADWATER_STREAM_LOG must be 'local' or a nats:// URL, not {url!r}")
    from headwater.stores.log.local import LocalLog

    return LocalLog(directory)

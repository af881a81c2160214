"""Which subjects of the JetStream stream gained records: the JetStream side of ``StreamLog.appended``.

The stream's last sequence is one small request; when it moved, a second one returns each subject's
message count, compared with the counts in the caller's token. The answer is shared by every waiter of
the process for :data:`FRESH_SECONDS`, so two supervisors polling cost one request per poll, not two. A
last sequence that moved while no count changed (a purge and as many appends) says "any may have".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.js.manager import JetStreamManager

FRESH_SECONDS = 0.045  # just under a waiter's poll (jetstream.WAKE_POLL_SECONDS)

Token = tuple[int, dict[str, int]]


class StreamState:
    """The last sequence and per-subject counts of one JetStream stream, as last fetched."""

    def __init__(self, stream_name: str, subject_prefix: str) -> None:
        self.stream_name = stream_name
        self.prefix = subject_prefix
        self._fetched = float("-inf")
        self._last: int | None = None
        self._counts: dict[str, int] = {}

    async def changes(self, jsm: JetStreamManager, token: object) -> tuple[object, frozenset[str] | None]:
        """(a new token, the log streams whose subjects' counts differ from ``token``'s, or None)."""
        from nats.js.errors import NotFoundError

        try:
            await self._refresh(jsm)
        except NotFoundError:  # no JetStream stream (yet)
            self._fetched, self._last = float("-inf"), None
            return None, None
        last, counts = self._last or 0, self._counts
        if not isinstance(token, tuple):
            return (last, counts), None
        if token[0] == last:
            return token, frozenset()
        cut = len(self.prefix) + 1
        changed = frozenset(s[cut:] for s, n in counts.items() if token[1].get(s) != n)
        return (last, counts), changed or None

    async def _refresh(self, jsm: JetStreamManager) -> None:
        if time.monotonic() - self._fetched < FRESH_SECONDS:
            return
        last = (await jsm.stream_info(self.stream_name)).state.last_seq
        if last != self._last:
            info = await jsm.stream_info(self.stream_name, subjects_filter=f"{self.prefix}.>")
            last, self._counts = info.state.last_seq, dict(info.state.subjects or {})
        self._fetched, self._last = time.monotonic(), last

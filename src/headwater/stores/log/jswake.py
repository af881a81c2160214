"""Which subjects of the JetStream stream gained records, and waking the waiters when one does: the
JetStream side of ``StreamLog.appended`` and ``StreamLog.wait_appended``.

:class:`StreamState`: the stream's last sequence is one small request; when it moved, a second one
returns each subject's message count, compared with the counts in the caller's token. The answer is
shared by every waiter of the process for :data:`FRESH_SECONDS`. A last sequence that moved while no
count changed (a purge and as many appends) says "any may have".

:class:`AppendWake`: a waiter does not poll. It arms one core NATS subscription on the stream's subjects
(``<prefix>.>``), shared by every waiter of the process, then checks the state, then waits for the
subscription's first message. The server drops the subscription after that message (``UNSUB`` with a
limit of 1), so a busy stream sends a process one record per wait at most, not every record; an idle
one sends nothing and is asked nothing. The subscription is registered before the check, so a record
published after the check wakes the waiter. A record reaches the subscription as it is published and
the stream's state a moment later, once stored: after a wake-up, the state is asked again a few times
(:data:`SETTLE_SECONDS`) before the waiter waits on.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.manager import JetStreamManager

FRESH_SECONDS = 0.045  # what one waiter fetched serves the others this long
SETTLE_SECONDS = (0.0, 0.005, 0.02, 0.05)  # pauses before each look at the state after a wake-up

Token = tuple[int, dict[str, int]]


class StreamState:
    """The last sequence and per-subject counts of one JetStream stream, as last fetched."""

    def __init__(self, stream_name: str, subject_prefix: str) -> None:
        self.stream_name = stream_name
        self.prefix = subject_prefix
        self._asked = float("-inf")  # when the state kept was asked for (monotonic)
        self._last: int | None = None
        self._counts: dict[str, int] = {}

    def stale(self) -> None:
        """The stream changed: the next :meth:`changes` asks the server."""
        self._asked = float("-inf")

    async def changes(
        self, jsm: JetStreamManager, token: object, since: float = float("-inf")
    ) -> tuple[object, frozenset[str] | None]:
        """(a new token, the log streams whose subjects' counts differ from ``token``'s, or None), from
        a state asked for at ``since`` (monotonic) or later."""
        from nats.js.errors import NotFoundError

        try:
            await self._refresh(jsm, since)
        except NotFoundError:  # no JetStream stream (yet)
            self._asked, self._last = float("-inf"), None
            return None, None
        last, counts = self._last or 0, self._counts
        if not isinstance(token, tuple):
            return (last, counts), None
        if token[0] == last:
            return token, frozenset()
        cut = len(self.prefix) + 1
        changed = frozenset(s[cut:] for s, n in counts.items() if token[1].get(s) != n)
        return (last, counts), changed or None

    async def _refresh(self, jsm: JetStreamManager, since: float) -> None:
        asked = time.monotonic()
        if self._asked >= since and asked - self._asked < FRESH_SECONDS:
            return
        last = (await jsm.stream_info(self.stream_name)).state.last_seq
        if last != self._last:
            info = await jsm.stream_info(self.stream_name, subjects_filter=f"{self.prefix}.>")
            last, self._counts = info.state.last_seq, dict(info.state.subjects or {})
        self._asked, self._last = asked, last


class AppendWake:
    """The waiters of one process, woken by the first record published after they armed (see the
    module's docstring). Runs on the log's event loop."""

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self._armed: asyncio.Future[Msg] | None = None
        self._armed_at = float("-inf")  # when the subscription was registered (monotonic)

    async def wait(
        self, nc: Client, jsm: JetStreamManager, token: object, timeout: float
    ) -> tuple[object, frozenset[str] | None]:
        """``state.changes(token)`` once a stream gained records, or after ``timeout`` seconds."""
        woken = await self._arm(nc)
        token, changed = await self.state.changes(jsm, token, since=self._armed_at)
        if changed is None or changed or timeout <= 0:
            return token, changed
        await asyncio.wait([woken], timeout=timeout)
        if not woken.done():
            return token, changed
        for pause in SETTLE_SECONDS:
            await asyncio.sleep(pause)
            self.state.stale()
            token, changed = await self.state.changes(jsm, token)
            if changed is None or changed:
                break
        return token, changed

    async def _arm(self, nc: Client) -> asyncio.Future[Msg]:
        """The subscription's future: the one armed already, unless its message came."""
        if self._armed is None or self._armed.done():
            future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
            self._armed_at = time.monotonic()  # a state asked for from now on comes after the SUB
            sub = await nc.subscribe(f"{self.state.prefix}.>", future=future, max_msgs=1)
            await sub.unsubscribe(limit=1)  # the server forgets it after one message
            self._armed = future
        return self._armed

"""Named crash points for the crash tests: ``HEADWATER_FAULT_POINT=name[:n]`` makes the process kill
itself with SIGKILL the n-th time (default first) it reaches ``crash_point(name)``. Unset in production:
the check is one dictionary lookup."""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("HEADWATER_FAULT_POINT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_remaining = int(_COUNT) if _COUNT.isdigit() else 1


def crash_point(name: str) -> None:
    global _remaining
    if _NAME and name == _NAME:
        _remaining -= 1
        if _remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

"""``headwater worker`` with every thread under cProfile, for bench/profile_stream.py ``--profile DIR``.

The worker's work happens in threads (the micro-batchers, the profile projector), which ``python -m
cProfile`` does not see: this starts a profiler in each thread as it starts (``threading.setprofile``)
and, when the worker stops (SIGTERM), writes all of them added together to ``DIR/worker-<pid>.prof``
(read it with ``python -m pstats``). py-spy, when installed, costs less and sees native frames.

    python bench/profiled.py DIR      (with the environment of ``headwater worker``)
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start(_frame: FrameType, _event: str, _arg: Any) -> None:
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()  # replaces this function as the thread's profiler

    threading.setprofile(start)
    main_thread = cProfile.Profile()
    profilers.append(main_thread)
    main_thread.enable()
    from headwater.cli import app

    try:
        app(["worker"], standalone_mode=False)
    finally:
        main_thread.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        stats: pstats.Stats | None = None
        for profiler in profilers:
            try:
                stats = pstats.Stats(profiler) if stats is None else stats.add(profiler)
            except TypeError:  # a thread that recorded nothing
                continue
        if stats is not None:
            stats.dump_stats(out / f"worker-{os.getpid()}.prof")


if __name__ == "__main__":
    main()

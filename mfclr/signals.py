"""Stopping a run: Ctrl-C (SIGINT) and SIGTERM (`kill`, `ray job stop`, a batch scheduler) end
the same way, at a point where what was written is whole.

SIGINT raises KeyboardInterrupt in the main thread (also when a non-interactive shell started
the process with SIGINT ignored); SIGTERM is handed on as a SIGINT, so whatever handles Ctrl-C
handles it too (Tune saving its experiment state, the run folder recording `interrupted`).
Ray and Tune install handlers of their own and leave them behind: `install` runs again after
`ray.init` and after each Tune fit, so a Ctrl-C in the final probe is not swallowed.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

_received: list[str] = []


def _on_int(signum: int, frame: FrameType | None) -> None:
    _received.append("SIGINT")
    raise KeyboardInterrupt


def _on_term(signum: int, frame: FrameType | None) -> None:
    _received.append("SIGTERM")
    os.kill(os.getpid(), signal.SIGINT)


def install() -> None:
    """Our SIGINT and SIGTERM handlers (the main thread only: Python allows no other)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_int)
        signal.signal(signal.SIGTERM, _on_term)


def received() -> str:
    """The name of the signal that stopped us ("SIGTERM" wins: it arrives as a SIGINT too)."""
    if "SIGTERM" in _received:
        return "SIGTERM"
    return _received[-1] if _received else "Ctrl-C"

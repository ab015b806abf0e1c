"""Signals before the event loop exists (kept light: imported before the web stack)."""

from __future__ import annotations

import signal
import threading


class EarlyStop:
    """SIGTERM / SIGINT before the event loop takes them over: remembered, not fatal.

    Installed first thing by `prober run`, so a signal during imports, config loading or
    the database check ends the run cleanly (exit 0) instead of killing it half-started."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.requested.set())

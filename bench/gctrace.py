"""`prober` with the garbage collector's pauses logged: `python bench/gctrace.py run -c FILE`.

Used by `bench/run.py --gc-trace` to tell whether the event loop's rare ~200 ms stalls are
full (generation 2) collections. Every collection of at least GCTRACE_MIN_MS milliseconds
(default 10) is written to stderr as

    gctrace gen=2 ms=231.4 collected=0 at=1795327230.071

The prober itself is unchanged: this only registers a gc callback and calls its CLI.
Two experiments, off unless their environment variable is set, answer "would it help?"
without touching prober/:

- PROBER_BENCH_GC_FREEZE=SECONDS: call gc.freeze() that many seconds after start (after
  the config, the monitors and the scheduler's jobs exist), so full collections no longer
  walk the long-lived heap;
- PROBER_BENCH_UVLOOP=1: run the event loop on uvloop (must be importable).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

MIN_MS = float(os.environ.get("GCTRACE_MIN_MS", "10"))
_started = [0.0]


def _callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    if ms >= MIN_MS:
        sys.stderr.write(
            f"gctrace gen={info['generation']} ms={ms:.1f} collected={info['collected']}"
            f" at={time.time():.3f}\n"
        )


def _freeze_later(seconds: float) -> None:
    def freeze() -> None:
        gc.collect()
        gc.freeze()
        sys.stderr.write(f"gctrace froze {gc.get_freeze_count()} objects at={time.time():.3f}\n")

    timer = threading.Timer(seconds, freeze)
    timer.daemon = True
    timer.start()


def main() -> int:
    gc.callbacks.append(_callback)
    if freeze_after := os.environ.get("PROBER_BENCH_GC_FREEZE"):
        _freeze_later(float(freeze_after))
    if os.environ.get("PROBER_BENCH_UVLOOP"):
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        sys.stderr.write("gctrace event loop: uvloop\n")
    from prober.cli import main as prober_main

    return prober_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

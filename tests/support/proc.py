"""`prober run` as a user starts it, in a subprocess, with its log read as it comes: tests
wait for what the log says (readiness), never for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from tests.support.net import free_port


class ProberRun:
    def __init__(
        self,
        args: Sequence[str],
        cwd: pathlib.Path,
        env: dict[str, str] | None = None,
        rlimits: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        """`rlimits`: resource limits (soft, hard) set in the child before it runs, e.g.
        `{resource.RLIMIT_NOFILE: (256, 256)}`; its children inherit them."""

        def limit() -> None:
            for which, values in (rlimits or {}).items():
                resource.setrlimit(which, values)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prober", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env if env is not None else {**os.environ},
            preexec_fn=limit if rlimits else None,
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, text: str, within: float = 30.0, after: int = 0) -> int:
        """Until a log line from index `after` on contains `text`; returns that line's index."""
        deadline = time.monotonic() + within
        with self._changed:
            while True:
                for i in range(after, len(self._lines)):
                    if text in self._lines[i]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {text!r} in the log:\n{''.join(self._lines)}")
                self._changed.wait(min(left, 0.5))

    def lines(self) -> int:
        with self._changed:
            return len(self._lines)

    def stop(self, sig: int = signal.SIGTERM, within: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(within)
        self._reader.join(within)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


def until(predicate: Callable[[], object], within: float = 30.0, every: float = 0.05) -> None:
    """Poll `predicate` until it is true (readiness), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {predicate}")
        time.sleep(every)


async def until_async(predicate: Callable[[], object], within: float = 30.0) -> None:
    """`until` for a test on the event loop: polls without blocking the loop (a server of
    the test's own may have to answer meanwhile)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s: {predicate}")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def http_target(root: pathlib.Path) -> Iterator[int]:
    """A healthy HTTP target on loopback serving `root/ok`, in its own process (nothing a
    test does to the prober can slow it); yields its port once it accepts connections."""
    root.mkdir()
    (root / "ok").write_text("ok\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: connects(port), within=20)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True

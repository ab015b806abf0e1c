"""`prober run` keeps its web process alive: starts it, restarts it when it dies (logged,
with backoff), forwards a reload, stops it on the way out.

The listening sockets belong to the probing process and are inherited by each web process,
so a restart refuses no visitor (nor scraper): connections wait in the kernel's backlog meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import sys
import time
from collections.abc import Callable

from prober.runtime.web import Launch

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0  # seconds before a restart, doubling while it keeps dying
MAX_DELAY = 30.0
STEADY = 60.0  # a process that lived this long starts the backoff afresh
STOP_GRACE = 10.0  # seconds for the web process to finish after SIGTERM


class WebProcess:
    def __init__(self, launch: Callable[[], Launch]) -> None:
        self._launch = launch
        self._proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.ready = asyncio.Event()  # set when the first web process serves

    def serving(self, pid: int) -> None:
        """The web process `pid` said it serves (prober.runtime.control's /ready)."""
        log.info("status page ready pid=%d", pid)
        self.ready.set()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return None if proc is None or proc.returncode is not None else proc.pid

    def reload(self) -> None:
        """The probing process took a new config: the web process asks for it."""
        if self.pid is not None and self._proc is not None:
            self._proc.send_signal(signal.SIGHUP)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: keep one web process running."""
        delay = FIRST_DELAY
        while not stop.is_set():
            began = time.monotonic()
            proc = await self._spawn()
            exited = asyncio.ensure_future(proc.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not stop.is_set() and proc.returncode == 0:
                # It exits 0 only on SIGTERM: most likely everyone is being stopped (a
                # terminal's Ctrl-C, systemd's control group); give our own signal a moment.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            if stop.is_set():
                await self._terminate(proc, exited)
                return
            if time.monotonic() - began > STEADY:
                delay = FIRST_DELAY
            log.error(
                "status page process pid=%d exited with code %s; restarting in %.0f s",
                proc.pid,
                proc.returncode,
                delay,
            )
            self._close(proc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(MAX_DELAY, delay * 2)

    async def _spawn(self) -> asyncio.subprocess.Process:
        launch = self._launch()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "prober.runtime.web",
            stdin=asyncio.subprocess.PIPE,
            pass_fds=tuple(fd for fd in (launch.listen_fd, launch.metrics_fd) if fd is not None),
        )
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(launch))  # stdin then stays open: see runtime.web
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        self._proc = proc
        self.starts += 1
        return proc

    async def _terminate(
        self, proc: asyncio.subprocess.Process, exited: asyncio.Future[int]
    ) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), STOP_GRACE)
            except TimeoutError:
                log.warning("status page process pid=%d did not stop; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await exited
        self._close(proc)

    @staticmethod
    def _close(proc: asyncio.subprocess.Process) -> None:
        if proc.stdin is not None:
            proc.stdin.close()

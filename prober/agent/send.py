"""The agent's queue, drained to its hub: in order, in batches of at most wire.MAX_RESULTS,
as fast as the hub takes them; a batch leaves the queue only once the hub answered 200.

Any other answer keeps the batch queued and is retried with backoff (from `retry`,
doubling up to `retry_max`); prober.agent.link logs each kind of trouble once. A fresh
result waits BATCH_WINDOW for others to share its request; with nothing queued, an empty
batch every HEALTH_EVERY still tells the hub the agent is there (and its queue's figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable

from prober.agent import wire
from prober.agent.link import Answer, HubClient, Link
from prober.agent.queue import DiskQueue, QueueWriter
from prober.timeline import to_ms

log = logging.getLogger(__name__)

HEALTH_EVERY = 60.0  # seconds without a batch before an empty one reports the queue
BATCH_WINDOW = 0.25  # seconds a fresh result waits for others to share its batch


class Sender:
    def __init__(
        self,
        disk: DiskQueue,
        writer: QueueWriter,
        hub: HubClient,
        link: Link,
        retry: tuple[float, float],
        refuse: Callable[[Answer], bool],
    ) -> None:
        """`retry`: the first delay and the longest; `refuse(answer)`: True when the agent
        gives up on that answer (a token never accepted)."""
        self._disk = disk
        self._writer = writer
        self._hub = hub
        self._link = link
        self._retry, self._retry_max = retry
        self._refuse = refuse
        self.wake = asyncio.Event()  # set by each result handed to the writer
        self.stopping = asyncio.Event()  # the writer is about to close: no more flushes
        self.draining = asyncio.Event()  # the writer closed: send what is left, then return
        self.writing = asyncio.Lock()  # held around a flush; close the writer under it
        self.sent = 0  # results the hub acknowledged
        self.batches = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._retry
        limit = wire.MAX_RESULTS
        last = loop.time()
        while True:
            if self._disk.depth == 0 and not await self._fresh(HEALTH_EVERY - (loop.time() - last)):
                if self.draining.is_set():
                    return
                continue
            pending = await asyncio.to_thread(self._disk.peek, limit)
            try:
                body = await asyncio.to_thread(
                    wire.encode, pending.batch(to_ms(dt.datetime.now(dt.UTC)))
                )
            except wire.WireError:  # over MAX_BODY_BYTES: results with long texts
                limit = max(1, len(pending.results) // 2)
                continue
            answer = await self._hub.results(body)
            last = loop.time()
            if answer.status == 200:
                await asyncio.to_thread(self._disk.ack, pending)
                self.sent += len(pending.results)
                self.batches += 1
                self._link.fine(batch=True)
                _refused_results(answer)
                delay, limit = self._retry, wire.MAX_RESULTS
                continue
            if self._refuse(answer):
                return
            self._link.failed(answer, self._disk.depth, batch=True)
            if self.draining.is_set():
                return
            await wait_any(delay, self.draining)
            delay = min(delay * 2, self._retry_max)

    async def _fresh(self, idle: float) -> bool:
        """With nothing queued: wait for results (True when some are committed), or for
        `idle` to pass (True: time for an empty batch), or for draining (False)."""
        if self.draining.is_set():
            return False
        if idle <= 0:
            return True
        if not await wait_any(idle, self.wake, self.draining):
            return True
        self.wake.clear()
        if not self.stopping.is_set():
            await asyncio.sleep(BATCH_WINDOW)  # let a few results share a batch
        async with self.writing:
            if not self.stopping.is_set():  # once stopping, the writer's close commits all
                await asyncio.to_thread(self._writer.flush, 10.0)
        return self._disk.depth > 0


async def wait_any(seconds: float, *events: asyncio.Event) -> bool:
    """Wait `seconds`, or less when one of `events` is set (True then)."""
    waiting = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(
            waiting, timeout=max(seconds, 0), return_when="FIRST_COMPLETED"
        )
    finally:
        for task in waiting:
            task.cancel()
    return bool(done)


def _refused_results(answer: Answer) -> None:
    """Results the hub would not store (a monitor it no longer assigns here): counted in
    its answer and acknowledged all the same; said once for each batch that has some."""
    with contextlib.suppress(ValueError, TypeError, AttributeError, IndexError):
        refused = json.loads(answer.body).get("refused") or []
        if refused:
            log.warning(
                "hub refused %d results of the batch, e.g. monitor=%s: %s",
                len(refused),
                refused[0].get("monitor"),
                refused[0].get("error"),
            )

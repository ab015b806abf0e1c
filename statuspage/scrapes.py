"""The metrics listener's memory: every monitor's readings kept fresh in the background,
and the /metrics body rendered from them off the event loop.

`Keeper` refreshes a `readings.Frame` on a thread of its own with its own read-only
connection: every second it asks SQLite whether anything was committed (`PRAGMA
data_version`) and, if so, reads what changed (statuspage.readings); reads are spaced by
ten times their cost (a tenth of the time at most), but never more than MAX_SPACING
seconds while results come. A scrape never waits for the database: it renders the current
frame. After IDLE_AFTER seconds without a scrape it stops asking; the next scrape catches
up first.

`Scrapes` keeps the rendered body (and its gzip form) per format, text or OpenMetrics:
rendered in a worker thread when a scrape finds a new frame and a body at least MIN_AGE
old, or a body MAX_AGE old (times move on: stale checks, maintenance, uptime windows);
scrapes arriving meanwhile share the render in progress. So a result is on /metrics at
most MAX_SPACING + MIN_AGE seconds (plus a read and a render) after its commit, and
however many scrape, a body is rendered at most every MIN_AGE seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import gzip
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable

from prober.config import Config
from prober.store.db import ReadConnection
from prober.store.engine import Database
from statuspage.readings import Frame, Readings

log = logging.getLogger(__name__)

MAX_AGE = 5.0  # seconds: a body is never older
MIN_AGE = 2.0  # seconds: nor rendered again sooner (10,000 monitors: ~0.8 s of CPU a render)
CHECK_EVERY = 1.0  # seconds between two questions to SQLite: did anything change?
FRAME_MAX_AGE = 60.0  # a frame is read again after this long whatever happened
IDLE_AFTER = 120.0  # seconds without a scrape: stop reading for nobody
MAX_SPACING = 3.0  # seconds: reads are spaced by their cost, but never further apart


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Keeper:
    """The current Frame of the database of `config()` (which a reload replaces)."""

    def __init__(
        self,
        config: Callable[[], Config],
        *,
        check_every: float = CHECK_EVERY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._path: pathlib.Path | Database = config().database
        self._check_every = check_every
        self._clock = clock
        self._wall = wall
        self._readings = Readings()  # used on the thread only
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self._db = ReadConnection(self._path)
        self._frame: Frame | None = None
        self._read_at = -float("inf")
        self._read_seconds = 0.0  # the last incremental read's
        self._data_version: int | str | None = None
        self._read_config: Config | None = None
        self._asked_at = clock()
        self._reading: asyncio.Future[Frame] | None = None
        self.reads = 0  # of the database, since the start

    @property
    def frame(self) -> Frame | None:
        return self._frame

    def version(self) -> int | None:
        """Moves when a read found something new (see Scrapes)."""
        return None if self._frame is None else self._frame.version

    async def current(self) -> Frame:
        """The frame, read first when there is none yet or nobody asked for a while."""
        idle = self._clock() - self._asked_at > IDLE_AFTER
        self._asked_at = self._clock()
        if self._frame is None or (idle and await self._due()):
            return await self.refresh()
        return self._frame

    async def run(self) -> None:
        """Keep the frame fresh; runs for the life of the app."""
        while True:
            await asyncio.sleep(self._check_every)
            if self._clock() - self._asked_at > IDLE_AFTER:
                continue
            try:
                if await self._due():
                    await self.refresh()
            except Exception:  # /metrics must outlive a bad read: the old frame stays
                log.exception("metrics: reading the database failed; keeping the last readings")

    async def refresh(self) -> Frame:
        if self._reading is None:  # one read at a time; callers meanwhile share it
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        try:
            return await reading
        finally:
            if self._reading is reading:
                self._reading = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    async def _due(self) -> bool:
        if self._config() is not self._read_config:
            return True
        age = self._clock() - self._read_at
        if age >= FRAME_MAX_AGE:
            return True
        # A read costs the web process CPU (10,000 monitors: ~0.2 s for a second's
        # results): at most a tenth of the time, and never more than MAX_SPACING apart.
        if age < min(MAX_SPACING, 10 * self._read_seconds):
            return False
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(self._executor, self._db.data_version)
        return version != self._data_version

    async def _read(self) -> Frame:
        started = self._clock()
        config = self._config()
        loop = asyncio.get_running_loop()
        frame, version = await loop.run_in_executor(self._executor, self._refresh, config)
        self._frame, self._data_version = frame, version
        self._read_at, self._read_config = started, config
        self.reads += 1
        seconds = self._clock() - started
        if not self._readings.full:  # a full read (start, reload, import) is not a pace
            self._read_seconds = seconds
        log.debug("metrics readings read seconds=%.3f", seconds)
        return frame

    def _refresh(self, config: Config) -> tuple[Frame, int | str]:
        """On the thread: the data version, then the frame (so a commit in between makes
        the next check read again, never miss)."""
        version = self._db.data_version()
        return self._readings.refresh(self._db.get(), config, self._wall()), version

    def _close(self) -> None:
        self._db.close()


@dataclasses.dataclass(frozen=True, slots=True)
class Exposition:
    body: bytes
    gzipped: bytes
    at: float  # the clock when its rendering began
    version: object  # of the data it was rendered from


class Scrapes:
    """The /metrics body per format (`openmetrics` or not). A scrape gets the kept one while
    it is under `min_age` old, or under `max_age` old and `version()` has not moved; else
    `prepare` (fresh data) then one call of `render` in a worker thread, which scrapes
    arriving meanwhile share."""

    def __init__(
        self,
        render: Callable[[bool], bytes],
        prepare: Callable[[], Awaitable[None]] | None = None,
        *,
        version: Callable[[], object] = lambda: None,
        min_age: float = MIN_AGE,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._prepare = prepare
        self._version = version
        self._min_age = min_age
        self._max_age = max_age
        self._clock = clock
        self._kept: dict[bool, Exposition] = {}
        self._rendering: dict[bool, asyncio.Future[Exposition]] = {}
        self.renders = 0

    async def get(self, openmetrics: bool = False) -> Exposition:
        kept = self._kept.get(openmetrics)
        if kept is not None:
            age = self._clock() - kept.at
            if age < self._min_age or (age < self._max_age and kept.version == self._version()):
                return kept
        rendering = self._rendering.get(openmetrics)
        if rendering is None or rendering.done():
            rendering = asyncio.ensure_future(self._refresh(openmetrics))
            self._rendering[openmetrics] = rendering
        # shielded: a scraper that hangs up does not cancel the render the others wait for
        return await asyncio.shield(rendering)

    async def _refresh(self, openmetrics: bool) -> Exposition:
        at = self._clock()
        if self._prepare is not None:
            await self._prepare()
        version = self._version()
        body, gzipped = await asyncio.to_thread(self._encode, openmetrics)
        self._kept[openmetrics] = Exposition(body, gzipped, at, version)
        self.renders += 1
        return self._kept[openmetrics]

    def _encode(self, openmetrics: bool) -> tuple[bytes, bytes]:
        body = self._render(openmetrics)
        return body, gzip.compress(body, 6, mtime=0)

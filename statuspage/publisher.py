"""The current Snapshot, and every body rendered from it: built once per change of data.

A burst of visitors never reaches the database or the templates: requests are answered
from memory. The snapshot is refreshed in the background when the database changed
(SQLite's `PRAGMA data_version` moves on every commit by another connection) and the
current one is at least `min_age` old, or when it is `max_age` old whatever happened
(times on the page move on: "last updated", stale results, maintenance starting). A
refresh reads only what changed since the last one (statuspage.incremental); the first,
and any after a config reload or a rewrite of history (import, prune), reads everything.
Each body (a page in one language, a JSON document, a feed, a badge) is rendered on first
request after a refresh, once, in a worker thread, and kept with its gzip form and ETag.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import gc
import gzip
import hashlib
import logging
import pathlib
import sqlite3
import time
from collections.abc import Callable, Hashable

from prober.config import Config
from prober.store.db import connect_raw
from statuspage.incremental import Incremental
from statuspage.snapshot import Snapshot

log = logging.getLogger(__name__)

GZIP_MIN = 1024  # bytes; smaller bodies are sent as they are
IDLE_AFTER = 120.0  # seconds without a request: stop refreshing for nobody
IDLE_MAX_AGE = 600.0  # but keep up at least this often, so catching up stays small


@dataclasses.dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    gzipped: bytes | None
    etag: str
    last_modified: str  # an HTTP date: the snapshot's time
    content_type: str


Render = Callable[[Snapshot], str | bytes | None]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Publisher:
    def __init__(
        self,
        config: Config,
        *,
        min_age: float = 5.0,
        max_age: float = 60.0,
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._path: pathlib.Path = config.database_path
        self._min_age = min_age
        self._max_age = max_age
        self._check_every = check_every
        self._clock = clock
        self._wall = wall
        self._state = Incremental()  # used on the snapshot thread only
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        # One render at a time: a big page (10,000 monitors: ~100 MB of HTML) held twice
        # at once would double the peak memory; visitors share the render in progress.
        self._renderer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="render")
        self._render_seconds = 0.0  # CPU of the renders of the current snapshot
        self._conn: sqlite3.Connection | None = None
        self._snapshot: Snapshot | None = None
        self._built_at = 0.0
        self._data_version: int | None = None
        self._version = 0  # bumps with every new snapshot
        self._building: asyncio.Future[Snapshot] | None = None
        self._bodies: dict[Hashable, asyncio.Future[Rendered | None]] = {}
        self._warm: list[tuple[Hashable, Render, str]] = []
        self._build_seconds = 0.0
        self._asked_at = clock()  # the last request; while nobody asks, nothing is built
        self.builds = 0

    def warm(self, key: Hashable, render: Render, content_type: str) -> None:
        """Render this body right after every build, before anyone asks (the front page)."""
        self._warm.append((key, render, content_type))

    async def start(self) -> None:
        """The first snapshot and the warm bodies, before the server takes requests."""
        await self._rebuild()

    @property
    def config(self) -> Config:
        return self._config

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: the next check rebuilds the snapshot from it (all of it: the
        kept state belongs to the old config)."""
        self._config = config
        self._built_at = -float("inf")

    @property
    def latest(self) -> Snapshot | None:
        """The current snapshot without waiting (for /metrics); None before the first."""
        self._asked_at = self._clock()
        return self._snapshot

    @property
    def idle(self) -> bool:
        """Nobody asked for anything for IDLE_AFTER seconds: refreshes wait for a request."""
        return self._clock() - self._asked_at > IDLE_AFTER

    async def current(self) -> Snapshot:
        if self._snapshot is None:
            return await self._rebuild()
        if self.idle and self._clock() - self._built_at > self._min_age:
            self._asked_at = self._clock()
            await self._rebuild()  # the first request after a quiet spell: catch up first
        self._asked_at = self._clock()
        return self._snapshot

    async def rendered(self, key: Hashable, render: Render, content_type: str) -> Rendered | None:
        """The body for `key` from the current snapshot: rendered once, then from memory.
        None when the renderer says there is no such thing (a 404)."""
        return await self._body(await self.current(), key, render, content_type)

    async def _body(
        self, snapshot: Snapshot, key: Hashable, render: Render, content_type: str
    ) -> Rendered | None:
        slot = (self._version, key)
        found = self._bodies.get(slot)
        if found is None:
            loop = asyncio.get_running_loop()
            found = loop.run_in_executor(
                self._renderer, self._timed_render, render, snapshot, content_type
            )
            self._bodies[slot] = found
        return await found

    def _timed_render(
        self, render: Render, snapshot: Snapshot, content_type: str
    ) -> Rendered | None:
        started = time.thread_time()
        try:
            return _render(render, snapshot, content_type)
        finally:
            self._render_seconds += time.thread_time() - started

    async def run(self) -> None:
        """Keep the snapshot fresh; runs for the life of the app."""
        while True:
            await asyncio.sleep(self._check_every)
            try:
                if await self._due():
                    await self._rebuild()
            except Exception:  # a page must outlive a bad build: the old one stays
                log.exception("status page snapshot failed; keeping the previous one")

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)
        self._renderer.shutdown(wait=True)

    async def _due(self) -> bool:
        # A refresh costs CPU the requests would like: never spend more than a tenth of the
        # time refreshing and rendering what the visitors asked of it, however many monitors
        # there are. The cost is that of the last incremental refresh and the renders of its
        # snapshot; a full build (start, reload, import) is rare and not a pace.
        spacing = 10 * (self._build_seconds + self._render_seconds)
        age = self._clock() - self._built_at
        if self._snapshot is None:
            return True
        if self.idle:  # no visitor, no scraper: a refresh now would be for nobody
            return age >= IDLE_MAX_AGE
        if age >= max(self._max_age, spacing):
            return True
        if age < max(self._min_age, spacing):
            return False
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(self._executor, self._read_version)
        return version != self._data_version

    async def _rebuild(self) -> Snapshot:
        if self._building is None:  # one build at a time; callers meanwhile share it
            self._building = asyncio.ensure_future(self._build())
        building = self._building
        try:
            return await building
        finally:
            if self._building is building:
                self._building = None

    async def _build(self) -> Snapshot:
        loop = asyncio.get_running_loop()
        started = self._clock()
        snapshot, version, full = await loop.run_in_executor(self._executor, self._read)
        self._snapshot, self._data_version = snapshot, version
        self._built_at = started
        self._version += 1
        self._render_seconds = 0.0
        self._bodies = {k: v for k, v in self._bodies.items() if k[0] == self._version}  # type: ignore[index]
        self.builds += 1
        seconds = self._clock() - started
        if not full:
            self._build_seconds = seconds
        else:  # the kept state lives on: out of the cyclic collector's sight (440 ms passes)
            gc.collect()
            gc.freeze()
        log.debug("status page snapshot built seconds=%.3f full=%s", seconds, full)
        if not self.idle:  # the front page is ready before the next visitor asks
            for key, render, content_type in self._warm:
                await self._body(snapshot, key, render, content_type)  # not a request
        return snapshot

    def _read(self) -> tuple[Snapshot, int, bool]:
        """On the snapshot thread: the data version, then the snapshot (so a commit in
        between makes the next check refresh, never miss). Also whether it read all."""
        version = self._read_version()
        assert self._conn is not None
        snapshot = self._state.refresh(self._conn, self._config, self._wall())
        return snapshot, version, self._state.full

    def _read_version(self) -> int:
        if self._conn is None:
            self._conn = connect_raw(self._path)
        (value,) = self._conn.execute("PRAGMA data_version").fetchone()
        return int(value)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _render(render: Render, snapshot: Snapshot, content_type: str) -> Rendered | None:
    out = render(snapshot)
    if out is None:
        return None
    body = out.encode() if isinstance(out, str) else out
    stamp = email.utils.format_datetime(snapshot.generated_at.astimezone(dt.UTC), usegmt=True)
    return Rendered(
        body=body,
        gzipped=gzip.compress(body, 6, mtime=0) if len(body) >= GZIP_MIN else None,
        etag='"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"',
        last_modified=stamp,
        content_type=content_type,
    )

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
Only known keys reach the cache (the handlers answer unknown monitors, windows and months
404 before asking, and clamp `days`), a render that finds nothing is not kept, and what is
kept is bounded (least recently used first out), so no request pattern grows the memory.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import email.utils
import gc
import gzip
import hashlib
import logging
import pathlib
import time
from collections.abc import Callable, Hashable
from typing import TypeVar, cast

from prober.config import Config
from prober.store.db import ReadConnection
from prober.store.engine import Connection, Database
from statuspage.incremental import Incremental
from statuspage.notices import attach
from statuspage.snapshot import Snapshot

log = logging.getLogger(__name__)

GZIP_MIN = 1024  # bytes; smaller bodies are sent as they are
IDLE_AFTER = 120.0  # seconds without a request: stop refreshing for nobody
IDLE_MAX_AGE = 600.0  # but keep up at least this often, so catching up stays small
MAX_BODIES = 4096  # bodies kept per snapshot (besides the warm ones) at most
MAX_BODY_BYTES = 64 * 2**20  # and bytes of them (a body and its gzip form), plus the newest

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    gzipped: bytes | None
    etag: str
    last_modified: str  # an HTTP date: the snapshot's time
    content_type: str


Render = Callable[[Snapshot], str | bytes | None]
Pending = asyncio.Future[Rendered | None]


class Bodies:
    """The bodies rendered from one snapshot: the warm ones (the front page) always kept,
    the others least recently used first out, within `max_entries` and `max_bytes` (the
    newest one is kept whatever its size, so one big report is not rendered per request).
    A render that answers None (a 404) is not kept; a failed one is, until the next
    snapshot, like any answer."""

    def __init__(self, max_entries: int, max_bytes: int, warm: frozenset[Hashable]) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._warm_keys = warm
        self._warm: dict[Hashable, Pending] = {}
        self._recent: collections.OrderedDict[Hashable, Pending] = collections.OrderedDict()
        self._sizes: dict[Hashable, int] = {}  # of the kept, finished, recent ones
        self.bytes = 0  # of the recent ones

    def __len__(self) -> int:
        return len(self._warm) + len(self._recent)

    def get(self, key: Hashable) -> Pending | None:
        found = self._warm.get(key)
        if found is None:
            found = self._recent.get(key)
            if found is not None:
                self._recent.move_to_end(key)
        return found

    def add(self, key: Hashable, pending: Pending) -> None:
        if key in self._warm_keys:
            self._warm[key] = pending
        else:
            self._recent[key] = pending
            self._trim()
        pending.add_done_callback(lambda done: self._done(key, done))

    def _done(self, key: Hashable, done: Pending) -> None:
        kept = self._warm if key in self._warm_keys else self._recent
        if kept.get(key) is not done or done.cancelled() or done.exception() is not None:
            return  # pushed out meanwhile, or failed (kept as it is)
        rendered = done.result()
        if rendered is None:  # nothing there: not worth a place
            del kept[key]
        elif kept is self._recent:
            self._sizes[key] = len(rendered.body) + len(rendered.gzipped or b"")
            self.bytes += self._sizes[key]
            self._trim()

    def _trim(self) -> None:
        while len(self._recent) > 1 and (
            len(self._recent) > self._max_entries or self.bytes > self._max_bytes
        ):
            key, _ = self._recent.popitem(last=False)
            self.bytes -= self._sizes.pop(key, 0)


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
        max_bodies: int = MAX_BODIES,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._config = config
        self._base = config  # what the incremental state builds from (notices aside)
        self._path: pathlib.Path | Database = config.database
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
        self._db = ReadConnection(self._path)
        self._snapshot: Snapshot | None = None
        self._built_at = 0.0
        self._data_version: int | str | None = None
        self._building: asyncio.Future[Snapshot] | None = None
        self._max_bodies = max_bodies
        self._max_body_bytes = max_body_bytes
        self._bodies = Bodies(max_bodies, max_body_bytes, frozenset())
        self._ids: frozenset[str] = frozenset()  # the current snapshot's monitors
        self._reads: dict[Hashable, asyncio.Future[object]] = {}  # read_once, this snapshot
        self._warm: list[tuple[Hashable, Render, str]] = []
        self._build_seconds = 0.0
        self._asked_at = clock()  # the last request; while nobody asks, nothing is built
        self.builds = 0
        self.renders = 0  # bodies rendered, since the start

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
        kept state belongs to the old config), unless only the incidents written by people
        changed: then the kept state goes on and the next snapshot carries the new ones."""
        if dataclasses.replace(config, notices=self._config.notices) != self._config:
            self._base = config
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
        None when the renderer says there is no such thing (a 404). `key` must be one of a
        known few (see the handlers): it is kept until the next snapshot or pushed out."""
        return await self._body(await self.current(), key, render, content_type)

    async def knows(self, monitor_id: str) -> bool:
        """Whether the current snapshot shows this monitor (public, configured): a set
        lookup, so an unknown id costs no render and takes no room."""
        await self.current()
        return monitor_id in self._ids

    @property
    def cached(self) -> tuple[int, int]:
        """Bodies kept for the current snapshot, and their bytes (the warm ones' not counted)."""
        return len(self._bodies), self._bodies.bytes

    async def read_once(self, key: Hashable, read: Callable[[Connection], T]) -> T:
        """A value read from the database once per snapshot, on the snapshot thread (the
        first result's time, for /reports/); callers share it until the next refresh.
        `key` names the question; code chooses it, never a visitor."""
        await self.current()
        found = self._reads.get(key)
        if found is None:
            loop = asyncio.get_running_loop()
            found = loop.run_in_executor(self._executor, lambda: read(self._db.get()))
            self._reads[key] = found
        try:
            return cast(T, await found)
        except Exception:
            if self._reads.get(key) is found:  # asked again, read again
                del self._reads[key]
            raise

    async def _body(
        self, snapshot: Snapshot, key: Hashable, render: Render, content_type: str
    ) -> Rendered | None:
        found = self._bodies.get(key)
        if found is None:
            loop = asyncio.get_running_loop()
            found = loop.run_in_executor(
                self._renderer, self._timed_render, render, snapshot, content_type
            )
            self.renders += 1
            self._bodies.add(key, found)
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
        version = await loop.run_in_executor(self._executor, self._db.data_version)
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
        self._render_seconds = 0.0
        warm = frozenset(key for key, _, _ in self._warm)
        self._bodies = Bodies(self._max_bodies, self._max_body_bytes, warm)
        self._ids = frozenset(m.id for m in snapshot.monitors)
        self._reads = {}
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

    def _read(self) -> tuple[Snapshot, int | str, bool]:
        """On the snapshot thread: the data version, then the snapshot (so a commit in
        between makes the next check refresh, never miss), with the incidents written by
        people attached and the subscription form on when subscriptions are. Also whether
        it read all."""
        version = self._db.data_version()
        config = self._config
        snapshot = self._state.refresh(self._db.get(), self._base, self._wall())
        snapshot = attach(snapshot, config.notices, config)
        if config.settings.subscriptions is not None:  # the live page only, never an export
            snapshot = dataclasses.replace(snapshot, subscribe=True)
        return snapshot, version, self._state.full

    def _close(self) -> None:
        self._db.close()


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

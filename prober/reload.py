"""Live reload: SIGHUP (or `prober reload`) re-reads monitors.toml into the running process.

Added monitors start, removed ones stop (their history stays), changed ones take their new
settings at their next run; trackers, open incidents, push deadlines of unchanged monitors
and the alert outbox survive. A config that does not validate is refused: every error is
logged and the running config stays. Settings that shape the process itself (listen,
database, timezone, max_concurrency, retention_days) keep their running values until a
restart, and the log says so. Where monitors are probed from (settings.location and
[[agents]], their tokens included) is fixed at start: a reload that changes it is refused
as a whole, since keeping the old locations while monitors resolve against the new ones
would half-apply it. A monitor's own `locations` and `quorum` reload like its other keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import signal
import time
from collections.abc import Callable

from prober.config import Config, ConfigError, load_config
from prober.config.monitors import ProbeMonitor

log = logging.getLogger(__name__)

RESTART_ONLY = ("listen", "database", "timezone", "max_concurrency", "retention_days")


def pid_path(config: Config) -> pathlib.Path:
    """Where `prober run` writes its process id: beside the database."""
    return config.database_path.with_suffix(".pid")


def send_reload(config: Config) -> int:
    """`prober reload`: SIGHUP to the `prober run` of this database. Returns its pid."""
    path = pid_path(config)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        raise ProcessLookupError(f"no running prober found ({path} is missing)") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ProcessLookupError(f"no running prober with pid {pid} (stale {path})") from None
    return pid


class Reloader:
    """Holds the running config; `request()` reloads it once (a request arriving during a
    reload runs another one after it, so the newest file always wins)."""

    def __init__(self, config: Config, apply: Callable[[Config], object]) -> None:
        self.config = config
        self._apply = apply
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.reloads = 0

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run())

    async def wait(self) -> None:
        while self._task is not None and not self._task.done():
            await self._task

    async def _run(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        started = time.monotonic()
        try:
            new = await asyncio.to_thread(load_config, self.config.path)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("reload refused, the running config stays: %s", line)
            return False
        except OSError as exc:
            log.error("reload refused, the running config stays: %s", exc)
            return False
        moved = placement_changed(self.config, new)
        if moved:
            log.error(
                "reload refused, the running config stays: %s changed; restart to apply it",
                moved,
            )
            return False
        new = keep_restart_only(self.config, new)
        old_ids = {m.id: m for m in self.config.monitors}
        new_ids = {m.id: m for m in new.monitors}
        added = sum(1 for i in new_ids if i not in old_ids)
        removed = sum(1 for i in old_ids if i not in new_ids)
        changed = sum(1 for i, m in new_ids.items() if i in old_ids and old_ids[i] != m)
        result = self._apply(new)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result
        self.config = new
        self.reloads += 1
        log.info(
            "config reloaded monitors=%d added=%d removed=%d changed=%d probing=%d seconds=%.2f",
            len(new.monitors), added, removed, changed,
            sum(isinstance(m, ProbeMonitor) for m in new.monitors),
            time.monotonic() - started,
        )  # fmt: skip
        return True


def placement_changed(running: Config, new: Config) -> str:
    """What changed of where monitors are probed from ("" if nothing)."""
    changed = []
    if running.settings.location != new.settings.location:
        changed.append("settings.location")
    if running.agents != new.agents:  # SecretStr compares its value: a new token counts
        changed.append("[[agents]]")
    if running.hubs != new.hubs:
        changed.append("[[hubs]]")
    return " and ".join(changed)


def keep_restart_only(running: Config, new: Config) -> Config:
    """`new` with the settings that need a restart set back to their running values."""
    differ = [k for k in RESTART_ONLY if getattr(running.settings, k) != getattr(new.settings, k)]
    if not differ and running.database_url == new.database_url:
        return new
    if differ:
        log.warning("reload: %s changed; these take effect at the next restart", ", ".join(differ))
    settings = new.settings.model_copy(update={k: getattr(running.settings, k) for k in differ})
    return dataclasses.replace(new, settings=settings, database_url=running.database_url)

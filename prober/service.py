"""`prober run`: scheduler, result writer and web server in one process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import signal

from aiohttp import web

from prober import history, metrics, push, reload
from prober.alerts.dispatcher import Dispatcher
from prober.alerts.outbox import Outbox, Routes
from prober.canaries import Canaries
from prober.checks.result import CheckResult, Outcome
from prober.checks.session import open_shared
from prober.config import Config
from prober.config.monitors import ProbeMonitor, ProbingMonitor, PushMonitor
from prober.push import PushHub
from prober.redact import Redactor
from prober.reload import Reloader
from prober.scheduler import ProbeScheduler
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import NetworkChange, Observation, ResultWriter
from prober.timeline import to_ms
from prober.watchdog import HeartbeatCollector, HeartbeatStats, LoopLag, heartbeat
from statuspage.app import create_app
from statuspage.health import Health
from statuspage.publisher import Publisher

log = logging.getLogger(__name__)

STATS_EVERY = 60.0


class ResultLog:
    """Hands results to the writer; logs a monitor when its outcome changes.

    A first result that is up is not news: 10,000 monitors starting must not mean
    10,000 log lines. A first result that is anything else is logged.
    """

    def __init__(self, writer: ResultWriter) -> None:
        self._writer = writer
        self._last: dict[str, Outcome] = {}
        self.count = 0
        self.last_at: float | None = None  # epoch seconds of the newest result handed over

    def __call__(self, monitor: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        self._writer.submit(Observation(monitor.id, at, result))
        self.count += 1
        self.last_at = at.timestamp()
        previous = self._last.get(monitor.id)
        self._last[monitor.id] = result.outcome
        news = (
            result.outcome is not Outcome.UP if previous is None else previous is not result.outcome
        )
        level = logging.INFO if news else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                'monitor=%s type=%s outcome=%s latency_ms=%.0f error="%s"',
                monitor.id,
                monitor.type,
                result.outcome.value,
                result.latency_ms,
                result.error or "",
            )


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    settings = config.settings
    engine = open_engine(config.database_path, check=True)  # quick_check, then upgrade
    writer = ResultWriter(
        config.database_path,
        settings.location,
        [TrackSpec.of(m) for m in config.monitors],
        timezone=settings.timezone,
        retention_days=settings.retention_days,
        outbox=Outbox(settings.location, Routes.of(config)),
    )
    writer.start()
    hub = _push_hub(config, writer)
    probing = [m for m in config.monitors if isinstance(m, ProbeMonitor)]
    results = ResultLog(writer)
    redact = Redactor(config.secret_values())
    async with open_shared(redact=redact) as shared:
        dispatcher = Dispatcher(config, config.database_path, shared.session, redact=redact)
        writer.on_alert = dispatcher.wake
        canaries = Canaries(
            settings.canaries,
            shared,
            on_change=lambda failing: writer.submit(
                NetworkChange(failing, dt.datetime.now(dt.UTC))
            ),
        )
        scheduler = ProbeScheduler(
            probing, shared, results, settings.max_concurrency, canaries=canaries
        )
        loop_lag = LoopLag()
        shortest = min((m.interval for m in probing), default=None)
        health = Health(
            scheduler_running=lambda: scheduler.running,
            database_writable=writer.healthy,
            loop_lag=loop_lag.worst,
            last_result_at=lambda: results.last_at,
            writer_queue=writer.queue_depth,
            alert_queue=lambda: dispatcher.delivery.queue_depth,
            max_result_age=None if shortest is None else max(60.0, 3 * shortest),
        )
        beats = HeartbeatStats()
        collectors = metrics.registry(dispatcher.delivery, [n.id for n in config.notifiers])
        collectors.register(HeartbeatCollector(beats))
        publisher = Publisher(config)
        app = create_app(
            config,
            health,
            collectors,
            publisher=publisher,
            push_receiver=lambda token, action, query: hub.receive(
                token, action, query, to_ms(dt.datetime.now(dt.UTC))
            ),
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = settings.listen_host_port
        await web.TCPSite(runner, host, port).start()
        scheduler.start()
        # The config models and scheduler jobs live as long as the process: move them out
        # of the collector's sight, or each full collection walks them all (150-290 ms
        # stalls at 10,000 monitors, measured in bench/).
        gc.collect()
        gc.freeze()
        lag_task = asyncio.create_task(loop_lag.run())
        url = settings.heartbeat_url.get_secret_value()
        beat = asyncio.create_task(heartbeat(url, shared.session, health, stats=beats))
        log.info(
            "prober running monitors=%d listen=http://%s:%d database=%s",
            len(config.monitors),
            host,
            port,
            config.database_path,
        )
        stats = asyncio.create_task(_report_stats(scheduler, results, writer, dispatcher))
        monthly = asyncio.create_task(_monthly_reports(config))
        alerts = asyncio.create_task(dispatcher.run(stop))
        deadlines = asyncio.create_task(_push_deadlines(hub))

        async def apply(new: Config) -> None:
            """The reloaded config, to every part that holds one."""
            nonlocal probing
            redact.update(new.secret_values())
            specs = [TrackSpec.of(m) for m in new.monitors]
            applied = await asyncio.to_thread(writer.reconfigure, specs, Routes.of(new))
            if not applied:
                log.error("reload: the result writer did not take the new monitors in time")
            probing = [m for m in new.monitors if isinstance(m, ProbeMonitor)]
            scheduler.reconfigure(probing)
            dispatcher.reconfigure(new)
            pushing = [m for m in new.monitors if isinstance(m, PushMonitor)]
            tokens, _ = await asyncio.to_thread(_tokens, new, pushing)
            hub.reconfigure(pushing, tokens, to_ms(dt.datetime.now(dt.UTC)))
            publisher.reconfigure(new)

        reloader = Reloader(config, apply)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
        pid_file = reload.pid_path(config)
        pid_file.write_text(f"{os.getpid()}\n")
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGHUP)
            await reloader.wait()
            with contextlib.suppress(OSError):
                pid_file.unlink()
            log.info("stopping: finishing in-flight checks")
            beat.cancel()  # first: a stopping scheduler is not a reason to withhold
            lag_task.cancel()
            stats.cancel()
            monthly.cancel()
            deadlines.cancel()
            grace = max((m.timeout for m in probing), default=1.0)
            await scheduler.stop(grace)
            await runner.cleanup()
            stop.set()
            await alerts  # sends in flight finish and are recorded
            gc.unfreeze()
    await asyncio.to_thread(writer.close)
    engine.dispose()
    log.info("stopped results_committed=%d", writer.committed)


def _tokens(config: Config, monitors: list[PushMonitor]) -> tuple[dict[str, str], dict[str, int]]:
    """Each push monitor's token (made on first use) and its newest stored result."""
    conn = connect_raw(config.database_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        tokens = push.ensure_tokens(conn, monitors)
        conn.execute("COMMIT")
        return tokens, push.last_results(conn, [m.id for m in monitors])
    finally:
        conn.close()


def _push_hub(config: Config, writer: ResultWriter) -> PushHub:
    """Push monitors: tokens (made on first start), deadlines from their stored results."""
    monitors = [m for m in config.monitors if isinstance(m, PushMonitor)]
    tokens, last = _tokens(config, monitors)

    def submit(monitor: str, at: dt.datetime, result: CheckResult) -> None:
        writer.submit(Observation(monitor, at, result))
        level = logging.INFO if result.outcome is not Outcome.UP else logging.DEBUG
        log.log(
            level,
            'push monitor=%s outcome=%s error="%s"',
            monitor,
            result.outcome.value,
            result.error or "",
        )

    hub = PushHub(monitors, tokens, config.settings.timezone, submit)
    hub.restore(last, to_ms(dt.datetime.now(dt.UTC)))
    return hub


async def _push_deadlines(hub: PushHub) -> None:
    """Silence becomes `down` at each push monitor's deadline (checked every second)."""
    while True:
        hub.overdue(to_ms(dt.datetime.now(dt.UTC)))
        await asyncio.sleep(1.0)


async def _report_stats(
    scheduler: ProbeScheduler, results: ResultLog, writer: ResultWriter, dispatcher: Dispatcher
) -> None:
    last = 0
    while True:
        await asyncio.sleep(STATS_EVERY)
        p50, p99, worst = scheduler.lag.percentiles(50, 99, 100)
        log.info(
            "stats checks=%d rate=%.1f/s lag_p50_ms=%.1f lag_p99_ms=%.1f lag_max_ms=%.1f"
            " committed=%d alerts_sent=%d alerts_retried=%d alerts_failed=%d alerts_queued=%d",
            results.count,
            (results.count - last) / STATS_EVERY,
            p50 * 1000,
            p99 * 1000,
            worst * 1000,
            writer.committed,
            dispatcher.delivery.sent.total(),
            dispatcher.delivery.retried.total(),
            dispatcher.delivery.failed.total(),
            dispatcher.delivery.queue_depth,
        )
        last = results.count


async def _monthly_reports(config: Config, every: float = 3600.0) -> None:
    """Last month's report under reports/ beside the database, once the month is over:
    checked at start and every hour, so a prober down on the 1st catches up."""
    await asyncio.sleep(30.0)  # not in the start-up rush
    while True:
        try:
            written = await asyncio.to_thread(history.write_monthly, config)
        except Exception:  # a report must never take the prober down
            log.exception("writing the monthly report failed; retrying in an hour")
        else:
            for path in written:
                log.info("monthly report written path=%s", path)
        await asyncio.sleep(every)

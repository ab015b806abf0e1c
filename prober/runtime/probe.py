"""`prober run`: the probing process, and the web process it supervises.

This process owns what decides verdicts and must never wait on a visitor: the scheduler
and its checks, the result writer thread, the alert dispatcher, push deadlines, canaries,
the dead-man's-switch heartbeat and reloads. It binds the listening sockets (the public
one, and the metrics one unless off) and hands them to a web process (prober.runtime.web)
that serves everything a visitor or scraper can ask for, pushes and /healthz included, and
talks back through prober.runtime.control.

Start-up order matters: signals first (SIGTERM at any moment ends in exit 0), then the
run lock (one `prober run` per database), the database check, the sockets (a busy port is
one line, exit 1), and only then the parts that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import pathlib
import signal
import socket
import sqlite3
import tempfile
from collections.abc import Collection

import prometheus_client
from aiohttp import web

from prober import push
from prober.agent.hub import AgentHealth, AgentHub, silence_from_env
from prober.alerts.dispatcher import Dispatcher
from prober.alerts.outbox import Outbox, Routes
from prober.alerts.subscribers import Subscribers
from prober.canaries import Canaries
from prober.checks.session import open_shared
from prober.config import Config
from prober.config.locations import probed_at
from prober.config.monitors import ProbeMonitor, ProbingMonitor, PushMonitor
from prober.errors import UserError
from prober.logs import LogFormat
from prober.metrics import registry as metrics_registry
from prober.push import PushHub
from prober.redact import Redactor
from prober.reload import Reloader, pid_path
from prober.remediation import Remediator
from prober.results import CheckResult, Outcome
from prober.runtime import control, serving
from prober.runtime.lock import RunLock
from prober.runtime.remedy import Remedies
from prober.runtime.signals import EarlyStop
from prober.runtime.supervisor import WebProcess
from prober.runtime.web import Launch
from prober.scheduler import ProbeScheduler, ResultLog
from prober.store.db import open_database
from prober.store.engine import connect
from prober.store.hubs import EvaluationLock
from prober.store.ledger import TrackSpec
from prober.store.writer import NetworkChange, Observation, Recorded, ResultWriter, agent_contacts
from prober.timeline import to_ms
from prober.watchdog import HeartbeatCollector, HeartbeatStats, heartbeat
from statuspage.health import MAX_WRITER_QUEUE, Health

log = logging.getLogger(__name__)

STATS_EVERY = 60.0
BACKLOG = 1024
FIRST_PAGE_WAIT = 30.0  # seconds
ANNOUNCE_EVERY = 10.0  # seconds between looks for news to mail subscribers
SHARED_CONTACT_EVERY = 5  # seconds between reads of agents' contact through other hubs
LEASE_WAIT_S = 1.0  # at start: one hub alone on PostgreSQL evaluates from the first result


def bind(host: str, port: int, purpose: str = "") -> socket.socket:
    """A listening socket (the public one; `purpose` names any other), or a one-line
    UserError (a busy port, a bad address)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        named = f" ({purpose})" if purpose else ""
        raise UserError(f"cannot listen on {host}:{port}{named}: {reason}") from None
    return sock


def run(
    config: Config,
    *,
    log_level: int = logging.INFO,
    log_format: LogFormat = "text",
    early: EarlyStop | None = None,
) -> None:
    """`prober run` until SIGTERM / SIGINT. Raises UserError when it cannot start."""
    if early is not None and early.requested.is_set():
        return
    serving.raise_file_limit()  # the web process inherits it
    lock = RunLock(pid_path(config))
    shared = config.database.path is None
    lock.acquire(
        config.database_path, f"{config.database.shown()} from {config.path}" if shared else None
    )
    try:
        if early is not None and early.requested.is_set():
            return
        open_database(config.database, check=True)  # quick_check, then upgrade
        host, port = config.settings.listen_host_port
        metrics_at = config.settings.metrics.listen_host_port
        with (
            bind(host, port) as sock,
            bind(*metrics_at, "metrics") if metrics_at else contextlib.nullcontext() as extra,
        ):
            asyncio.run(serve(config, sock, log_level, log_format, early, metrics_sock=extra))
    finally:
        lock.release()


async def serve(
    config: Config,
    sock: socket.socket,
    log_level: int = logging.INFO,
    log_format: LogFormat = "text",
    early: EarlyStop | None = None,
    *,
    metrics_sock: socket.socket | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if early is not None and early.requested.is_set():
        stop.set()
    serving.AcceptErrors().install(loop)  # the control socket's accept(): one line a minute

    settings = config.settings
    outbox = Outbox(settings.location, Routes.of(config))
    # PostgreSQL: one hub of those sharing the database evaluates (prober.store.hubs).
    lease = (
        EvaluationLock(config.database, settings.location) if config.database.path is None else None
    )
    writer = ResultWriter(
        config.database,
        settings.location,
        [TrackSpec.of(m) for m in config.monitors],
        timezone=settings.timezone,
        retention_days=settings.retention_days,
        outbox=outbox,
        lease=lease,
    )
    evaluating = asyncio.Event()
    if lease is None:
        evaluating.set()
    else:
        lease.start()
        if not await asyncio.to_thread(lease.wait, LEASE_WAIT_S):
            log.warning(
                "another hub evaluates (holds the lock): this one probes, takes results and "
                "serves the page, and takes over if that one stops location=%s",
                settings.location,
            )
    writer.start()
    hub = _push_hub(config, writer)
    here = settings.location  # agents probe the monitors that list their locations
    probing = [m for m in config.monitors if isinstance(m, ProbeMonitor) and probed_at(m, here)]

    def observed(monitor: ProbingMonitor, at: dt.datetime, result: CheckResult) -> None:
        writer.submit(Observation(monitor.id, at, result))

    results = ResultLog(observed)
    redact = Redactor(config.secret_values())
    reloader: Reloader | None = None
    async with open_shared(redact=redact, location=settings.location) as shared:
        dispatcher = Dispatcher(config, config.database, shared.session, redact=redact)
        writer.on_alert = dispatcher.wake
        remediator = Remediator(
            config.database, redact, session=shared.session, notifiers=config.notifiers
        )
        if lease is None:
            await remediator.recover()  # attempts a killed prober left: never run again

        async def took_over() -> None:
            """This hub evaluates now: what the last one left, picked up."""
            await remediator.recover()
            await asyncio.to_thread(_heard_pings, config, hub, 0)
            evaluating.set()
            dispatcher.wake()

        def lead(leading: bool) -> None:  # on the writer thread
            if leading:
                loop.call_soon_threadsafe(lambda: tasks_aside.add(loop.create_task(took_over())))
            else:
                loop.call_soon_threadsafe(evaluating.clear)

        tasks_aside: set[asyncio.Task[None]] = set()
        if lease is not None:
            writer.on_lead = lead
            if writer.leading:
                await took_over()
        remedies = Remedies(config, remediator, dispatcher.wake)

        def watch(remedy: Remedies) -> None:
            """What the writer commits for monitors with `remediate`, to Remedies on the loop
            (nothing is gathered when no monitor has one)."""

            def tell(items: list[Recorded]) -> None:  # on the writer thread: never blocks
                loop.call_soon_threadsafe(remedy.recorded, items)

            watched = remedy.watched
            writer.watch(watched, tell if watched else None)

        subscribers = Subscribers(config.database, config, wake=dispatcher.wake)
        announce_now = asyncio.Event()  # after a reload: new notices are told at once
        canaries = Canaries(
            settings.canaries,
            shared,
            on_change=lambda failing: writer.submit(
                NetworkChange(failing, dt.datetime.now(dt.UTC))
            ),
        )
        scheduler = ProbeScheduler(
            probing,
            shared,
            results,
            settings.max_concurrency,
            canaries=canaries,
            overload_threshold=settings.overload_threshold,
        )
        shortest = min((m.interval for m in probing), default=None)
        health = Health(
            scheduler_running=lambda: scheduler.running,
            database_writable=writer.healthy,
            loop_lag=scheduler.stalls.worst,
            last_result_at=lambda: results.last_at,
            writer_queue=writer.queue_depth,
            alert_queue=lambda: dispatcher.delivery.queue_depth,
            max_result_age=None if shortest is None else max(60.0, 3 * shortest),
            overloaded_checks=lambda: scheduler.overload.total,
            out_of_files=scheduler.overload.out_of_files,
        )
        beats = HeartbeatStats()
        collectors = metrics_registry(
            dispatcher.delivery, [n.id for n in config.notifiers], overload=scheduler.overload
        )
        collectors.register(HeartbeatCollector(beats))
        collectors.register(remediator.counter)
        agent_health = AgentHealth(config, silence=silence_from_env())
        agents = AgentHub(
            config,
            lambda monitor, at, result, location: writer.submit(
                Observation(monitor, at, result, location=location)
            ),
            agent_health,
            can_take=lambda n: writer.healthy() and writer.queue_depth() + n <= MAX_WRITER_QUEUE,
            committed=writer.flush,
        )
        if config.agents:  # a reload never changes [[agents]]
            collectors.register(agent_health.collector())

        def web_state() -> control.WebState:
            current = reloader.config if reloader is not None else config
            return control.WebState(current, hub.digests())

        with tempfile.TemporaryDirectory(prefix="prober-") as private:
            control_path = pathlib.Path(private) / "control.sock"  # the directory is 0700
            control_runner = web.AppRunner(
                control.server(
                    control.Handlers(
                        state=web_state,
                        push=lambda token, action, query: hub.receive(
                            token, action, query, to_ms(dt.datetime.now(dt.UTC))
                        ),
                        health=lambda: agent_health.extend(health.report()),
                        metrics=lambda: prometheus_client.generate_latest(collectors),
                        ready=lambda pid: site.serving(pid),
                        agent=agents.receive,
                        subscriptions=lambda asked: subscribers.handle(
                            asked, to_ms(dt.datetime.now(dt.UTC))
                        ),
                    )
                ),
                access_log=None,
            )
            await control_runner.setup()
            await web.UnixSite(control_runner, str(control_path)).start()
            site = WebProcess(
                lambda: Launch(
                    web_state(),
                    sock.fileno(),
                    control_path,
                    log_level,
                    log_format,
                    metrics_fd=None if metrics_sock is None else metrics_sock.fileno(),
                )
            )
            web_task = asyncio.create_task(site.run(stop))
            await _first_page(site, stop)
            remedies.start()
            watch(remedies)
            scheduler.start()
            # The config models and scheduler jobs live as long as the process: move them
            # out of the collector's sight, or each full collection walks them all (150-290
            # ms stalls at 10,000 monitors, measured in bench/).
            gc.collect()
            gc.freeze()
            log.info(
                "prober running monitors=%d listen=http://%s metrics=%s database=%s",
                len(config.monitors),
                _where(sock),
                "off" if metrics_sock is None else f"http://{_where(metrics_sock)}/metrics",
                config.database.shown(),
            )
            url = settings.heartbeat_url.get_secret_value()
            tasks = [
                asyncio.create_task(heartbeat(url, shared.session, health, stats=beats)),
                asyncio.create_task(_report_stats(scheduler, results, writer, dispatcher)),
                asyncio.create_task(_push_deadlines(config, hub, evaluating, lease is not None)),
                asyncio.create_task(_agent_contact(config, agent_health, lease is not None)),
                asyncio.create_task(_announce(subscribers, announce_now)),
            ]
            alerts = asyncio.create_task(dispatcher.run(stop, evaluating.is_set))

            async def apply(new: Config) -> None:
                """The reloaded config, to every part that holds one."""
                nonlocal probing
                redact.update(new.secret_values())
                specs = [TrackSpec.of(m) for m in new.monitors]
                routes = Routes.of(new)
                applied = await asyncio.to_thread(
                    writer.reconfigure, specs, lambda: setattr(outbox, "routes", routes)
                )
                if not applied:
                    log.error("reload: the result writer did not take the new monitors in time")
                probing = [
                    m for m in new.monitors if isinstance(m, ProbeMonitor) and probed_at(m, here)
                ]
                scheduler.reconfigure(probing, new.settings.overload_threshold)
                dispatcher.reconfigure(new)
                remediator.reconfigure(new.notifiers, redact)
                remedies.reconfigure(new)
                watch(remedies)
                pushing = [m for m in new.monitors if isinstance(m, PushMonitor)]
                new_tokens, _ = await asyncio.to_thread(_tokens, new, pushing)
                hub.reconfigure(pushing, new_tokens, to_ms(dt.datetime.now(dt.UTC)))
                agents.reconfigure(new)
                subscribers.config = new
                announce_now.set()
                site.reload()

            reloader = Reloader(config, apply)
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
            try:
                await stop.wait()
            finally:
                loop.remove_signal_handler(signal.SIGHUP)
                await reloader.wait()
                log.info("stopping: finishing in-flight checks")
                for task in tasks:  # the heartbeat first: stopping is no reason to withhold
                    task.cancel()
                grace = max((m.timeout for m in probing), default=1.0)
                await asyncio.gather(scheduler.stop(grace), web_task)
                writer.watch((), None)
                await remedies.stop()  # a command cut short: interrupted at the next start
                await asyncio.to_thread(remediator.close)
                await control_runner.cleanup()
                await alerts  # sends in flight finish and are recorded
                await asyncio.to_thread(subscribers.close)
                gc.unfreeze()
    await asyncio.to_thread(writer.close)
    if lease is not None:
        await asyncio.to_thread(lease.stop)  # the next hub takes over at its next try
    log.info("stopped results_committed=%d", writer.committed)


def _where(sock: socket.socket) -> str:
    """HOST:PORT a socket listens on (the port the kernel chose, for port 0)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _first_page(site: WebProcess, stop: asyncio.Event) -> None:
    """Probing starts once the page answers (a monitor may watch the prober's own page),
    or after FIRST_PAGE_WAIT whatever happens: a slow page never holds the checks back."""
    waiting = [asyncio.ensure_future(site.ready.wait()), asyncio.ensure_future(stop.wait())]
    done, _ = await asyncio.wait(waiting, timeout=FIRST_PAGE_WAIT, return_when="FIRST_COMPLETED")
    for task in waiting:
        task.cancel()
    if not done:
        log.warning("status page not ready after %.0f s; probing anyway", FIRST_PAGE_WAIT)


def _tokens(config: Config, monitors: list[PushMonitor]) -> tuple[dict[str, str], dict[str, int]]:
    """Each push monitor's token (made on first use) and its newest stored result."""
    conn = connect(config.database)
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

    here = config.settings.location
    homes = {m.id: m.locations[0] if m.locations else here for m in monitors}

    def submit(monitor: str, at: dt.datetime, result: CheckResult) -> None:
        home = homes.get(monitor, here)  # several hubs: one location for pushes, whoever took them
        writer.submit(Observation(monitor, at, result, None if home == here else home))
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


async def _push_deadlines(
    config: Config, hub: PushHub, evaluating: asyncio.Event, shared: bool
) -> None:
    """Silence becomes `down` at each push monitor's deadline (checked every second), by
    the hub that evaluates; with several, after looking for pings another hub took."""
    while True:
        await evaluating.wait()
        now_ms = to_ms(dt.datetime.now(dt.UTC))
        due = hub.due(now_ms)
        if due and shared:
            await asyncio.to_thread(_heard_pings, config, hub, min(due.values()), due)
        hub.overdue(now_ms)
        await asyncio.sleep(1.0)


def _heard_pings(
    config: Config, hub: PushHub, since_ms: int, monitors: Collection[str] | None = None
) -> None:
    """Pings stored since `since_ms` (another hub took them), for the deadlines."""
    ids = [m.id for m in config.monitors if isinstance(m, PushMonitor)]
    conn = connect(config.database)
    try:
        hub.heard(push.last_pings(conn, ids if monitors is None else monitors, since_ms))
    finally:
        conn.close()


async def _announce(subscribers: Subscribers, now: asyncio.Event) -> None:
    """People's incident updates and maintenance starts to email subscribers: looked for
    every ANNOUNCE_EVERY seconds, and at once after a reload."""
    while True:
        try:
            await asyncio.to_thread(subscribers.announce, to_ms(dt.datetime.now(dt.UTC)))
        except Exception:  # the database busy, our bug: try again at the next turn
            log.exception("subscriptions: announcing failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(now.wait(), ANNOUNCE_EVERY)
        now.clear()


async def _agent_contact(config: Config, health: AgentHealth, shared: bool) -> None:
    """An agent's silence is logged when it passes its limit (checked every second); with
    several hubs, contact through another hub counts (read every few seconds)."""
    turn = 0
    while True:
        if shared and config.agents and turn % SHARED_CONTACT_EVERY == 0:
            try:
                health.heard_elsewhere(await asyncio.to_thread(_shared_contacts, config))
            except sqlite3.Error as exc:
                log.debug("reading agents' contact through other hubs: %s", exc)
        health.tick()
        turn += 1
        await asyncio.sleep(1.0)


def _shared_contacts(config: Config) -> dict[str, int]:
    conn = connect(config.database)
    try:
        return agent_contacts(conn)
    finally:
        conn.close()


async def _report_stats(
    scheduler: ProbeScheduler, results: ResultLog, writer: ResultWriter, dispatcher: Dispatcher
) -> None:
    last = 0
    while True:
        await asyncio.sleep(STATS_EVERY)
        p50, p99, worst = scheduler.lag.take_period(50, 99, 100)  # this minute's starts
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

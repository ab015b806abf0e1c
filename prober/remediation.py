"""Remediation: run a monitor's `remediate.command` when it goes down, safely.

Contract: "Remediation and escalation" in DESIGN.md. A command is an argv list run with
`asyncio.create_subprocess_exec` (never a shell) in a session of its own, stdin
/dev/null, stdout and stderr merged and read continuously keeping only the last 4 KiB (a
command printing gigabytes costs that much memory), in a minimal environment: PATH, HOME,
LANG from the prober's, and `PROBER_MONITOR_ID`, `PROBER_MONITOR_NAME`, `PROBER_CAUSE`,
`PROBER_INCIDENT_START` as values (a hostile monitor name or cause is never part of a
command line). At `timeout` its whole process group gets SIGTERM, then SIGKILL after a
short grace: children that ignore SIGTERM die too. (A child that leaves the group with
setsid(2) escapes it, as from any process-group kill; a systemd unit's cgroup does not.)
Its pid and start time are recorded as it starts: a prober killed -9 cannot kill the group,
so the next start does (`Remediator.recover`), if that very process still runs (Linux).

`should_remediate` is the pure rule of when; `Remediator` runs attempts, records them in
the `remediation` table (prober.store.remediations) and counts them for /metrics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import logging
import os
import pathlib
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import aiohttp
from prometheus_client import Counter

from prober.alerts.channels.base import HttpRequest, NotifyError, post
from prober.alerts.channels.webhook import SIGNATURE_HEADER
from prober.config.monitors import Monitor
from prober.config.settings import Notifier, WebhookNotifier
from prober.redact import Redactor
from prober.results import Outcome as Verdict
from prober.store import remediations as rows
from prober.store.engine import Connection, Database, connect

log = logging.getLogger(__name__)

T = TypeVar("T")

TAIL_BYTES = 4096
KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL
DRAIN_S = 1.0  # after the command exits, how long a child holding its output may keep it
_INHERITED = ("PATH", "HOME", "LANG")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How a command ended. `exit_code` is None when a signal ended it (`signal`)."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration: float  # seconds
    output_tail: str  # the last 4 KiB of output, redacted

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def returncode(self) -> int:
        """subprocess's convention: the exit code, or minus the signal."""
        return self.exit_code if self.exit_code is not None else -(self.signal or 0)

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out, its process group killed after {self.duration:.1f}s"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return f"killed by {signal.Signals(self.signal or 0).name}"


def command_env(
    monitor_id: str,
    monitor_name: str,
    cause: str,
    incident_start_ms: int,
    inherited: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A command's whole environment: nothing of the prober's but PATH, HOME and LANG."""
    source = os.environ if inherited is None else inherited
    env = {name: source[name] for name in _INHERITED if name in source}
    env.setdefault("PATH", _DEFAULT_PATH)
    start = dt.datetime.fromtimestamp(incident_start_ms / 1000, dt.UTC)
    env |= {
        "PROBER_MONITOR_ID": monitor_id,
        "PROBER_MONITOR_NAME": monitor_name,
        "PROBER_CAUSE": cause.replace("\0", ""),
        "PROBER_INCIDENT_START": start.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    return env


async def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109  (the command's: it ends by killing its group)
    redact: Callable[[str], str],
    started: Callable[[int], Awaitable[None]] | None = None,
) -> Outcome:
    """Run `argv` to its end or its timeout; never raises for what the command does (a
    program that cannot be started is exit code 127 with the reason as its output).
    `started` is awaited with the pid once it runs (within its timeout)."""
    began = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # its own process group, to kill it whole
            close_fds=True,
        )
    except OSError as exc:
        reason = redact(f"cannot run {argv[0]}: {exc.strerror or exc}")
        return Outcome(127, None, False, time.monotonic() - began, reason)
    assert proc.stdout is not None
    tail = _Tail()
    reader = asyncio.create_task(tail.pump(proc.stdout))
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            if started is not None:
                await started(proc.pid)
            await proc.wait()
    except TimeoutError:
        timed_out = True
    finally:
        if timed_out or proc.returncode is None:  # timed out, or we were cancelled
            await _kill_group(proc)
    # A child left running (its own business after a normal exit) may hold the output
    # open: read what is there, briefly, and stop.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), DRAIN_S)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    code = proc.returncode
    assert code is not None
    return Outcome(
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=timed_out,
        duration=time.monotonic() - began,
        output_tail=tail.text(redact),
    )


async def call_webhook(
    notifier: WebhookNotifier,
    payload: Mapping[str, object],
    session: aiohttp.ClientSession,
    timeout: float,  # noqa: ASYNC109  (the remediation's, as for a command)
    redact: Callable[[str], str],
) -> Outcome:
    """`remediate = { webhook = ID }`: one POST of `payload` to that webhook notifier (its
    headers, its HMAC signature, an Idempotency-Key), judged as a command would be: 2xx is
    exit code 0, anything else exit code 1 with the answer as its output."""
    began = time.monotonic()
    key = str(payload.get("idempotency_key", ""))
    headers = {name: value.get_secret_value() for name, value in notifier.headers.items()}
    request = HttpRequest.json(notifier.url.get_secret_value(), payload, headers)
    request = HttpRequest(request.url, request.body, {**request.headers, "Idempotency-Key": key})
    if notifier.secret is not None:
        digest = hmac.new(
            notifier.secret.get_secret_value().encode(), request.body, hashlib.sha256
        ).hexdigest()
        signed = {**request.headers, SIGNATURE_HEADER: f"sha256={digest}"}
        request = HttpRequest(request.url, request.body, signed)
    try:
        answer = await post(session, request, timeout)
    except NotifyError as exc:
        timed_out = str(exc).startswith("no answer within")
        code = None if timed_out else 1
        return Outcome(code, None, timed_out, time.monotonic() - began, redact(str(exc)))
    return Outcome(0, None, False, time.monotonic() - began, redact(answer))


class _Tail:
    """The last bytes of a stream, plus a margin so a secret cut by the 4 KiB boundary is
    still whole when redacted (secrets up to 4 KiB long)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.truncated = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.buffer += chunk
            if len(self.buffer) > 2 * TAIL_BYTES:
                del self.buffer[: len(self.buffer) - 2 * TAIL_BYTES]
                self.truncated = True

    def text(self, redact: Callable[[str], str]) -> str:
        shown = redact(self.buffer.decode("utf-8", errors="replace"))
        data = shown.encode("utf-8")
        if len(data) <= TAIL_BYTES and not self.truncated:
            return shown
        # cut to 4 KiB on a line boundary where one is near, never inside a character
        kept = data[-TAIL_BYTES:].decode("utf-8", errors="ignore")
        newline = kept.find("\n")
        return kept[newline + 1 :] if 0 <= newline < 200 else kept


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the whole process group, then SIGKILL to whatever is left of it after
    the grace (children that ignore SIGTERM included)."""
    group = proc.pid  # start_new_session: the leader's pid is the group's id
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
        if proc.returncode is not None and not _group_alive(group):
            return
    _signal_group(group, signal.SIGKILL)
    await proc.wait()


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks after boot (/proc/PID/stat field 22): with the
    pid, its identity (pids are reused, the pair is not). None without such a process, or
    without /proc (not Linux)."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (the state) on: field 2, the name in brackets, may hold
    spaces and brackets of its own."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _live_members(group: int) -> bool:
    """Whether a process of `group` still runs (zombies, waiting for their new parent to
    reap them, do not), from /proc."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                fields = _stat(int(entry.name))
                if fields is not None and int(fields[2]) == group and fields[0] not in "ZX":
                    return True
    return False


async def kill_orphan(pid: int, pid_start: int) -> bool:
    """A command's process group that a prober killed -9 left running: SIGTERM, then
    SIGKILL to what is left of it after the grace. Only if the process `pid` started at
    `pid_start` still exists (a reused pid is someone else's); True if it did."""
    if process_start(pid) != pid_start:
        return False
    _signal_group(pid, signal.SIGTERM)  # its own session: the pid is its group's id
    for _ in range(round(KILL_GRACE_S / 0.05)):  # /proc has no event to wait for
        if not _live_members(pid):
            return True
        await asyncio.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    return True


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Decision(enum.StrEnum):
    RUN = "run"
    WAIT = "wait"  # fewer than `after` consecutive down results
    TRIED = "tried"  # this incident had its attempt (interrupted ones included)
    MAINTENANCE = "maintenance"
    PARENT_DOWN = "parent_down"
    VERDICT = "verdict"  # unknown or regional: not this service's failure to fix
    BUDGET = "budget"  # `attempts` already used within `within`


def should_remediate(
    *,
    down_streak: int,
    after: int,
    verdict: Verdict,
    regional: bool,
    in_maintenance: bool,
    parent_down: bool,
    tried_this_incident: bool,
    attempts_in_window: int,
    attempts: int,
) -> Decision:
    """Whether to run a remediation now, and if not why. Pure: the caller gathers the
    facts (the newest verdict, the streak of consecutive down results, its incident's
    attempts and the budget's count from the `remediation` table)."""
    if verdict is Verdict.UNKNOWN or regional:
        return Decision.VERDICT
    if verdict is not Verdict.DOWN or down_streak < after:
        return Decision.WAIT
    if in_maintenance:
        return Decision.MAINTENANCE
    if parent_down:
        return Decision.PARENT_DOWN
    if tried_this_incident:
        return Decision.TRIED
    if attempts_in_window >= attempts:
        return Decision.BUDGET
    return Decision.RUN


class Result(enum.StrEnum):
    """The `result` label of prober_remediations_total, and the table's `result`."""

    VERIFIED = "verified"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    SKIPPED_BUDGET = "skipped_budget"


def remediations_counter() -> Counter:
    """`prober_remediations_total{monitor,result}`, for the probing process's registry
    (prober.metrics.registry): registered nowhere by itself."""
    return Counter(
        "prober_remediations",
        "Remediation attempts by how they ended (verified, failed, timed_out, interrupted)"
        " and those skipped for want of budget",
        ["monitor", "result"],
        registry=None,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Attempted:
    """An attempt that ran: its row (for settle) and how the command ended."""

    attempt: int
    outcome: Outcome


class Remediator:
    """Runs attempts and keeps their record: `recover()` once at start, `decide()` on each
    down result, `attempt()` when it says RUN, `settle()` when the verification is judged.
    Database work runs on a thread of its own (one connection, autocommit)."""

    def __init__(
        self,
        path: pathlib.Path | Database,
        redact: Callable[[str], str],
        *,
        counter: Counter | None = None,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
        notifiers: Sequence[Notifier] = (),
    ) -> None:
        """`session` and `notifiers`: for `remediate = { webhook = ID }` (the process's one
        outbound session, the config's notifiers)."""
        self._path = path
        self._session = session
        self._webhooks = {n.id: n for n in notifiers if isinstance(n, WebhookNotifier)}
        self._redact = redact
        self.counter = counter or remediations_counter()
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="remedy-db")
        self._conn: Connection | None = None
        self._unsettled: list[rows.Attempt] = []

    def reconfigure(self, notifiers: Sequence[Notifier], redact: Callable[[str], str]) -> None:
        """A reloaded config's webhook notifiers and redactor (attempts running keep theirs)."""
        self._webhooks = {n.id: n for n in notifiers if isinstance(n, WebhookNotifier)}
        self._redact = redact

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    async def _db(self, fn: Callable[[Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                self._conn = connect(self._path)
            return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def recover(self) -> list[rows.Attempt]:
        """Once at start, before any check or alert: attempts a killed prober left running,
        marked interrupted (and counted), their command's group killed if it still runs;
        and attempts whose verification a stop cut, stamped resumed (`unsettled`)."""
        found = await self._db(lambda c: rows.interrupt_unfinished(c, self._now_ms()))
        for row in found:
            log.warning(
                "remediation interrupted by a restart monitor=%s incident=%s; the checks "
                "that follow judge it",
                row.monitor,
                row.incident,
            )
            self.counter.labels(row.monitor, Result.INTERRUPTED).inc()
            if row.pid is not None and row.pid_start is not None:
                await self._kill_orphan(row, row.pid, row.pid_start)
        self._unsettled = await self._db(lambda c: rows.resume_unsettled(c, self._now_ms()))
        return found

    async def _kill_orphan(self, row: rows.Attempt, pid: int, pid_start: int) -> None:
        if not await kill_orphan(pid, pid_start):
            return
        log.warning(
            "remediation command still running after a restart monitor=%s incident=%s "
            "pid=%d: its process group killed",
            row.monitor,
            row.incident,
            pid,
        )
        line = "[prober] still running at the prober's restart: its process group was killed"
        await self._db(lambda c: rows.note(c, row.id, line))

    def unsettled(self) -> list[rows.Attempt]:
        """Attempts `recover` found ended but not verified yet (each given out once)."""
        found, self._unsettled = self._unsettled, []
        return found

    async def decide(
        self,
        monitor: Monitor,
        incident: str,
        *,
        down_streak: int,
        verdict: Verdict,
        regional: bool = False,
        in_maintenance: bool = False,
        parent_down: bool = False,
    ) -> Decision:
        """should_remediate with the record's facts; a budget skip is counted once per
        incident (the first time it is decided)."""
        spec = monitor.remediate
        if spec is None:
            return Decision.WAIT
        since = self._now_ms() - round(spec.within * 1000)

        def facts(conn: Connection) -> tuple[bool, int]:
            tried = bool(rows.for_incident(conn, monitor.id, incident))
            return tried, rows.started_since(conn, monitor.id, since)

        tried, used = await self._db(facts)
        decision = should_remediate(
            down_streak=down_streak,
            after=spec.after,
            verdict=verdict,
            regional=regional,
            in_maintenance=in_maintenance,
            parent_down=parent_down,
            tried_this_incident=tried,
            attempts_in_window=used,
            attempts=spec.attempts,
        )
        if decision is Decision.BUDGET and down_streak == spec.after:
            self.counter.labels(monitor.id, Result.SKIPPED_BUDGET).inc()
            log.warning(
                "remediation skipped monitor=%s attempts=%d within=%gs: budget used",
                monitor.id,
                used,
                spec.within,
            )
        return decision

    async def attempt(
        self, monitor: Monitor, incident: str, cause: str, incident_start_ms: int
    ) -> Attempted:
        """Run the monitor's command (or call its webhook) once, recorded before it starts
        and when it ends. One that succeeded stays `running` in the table until `settle`."""
        spec = monitor.remediate
        if spec is None:
            raise ValueError(f"monitor {monitor.id!r} has no remediate")
        notifier = self._webhooks.get(spec.webhook or "")
        if spec.command is None and (notifier is None or self._session is None):
            raise ValueError(f"webhook {spec.webhook!r}: no such notifier, or no session")
        secrets = spec.env_values
        redact: Callable[[str], str] = self._redact
        if secrets:
            extra = Redactor(secrets)

            def redact(text: str) -> str:
                return extra(self._redact(text))

        attempt = await self._db(lambda c: rows.start(c, monitor.id, incident, self._now_ms()))
        env = command_env(monitor.id, monitor.display_name, cause, incident_start_ms)
        log.info("remediation started monitor=%s incident=%s", monitor.id, incident)

        async def started(pid: int) -> None:
            identity = process_start(pid)
            try:
                await self._db(lambda c: rows.record_process(c, attempt, pid, identity))
            except sqlite3.Error as exc:  # only a kill -9 now would miss it
                log.warning("remediation pid not recorded monitor=%s: %s", monitor.id, exc)

        if spec.command is not None:
            outcome = await run_command(spec.command, env, spec.timeout, redact, started)
        else:
            assert notifier is not None
            assert self._session is not None
            payload = {
                "kind": "remediate",
                "idempotency_key": f"remediate/{incident}/{attempt}",
                "monitor": monitor.id,
                "name": monitor.display_name,
                "cause": cause,
                "incident": incident,
                "incident_start": env["PROBER_INCIDENT_START"],
            }
            outcome = await call_webhook(notifier, payload, self._session, spec.timeout, redact)
        result = (
            Result.TIMED_OUT if outcome.timed_out else None if outcome.succeeded else Result.FAILED
        )
        await self._db(
            lambda c: rows.finish(
                c,
                attempt,
                self._now_ms(),
                result=result or rows.RUNNING,
                exit_code=outcome.returncode,
                timed_out=outcome.timed_out,
                output_tail=outcome.output_tail,
            )
        )
        log.log(
            logging.INFO if result is None else logging.WARNING,
            "remediation ended monitor=%s outcome=%r duration_s=%.1f",
            monitor.id,
            outcome.describe(),
            outcome.duration,
        )
        if result is not None:
            self.counter.labels(monitor.id, result).inc()
        return Attempted(attempt, outcome)

    async def settle(self, monitor_id: str, attempt: int, verified: bool) -> None:
        """The verification's verdict on an attempt whose command succeeded."""
        result = Result.VERIFIED if verified else Result.FAILED
        await self._db(lambda c: rows.settle(c, attempt, result))
        self.counter.labels(monitor_id, result).inc()

    def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(shut).result()
        self._executor.shutdown()

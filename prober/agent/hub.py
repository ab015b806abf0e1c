"""The hub's side of agents, in the probing process: who a token is, which results of a
batch it may store, and how each agent is doing.

The web process pre-checks (prober.agent.gate): an unknown token never gets this far, a
malformed batch is answered there. What arrives here is an `Arrival`: the token's
location, the hub's clock when the request came in, and the parsed batch. `AgentHub`
then refuses a batch whose location is not the token's (403) or whose clock is more than
10 s off (409, results kept queued on the agent), refuses each result for a monitor not
assigned to that location (listed, the rest stored), and hands the rest to the writer.

Duplicates: the writer stores with INSERT OR IGNORE on (monitor, location, ts_ms), so a
replay is harmless. To count them, this process keeps the newest `RECENT_KEYS` keys of
each location (a resend repeats the batch the agent has not seen acknowledged, so a few
batches' worth is enough); after a hub restart a replay counts as accepted and is stored
once all the same.

`AgentHealth` keeps per location the last contact, queue depth, dropped results, clock
offset and batch counts: problems for /healthz, a Prometheus collector, and a log line
at each change (contact lost / regained, clock refused / fixed).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prober.agent import wire
from prober.agent.assign import assigned
from prober.config import Config
from prober.config.settings import Agent
from prober.results import CheckResult
from prober.runtime.connection import Throttled

log = logging.getLogger(__name__)

RECENT_KEYS = 10 * wire.MAX_RESULTS  # per location, for counting duplicates
COMMIT_WAIT_S = 4.0  # a batch is answered once committed, or 503 (within control.TIMEOUT)
SILENCE_FLOOR = 300.0  # seconds: silent after 3 x the shortest interval, and at least this
RESULTS = ("accepted", "duplicate", "refused", "clock")  # prober_agent_batches_total{result}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# (monitor, at, result, location): the writer, as prober.runtime.probe wires it
Submit = Callable[[str, dt.datetime, CheckResult, str], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Arrival:
    """An authenticated request to the agents' API, handed over by the web process
    (pickled, over the private control socket)."""

    location: str  # the token's
    arrived_ms: int  # the hub's clock as the request arrived, before its body was read
    batch: wire.Batch | None = None  # POST results, parsed; None: a GET (contact only)
    malformed: str | None = None  # the web process answered 400 with this line


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, object]


class AgentTokens:
    """`[[agents]]` tokens by their SHA-256 digest, compared in constant time."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        self._digests = tuple((_digest(a.token.get_secret_value()), a.location) for a in agents)

    def location(self, authorization: str) -> str | None:
        """The location whose token an `Authorization: Bearer ...` header carries."""
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        given = _digest(token)
        found: str | None = None
        for digest, location in self._digests:  # every one: the time says nothing
            if hmac.compare_digest(given, digest):
                found = location
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode(errors="surrogateescape")).digest()


class AgentHub:
    """Takes agents' batches (`receive`) and hands accepted results to `submit`.

    A batch is answered 200 only once its results are committed (`committed(timeout)`, the
    writer's flush): the agent then forgets them, so a hub killed right after must already
    hold them. Not committed within COMMIT_WAIT_S (the database slow or failing): 503, and
    the agent sends them again (stored once all the same)."""

    def __init__(
        self,
        config: Config,
        submit: Submit,
        health: AgentHealth,
        can_take: Callable[[int], bool] = lambda _: True,
        recent_keys: int = RECENT_KEYS,
        committed: Callable[[float], bool] = lambda _: True,
    ) -> None:
        self._submit = submit
        self._committed = committed
        self._health = health
        self._can_take = can_take  # room for this many results in the writer now
        self._recent_keys = recent_keys
        self._recent: dict[str, dict[tuple[str, int], None]] = collections.defaultdict(dict)
        self._misplaced = Throttled(log, logging.WARNING)  # one line a minute, each kind
        self._unassigned = Throttled(log, logging.WARNING)
        self._one_at_a_time = threading.Lock()
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        self._config = config
        self._assigned = {
            a.location: frozenset(m.id for m in assigned(config, a.location)[0])
            for a in config.agents
        }
        self._health.reconfigure(config)

    def receive(self, arrival: Arrival) -> Answer:
        """The answer to an agent's request; thread-safe (the control server calls it in a
        worker thread), one batch at a time."""
        with self._one_at_a_time:
            return self._receive(arrival)

    def _receive(self, arrival: Arrival) -> Answer:
        where = arrival.location
        health = self._health
        health.contact(where, arrival.arrived_ms)
        batch = arrival.batch
        if arrival.malformed is not None:
            health.count(where, "refused")
            return Answer(400, {"error": arrival.malformed})
        if batch is None:  # a GET of its monitors
            return Answer(204, {})
        if batch.location != where:
            health.count(where, "refused")
            self._misplaced(
                "agent location=%s: refused a batch saying location=%s (the token is %s's)",
                where,
                batch.location,
                where,
            )
            error = f"this token belongs to location {where!r}, not {batch.location!r}"
            return Answer(403, {"error": error})
        clock = wire.check_clock(batch.sent_ms, arrival.arrived_ms)
        health.observe(where, batch, clock)
        if clock.refusal is not None:
            health.count(where, "clock")
            return Answer(409, {"error": clock.refusal, "offset_ms": clock.offset_ms})
        if not self._can_take(len(batch.results)):
            return Answer(503, {"error": "the hub cannot store results now; retry later"})
        accepted, duplicates, refused = self._store(where, batch.results)
        if accepted and not self._committed(COMMIT_WAIT_S):
            recent = self._recent[where]
            for result in batch.results:  # not heard: the resend is stored, not a duplicate
                recent.pop((result.monitor, result.ts_ms), None)
            error = "the results are not stored yet (the hub's database is slow); retry"
            return Answer(503, {"error": error})
        if accepted or not batch.results:
            health.count(where, "accepted", dropped=batch.dropped, seq=batch.seq)
        elif duplicates:
            health.count(where, "duplicate", dropped=batch.dropped, seq=batch.seq)
        else:
            health.count(where, "refused")
        if refused:
            self._unassigned(
                "agent location=%s: refused %d results of a batch (first: %s)",
                where,
                len(refused),
                refused[0]["error"],
            )
        return Answer(200, {"accepted": accepted, "duplicates": duplicates, "refused": refused})

    def _store(
        self, where: str, results: Sequence[wire.WireResult]
    ) -> tuple[int, int, list[dict[str, object]]]:
        mine = self._assigned.get(where, frozenset())
        recent = self._recent[where]
        accepted, duplicates = 0, 0
        refused: list[dict[str, object]] = []
        for i, result in enumerate(results):
            if result.monitor not in mine:
                why = self._why(where, result.monitor)
                refused.append({"index": i, "monitor": result.monitor, "error": why})
                continue
            key = (result.monitor, result.ts_ms)
            if key in recent:
                duplicates += 1
                continue
            recent[key] = None
            at = _EPOCH + dt.timedelta(milliseconds=result.ts_ms)
            self._submit(result.monitor, at, result.to_check(), where)
            accepted += 1
        while len(recent) > self._recent_keys:
            del recent[next(iter(recent))]  # the oldest first: dicts keep insertion order
        return accepted, duplicates, refused

    def _why(self, where: str, monitor: str) -> str:
        if self._config.monitor(monitor) is None:
            return f"no monitor {monitor!r} on this hub"
        return f"monitor {monitor!r} is not assigned to location {where!r}"


@dataclasses.dataclass(slots=True)
class Seen:
    """One agent, as its requests showed it."""

    last_contact_ms: int | None = None
    queue_depth: int = 0
    dropped_total: int = 0  # reported dropped, summed over the batches stored
    counted_seq: int | None = None  # whose `dropped` was added last: a resend repeats it
    offset_ms: int | None = None  # the hub's clock minus the agent's, at the latest batch
    clock_refusal: str | None = None
    silent: bool = False  # contact lost, and logged
    batches: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


def silence_from_env(env: Mapping[str, str] | None = None) -> float | None:
    """`PROBER_AGENT_SILENCE` (seconds) when set: the silence limit of every agent."""
    value = (os.environ if env is None else env).get("PROBER_AGENT_SILENCE", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        log.warning("PROBER_AGENT_SILENCE=%r is not a number of seconds; ignored", value)
        return None
    return seconds


class AgentHealth:
    """Each declared agent's health: `contact`/`observe`/`count` as requests arrive,
    `problems(now)` for /healthz, `tick(now)` to log lost contact, `collector()`."""

    def __init__(
        self,
        config: Config,
        silence: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._override = silence
        self._clock = clock
        self._started = clock()
        self._seen: dict[str, Seen] = {}
        self._limits: dict[str, float] = {}
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Silence limits: 3 x the shortest interval of the agent's monitors, at least
        SILENCE_FLOOR (`silence`, when given, for every agent)."""
        limits = {}
        for agent in config.agents:
            monitors = assigned(config, agent.location)[0]
            shortest = min((m.interval for m in monitors), default=0.0)
            limits[agent.location] = self._override or max(SILENCE_FLOOR, 3 * shortest)
            self._seen.setdefault(agent.location, Seen())
        self._limits = limits

    def heard_elsewhere(self, contacts: Mapping[str, int]) -> None:
        """Several hubs: when each agent's results last reached the database through any
        of them (prober.store.writer.agent_contacts); an agent talks to one hub."""
        for location, at_ms in contacts.items():
            seen = self._seen.get(location)
            if seen is not None and at_ms > (seen.last_contact_ms or 0):
                self.contact(location, at_ms)

    def contact(self, location: str, now_ms: int) -> None:
        seen = self._seen.setdefault(location, Seen())
        seen.last_contact_ms = now_ms
        if seen.silent:
            seen.silent = False
            log.info("agent location=%s: contact regained", location)

    def observe(self, location: str, batch: wire.Batch, clock: wire.ClockCheck) -> None:
        """What a batch says of its agent: its queue, and its clock against ours."""
        seen = self._seen.setdefault(location, Seen())
        # a refused batch's results stay queued at the agent, behind none of the others
        refused = len(batch.results) if clock.refusal is not None else 0
        seen.queue_depth = batch.queue_depth + refused
        seen.offset_ms = -clock.offset_ms
        if clock.refusal is not None and seen.clock_refusal is None:
            log.warning("agent location=%s: %s", location, clock.refusal)
        elif clock.refusal is None and seen.clock_refusal is not None:
            log.info(
                "agent location=%s: clock fixed (offset_ms=%d); batches accepted again",
                location,
                clock.offset_ms,
            )
        seen.clock_refusal = clock.refusal

    def count(
        self, location: str, result: str, *, dropped: int = 0, seq: int | None = None
    ) -> None:
        seen = self._seen.setdefault(location, Seen())
        seen.batches[result] += 1
        if dropped and seq != seen.counted_seq:
            seen.dropped_total += dropped
            seen.counted_seq = seq
            log.warning(
                "agent location=%s: %d results dropped on the agent (its queue was full)",
                location,
                dropped,
            )

    def _quiet(self, seen: Seen, now: float) -> float:
        last = seen.last_contact_ms
        return now - (self._started if last is None else last / 1000)

    def problems(self, now: float | None = None) -> list[str]:
        now = self._clock() if now is None else now
        out = []
        for location, limit in self._limits.items():
            seen = self._seen[location]
            quiet = self._quiet(seen, now)
            if quiet > limit:
                never = " since the hub started" if seen.last_contact_ms is None else ""
                out.append(f"agent {location}: no contact{never} for {_span(quiet)}")
            if seen.clock_refusal is not None:
                out.append(f"agent {location}: {seen.clock_refusal}")
        return out

    def tick(self, now: float | None = None) -> None:
        """Log each agent's contact lost, once (`contact` logs it regained)."""
        now = self._clock() if now is None else now
        for location, limit in self._limits.items():
            seen = self._seen[location]
            quiet = self._quiet(seen, now)
            if not seen.silent and quiet > limit:
                seen.silent = True
                log.warning(
                    "agent location=%s: contact lost, nothing heard for %s (limit %s)",
                    location,
                    _span(quiet),
                    _span(limit),
                )

    def extend(self, report: dict[str, object], now: float | None = None) -> dict[str, object]:
        """The /healthz report with the agents' problems and figures added."""
        if not self._limits:
            return report
        now = self._clock() if now is None else now
        problems = [*_strings(report.get("problems")), *self.problems(now)]
        agents = {}
        for location, seen in self.seen():
            last = seen.last_contact_ms
            agents[location] = {
                "last_contact_age_s": None if last is None else round(now - last / 1000, 1),
                "queue_depth": seen.queue_depth,
                "dropped": seen.dropped_total,
                "clock_offset_ms": seen.offset_ms,
            }
        status = "unhealthy" if problems else report.get("status", "ok")
        return {**report, "status": status, "problems": problems, "agents": agents}

    def seen(self) -> Iterator[tuple[str, Seen]]:
        for location in self._limits:
            yield location, self._seen[location]

    def collector(self) -> Collector:
        return _AgentCollector(self)


class _AgentCollector(Collector):
    def __init__(self, health: AgentHealth) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        labels = ["location"]
        contact = GaugeMetricFamily(
            "prober_agent_last_contact_timestamp_seconds",
            "When the agent last reached the hub (UNIX seconds; 0: not since the hub started)",
            labels=labels,
        )
        depth = GaugeMetricFamily(
            "prober_agent_queue_depth",
            "Results queued on the agent behind its latest batch",
            labels=labels,
        )
        dropped = CounterMetricFamily(
            "prober_agent_dropped_results",
            "Results the agent dropped (its queue full), as its batches reported them",
            labels=labels,
        )
        offset = GaugeMetricFamily(
            "prober_agent_clock_offset_seconds",
            "The hub's clock minus the agent's at its latest batch (transit included)",
            labels=labels,
        )
        batches = CounterMetricFamily(
            "prober_agent_batches",
            "Batches of results from the agent, by what became of them",
            labels=["location", "result"],
        )
        for location, seen in self._health.seen():
            last = seen.last_contact_ms
            contact.add_metric([location], 0.0 if last is None else last / 1000)
            depth.add_metric([location], seen.queue_depth)
            dropped.add_metric([location], seen.dropped_total)
            if seen.offset_ms is not None:
                offset.add_metric([location], seen.offset_ms / 1000)
            for result in RESULTS:
                batches.add_metric([location, result], seen.batches[result])
        yield from (contact, depth, dropped, offset, batches)


def _span(seconds: float) -> str:
    """A silence as people say it: 45s, 6m, 2h 5m."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []

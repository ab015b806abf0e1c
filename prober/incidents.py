"""Incidents and status from a monitor's results: one contract, two implementations.

`Tracker` steps through results one at a time (live, and when `import-results` replays
history); `derive` reads a whole sequence at once (reports, and the property test that
holds the two together). Both are pure: no I/O, no clock, no logging.

The contract:

- A sample is `(ts_ms, outcome, error)`, in time order. A sample whose ts_ms is not after
  the previous kept one (a duplicate, or out of order) is skipped; nothing is re-sorted.
- `degraded` is a success. `unknown` is no data: it neither extends nor breaks a failure
  run, nor a recovery streak; incident derivation skips it.
- A failure run is a maximal sequence of consecutive `down` results. It is confirmed by its
  first `down` result that is at least `down_after.seconds` after the run's first one
  (0 confirms at the first), or that is its `down_after.count`-th (0 and 1 confirm at the
  first). That result opens the incident: start_ms = the run's first `down`,
  confirmed_ms = the confirming result, cause = the first `down`'s error (or "down" when
  it has none or an empty one). A success before confirmation ends the run as a blip.
- While an incident is open, successes build a streak and a `down` resets it. The result
  that makes the streak `up_after` long resolves the incident: end_ms = the streak's first
  success (the outage ended there), resolved_ms = this result.
- Status after each result: DOWN while an incident is open (also during an incomplete
  recovery streak and across unknowns); else PENDING while an unconfirmed failure run goes
  on (also across unknowns); else UP, DEGRADED or UNKNOWN after the result's outcome.
- A Transition is emitted whenever a result changes the status (the first result too,
  with old=None). Within one result: the Transition first, then Opened or Resolved.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import NamedTuple, Protocol

from prober.config.types import DownAfter
from prober.results import Outcome

Sample = tuple[int, Outcome, str | None]


class Status(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    PENDING = "pending"  # failing, not yet confirmed: a blip until down_after is reached
    DOWN = "down"  # an incident is open
    UNKNOWN = "unknown"


_OUTCOME_STATUS = {
    Outcome.UP: Status.UP,
    Outcome.DEGRADED: Status.DEGRADED,
    Outcome.DOWN: Status.DOWN,
    Outcome.UNKNOWN: Status.UNKNOWN,
}


class Configured(Protocol):
    """Anything carrying the two rules: a monitor model, a test double."""

    @property
    def down_after(self) -> DownAfter: ...

    @property
    def up_after(self) -> int: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """When a failure run becomes an incident, and how many successes end it."""

    down_after: DownAfter
    up_after: int = 1

    def __post_init__(self) -> None:
        count, seconds = self.down_after.count, self.down_after.seconds
        if (count is None) == (seconds is None):
            raise ValueError(f"down_after needs a count or a duration: {self.down_after!r}")
        if (count is not None and count < 0) or (seconds is not None and seconds < 0):
            raise ValueError(f"down_after cannot be negative: {self.down_after}")
        if self.up_after < 1:
            raise ValueError(f"up_after must be at least 1, not {self.up_after}")

    @classmethod
    def of(cls, monitor: Configured) -> Rule:
        return cls(monitor.down_after, monitor.up_after)

    @property
    def need_downs(self) -> int:
        """How many `down` results a run needs before it can be confirmed."""
        return max(self.down_after.count or 1, 1)

    @property
    def need_ms(self) -> int:
        """How long after its first `down` a run's confirming result must be, in whole ms.

        Timestamps are whole ms, so `ts >= first + D*1000` is `ts - first >= ceil(D*1000)`;
        rounding first keeps float noise out of ceil: "9ms" parses to 0.009000000000000001.
        """
        return math.ceil(round((self.down_after.seconds or 0.0) * 1000, 6))

    def confirms(self, downs: int, elapsed_ms: int) -> bool:
        """Whether a run's `downs`-th result, `elapsed_ms` after its first, confirms it."""
        return downs >= self.need_downs and elapsed_ms >= self.need_ms


@dataclasses.dataclass(frozen=True, slots=True)
class Incident:
    """A confirmed failure run, from its first `down` to the recovery that ended it."""

    start_ms: int  # the run's first down result: the outage began there
    confirmed_ms: int  # the result that reached down_after
    end_ms: int | None  # the first success of the up_after streak that ended it; None: open
    resolved_ms: int | None  # the result that completed that streak
    cause: str  # the first down result's error, or "down"


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    ts_ms: int
    old: Status | None  # None: the monitor's first result
    new: Status


@dataclasses.dataclass(frozen=True, slots=True)
class Opened:
    incident: Incident


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    incident: Incident


Change = Transition | Opened | Resolved

# Module globals for step(): a global lookup is cheaper than an enum attribute.
_UP, _DEGRADED, _PENDING = Status.UP, Status.DEGRADED, Status.PENDING
_DOWN, _UNKNOWN = Status.DOWN, Status.UNKNOWN
_O_UP, _O_DOWN, _O_UNKNOWN = Outcome.UP, Outcome.DOWN, Outcome.UNKNOWN


class Tracker:
    """One monitor's state; step() per result in time order. Runs millions of times per
    import, so the quiet path (nothing changes) only compares and assigns."""

    __slots__ = (
        "_need_downs",
        "_need_ms",
        "_run_cause",
        "_run_downs",
        "_run_start",
        "_streak",
        "_streak_start",
        "_up_after",
        "last_ts_ms",
        "open_incident",
        "rule",
        "status",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self._need_downs = rule.need_downs
        self._need_ms = rule.need_ms
        self._up_after = rule.up_after
        self.status: Status | None = None  # None before the first result
        self.open_incident: Incident | None = None
        self.last_ts_ms: int | None = None
        self._run_start: int | None = None  # an unconfirmed failure run's first down
        self._run_downs = 0
        self._run_cause = ""
        self._streak_start: int | None = None  # the recovery streak's first success
        self._streak = 0

    def steady(self, outcome: Outcome) -> bool:
        """Whether a later result of this outcome would change nothing but the time: the
        status already follows it (no failure run, no incident). A batch of millions of
        results skips step() for those and calls advance() with the last one's time."""
        return self.status is not None and self.status.value == outcome.value

    def advance(self, ts_ms: int) -> None:
        """Record steady results (see steady()) up to ts_ms without stepping through them."""
        if self.last_ts_ms is None or ts_ms > self.last_ts_ms:
            self.last_ts_ms = ts_ms

    def step(self, ts_ms: int, outcome: Outcome, error: str | None = None) -> list[Change]:
        """What this result changed: [], [Transition] or [Transition, Opened | Resolved]."""
        last = self.last_ts_ms
        if last is not None and ts_ms <= last:
            return []
        self.last_ts_ms = ts_ms
        incident = self.open_incident
        event: Opened | Resolved | None = None
        if outcome is _O_DOWN:
            if incident is not None:
                self._streak = 0
                self._streak_start = None
                new = _DOWN
            else:
                if self._run_start is None:
                    self._run_start = ts_ms
                    self._run_cause = error or "down"
                    self._run_downs = 0
                self._run_downs += 1
                if self._run_downs >= self._need_downs and ts_ms - self._run_start >= self._need_ms:
                    incident = Incident(self._run_start, ts_ms, None, None, self._run_cause)
                    self.open_incident = incident
                    self._run_start = None
                    self._run_downs = 0
                    self._run_cause = ""
                    event = Opened(incident)
                    new = _DOWN
                else:
                    new = _PENDING
        elif outcome is _O_UNKNOWN:
            if incident is not None:
                new = _DOWN
            elif self._run_start is not None:
                new = _PENDING
            else:
                new = _UNKNOWN
        elif incident is None:
            if self._run_start is not None:  # a blip: the run ends unconfirmed
                self._run_start = None
                self._run_downs = 0
                self._run_cause = ""
            new = _UP if outcome is _O_UP else _DEGRADED
        else:
            if self._streak == 0:
                self._streak_start = ts_ms
            self._streak += 1
            if self._streak >= self._up_after:
                end = self._streak_start
                incident = dataclasses.replace(incident, end_ms=end, resolved_ms=ts_ms)
                self.open_incident = None
                self._streak = 0
                self._streak_start = None
                event = Resolved(incident)
                new = _UP if outcome is _O_UP else _DEGRADED
            else:
                new = _DOWN
        old = self.status
        if new is old:
            return [] if event is None else [event]
        self.status = new
        transition = Transition(ts_ms, old, new)
        return [transition] if event is None else [transition, event]

    def step_run(
        self,
        ts_ms: int,
        outcome: Outcome,
        error: str | None,
        since_ms: int | None,
        run_checks: int,
    ) -> list[Change]:
        """A combined verdict (prober.quorum) rather than one location's result: a `down`
        verdict carries its failure run, the moment the quorum was met (`since_ms`) and
        the checks every location of the quorum made in it (`run_checks`), and those,
        not this tracker's count of down verdicts, confirm the run and date the incident."""
        last = self.last_ts_ms
        fresh = last is None or ts_ms > last
        if fresh and outcome is _O_DOWN and self.open_incident is None and since_ms is not None:
            if self._run_start is None:
                self._run_cause = error or "down"
            self._run_start = since_ms
            self._run_downs = run_checks - 1  # step() counts this verdict
        return self.step(ts_ms, outcome, error)

    def to_dict(self) -> dict[str, object]:
        """The state as JSON-ready values; the rule is not included (it lives in config)."""
        incident = self.open_incident
        return {
            "status": None if self.status is None else self.status.value,
            "last_ts_ms": self.last_ts_ms,
            "run_start_ms": self._run_start,
            "run_downs": self._run_downs,
            "run_cause": self._run_cause,
            "incident": None
            if incident is None
            else {
                "start_ms": incident.start_ms,
                "confirmed_ms": incident.confirmed_ms,
                "cause": incident.cause,
            },
            "streak_start_ms": self._streak_start,
            "streak": self._streak,
        }

    @classmethod
    def from_dict(cls, rule: Rule, data: Mapping[str, object]) -> Tracker:
        """The tracker `to_dict` described. The rule may have changed since (a config
        edit): a pending run is then judged by the new rule at its next `down` result."""
        tracker = cls(rule)
        status = data["status"]
        tracker.status = None if status is None else Status(json_str(status))
        tracker.last_ts_ms = json_opt_int(data["last_ts_ms"])
        tracker._run_start = json_opt_int(data["run_start_ms"])
        tracker._run_downs = json_int(data["run_downs"])
        tracker._run_cause = json_str(data["run_cause"])
        incident = data["incident"]
        if incident is not None:
            if not isinstance(incident, Mapping):
                raise ValueError(f"incident: expected an object, got {incident!r}")
            tracker.open_incident = Incident(
                start_ms=json_int(incident["start_ms"]),
                confirmed_ms=json_int(incident["confirmed_ms"]),
                end_ms=None,
                resolved_ms=None,
                cause=json_str(incident["cause"]),
            )
        tracker._streak_start = json_opt_int(data["streak_start_ms"])
        tracker._streak = json_int(data["streak"])
        return tracker

    def __repr__(self) -> str:
        return f"Tracker({self.rule!r}, {self.to_dict()!r})"


def json_int(value: object) -> int:
    """A value read back from saved JSON state (here and in prober.quorum): an int, not a bool."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def json_opt_int(value: object) -> int | None:
    return None if value is None else json_int(value)


def json_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Derivation:
    incidents: list[Incident]  # in start order; the last may be open
    transitions: list[Transition]
    status: Status | None  # after the last sample; None when there was none


class _Span(NamedTuple):
    """Where the status does not follow the outcome: [start_ms, until_ms) is `status`."""

    start_ms: int
    until_ms: int | None  # None: to the end of the samples
    status: Status


def derive(samples: Iterable[Sample], rule: Rule) -> Derivation:
    """The batch reading of the contract, written apart from Tracker on purpose: failure
    runs and recovery streaks are found as groups of results, not stepped through, so the
    property test compares two implementations rather than one with itself."""
    kept = list(_in_time_order(samples))
    incidents, spans = _incidents(kept, rule)
    transitions: list[Transition] = []
    old: Status | None = None
    for (ts_ms, _, _), new in zip(kept, _statuses(kept, spans), strict=True):
        if new != old:
            transitions.append(Transition(ts_ms, old, new))
        old = new
    return Derivation(incidents, transitions, old)


def _in_time_order(samples: Iterable[Sample]) -> Iterator[Sample]:
    last: int | None = None
    for sample in samples:
        if last is None or sample[0] > last:
            last = sample[0]
            yield sample


def _incidents(kept: list[Sample], rule: Rule) -> tuple[list[Incident], list[_Span]]:
    known = [s for s in kept if s[1] is not Outcome.UNKNOWN]
    # Alternating groups: (True, a failure run) or (False, consecutive successes).
    groups = [(d, list(g)) for d, g in itertools.groupby(known, lambda s: s[1] is Outcome.DOWN)]
    incidents: list[Incident] = []
    spans: list[_Span] = []
    i = 0
    while i < len(groups):
        is_down, run = groups[i]
        if not is_down:
            i += 1
            continue
        first_ms = run[0][0]
        confirming = next(
            (ts for n, (ts, _, _) in enumerate(run, 1) if rule.confirms(n, ts - first_ms)),
            None,
        )
        if confirming is None:  # a blip: pending until the success that ended it
            blip_end = groups[i + 1][1][0][0] if i + 1 < len(groups) else None
            spans.append(_Span(first_ms, blip_end, Status.PENDING))
            i += 1
            continue
        if confirming > first_ms:
            spans.append(_Span(first_ms, confirming, Status.PENDING))
        cause = run[0][2] or "down"
        recovery = next(
            (
                j
                for j in range(i + 1, len(groups))
                if not groups[j][0] and len(groups[j][1]) >= rule.up_after
            ),
            None,
        )
        if recovery is None:
            incidents.append(Incident(first_ms, confirming, None, None, cause))
            spans.append(_Span(confirming, None, Status.DOWN))
            break
        streak = groups[recovery][1]
        end_ms, resolved_ms = streak[0][0], streak[rule.up_after - 1][0]
        incidents.append(Incident(first_ms, confirming, end_ms, resolved_ms, cause))
        spans.append(_Span(confirming, resolved_ms, Status.DOWN))
        i = recovery + 1
    return incidents, spans


def _statuses(kept: list[Sample], spans: list[_Span]) -> Iterator[Status]:
    rest = iter(spans)
    span = next(rest, None)
    for ts_ms, outcome, _ in kept:
        while span is not None and span.until_ms is not None and ts_ms >= span.until_ms:
            span = next(rest, None)
        yield (
            span.status if span is not None and ts_ms >= span.start_ms else _OUTCOME_STATUS[outcome]
        )

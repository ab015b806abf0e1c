"""One monitor's verdict from several locations: DESIGN.md "Several locations", pure.

Each location sends its own stream of samples `(ts_ms, outcome, error)`; this module
turns them into one stream of `Verdict`s, which an `incidents.Tracker` then reads as it
reads a single location's results. No I/O, no clock, no logging.

The contract (`quorum` >= 1 locations, every result covering at most `cover_ms`):

- A location's *latest* result at a moment t is its newest result with ts_ms <= t. The
  location is *fresh* at t while that result covers t (t < ts_ms + cover_ms; a newer
  result replaces it) and is not `unknown`.
- At t the monitor is `down` when at least `quorum` fresh locations' latest results are
  `down`; else `unknown` when fewer than `quorum` locations are fresh; else `degraded`
  when any fresh location says degraded; else `up`.
- A location's *run* is its current sequence of `down` results; `unknown` results neither
  extend nor break it (as in prober.incidents), an `up` or `degraded` result ends it.
- `Verdict.failing`: the fresh locations saying `down`, sorted by name; failing but not
  `down` is a regional problem (`Verdict.regional`).
- For a `down` verdict, `since_ms` is the moment the quorum was met: the quorum-th
  earliest run start among the failing locations, i.e. the first `down` result, at a
  location of the quorum, at which `quorum` locations were down together. With quorum 2
  and runs starting at t1 < t2 < t3, since_ms = t2, not t1: until t2 only one location
  failed, a regional problem, and regional time is never downtime (DESIGN.md). Say
  Frankfurt is down on its own for a day and then Virginia fails too: the outage starts
  at Virginia's first `down`, not a day earlier. `run_checks` is the quorum-th largest
  run length among the failing locations: "K checks at each of `quorum` locations" is
  `run_checks >= K`. Both are read from the failing locations of this verdict, so while
  the verdict stays down they can move: later when a location of the quorum recovers
  and a later run takes its place, earlier when a location whose run went on through
  unknown or stale time (runs do, as above) is fresh again. The incident takes the
  confirming verdict's. Other verdicts have since_ms None and run_checks 0.
- `error`: when some location is failing, the latest error of the failing location whose
  run began first (ties: the smaller name); otherwise that of the first location by name
  whose latest result covers t and has the verdict's outcome; None when there is none.
- Verdicts come in time order, one per moment, with distinct ts_ms: one at every result
  time (all results of that millisecond, from any location, judged together), and one
  at every moment a fresh location's result stops covering with no newer result there
  (a *lapse*: `lapsed=True`; the fresh count drops, so something always changes). A
  result exactly at a lapse moment replaces the lapse. Between two verdicts the decision
  (outcome, failing, fresh, since_ms, run_checks) does not change, so the stream
  describes every moment; `error` is the one at the verdict's own moment.
- Within one location, a sample whose ts_ms equals one already kept is a duplicate (the
  first is kept, as the store keeps the first row of a key).

With one location and quorum 1, the verdicts at result times are the results themselves
(outcome and error); lapse verdicts are `unknown` and fall where the coverage rule
already says unknown.

API:

- `combine(streams, quorum, cover_ms, until_ms=None)`: the batch reading, every verdict
  with ts_ms <= until_ms (None: every lapse too). Streams need not be sorted.
- `Quorum(quorum, cover_ms)`: the same, incrementally. `add(location, ts_ms, outcome,
  error)` takes a result newer than every verdict emitted so far and returns the verdicts
  up to and including its time (lapses before it first); an older one returns
  `Rewind(from_ms)`: the Quorum is unchanged, verdicts from `from_ms` on are void, and the
  caller re-derives with `Quorum.rebuild(stored streams, ..., until_ms=now)` (verdicts
  before `from_ms` come out the same). Call `add` only for results actually stored: a
  repeat of the location's newest result is ignored, an older repeat cannot be told from
  a late result. `tick(now_ms)` emits lapses up to now (a dead agent's location turns
  stale without any new result); `next_lapse_ms()` says when the next one is due.
  `to_dict()` / `from_dict()` carry the state across restarts (`quorum` and `cover_ms`
  live in the config, as a Tracker's rule does); a restored state fed the results newer
  than its `horizon_ms`, in time order, goes on exactly as a rebuild would.

Notes for wiring this into the writer (prober.store.ledger), where the verdicts go to an
`incidents.Tracker` in place of one location's results:

- (a) A count-based `down_after` (K checks) confirms on the first down verdict with
  `run_checks >= K`, not on the Tracker's own count of down verdicts (every location's
  result makes a verdict): the Tracker needs a hook for that. The incident's start is
  the confirming verdict's `since_ms`, not the first down verdict's ts_ms.
- (b) For one-location monitors, `lapsed` verdicts must not be fed to the Tracker:
  today's path writes no up -> unknown transition at coverage gaps; the verdicts at
  result times alone are exactly today's input.
- (c) Agents' batches arrive late and interleaved: feed them behind a watermark (hold
  results until every location has reported past a moment, or a deadline passes), in
  time order, so that a batch does not cost a Rewind (a rebuild) each.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping, Sequence

from prober.incidents import Sample, json_int, json_opt_int, json_str
from prober.results import Outcome


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The monitor at one moment, judged from every location, until the next verdict."""

    ts_ms: int
    outcome: Outcome
    error: str | None
    failing: tuple[str, ...]  # fresh locations saying down, sorted
    fresh: int  # how many locations are fresh
    since_ms: int | None = None  # down: the quorum-th earliest start of the failing runs
    run_checks: int = 0  # down: the quorum-th largest run length among failing locations
    lapsed: bool = False  # no result at this moment: a location's result stopped covering

    @property
    def regional(self) -> bool:
        """Failing somewhere, but not at `quorum` fresh locations."""
        return bool(self.failing) and self.outcome is not Outcome.DOWN


@dataclasses.dataclass(frozen=True, slots=True)
class Rewind:
    """A result older than a verdict already emitted: verdicts from from_ms on are void."""

    from_ms: int


_UP, _DEGRADED, _DOWN, _UNKNOWN = Outcome.UP, Outcome.DEGRADED, Outcome.DOWN, Outcome.UNKNOWN


class _Latest:
    """A location's newest result and its current failure run."""

    __slots__ = ("error", "outcome", "run_downs", "run_start", "ts_ms")

    def __init__(self) -> None:
        self.ts_ms = -1
        self.outcome = Outcome.UNKNOWN
        self.error: str | None = None
        self.run_start: int | None = None  # the run's first down; None: no run
        self.run_downs = 0

    def take(self, ts_ms: int, outcome: Outcome, error: str | None) -> None:
        self.ts_ms, self.outcome, self.error = ts_ms, outcome, error
        if outcome is Outcome.DOWN:
            if self.run_start is None:
                self.run_start, self.run_downs = ts_ms, 0
            self.run_downs += 1
        elif outcome is not Outcome.UNKNOWN:
            self.run_start, self.run_downs = None, 0


_NEVER = _Latest()  # a location with no result yet


class Quorum:
    """One monitor's locations; add() per stored result, tick() as time passes."""

    __slots__ = ("_locations", "cover_ms", "horizon_ms", "quorum")

    def __init__(self, quorum: int, cover_ms: int) -> None:
        if quorum < 1:
            raise ValueError(f"quorum must be at least 1, not {quorum}")
        if cover_ms < 1:
            raise ValueError(f"cover_ms must be at least 1, not {cover_ms}")
        self.quorum = quorum
        self.cover_ms = cover_ms
        self.horizon_ms: int | None = None  # the newest verdict's time
        self._locations: dict[str, _Latest] = {}

    def add(
        self, location: str, ts_ms: int, outcome: Outcome, error: str | None = None
    ) -> list[Verdict] | Rewind:
        latest = self._locations.get(location)
        if latest is not None and latest.ts_ms == ts_ms:
            return []  # the location's newest result again
        if self.horizon_ms is not None and ts_ms <= self.horizon_ms:
            return Rewind(ts_ms)
        verdicts = self._lapses(ts_ms - 1)
        self._take(location, ts_ms, outcome, error)
        verdicts.append(self._judge(ts_ms, lapsed=False))
        return verdicts

    def add_moment(
        self, ts_ms: int, results: Sequence[tuple[str, Outcome, str | None]]
    ) -> list[Verdict] | Rewind:
        """Every location's result of one millisecond at once (as `rebuild` judges them):
        the lapses before it, then one verdict at ts_ms. A location named twice keeps its
        first; one whose newest result is already at ts_ms is a repeat and skipped."""
        if self.horizon_ms is not None and ts_ms <= self.horizon_ms:
            fresh = [r for r in results if self._locations.get(r[0], _NEVER).ts_ms != ts_ms]
            return Rewind(ts_ms) if fresh else []
        verdicts = self._lapses(ts_ms - 1)
        taken: set[str] = set()
        for location, outcome, error in results:
            if location not in taken:
                taken.add(location)
                self._take(location, ts_ms, outcome, error)
        verdicts.append(self._judge(ts_ms, lapsed=False))
        return verdicts

    def tick(self, now_ms: int) -> list[Verdict]:
        """The lapses due at or before now_ms."""
        return self._lapses(now_ms)

    def newest(self) -> dict[str, int]:
        """Each location's newest result time."""
        return {name: latest.ts_ms for name, latest in self._locations.items()}

    def next_lapse_ms(self) -> int | None:
        """When the next lapse verdict is due if no result arrives first."""
        after = -1 if self.horizon_ms is None else self.horizon_ms
        due: int | None = None
        for latest in self._locations.values():
            end = latest.ts_ms + self.cover_ms
            if end > after and latest.outcome is not _UNKNOWN and (due is None or end < due):
                due = end
        return due

    @classmethod
    def rebuild(
        cls,
        streams: Mapping[str, Iterable[Sample]],
        quorum: int,
        cover_ms: int,
        until_ms: int | None = None,
    ) -> tuple[Quorum, list[Verdict]]:
        """Every verdict of the stored streams up to until_ms, and the Quorum after them."""
        keyed = sorted(
            (ts, location, outcome, error)
            for location, samples in streams.items()
            for ts, outcome, error in _first_of_each_ms(samples)
            if until_ms is None or ts <= until_ms
        )
        built = cls(quorum, cover_ms)
        verdicts: list[Verdict] = []
        i = 0
        while i < len(keyed):
            ts_ms = keyed[i][0]
            verdicts += built._lapses(ts_ms - 1)
            while i < len(keyed) and keyed[i][0] == ts_ms:
                _, location, outcome, error = keyed[i]
                built._take(location, ts_ms, outcome, error)
                i += 1
            verdicts.append(built._judge(ts_ms, lapsed=False))
        end = (
            until_ms
            if until_ms is not None
            else max((latest.ts_ms + cover_ms for latest in built._locations.values()), default=-1)
        )
        verdicts += built._lapses(end)
        return built, verdicts

    def to_dict(self) -> dict[str, object]:
        """The state as JSON-ready values; quorum and cover_ms are not included."""
        return {
            "horizon_ms": self.horizon_ms,
            "locations": {
                name: {
                    "ts_ms": latest.ts_ms,
                    "outcome": latest.outcome.value,
                    "error": latest.error,
                    "run_start_ms": latest.run_start,
                    "run_downs": latest.run_downs,
                }
                for name, latest in sorted(self._locations.items())
            },
        }

    @classmethod
    def from_dict(cls, quorum: int, cover_ms: int, data: Mapping[str, object]) -> Quorum:
        built = cls(quorum, cover_ms)
        built.horizon_ms = json_opt_int(data["horizon_ms"])
        locations = data["locations"]
        if not isinstance(locations, Mapping):
            raise ValueError(f"locations: expected an object, got {locations!r}")
        for name, item in locations.items():
            if not isinstance(name, str) or not isinstance(item, Mapping):
                raise ValueError(f"location {name!r}: expected an object, got {item!r}")
            latest = _Latest()
            latest.ts_ms = json_int(item["ts_ms"])
            latest.outcome = Outcome(json_str(item["outcome"]))
            error = item["error"]
            latest.error = None if error is None else json_str(error)
            latest.run_start = json_opt_int(item["run_start_ms"])
            latest.run_downs = json_int(item["run_downs"])
            built._locations[name] = latest
        return built

    def __repr__(self) -> str:
        return f"Quorum({self.quorum}, {self.cover_ms}, {self.to_dict()!r})"

    def _take(self, location: str, ts_ms: int, outcome: Outcome, error: str | None) -> None:
        latest = self._locations.get(location)
        if latest is None:  # kept in name order: _judge reads them in that order
            latest = self._locations[location] = _Latest()
            self._locations = dict(sorted(self._locations.items()))
        latest.take(ts_ms, outcome, error)

    def _lapses(self, until_ms: int) -> list[Verdict]:
        """A verdict at every lapse after the horizon, up to and including until_ms."""
        verdicts: list[Verdict] = []
        while (due := self.next_lapse_ms()) is not None and due <= until_ms:
            verdicts.append(self._judge(due, lapsed=True))
        return verdicts

    def _judge(self, t: int, *, lapsed: bool) -> Verdict:
        """The verdict at t, from each location's latest result (all at or before t)."""
        self.horizon_ms = t
        cover, fresh = self.cover_ms, 0
        failing: list[tuple[int, str, _Latest]] = []  # (run start, name, latest), by name
        degraded = False
        for name, latest in self._locations.items():
            if latest.outcome is _UNKNOWN or latest.ts_ms + cover <= t:
                continue
            fresh += 1
            if latest.outcome is _DOWN:
                assert latest.run_start is not None
                failing.append((latest.run_start, name, latest))
            elif latest.outcome is _DEGRADED:
                degraded = True
        if failing:
            first = min(failing)[2]  # the earliest run; ties: the smaller name
            names = tuple(name for _, name, _ in failing)
            if len(failing) >= self.quorum:
                starts = sorted(start for start, _, _ in failing)
                runs = sorted((latest.run_downs for _, _, latest in failing), reverse=True)
                since, checks = starts[self.quorum - 1], runs[self.quorum - 1]
                return Verdict(t, _DOWN, first.error, names, fresh, since, checks, lapsed)
        outcome = _UNKNOWN if fresh < self.quorum else _DEGRADED if degraded else _UP
        if failing:
            return Verdict(t, outcome, first.error, names, fresh, lapsed=lapsed)
        error = next(
            (
                latest.error
                for latest in self._locations.values()
                if latest.outcome is outcome and latest.ts_ms + cover > t
            ),
            None,
        )
        return Verdict(t, outcome, error, (), fresh, lapsed=lapsed)


def combine(
    streams: Mapping[str, Sequence[Sample]],
    quorum: int,
    cover_ms: int,
    until_ms: int | None = None,
) -> list[Verdict]:
    """Every verdict of these streams (see the module's contract), in time order."""
    return Quorum.rebuild(streams, quorum, cover_ms, until_ms)[1]


def _first_of_each_ms(samples: Iterable[Sample]) -> list[Sample]:
    """A location's samples in time order, the first of each millisecond kept."""
    kept: dict[int, Sample] = {}
    for sample in samples:
        kept.setdefault(sample[0], sample)
    return sorted(kept.values(), key=lambda s: s[0])


class Gate:
    """One monitor's results from several locations, held until no location still
    reporting can send an older one, then let through in time order a moment at a time
    (for `Quorum.add_moment`). Agents send in batches, seconds apart and not in step with
    each other or the hub; without the gate each batch would arrive behind verdicts
    already emitted and cost a Rewind.

    A location is still reporting while its newest result covers now. Its next result
    starts a whole interval after its newest (the scheduler's fixed phase), so nothing
    older than `newest + quiet_ms` (half an interval) can come from it: the watermark is
    the earliest such moment over the locations still reporting, and never later than
    now. A result from a location that was not reporting (an agent back after an outage)
    can still be late, and is a Rewind. Pure: the caller says what time it is."""

    __slots__ = ("_held", "_newest", "_order", "cover_ms", "quiet_ms")

    def __init__(self, cover_ms: int, quiet_ms: int = 0) -> None:
        self.cover_ms = cover_ms
        self.quiet_ms = quiet_ms
        self._newest: dict[str, int] = {}
        # a heap of (ts_ms, location, arrival, outcome, error): arrival keeps the first of
        # a repeated (ts_ms, location) first and outcome and error out of the comparison
        self._held: list[tuple[int, str, int, Outcome, str | None]] = []
        self._order = 0

    def seen(self, location: str, ts_ms: int) -> None:
        """The location's newest result is at ts_ms (already judged: not held)."""
        if ts_ms > self._newest.get(location, -1):
            self._newest[location] = ts_ms

    def offer(self, location: str, ts_ms: int, outcome: Outcome, error: str | None) -> None:
        self._order += 1
        heapq.heappush(self._held, (ts_ms, location, self._order, outcome, error))
        self.seen(location, ts_ms)

    def watermark(self, now_ms: int) -> int:
        """Up to when no location still reporting can send an older result (<= now)."""
        cover, quiet = self.cover_ms, self.quiet_ms
        live = (ts + quiet for ts in self._newest.values() if ts + cover > now_ms)
        return min(now_ms, min(live, default=now_ms))

    def release(self, now_ms: int) -> list[tuple[int, list[tuple[str, Outcome, str | None]]]]:
        """The held moments up to the watermark, oldest first, each with its results."""
        until = self.watermark(now_ms)
        held = self._held
        moments: list[tuple[int, list[tuple[str, Outcome, str | None]]]] = []
        while held and held[0][0] <= until:
            ts_ms = held[0][0]
            items = []
            while held and held[0][0] == ts_ms:
                _, location, _, outcome, error = heapq.heappop(held)
                items.append((location, outcome, error))
            moments.append((ts_ms, items))
        return moments

    def drop_until(self, ts_ms: int) -> None:
        """Forget held results at or before ts_ms (a rebuild read them from the store)."""
        self._held = [item for item in self._held if item[0] > ts_ms]
        heapq.heapify(self._held)

    @property
    def holding(self) -> int:
        return len(self._held)

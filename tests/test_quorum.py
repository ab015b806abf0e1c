"""Quorum verdicts: DESIGN.md's cases as tables, then hypothesis against a naive reference
that judges every moment from scratch, and incremental (in order, any order with Rewind,
saved and restored through JSON) against batch."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober.incidents import Sample
from prober.quorum import Quorum, Rewind, Verdict, combine
from prober.results import Outcome

UP, DEG, DOWN, UNK = Outcome.UP, Outcome.DEGRADED, Outcome.DOWN, Outcome.UNKNOWN
COVER = 120_000  # 2 x a 60 s interval


def _brief(verdicts: list[Verdict]) -> list[tuple[int, str, tuple[str, ...], int, bool]]:
    return [(v.ts_ms, v.outcome.value, v.failing, v.fresh, v.lapsed) for v in verdicts]


# --- DESIGN.md's cases -------------------------------------------------------------------


def test_one_of_three_down_is_a_regional_problem_not_down() -> None:
    verdicts = combine(
        {
            "seoul": [(0, UP, None), (60_000, UP, None)],
            "frankfurt": [(10_000, DOWN, "timeout"), (70_000, DOWN, "timeout")],
            "virginia": [(20_000, UP, None), (80_000, UP, None)],
        },
        quorum=2,
        cover_ms=COVER,
        until_ms=80_000,
    )
    assert [v.outcome for v in verdicts] == [UNK, UP, UP, UP, UP, UP]
    regional = verdicts[2:]
    assert all(v.regional and v.failing == ("frankfurt",) for v in regional)
    assert all(v.error == "timeout" and v.since_ms is None for v in regional)
    assert verdicts[1] == Verdict(10_000, UP, "timeout", ("frankfurt",), 2)


def test_two_of_three_down_is_down_from_the_moment_the_quorum_is_met() -> None:
    verdicts = combine(
        {
            "seoul": [(0, UP, None), (60_000, UP, None), (120_000, UP, None)],
            "frankfurt": [(10_000, UP, None), (70_000, DOWN, "refused"), (130_000, DOWN, "x")],
            "virginia": [(20_000, DOWN, "timeout"), (80_000, DOWN, "reset")],
        },
        quorum=2,
        cover_ms=COVER,
        until_ms=130_000,
    )
    by_ts = {v.ts_ms: v for v in verdicts}
    assert by_ts[20_000].outcome is UP and by_ts[20_000].regional
    # virginia alone since 20 s was regional: the outage starts when frankfurt joins.
    assert by_ts[70_000] == Verdict(
        70_000, DOWN, "timeout", ("frankfurt", "virginia"), 3, since_ms=70_000, run_checks=1
    )
    # virginia's run began first: its newest error speaks; each location has 2 checks now.
    assert by_ts[80_000] == Verdict(
        80_000, DOWN, "reset", ("frankfurt", "virginia"), 3, since_ms=70_000, run_checks=1
    )
    assert by_ts[130_000].run_checks == 2 and by_ts[130_000].since_ms == 70_000
    assert not by_ts[130_000].regional


def test_a_day_of_regional_failure_is_not_back_dated_into_the_outage() -> None:
    """Frankfurt fails alone for a day (regional, never downtime), then Virginia fails
    too: the outage starts at Virginia's first down, not at Frankfurt's a day earlier."""
    day = 86_400_000
    every = range(0, day + 600_000, 60_000)
    virginia_down = day + 20_000
    verdicts = combine(
        {
            "seoul": [(t, UP, None) for t in every],
            "frankfurt": [(t + 10_000, DOWN, "timeout") for t in every],
            "virginia": [
                (t + 20_000, DOWN, "reset")
                if t + 20_000 >= virginia_down
                else (t + 20_000, UP, None)
                for t in every
            ],
        },
        quorum=2,
        cover_ms=COVER,
        until_ms=day + 600_000,
    )
    before = [v for v in verdicts if 10_000 <= v.ts_ms < virginia_down]
    assert before and all(v.regional and v.failing == ("frankfurt",) for v in before)
    down = [v for v in verdicts if v.outcome is DOWN]
    assert down[0].ts_ms == virginia_down
    assert {v.since_ms for v in down} == {virginia_down}
    # Frankfurt has 1,450 checks in its run, Virginia 10: K checks at 2 locations is 10.
    assert down[-1].run_checks == 10 == len([t for t in every if t + 20_000 >= virginia_down])
    assert down[0].error == "timeout"  # the cause is still the run that began first


def test_since_is_the_quorum_th_run_start_and_follows_the_failing_locations() -> None:
    """Runs starting at t1 < t2 < t3 with quorum 2: down since t2. When a location of the
    quorum recovers, the failing ones left were down together only since t3."""
    streams: dict[str, list[Sample]] = {
        "a": [(10, DOWN, "a"), (40, DOWN, "a"), (70, UP, None)],
        "b": [(20, DOWN, "b"), (50, DOWN, "b"), (80, DOWN, "b")],
        "c": [(30, DOWN, "c"), (60, DOWN, "c"), (90, DOWN, "c")],
    }
    by_ts = {v.ts_ms: v for v in combine(streams, quorum=2, cover_ms=100, until_ms=90)}
    assert [by_ts[t].since_ms for t in (10, 20, 30, 60, 70, 90)] == [None, 20, 20, 20, 30, 30]
    assert by_ts[70].failing == ("b", "c") and by_ts[70].outcome is DOWN
    assert by_ts[30].since_ms == 20 and by_ts[30].run_checks == 1


def test_run_checks_is_the_quorum_th_longest_run() -> None:
    streams: dict[str, list[Sample]] = {
        "a": [(t, DOWN, "a") for t in range(0, 50, 10)],  # 5 downs
        "b": [(1, UP, None), (21, DOWN, "b"), (31, UNK, "?"), (41, DOWN, "b")],  # 2 downs
        "c": [(2, DOWN, "c"), (12, DOWN, "c"), (22, DOWN, "c"), (42, DOWN, "c")],  # 4 downs
    }
    last = combine(streams, quorum=2, cover_ms=100, until_ms=42)[-1]
    assert (last.outcome, last.failing, last.run_checks, last.since_ms) == (
        DOWN,
        ("a", "b", "c"),
        4,
        2,
    )
    last3 = combine(streams, quorum=3, cover_ms=100, until_ms=42)[-1]
    assert (last3.outcome, last3.run_checks, last3.since_ms) == (DOWN, 2, 21)


def test_a_dead_agent_lapses_and_the_other_two_still_judge() -> None:
    streams: dict[str, list[Sample]] = {
        "seoul": [(t, UP, None) for t in range(0, 400_000, 60_000)],
        "frankfurt": [(10_000, UP, None)],  # its agent dies after one result
        "virginia": [(t + 20_000, UP, None) for t in range(0, 400_000, 60_000)],
    }
    verdicts = combine(streams, quorum=2, cover_ms=COVER, until_ms=400_000)
    lapses = [v for v in verdicts if v.lapsed]
    assert lapses == [Verdict(130_000, UP, None, (), 2, lapsed=True)]
    assert all(v.fresh == 2 and v.outcome is UP for v in verdicts if v.ts_ms > 130_000)

    streams["seoul"] += [(420_000, DOWN, "reset")]
    streams["virginia"] += [(440_000, DOWN, "timeout")]
    last = combine(streams, quorum=2, cover_ms=COVER, until_ms=440_000)[-1]
    assert (last.outcome, last.failing, last.since_ms) == (DOWN, ("seoul", "virginia"), 440_000)


def test_two_dead_agents_leave_the_verdict_unknown() -> None:
    verdicts = combine(
        {
            "seoul": [(t, DOWN, "timeout") for t in range(0, 400_000, 60_000)],
            "frankfurt": [(10_000, DOWN, "timeout")],
            "virginia": [(20_000, UP, None)],
        },
        quorum=2,
        cover_ms=COVER,
        until_ms=400_000,
    )
    by_ts = {v.ts_ms: v for v in verdicts}
    assert by_ts[10_000].outcome is DOWN
    assert by_ts[130_000] == Verdict(130_000, UP, "timeout", ("seoul",), 2, lapsed=True)
    assert by_ts[140_000] == Verdict(140_000, UNK, "timeout", ("seoul",), 1, lapsed=True)
    assert by_ts[140_000].regional  # failing somewhere, too few fresh to say down
    assert all(v.outcome is UNK for v in verdicts if v.ts_ms >= 140_000)


def test_degraded_anywhere_fresh_makes_the_verdict_degraded() -> None:
    verdicts = combine(
        {"a": [(0, UP, None)], "b": [(1, DEG, "slow: 900 ms")], "c": [(2, DOWN, "timeout")]},
        quorum=2,
        cover_ms=100,
    )
    assert _brief(verdicts) == [
        (0, "unknown", (), 1, False),
        (1, "degraded", (), 2, False),
        (2, "degraded", ("c",), 3, False),
        (100, "degraded", ("c",), 2, True),
        (101, "unknown", ("c",), 1, True),
        (102, "unknown", (), 0, True),
    ]
    assert verdicts[1].error == "slow: 900 ms" and verdicts[2].error == "timeout"


def test_unknown_results_are_not_fresh() -> None:
    verdicts = combine(
        {
            "a": [(0, DOWN, "timeout")],
            "b": [(1, UNK, "prober overloaded")],
            "c": [(2, UNK, "prober overloaded")],
        },
        quorum=1,
        cover_ms=100,
        until_ms=50,
    )
    assert [(v.outcome, v.fresh) for v in verdicts] == [(DOWN, 1), (DOWN, 1), (DOWN, 1)]
    only_unknown = combine({"b": [(1, UNK, "prober overloaded")]}, quorum=1, cover_ms=100)
    assert only_unknown == [Verdict(1, UNK, "prober overloaded", (), 0)]  # no lapse: not fresh


def test_one_location_quorum_one_is_its_own_stream() -> None:
    samples: list[Sample] = [
        (0, UP, None),
        (60_000, DEG, "slow"),
        (120_000, DOWN, "timeout"),
        (180_000, UNK, "prober overloaded"),
        (500_000, UP, None),
    ]
    verdicts = combine({"here": samples}, quorum=1, cover_ms=COVER)
    assert [(v.ts_ms, v.outcome, v.error) for v in verdicts if not v.lapsed] == samples
    assert [(v.ts_ms, v.outcome) for v in verdicts if v.lapsed] == [(620_000, UNK)]


def test_equal_times_make_one_verdict_and_the_first_run_names_the_cause() -> None:
    verdicts = combine(
        {"b": [(5, DOWN, "from b")], "a": [(5, DOWN, "from a")], "c": [(3, DOWN, "from c")]},
        quorum=2,
        cover_ms=100,
        until_ms=5,
    )
    assert verdicts == [
        Verdict(3, UNK, "from c", ("c",), 1),
        Verdict(5, DOWN, "from c", ("a", "b", "c"), 3, since_ms=5, run_checks=1),
    ]
    tie = combine({"b": [(5, DOWN, "from b")], "a": [(5, DOWN, "from a")]}, 2, 100, 5)
    assert tie[0].error == "from a"  # same run start: the smaller name


def test_combine_sorts_streams_and_keeps_the_first_of_a_millisecond() -> None:
    clean: list[Sample] = [(0, UP, None), (10, DOWN, "first"), (20, UP, None)]
    messy: list[Sample] = [(20, UP, None), (10, DOWN, "first"), (0, UP, None), (10, UP, "x")]
    assert combine({"a": messy}, 1, 15) == combine({"a": clean}, 1, 15)


def test_until_ms_stops_results_and_lapses() -> None:
    streams: dict[str, list[Sample]] = {"a": [(0, UP, None), (50, UP, None)]}
    assert _brief(combine(streams, 1, 20, until_ms=20)) == [
        (0, "up", (), 1, False),
        (20, "unknown", (), 0, True),
    ]
    assert [v.ts_ms for v in combine(streams, 1, 20, until_ms=19)] == [0]
    assert [v.ts_ms for v in combine(streams, 1, 20)] == [0, 20, 50, 70]


@pytest.mark.parametrize(("quorum", "cover_ms"), [(0, 1), (1, 0), (-1, 100)])
def test_quorum_and_cover_must_be_positive(quorum: int, cover_ms: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Quorum(quorum, cover_ms)


# --- Quorum, incrementally -----------------------------------------------------------


def test_add_emits_lapses_before_the_result_and_tick_emits_them_alone() -> None:
    q = Quorum(2, 100)
    assert q.add("a", 0, UP) == [Verdict(0, UNK, None, (), 1)]
    assert q.add("b", 10, UP) == [Verdict(10, UP, None, (), 2)]
    assert q.next_lapse_ms() == 100
    assert q.tick(99) == []
    assert q.tick(100) == [Verdict(100, UNK, None, (), 1, lapsed=True)]
    assert q.next_lapse_ms() == 110
    # b's lapse at 110 comes first; a result at the very moment of a lapse replaces it.
    assert q.add("a", 200, DOWN, "timeout") == [
        Verdict(110, UNK, None, (), 0, lapsed=True),
        Verdict(200, UNK, "timeout", ("a",), 1),
    ]
    assert q.add("b", 300, UP) == [
        Verdict(300, UNK, None, (), 1),
    ]
    assert q.horizon_ms == 300


def test_a_late_result_asks_for_a_rewind_and_changes_nothing() -> None:
    q = Quorum(1, 100)
    assert q.add("a", 10, UP) != []
    before = q.to_dict()
    assert q.add("b", 5, DOWN) == Rewind(5)
    assert q.add("b", 10, DOWN) == Rewind(10)  # the same moment as a verdict already given
    assert q.to_dict() == before
    assert q.add("a", 10, DOWN) == []  # the newest result again: a duplicate, ignored
    assert q.tick(1_000) == [Verdict(110, UNK, None, (), 0, lapsed=True)]
    assert q.add("a", 105, UP) == Rewind(105)  # before the lapse already given
    assert q.add("a", 111, UP) == [Verdict(111, UP, None, (), 1)]  # a tick moves no horizon


def test_state_survives_json() -> None:
    q = Quorum(2, 100)
    q.add("a", 0, DOWN, "timeout")
    q.add("b", 5, UNK, "prober overloaded")
    q.add("b", 7, DOWN, "reset")
    saved = json.loads(json.dumps(q.to_dict()))
    restored = Quorum.from_dict(2, 100, saved)
    assert restored.to_dict() == saved
    assert restored.add("c", 50, UP) == q.add("c", 50, UP)
    assert restored.tick(500) == q.tick(500)


def test_from_dict_refuses_a_malformed_state() -> None:
    with pytest.raises(ValueError, match="expected an integer"):
        Quorum.from_dict(1, 100, {"horizon_ms": "soon", "locations": {}})
    with pytest.raises(ValueError, match="expected an object"):
        Quorum.from_dict(1, 100, {"horizon_ms": None, "locations": []})


# --- Properties ---------------------------------------------------------------------------

_LOCATIONS = ["a", "b", "c", "d"]
_ERRORS = [None, "", "timeout", "reset"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, list[Sample]], int, int]:
    """Small, dense times so that results coincide across locations, covers overlap and
    lapse, and the per-millisecond reference stays cheap."""
    names = draw(st.lists(st.sampled_from(_LOCATIONS), min_size=1, max_size=4, unique=True))
    streams: dict[str, list[Sample]] = {}
    for name in names:
        start = draw(st.integers(min_value=0, max_value=30))
        gaps = draw(st.lists(st.integers(min_value=1, max_value=40), max_size=12))
        times = list(itertools.accumulate(gaps, initial=start))
        streams[name] = [
            (ts, draw(st.sampled_from(list(Outcome))), draw(st.sampled_from(_ERRORS)))
            for ts in times
        ]
    quorum = draw(st.integers(min_value=1, max_value=len(names) + 1))
    cover = draw(st.integers(min_value=1, max_value=60))
    return streams, quorum, cover


def _naive(streams: dict[str, list[Sample]], quorum: int, cover: int, t: int) -> Verdict:
    """The verdict at t, from the contract's words, looking at every location afresh."""
    fresh: list[str] = []
    failing: dict[str, tuple[int, int, str | None]] = {}  # name -> (run start, downs, error)
    covering: dict[str, tuple[Outcome, str | None]] = {}
    for name in sorted(streams):
        past = [s for s in streams[name] if s[0] <= t]
        if not past or past[-1][0] + cover <= t:
            continue
        outcome, error = past[-1][1:]
        covering[name] = (outcome, error)
        if outcome is UNK:
            continue
        fresh.append(name)
        if outcome is DOWN:
            run = list(
                itertools.takewhile(
                    lambda s: not s[1].is_available, (s for s in reversed(past) if s[1] is not UNK)
                )
            )
            failing[name] = (run[-1][0], len(run), error)
    names = tuple(sorted(failing))
    first = min(names, key=lambda n: (failing[n][0], n)) if names else None
    if len(failing) >= quorum:
        assert first is not None
        # The quorum was met at the quorum-th run start: only then were that many down.
        since = sorted(start for start, _, _ in failing.values())[quorum - 1]
        runs = sorted((downs for _, downs, _ in failing.values()), reverse=True)
        return Verdict(t, DOWN, failing[first][2], names, len(fresh), since, runs[quorum - 1])
    if len(fresh) < quorum:
        outcome = UNK
    elif any(covering[n][0] is DEG for n in fresh):
        outcome = DEG
    else:
        outcome = UP
    if first is not None:
        error = failing[first][2]
    else:
        error = next((e for o, e in covering.values() if o is outcome), None)
    return Verdict(t, outcome, error, names, len(fresh))


def _decision(v: Verdict) -> tuple[object, ...]:
    return (v.outcome, v.failing, v.fresh, v.since_ms, v.run_checks)


def _reference(streams: dict[str, list[Sample]], quorum: int, cover: int) -> list[Verdict]:
    """A verdict at every result time, and at every coverage end that changes the decision
    judged a millisecond before."""
    results = {ts for samples in streams.values() for ts, _, _ in samples}
    ends = {ts + cover for samples in streams.values() for ts, _, _ in samples}
    verdicts = []
    for t in sorted(results | ends):
        v = _naive(streams, quorum, cover, t)
        if t in results:
            verdicts.append(v)
        elif _decision(v) != _decision(_naive(streams, quorum, cover, t - 1)):
            verdicts.append(dataclasses.replace(v, lapsed=True))
    return verdicts


@settings(max_examples=300, deadline=None)
@given(cases())
def test_combine_matches_the_naive_reference(
    case: tuple[dict[str, list[Sample]], int, int],
) -> None:
    streams, quorum, cover = case
    assert combine(streams, quorum, cover) == _reference(streams, quorum, cover)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_every_millisecond_is_judged_by_the_verdict_in_force(
    case: tuple[dict[str, list[Sample]], int, int],
) -> None:
    """Down exactly when >= quorum fresh locations say down, at every moment: the verdict
    in force (the newest at or before it) holds the decision the naive judge makes."""
    streams, quorum, cover = case
    verdicts = combine(streams, quorum, cover)
    if not verdicts:
        return
    times = [v.ts_ms for v in verdicts]
    assert times == sorted(set(times))
    held = iter(verdicts)
    current = next(held)
    following = next(held, None)
    for t in range(times[0], times[-1] + 2):
        while following is not None and following.ts_ms <= t:
            current, following = following, next(held, None)
        naive = _naive(streams, quorum, cover, t)
        assert _decision(current) == _decision(naive), t
        fresh_down = [
            n
            for n, samples in streams.items()
            if (past := [s for s in samples if s[0] <= t])
            and past[-1][1] is DOWN
            and t < past[-1][0] + cover
        ]
        assert (current.outcome is DOWN) == (len(fresh_down) >= quorum)


def _arrivals(streams: dict[str, list[Sample]]) -> list[tuple[str, Sample]]:
    return sorted(
        ((n, s) for n, samples in streams.items() for s in samples), key=lambda a: a[1][0]
    )


class _Follower:
    """A caller that feeds a Quorum, saves and restores it, and re-derives on Rewind from
    the results it stored (everything that arrived so far)."""

    def __init__(self, quorum: int, cover: int) -> None:
        self.q = Quorum(quorum, cover)
        self.quorum, self.cover = quorum, cover
        self.stored: dict[str, list[Sample]] = {}
        self.verdicts: list[Verdict] = []
        self.now = 0
        self.rewinds: list[int] = []

    def arrive(self, name: str, sample: Sample) -> None:
        self.stored.setdefault(name, []).append(sample)
        self.now = max(self.now, sample[0])
        got = self.q.add(name, *sample)
        if not isinstance(got, Rewind):
            assert [v.ts_ms for v in got] == sorted(v.ts_ms for v in got)
            assert not self.verdicts or not got or got[0].ts_ms > self.verdicts[-1].ts_ms
            self.verdicts += got
            return
        self.rewinds.append(got.from_ms)
        kept = [v for v in self.verdicts if v.ts_ms < got.from_ms]
        self.q, again = Quorum.rebuild(self.stored, self.quorum, self.cover, until_ms=self.now)
        assert [v for v in again if v.ts_ms < got.from_ms] == kept  # nothing before moves
        self.verdicts = again

    def tick(self, now: int) -> None:
        self.now = max(self.now, now)
        self.verdicts += self.q.tick(now)

    def restart(self) -> None:
        state = json.loads(json.dumps(self.q.to_dict()))
        self.q = Quorum.from_dict(self.quorum, self.cover, state)


@settings(max_examples=300, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_in_order_arrivals_agree_with_combine(
    case: tuple[dict[str, list[Sample]], int, int], rnd: random.Random
) -> None:
    streams, quorum, cover = case
    follower = _Follower(quorum, cover)
    for name, sample in _arrivals(streams):
        if rnd.random() < 0.2:
            follower.restart()
        if rnd.random() < 0.3 and sample[0] > follower.now:  # the clock, short of the result
            follower.tick(rnd.randrange(follower.now, sample[0]))
        follower.arrive(name, sample)
    follower.tick(follower.now + cover)
    assert follower.verdicts == combine(streams, quorum, cover)
    # In time order only a second location's result in a millisecond already judged rewinds.
    counts = collections.Counter(ts for samples in streams.values() for ts, _, _ in samples)
    assert all(counts[ts] > 1 for ts in follower.rewinds)


@settings(max_examples=300, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_any_arrival_order_with_rewinds_agrees_with_combine(
    case: tuple[dict[str, list[Sample]], int, int], rnd: random.Random
) -> None:
    streams, quorum, cover = case
    arrivals = _arrivals(streams)
    rnd.shuffle(arrivals)
    follower = _Follower(quorum, cover)
    for name, sample in arrivals:
        if rnd.random() < 0.2:
            follower.restart()
        if rnd.random() < 0.2:
            follower.tick(follower.now + rnd.randrange(0, 30))
        follower.arrive(name, sample)
    follower.tick(follower.now + cover)
    assert follower.verdicts == combine(streams, quorum, cover)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_one_location_at_quorum_one_is_the_input_stream(
    case: tuple[dict[str, list[Sample]], int, int],
) -> None:
    streams, _, cover = case
    name, samples = next(iter(streams.items()))
    verdicts = combine({name: samples}, 1, cover)
    assert [(v.ts_ms, v.outcome, v.error) for v in verdicts if not v.lapsed] == samples
    for v in (v for v in verdicts if v.lapsed):
        # A lapse only where the single-location coverage rule already says unknown: after
        # a known result's cover ran out, before the next result.
        before = [s for s in samples if s[0] < v.ts_ms][-1]
        assert v.outcome is UNK and before[1] is not UNK and before[0] + cover == v.ts_ms
        assert all(not (v.ts_ms - cover < s[0] <= v.ts_ms) for s in samples)

"""Live and batch agree: a Tracker (saved and restored through JSON at random points)
reports exactly what derive finds, and derive's incidents keep the contract's shape."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from prober.config.types import DownAfter
from prober.incidents import (
    Derivation,
    Incident,
    Opened,
    Resolved,
    Rule,
    Sample,
    Tracker,
    Transition,
    derive,
)
from prober.results import Outcome

_ERRORS = [None, "", "timeout", "status 503 not in [200]"]
_GAPS = st.integers(min_value=1, max_value=200_000)

rules = st.builds(
    Rule,
    st.one_of(
        st.sampled_from([0, 60, 120, 300]).map(lambda s: DownAfter(seconds=s)),
        st.sampled_from([1, 2, 3, 5]).map(lambda c: DownAfter(count=c)),
    ),
    st.integers(min_value=1, max_value=3),
)


def sequences(gaps: st.SearchStrategy[int] = _GAPS) -> st.SearchStrategy[list[Sample]]:
    """Samples in segments of one outcome and error, each sample its own gap after the one
    before: segments give long runs and streaks at a fraction of the draws per sample."""
    segment = st.tuples(
        st.sampled_from(list(Outcome)),
        st.lists(gaps, min_size=1, max_size=6),
        st.sampled_from(_ERRORS),
    )

    def timed(segments: list[tuple[Outcome, list[int], str | None]]) -> list[Sample]:
        steps = [(gap, outcome, error) for outcome, gaps, error in segments for gap in gaps]
        times = itertools.accumulate((gap for gap, _, _ in steps), initial=1_700_000_000_000)
        return [(ts, o, e) for ts, (_, o, e) in zip(times, steps, strict=False)]

    return st.lists(segment, max_size=20).map(timed)


def _is_success(outcome: Outcome) -> bool:
    return outcome.is_available


def replay(samples: list[Sample], rule: Rule, saves: set[int]) -> Derivation:
    """Feed a Tracker, saving and restoring it through JSON before each index in saves."""
    tracker = Tracker(rule)
    incidents: dict[int, Incident] = {}
    transitions: list[Transition] = []
    for i, sample in enumerate(samples):
        if i in saves:
            tracker = Tracker.from_dict(rule, json.loads(json.dumps(tracker.to_dict())))
        for change in tracker.step(*sample):
            if isinstance(change, Transition):
                transitions.append(change)
            elif isinstance(change, Opened):
                assert change.incident.start_ms not in incidents
                assert change.incident.end_ms is None
                incidents[change.incident.start_ms] = change.incident
            else:
                assert isinstance(change, Resolved)
                opened = incidents[change.incident.start_ms]
                assert change.incident.end_ms is not None
                assert opened == Incident(
                    opened.start_ms, opened.confirmed_ms, None, None, change.incident.cause
                )
                incidents[change.incident.start_ms] = change.incident
        assert tracker.open_incident == next(
            (i for i in incidents.values() if i.end_ms is None), None
        )
    return Derivation(list(incidents.values()), transitions, tracker.status)


@settings(max_examples=500, deadline=None)
@given(sequences(), rules, st.data())
def test_tracker_agrees_with_derive(samples: list[Sample], rule: Rule, data: st.DataObject) -> None:
    saves = data.draw(st.sets(st.integers(min_value=0, max_value=max(len(samples) - 1, 0))))
    assert replay(samples, rule, saves) == derive(samples, rule)


@settings(max_examples=100, deadline=None)
@given(sequences(st.one_of(st.integers(min_value=-5_000, max_value=0), _GAPS)), rules)
def test_tracker_and_derive_skip_the_same_samples(samples: list[Sample], rule: Rule) -> None:
    assert replay(samples, rule, set()) == derive(samples, rule)


@settings(max_examples=500, deadline=None)
@given(sequences(), rules)
def test_incidents_keep_their_shape(samples: list[Sample], rule: Rule) -> None:
    """Checked against the samples directly, not against either implementation."""
    incidents = derive(samples, rule).incidents
    known = [(ts, o) for ts, o, _ in samples if o is not Outcome.UNKNOWN]
    errors = {ts: e for ts, _, e in samples}

    def outcomes(start: int, stop: float) -> list[Outcome]:
        return [o for ts, o in known if start <= ts < stop]

    for before, after in itertools.pairwise(incidents):
        assert before.resolved_ms is not None
        assert before.resolved_ms < after.start_ms  # no overlap, in start order
    for incident in incidents:
        assert incident.start_ms <= incident.confirmed_ms
        assert (incident.end_ms is None) == (incident.resolved_ms is None)
        end = float("inf") if incident.end_ms is None else incident.end_ms
        assert incident.confirmed_ms < end
        assert incident.cause == (errors[incident.start_ms] or "down")
        # It starts a failure run, and its confirming result is the run's first to qualify.
        assert [o for ts, o in known if ts < incident.start_ms][-1:] != [Outcome.DOWN]
        run = [ts for ts, _ in known if incident.start_ms <= ts <= incident.confirmed_ms]
        assert outcomes(incident.start_ms, incident.confirmed_ms + 1) == [Outcome.DOWN] * len(run)
        qualifying = [ts for n, ts in enumerate(run, 1) if rule.confirms(n, ts - run[0])]
        assert qualifying[:1] == [incident.confirmed_ms]
        # No recovery streak inside it; the one that ended it is exactly up_after long.
        inside = outcomes(incident.start_ms, end)
        longest = max(
            (len(list(g)) for ok, g in itertools.groupby(inside, _is_success) if ok), default=0
        )
        assert longest < rule.up_after
        if incident.end_ms is not None and incident.resolved_ms is not None:
            streak = outcomes(incident.end_ms, incident.resolved_ms + 1)
            assert len(streak) == rule.up_after
            assert all(_is_success(o) for o in streak)
    assert all(i.end_ms is not None for i in incidents[:-1])  # only the last may be open

    def in_incident(ts: int) -> bool:
        return any(i.start_ms <= ts and (i.end_ms is None or ts < i.end_ms) for i in incidents)

    # Outside incidents, no failure run ever reaches down_after.
    for down, group in itertools.groupby(known, lambda s: s[1] is Outcome.DOWN):
        run = [ts for ts, _ in group]
        if down and not in_incident(run[0]):
            assert not any(rule.confirms(n, ts - run[0]) for n, ts in enumerate(run, 1))

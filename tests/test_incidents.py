"""Incident rules as tables; every case runs through both Tracker and derive.

Sequences are written one character per result, a minute apart from t=0:
U up, G degraded, D down, ? unknown. Expected times are in minutes.
"""

from __future__ import annotations

import json

import pytest

from prober.config.durations import parse_duration
from prober.config.types import DownAfter
from prober.incidents import (
    Change,
    Derivation,
    Incident,
    Opened,
    Resolved,
    Rule,
    Sample,
    Status,
    Tracker,
    Transition,
    derive,
)
from prober.results import Outcome

MIN = 60_000
_OUTCOMES = {"U": Outcome.UP, "G": Outcome.DEGRADED, "D": Outcome.DOWN, "?": Outcome.UNKNOWN}


def minutely(text: str, errors: dict[int, str] | None = None) -> list[Sample]:
    """ "DDU" -> down at 0, down at 1 min, up at 2 min; errors by minute."""
    errors = errors or {}
    return [(i * MIN, _OUTCOMES[c], errors.get(i)) for i, c in enumerate(text)]


def inc(
    start: float, confirmed: float, end: float | None, resolved: float | None, cause: str = "down"
) -> Incident:
    def ms(minutes: float | None) -> int | None:
        return None if minutes is None else round(minutes * MIN)

    return Incident(round(start * MIN), round(confirmed * MIN), ms(end), ms(resolved), cause)


def seconds(value: float, up_after: int = 1) -> Rule:
    return Rule(DownAfter(seconds=value), up_after)


def count(value: int, up_after: int = 1) -> Rule:
    return Rule(DownAfter(count=value), up_after)


def run_tracker(samples: list[Sample], rule: Rule) -> tuple[Derivation, list[list[Change]]]:
    """What a live Tracker reports, shaped like derive's answer, plus its raw changes."""
    tracker = Tracker(rule)
    steps = [tracker.step(*sample) for sample in samples]
    incidents: dict[int, Incident] = {}
    transitions: list[Transition] = []
    for change in (c for step in steps for c in step):
        if isinstance(change, Transition):
            transitions.append(change)
        else:
            incidents[change.incident.start_ms] = change.incident
    return Derivation(list(incidents.values()), transitions, tracker.status), steps


def both(samples: list[Sample], rule: Rule) -> Derivation:
    batch = derive(samples, rule)
    live, _ = run_tracker(samples, rule)
    assert live == batch
    return batch


# --- confirmation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "sequence", "expected"),
    [
        pytest.param(seconds(120), "UDDU", [], id="seconds-run-shorter-than-down-after-is-a-blip"),
        pytest.param(seconds(120), "UDDDU", [inc(1, 3, 4, 4)], id="seconds-confirmed-exactly"),
        pytest.param(seconds(0), "UDU", [inc(1, 1, 2, 2)], id="seconds-zero-confirms-at-first"),
        pytest.param(count(3), "UDDUDDDU", [inc(4, 6, 7, 7)], id="count-3"),
        pytest.param(count(3), "DDG", [], id="count-3-blip"),
        pytest.param(count(1), "UDU", [inc(1, 1, 2, 2)], id="count-1-confirms-at-first"),
        pytest.param(count(0), "UDU", [inc(1, 1, 2, 2)], id="count-0-confirms-at-first"),
        pytest.param(seconds(60), "DDDD", [inc(0, 1, None, None)], id="first-result-down-open"),
        pytest.param(count(2), "", [], id="no-samples"),
        pytest.param(
            seconds(60), "DDUUDDU", [inc(0, 1, 2, 2), inc(4, 5, 6, 6)], id="two-incidents"
        ),
    ],
)
def test_confirmation(rule: Rule, sequence: str, expected: list[Incident]) -> None:
    assert both(minutely(sequence), rule).incidents == expected


@pytest.mark.parametrize(
    ("gap_ms", "expected"),
    [
        pytest.param(120_000, [Incident(0, 120_000, 120_001, 120_001, "down")], id="at-down-after"),
        pytest.param(119_999, [], id="one-ms-short"),
    ],
)
def test_seconds_confirmation_to_the_millisecond(gap_ms: int, expected: list[Incident]) -> None:
    samples: list[Sample] = [(0, Outcome.DOWN, None), (gap_ms, Outcome.DOWN, None)]
    samples.append((120_001, Outcome.UP, None))
    assert both(samples, seconds(120)).incidents == expected


def test_float_noise_in_the_duration_does_not_delay_confirmation() -> None:
    samples: list[Sample] = [(0, Outcome.DOWN, None), (9, Outcome.DOWN, None)]
    down_after = parse_duration("9ms")  # 0.009000000000000001
    assert both(samples, seconds(down_after)).incidents == [Incident(0, 9, None, None, "down")]


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        pytest.param("D??U", [], id="unknowns-past-the-wait-do-not-confirm"),
        pytest.param("D??D", [inc(0, 3, None, None)], id="the-next-down-does"),
    ],
)
def test_seconds_rule_needs_a_down_result_past_the_wait(
    sequence: str, expected: list[Incident]
) -> None:
    assert both(minutely(sequence), seconds(60)).incidents == expected


# --- recovery --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "sequence", "expected"),
    [
        pytest.param(
            seconds(0, up_after=2), "DUDUUU", [inc(0, 0, 3, 4)], id="lone-success-inside-outage"
        ),
        pytest.param(count(1, up_after=3), "DUUDUUU", [inc(0, 0, 4, 6)], id="streak-reset-by-down"),
        pytest.param(seconds(0), "DG", [inc(0, 0, 1, 1)], id="degraded-is-a-success"),
        pytest.param(seconds(0, up_after=2), "DGU", [inc(0, 0, 1, 2)], id="degraded-in-streak"),
        pytest.param(seconds(0, up_after=2), "DDU", [inc(0, 0, None, None)], id="open-mid-streak"),
        pytest.param(count(2), "UGDDGU", [inc(2, 3, 4, 4)], id="degraded-ends-run-and-incident"),
    ],
)
def test_recovery(rule: Rule, sequence: str, expected: list[Incident]) -> None:
    assert both(minutely(sequence), rule).incidents == expected


@pytest.mark.parametrize(
    ("rule", "sequence", "expected"),
    [
        pytest.param(count(3), "D?D?D", [inc(0, 4, None, None)], id="inside-a-run"),
        pytest.param(count(3), "DD?UD", [], id="do-not-bridge-a-success"),
        pytest.param(count(1, up_after=2), "DU?U", [inc(0, 0, 1, 3)], id="inside-a-streak"),
        pytest.param(count(1, up_after=2), "DU?DUU", [inc(0, 0, 4, 5)], id="before-a-down"),
        pytest.param(
            count(1), "DU??DU", [inc(0, 0, 1, 1), inc(4, 4, 5, 5)], id="between-incidents"
        ),
        pytest.param(count(2), "??D?", [], id="only-unknowns-around-a-failure"),
    ],
)
def test_unknowns_are_transparent(rule: Rule, sequence: str, expected: list[Incident]) -> None:
    assert both(minutely(sequence), rule).incidents == expected


def test_resolved_ms_is_the_result_that_completes_the_streak() -> None:
    [incident] = both(minutely("DDUUU"), count(2, up_after=3)).incidents
    assert (incident.end_ms, incident.resolved_ms) == (2 * MIN, 4 * MIN)


@pytest.mark.parametrize(
    ("errors", "cause"),
    [
        pytest.param(
            {1: "status 503 not in [200]", 2: "timeout"}, "status 503 not in [200]", id="first-down"
        ),
        pytest.param({2: "timeout"}, "down", id="first-down-had-none"),
        pytest.param({1: ""}, "down", id="empty-error"),
        pytest.param({0: "ignored: a success", 1: "refused"}, "refused", id="only-downs-count"),
    ],
)
def test_cause_is_the_first_down_error(errors: dict[int, str], cause: str) -> None:
    [incident] = both(minutely("UDDDU", errors), count(3)).incidents
    assert incident.cause == cause


def test_cause_of_a_run_after_a_blip_is_its_own() -> None:
    samples = minutely("DUDD", {0: "blip", 2: "outage"})
    assert both(samples, count(2)).incidents == [inc(2, 3, None, None, "outage")]


# --- status and transitions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "sequence", "statuses"),
    [
        pytest.param(
            count(3, up_after=2),
            "UGD?DDUDUU?G",
            "up degraded pending pending pending down down down down up unknown degraded",
            id="representative",
        ),
        pytest.param(count(1), "D?U", "down down up", id="unknown-while-open-stays-down"),
        pytest.param(count(2), "UD?U?", "up pending pending up unknown", id="blip"),
        pytest.param(count(1), "?", "unknown", id="first-unknown"),
    ],
)
def test_status_after_each_result(rule: Rule, sequence: str, statuses: str) -> None:
    samples = minutely(sequence)
    tracker = Tracker(rule)
    seen = []
    for sample in samples:
        tracker.step(*sample)
        seen.append(tracker.status)
    assert " ".join(str(s) for s in seen) == statuses
    assert both(samples, rule).status == seen[-1]


def test_transitions_and_change_order() -> None:
    samples = minutely("UDDUDU", {1: "refused"})
    _, steps = run_tracker(samples, count(2))
    incident = Incident(1 * MIN, 2 * MIN, 3 * MIN, 3 * MIN, "refused")
    assert steps == [
        [Transition(0, None, Status.UP)],
        [Transition(1 * MIN, Status.UP, Status.PENDING)],
        [
            Transition(2 * MIN, Status.PENDING, Status.DOWN),
            Opened(Incident(1 * MIN, 2 * MIN, None, None, "refused")),
        ],
        [Transition(3 * MIN, Status.DOWN, Status.UP), Resolved(incident)],
        [Transition(4 * MIN, Status.UP, Status.PENDING)],
        [Transition(5 * MIN, Status.PENDING, Status.UP)],
    ]
    assert derive(samples, count(2)).transitions == [
        c for s in steps for c in s if isinstance(c, Transition)
    ]


def test_first_result_down_goes_straight_from_nothing_to_down() -> None:
    _, steps = run_tracker(minutely("D"), seconds(0))
    assert steps == [[Transition(0, None, Status.DOWN), Opened(Incident(0, 0, None, None, "down"))]]


def test_quiet_results_change_nothing() -> None:
    tracker = Tracker(count(1))
    tracker.step(0, Outcome.UP)
    assert [tracker.step(ts, Outcome.UP) for ts in range(1, 100)] == [[]] * 99


# --- time order ------------------------------------------------------------------------


def test_duplicate_and_out_of_order_samples_are_skipped() -> None:
    samples: list[Sample] = [
        (1000, Outcome.UP, None),
        (2000, Outcome.DOWN, "a"),
        (2000, Outcome.UP, None),  # duplicate: would end the run as a blip
        (1500, Outcome.UP, None),  # out of order: likewise
        (3000, Outcome.DOWN, "b"),
    ]
    result = both(samples, count(2))
    assert result.incidents == [Incident(2000, 3000, None, None, "a")]
    assert [t.ts_ms for t in result.transitions] == [1000, 2000, 3000]


def test_skipped_sample_returns_no_changes() -> None:
    tracker = Tracker(count(1))
    tracker.step(5, Outcome.UP)
    assert tracker.step(5, Outcome.DOWN) == []
    assert tracker.step(4, Outcome.DOWN) == []
    assert (tracker.status, tracker.last_ts_ms, tracker.open_incident) == (Status.UP, 5, None)


# --- persistence -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "before", "after"),
    [
        pytest.param(count(3), "UDD", "DUU", id="mid-run"),
        pytest.param(count(2), "UDDD", "DUU", id="mid-incident"),
        pytest.param(count(1, up_after=3), "DUU", "?UD", id="mid-streak"),
        pytest.param(count(1), "", "DU", id="fresh"),
        pytest.param(seconds(60), "DUU", "DD", id="after-a-blip"),
    ],
)
def test_state_round_trips_through_json(rule: Rule, before: str, after: str) -> None:
    samples = minutely(before + after, {0: "first", 1: "second"})
    tracker = Tracker(rule)
    for sample in samples[: len(before)]:
        tracker.step(*sample)
    state = tracker.to_dict()
    restored = Tracker.from_dict(rule, json.loads(json.dumps(state)))
    assert restored.to_dict() == state
    assert (restored.status, restored.open_incident, restored.last_ts_ms) == (
        tracker.status,
        tracker.open_incident,
        tracker.last_ts_ms,
    )
    rest = samples[len(before) :]
    assert [restored.step(*s) for s in rest] == [tracker.step(*s) for s in rest]


def test_restored_state_with_a_new_rule_judges_the_run_at_its_next_down() -> None:
    tracker = Tracker(count(5))
    for sample in minutely("DDD"):
        tracker.step(*sample)
    restored = Tracker.from_dict(count(2), tracker.to_dict())
    assert restored.status is Status.PENDING
    changes = restored.step(3 * MIN, Outcome.DOWN)
    assert changes[-1] == Opened(Incident(0, 3 * MIN, None, None, "down"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"last_ts_ms": "5"}, "expected an integer, got '5'", id="string-ts"),
        pytest.param({"streak": True}, "expected an integer, got True", id="bool-count"),
        pytest.param({"incident": [1]}, "incident: expected an object", id="incident-list"),
        pytest.param({"status": "sideways"}, "'sideways' is not a valid Status", id="status"),
    ],
)
def test_from_dict_refuses_malformed_state(data: dict[str, object], message: str) -> None:
    state = Tracker(count(1)).to_dict() | data
    with pytest.raises(ValueError, match=message):
        Tracker.from_dict(count(1), state)


# --- rules -----------------------------------------------------------------------------


class _Monitor:
    down_after = DownAfter(count=3)
    up_after = 2


def test_rule_of_a_monitor() -> None:
    assert Rule.of(_Monitor()) == Rule(DownAfter(count=3), 2)


@pytest.mark.parametrize(
    ("down_after", "up_after", "message"),
    [
        pytest.param(DownAfter(), 1, "needs a count or a duration", id="neither"),
        pytest.param(DownAfter(count=1, seconds=60), 1, "needs a count or a duration", id="both"),
        pytest.param(DownAfter(count=-1), 1, "cannot be negative", id="negative-count"),
        pytest.param(DownAfter(seconds=-1), 1, "cannot be negative", id="negative-seconds"),
        pytest.param(DownAfter(count=1), 0, "up_after must be at least 1", id="up-after-0"),
    ],
)
def test_rule_refuses_nonsense(down_after: DownAfter, up_after: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(down_after, up_after)

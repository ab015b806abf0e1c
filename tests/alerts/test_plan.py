"""The dispatcher's decisions (prober.alerts.plan) as tables: one table per rule of its docstring,
then a property over random outboxes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober.alerts.message import Kind
from prober.alerts.outbox import FAILED, PENDING, SENDING, SENT, SUPPRESSED, Row
from prober.alerts.plan import HOLD_MS, Plan, Situation, plan

NOW = 10_000_000
WAIT = 1_000  # the group wait the factory gives rows: due_ms = created_ms + WAIT
DUE = NOW - 2 * WAIT  # created then: due already
FRESH = NOW  # created now: due only in WAIT
END = NOW + 600_000  # the end of the maintenance window in the tables


def inc(monitor: str, start: int = 100) -> str:
    return f"here/{monitor}/{start}"


NET = "here/prober-network/5000"  # the prober-network incident
CERT = "here/api/cert-99999999"  # a certificate event's incident
DOWN_DATA: Mapping[str, object] = {"since_ms": 5000}
BACK_DATA: Mapping[str, object] = {"since_ms": 5000, "until_ms": 9000}


def row(
    id_: int,
    kind: Kind = Kind.OPENED,
    *,
    notifier: str = "hook",
    monitor: str = "api",
    incident: str | None = None,
    created_ms: int = DUE,
    due_ms: int | None = None,
    state: str = PENDING,
    attempts: int = 0,
    batch: int | None = None,
    silenced: bool = False,
    data: Mapping[str, object] | None = None,
) -> Row:
    incident = inc(monitor) if incident is None else incident
    return Row(
        id=id_,
        key=f"{incident}/{kind}/{notifier}#{id_}",
        notifier=notifier,
        kind=kind,
        monitor=monitor,
        incident=incident,
        created_ms=created_ms,
        due_ms=created_ms + WAIT if due_ms is None else due_ms,
        state=state,
        attempts=attempts,
        first_try_ms=None if attempts == 0 else created_ms + WAIT,
        batch=batch,
        silenced=silenced,
        sent_ms=None,
        data={"since_ms": 100} if data is None else data,
    )


def resolved(id_: int, **kw: object) -> Row:
    return row(id_, Kind.RESOLVED, data={"since_ms": 100, "until_ms": 200}, **kw)  # type: ignore[arg-type]


def reminder(id_: int, **kw: object) -> Row:
    return row(id_, Kind.REMINDER, **kw)  # type: ignore[arg-type]


def cert(id_: int, **kw: object) -> Row:
    return row(id_, Kind.CERT_EXPIRING, incident=CERT, **kw)  # type: ignore[arg-type]


def net_down(id_: int, **kw: object) -> Row:
    return row(id_, Kind.PROBER_NETWORK, monitor="", incident=NET, data=DOWN_DATA, **kw)  # type: ignore[arg-type]


def net_back(id_: int, **kw: object) -> Row:
    return row(id_, Kind.PROBER_NETWORK, monitor="", incident=NET, data=BACK_DATA, **kw)  # type: ignore[arg-type]


OPEN: Mapping[str, str] = {"api": inc("api"), "web": inc("web")}  # db is up unless a case says


def situation(
    *,
    now_ms: int = NOW,
    open_incidents: Mapping[str, str] = OPEN,
    windows: Mapping[str, int] | None = None,
    parents: Mapping[str, Sequence[str]] | None = None,
    openings: Mapping[tuple[str, str], str] | None = None,
) -> Situation:
    ends = dict(windows or {})

    def in_maintenance(monitor: str, at_ms: int) -> int | None:
        end = ends.get(monitor)
        return end if end is not None and at_ms < end else None

    return Situation(
        now_ms, open_incidents, dict(parents or {}), in_maintenance, dict(openings or {})
    )


@dataclasses.dataclass(frozen=True)
class Case:
    rows: Sequence[Row]
    send: Sequence[Sequence[int]] = ()  # batches of ids, in id order
    hold: Sequence[tuple[int, int]] = ()  # (id, until_ms)
    drop: Sequence[tuple[int, str]] = ()  # (id, a fragment of why)
    open_incidents: Mapping[str, str] = dataclasses.field(default_factory=lambda: OPEN)
    windows: Mapping[str, int] = dataclasses.field(default_factory=dict)
    parents: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    openings: Mapping[tuple[str, str], str] = dataclasses.field(default_factory=dict)


def check(case: Case) -> None:
    s = situation(
        open_incidents=case.open_incidents,
        windows=case.windows,
        parents=case.parents,
        openings=case.openings,
    )
    got = plan(case.rows, s)
    # the order of batches is not a rule; the order of rows inside one is
    assert sorted([r.id for r in batch] for batch in got.send) == sorted(
        list(batch) for batch in case.send
    )
    assert sorted((r.id, until) for r, until in got.hold) == sorted(case.hold)
    assert sorted(r.id for r, _ in got.drop) == sorted(i for i, _ in case.drop)
    why = {r.id: reason for r, reason in got.drop}
    for id_, fragment in case.drop:
        assert fragment in why[id_]
    assert got.empty == (not (case.send or case.hold or case.drop))


P = pytest.param

# -- grouping: per (notifier, kind); a group goes when its oldest row is due -------------------

GROUPING = [
    P(Case([row(1, created_ms=FRESH)]), id="fresh-opened-not-yet-due-nothing"),
    P(Case([row(1)], send=[[1]]), id="opened-due-one-batch"),
    P(Case([row(1, due_ms=NOW)], send=[[1]]), id="due-exactly-now-sent"),
    P(Case([row(1, due_ms=NOW + 1)]), id="due-one-ms-later-nothing"),
    P(
        Case([row(1), row(2, monitor="web", created_ms=FRESH)], send=[[1, 2]]),
        id="not-yet-due-row-pulled-into-due-group",
    ),
    P(
        Case([row(1, created_ms=FRESH), row(2, monitor="web", created_ms=FRESH + 5)]),
        id="whole-group-not-yet-due-nothing",
    ),
    P(
        Case([row(1, created_ms=FRESH), row(2, monitor="web")], send=[[1, 2]]),
        id="younger-row-due-takes-the-older-id-along",
    ),
    P(
        Case([row(1, notifier="hook"), row(2, notifier="mail")], send=[[1], [2]]),
        id="different-notifiers-separate-batches",
    ),
    P(
        Case([row(1, notifier="hook"), row(2, notifier="mail", created_ms=FRESH)], send=[[1]]),
        id="not-yet-due-row-of-another-notifier-not-pulled",
    ),
    P(Case([row(1), cert(2)], send=[[1], [2]]), id="different-kinds-separate-batches"),
    P(
        Case([row(1), cert(2, created_ms=FRESH)], send=[[1]]),
        id="not-yet-due-row-of-another-kind-not-pulled",
    ),
    P(
        Case(
            [
                row(3, monitor="api"),
                row(5, monitor="web", created_ms=FRESH),
                row(9, monitor="db", created_ms=DUE - 5),
                row(11, notifier="mail", monitor="db"),
            ],
            open_incidents={**OPEN, "db": inc("db")},
            send=[[3, 5, 9], [11]],
        ),
        id="batch-rows-in-id-order",
    ),
    P(
        Case(
            [resolved(1, monitor="api"), resolved(2, monitor="web", created_ms=FRESH)],
            open_incidents={},
            send=[[1, 2]],
        ),
        id="resolutions-group-like-openings",
    ),
]


@pytest.mark.parametrize("case", GROUPING)
def test_grouping(case: Case) -> None:
    check(case)


# -- retries: sent again as the same batch, nothing re-decided --------------------------------

RETRIES = [
    P(
        Case(
            [row(4, batch=4, attempts=1), row(5, monitor="web", batch=4, attempts=1)], send=[[4, 5]]
        ),
        id="retry-sent-as-its-batch",
    ),
    P(
        Case([row(4, batch=4, attempts=1)], windows={"api": END}, send=[[4]]),
        id="retry-in-maintenance-still-sent",
    ),
    P(
        Case([reminder(4, batch=4, attempts=1)], open_incidents={}, send=[[4]]),
        id="retry-reminder-of-ended-incident-still-sent",
    ),
    P(
        Case([row(4, batch=4, attempts=1, silenced=True)], open_incidents={}, send=[[4]]),
        id="retry-silenced-opening-of-ended-incident-still-sent",
    ),
    P(
        Case(
            [row(4, batch=4, attempts=1)],
            parents={"api": ["db"]},
            open_incidents={**OPEN, "db": inc("db")},
            send=[[4]],
        ),
        id="retry-with-parent-down-still-sent",
    ),
    P(
        Case(
            [resolved(4, batch=4, attempts=1)],
            openings={(inc("api"), "hook"): SUPPRESSED},
            send=[[4]],
        ),
        id="retry-resolution-of-suppressed-opening-still-sent",
    ),
    P(
        Case([row(4, batch=4, attempts=1), row(7, monitor="web")], send=[[4], [7]]),
        id="retry-not-merged-with-fresh-rows",
    ),
    P(
        Case([row(4, batch=4, attempts=1), row(7, monitor="web", created_ms=FRESH)], send=[[4]]),
        id="retry-does-not-pull-fresh-rows",
    ),
    P(
        Case(
            [
                row(4, batch=4, attempts=2),
                row(5, monitor="web", batch=4, attempts=2),
                row(6, monitor="db", batch=6, attempts=1),
            ],
            send=[[4, 5], [6]],
        ),
        id="two-retry-batches-stay-apart",
    ),
    P(Case([row(4, batch=4, attempts=1, due_ms=NOW)], send=[[4]]), id="retry-due-exactly-now-sent"),
    P(Case([row(4, batch=4, attempts=1, due_ms=NOW + 1)]), id="retry-not-yet-due-nothing"),
    P(
        Case([row(4, batch=4, attempts=1, due_ms=NOW + 1), row(7, monitor="web")], send=[[7]]),
        id="retry-not-yet-due-fresh-due-sent-alone",
    ),
]


@pytest.mark.parametrize("case", RETRIES)
def test_retries(case: Case) -> None:
    check(case)


# -- rows not pending: being sent right now, or finished --------------------------------------

NOT_PENDING = [
    P(Case([row(1, state=SENDING)]), id="sending-ignored"),
    P(Case([row(1, state=SENDING, batch=1, attempts=1)]), id="sending-retry-ignored"),
    P(Case([reminder(1, state=SENDING)], open_incidents={}), id="sending-not-dropped"),
    P(Case([row(1, state=SENDING)], windows={"api": END}), id="sending-not-held"),
    P(
        Case([row(1, state=SENDING), row(2, monitor="web", created_ms=FRESH)]),
        id="sending-row-does-not-make-a-group-due",
    ),
    P(
        Case([row(1, state=SENT), row(2, state=FAILED), row(3, state=SUPPRESSED)]),
        id="finished-ignored",
    ),
]


@pytest.mark.parametrize("case", NOT_PENDING)
def test_not_pending(case: Case) -> None:
    check(case)


# -- maintenance: openings and certificates held until the window ends, reminders dropped -----

MAINTENANCE = [
    P(Case([row(1)], windows={"api": END}, hold=[(1, END)]), id="opened-held-until-window-end"),
    P(
        Case([row(1, created_ms=FRESH)], windows={"api": END}, hold=[(1, END)]),
        id="opened-not-yet-due-held-at-once",
    ),
    P(Case([cert(1)], windows={"api": END}, hold=[(1, END)]), id="cert-held-until-window-end"),
    P(
        Case([reminder(1)], windows={"api": END}, drop=[(1, "in maintenance")]),
        id="reminder-dropped",
    ),
    P(
        Case(
            [resolved(1)],
            windows={"api": END},
            openings={(inc("api"), "hook"): SENT},
            send=[[1]],
        ),
        id="resolution-not-held",
    ),
    P(
        Case([row(1), row(2, monitor="web")], windows={"api": END}, send=[[2]], hold=[(1, END)]),
        id="only-the-monitor-in-the-window",
    ),
    P(
        Case([row(1, silenced=True, due_ms=END)], windows={"api": END}),
        id="silenced-not-yet-due-untouched",
    ),
    P(
        Case([row(1, silenced=True, due_ms=NOW + 1)], open_incidents={}),
        id="silenced-not-yet-due-untouched-even-if-ended",
    ),
    P(
        Case([row(1, silenced=True, due_ms=NOW + 1), row(2, monitor="web")], send=[[2]]),
        id="silenced-not-yet-due-not-pulled-into-group",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW)],
            open_incidents={"web": inc("web")},
            drop=[(1, "ended")],
        ),
        id="silenced-opened-due-incident-gone-dropped",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW)],
            open_incidents={"api": inc("api", 999)},
            drop=[(1, "ended")],
        ),
        id="silenced-opened-due-other-incident-open-dropped",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW)],
            open_incidents={},
            windows={"api": END},
            drop=[(1, "ended")],
        ),
        id="silenced-opened-ended-still-in-window-dropped",
    ),
    P(
        Case([row(1, silenced=True, due_ms=NOW)], send=[[1]]),
        id="silenced-opened-still-open-window-over-sent",
    ),
    P(
        Case([row(1, silenced=True, due_ms=NOW)], windows={"api": END}, hold=[(1, END)]),
        id="silenced-opened-window-extended-held-again",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW), row(2, monitor="web", created_ms=FRESH)],
            send=[[1, 2]],
        ),
        id="silenced-opened-released-takes-group-along",
    ),
    P(
        Case([cert(1, silenced=True, due_ms=NOW)], open_incidents={}, send=[[1]]),
        id="silenced-cert-window-over-sent",
    ),
    P(
        Case([row(1)], open_incidents={}, send=[[1]]),
        id="unheld-opening-of-ended-incident-still-sent",
    ),
]


@pytest.mark.parametrize("case", MAINTENANCE)
def test_maintenance(case: Case) -> None:
    check(case)


# -- dependencies: while a parent is down, openings held, reminders dropped -------------------

DB_DOWN: Mapping[str, str] = {**OPEN, "db": inc("db")}

DEPENDENCIES = [
    P(
        Case([row(1)], parents={"api": ["db"]}, open_incidents=DB_DOWN, hold=[(1, NOW + HOLD_MS)]),
        id="opened-held-while-parent-down",
    ),
    P(
        Case(
            [reminder(1)],
            parents={"api": ["db"]},
            open_incidents=DB_DOWN,
            drop=[(1, "depends on db")],
        ),
        id="reminder-dropped-while-parent-down",
    ),
    P(
        Case(
            [row(1)],
            parents={"api": ["cache", "db"]},
            open_incidents=DB_DOWN,
            hold=[(1, NOW + HOLD_MS)],
        ),
        id="one-of-two-parents-down-held",
    ),
    P(Case([row(1)], parents={"api": ["db"]}, send=[[1]]), id="parent-up-sent"),
    P(
        Case([row(1)], parents={"web": ["db"]}, open_incidents=DB_DOWN, send=[[1]]),
        id="parents-of-another-monitor-ignored",
    ),
    P(
        Case(
            [row(1)],
            parents={"api": ["db"]},
            open_incidents={"api": inc("api"), "web": inc("web")},
            send=[[1]],
        ),
        id="down-monitor-not-a-parent-ignored",
    ),
    P(
        Case([reminder(1)], parents={"api": ["db"]}, send=[[1]]),
        id="reminder-parent-up-sent",
    ),
    P(
        Case([cert(1)], parents={"api": ["db"]}, open_incidents=DB_DOWN, send=[[1]]),
        id="cert-not-held-by-parent",
    ),
    P(
        Case(
            [resolved(1)],
            parents={"api": ["db"]},
            open_incidents=DB_DOWN,
            openings={(inc("api"), "hook"): SENT},
            send=[[1]],
        ),
        id="resolution-not-held-by-parent",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW)],
            parents={"api": ["db"]},
            open_incidents=DB_DOWN,
            hold=[(1, NOW + HOLD_MS)],
        ),
        id="silenced-parent-still-down-held-again",
    ),
    P(
        Case([row(1, silenced=True, due_ms=NOW)], parents={"api": ["db"]}, send=[[1]]),
        id="silenced-parent-recovered-child-still-down-sent",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW)],
            parents={"api": ["db"]},
            open_incidents={"db": inc("db")},
            drop=[(1, "ended")],
        ),
        id="silenced-child-recovered-dropped",
    ),
    P(
        Case(
            [row(1)],
            parents={"api": ["db"]},
            open_incidents=DB_DOWN,
            windows={"api": END},
            hold=[(1, END)],
        ),
        id="maintenance-before-dependency",
    ),
    P(
        Case(
            [reminder(1)],
            parents={"api": ["db"]},
            open_incidents=DB_DOWN,
            windows={"api": END},
            drop=[(1, "in maintenance")],
        ),
        id="reminder-maintenance-reason-before-dependency",
    ),
]


@pytest.mark.parametrize("case", DEPENDENCIES)
def test_dependencies(case: Case) -> None:
    check(case)


# -- reminders: only while their incident is open ---------------------------------------------

REMINDERS = [
    P(Case([reminder(1)], send=[[1]]), id="reminder-of-open-incident-sent"),
    P(
        Case([reminder(1)], open_incidents={"web": inc("web")}, drop=[(1, "incident ended")]),
        id="monitor-no-longer-down-dropped",
    ),
    P(
        Case([reminder(1)], open_incidents={"api": inc("api", 999)}, drop=[(1, "incident ended")]),
        id="monitor-in-another-incident-dropped",
    ),
    P(
        Case(
            [reminder(1), reminder(2, monitor="web")],
            open_incidents={"web": inc("web")},
            send=[[2]],
            drop=[(1, "incident ended")],
        ),
        id="dropped-reminder-leaves-the-rest-of-its-group",
    ),
]


@pytest.mark.parametrize("case", REMINDERS)
def test_reminders(case: Case) -> None:
    check(case)


# -- resolutions: only after their opening went out -------------------------------------------

KEY = (inc("api"), "hook")

RESOLUTIONS = [
    P(Case([resolved(2)], openings={KEY: SENT}, send=[[2]]), id="opening-sent-known"),
    P(Case([resolved(2)], openings={KEY: FAILED}, send=[[2]]), id="opening-failed-known"),
    P(Case([row(1, state=SENT), resolved(2)], send=[[2]]), id="opening-sent-among-rows"),
    P(Case([row(1, state=FAILED), resolved(2)], send=[[2]]), id="opening-failed-among-rows"),
    P(Case([row(1, created_ms=FRESH), resolved(2)]), id="opening-pending-not-yet-due-no-action"),
    P(Case([row(1), resolved(2)], send=[[1]]), id="opening-pending-due-only-it-sent"),
    P(Case([row(1, state=SENDING), resolved(2)]), id="opening-sending-no-action"),
    P(
        Case([row(1, state=SENDING), resolved(2)], openings={KEY: SENT}),
        id="opening-row-overrides-situation",
    ),
    P(
        Case([row(1, batch=1, attempts=1), resolved(2)], send=[[1]]),
        id="opening-retried-resolution-waits",
    ),
    P(
        Case([row(1), resolved(2)], windows={"api": END}, hold=[(1, END)]),
        id="opening-held-by-maintenance-resolution-waits",
    ),
    P(
        Case(
            [row(1), resolved(2)],
            parents={"api": ["db"]},
            open_incidents=DB_DOWN,
            hold=[(1, NOW + HOLD_MS)],
        ),
        id="opening-held-by-parent-resolution-waits",
    ),
    P(
        Case([row(1, silenced=True, due_ms=END), resolved(2)], open_incidents={}),
        id="opening-silenced-not-yet-due-resolution-waits",
    ),
    P(
        Case([resolved(2)], openings={KEY: SUPPRESSED}, drop=[(2, "never sent")]),
        id="opening-suppressed-known-dropped",
    ),
    P(
        Case([row(1, state=SUPPRESSED), resolved(2)], drop=[(2, "never sent")]),
        id="opening-suppressed-among-rows-dropped",
    ),
    P(Case([resolved(2)], send=[[2]]), id="no-opening-known-sent"),
    P(
        Case([resolved(2)], openings={(inc("api"), "mail"): PENDING}, send=[[2]]),
        id="opening-of-another-notifier-does-not-pair",
    ),
    P(
        Case([row(1, incident=inc("api", 999)), resolved(2)], send=[[1], [2]]),
        id="opening-of-another-incident-does-not-pair",
    ),
    P(
        Case(
            [row(1, silenced=True, due_ms=NOW), resolved(2)],
            open_incidents={},
            drop=[(1, "ended"), (2, "never sent")],
        ),
        id="opening-dropped-same-pass-resolution-dropped",
    ),
    P(
        Case(
            [
                row(1, silenced=True, due_ms=NOW),
                row(2, notifier="mail", state=SENT),
                resolved(3),
                resolved(4, notifier="mail"),
            ],
            open_incidents={},
            drop=[(1, "ended"), (3, "never sent")],
            send=[[4]],
        ),
        id="same-pass-drop-is-per-notifier",
    ),
]


@pytest.mark.parametrize("case", RESOLUTIONS)
def test_resolutions(case: Case) -> None:
    check(case)


# -- the prober's network: "down" goes out, "back" pairs with it like a resolution ------------

NKEY = (NET, "hook")

NETWORK = [
    P(Case([net_down(1)], send=[[1]]), id="down-sent"),
    P(
        Case(
            [net_down(1)],
            open_incidents={},
            windows={"": END, "api": END},
            parents={"": ["api"]},
            send=[[1]],
        ),
        id="down-not-held-by-anything",
    ),
    P(Case([net_down(1, created_ms=FRESH)]), id="down-not-yet-due-nothing"),
    P(
        Case([net_down(1, notifier="hook"), net_down(2, notifier="mail")], send=[[1], [2]]),
        id="down-per-notifier",
    ),
    P(Case([net_down(1), net_back(2)], send=[[1]]), id="back-waits-for-pending-down"),
    P(Case([net_down(1, state=SENDING), net_back(2)]), id="back-waits-for-sending-down"),
    P(Case([net_back(2)], openings={NKEY: SENT}, send=[[2]]), id="back-after-down-sent-known"),
    P(Case([net_down(1, state=SENT), net_back(2)], send=[[2]]), id="back-after-down-sent-row"),
    P(Case([net_back(2)], openings={NKEY: FAILED}, send=[[2]]), id="back-after-down-failed"),
    P(
        Case([net_back(2)], openings={NKEY: SUPPRESSED}, drop=[(2, "never sent")]),
        id="back-after-down-suppressed-dropped",
    ),
    P(Case([net_back(2)], send=[[2]]), id="back-without-down-sent"),
    P(
        Case([net_back(2)], openings={("here/prober-network/1", "hook"): PENDING}, send=[[2]]),
        id="down-of-another-outage-does-not-pair",
    ),
]


@pytest.mark.parametrize("case", NETWORK)
def test_network(case: Case) -> None:
    check(case)


# -- Plan.empty -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "empty"),
    [
        P(Plan(), True, id="nothing"),
        P(Plan(send=[[row(1)]]), False, id="send"),
        P(Plan(hold=[(row(1), END)]), False, id="hold"),
        P(Plan(drop=[(row(1), "why")]), False, id="drop"),
    ],
)
def test_plan_empty(value: Plan, empty: bool) -> None:
    assert value.empty is empty


def test_no_rows_empty_plan() -> None:
    assert plan([], situation()).empty


# -- property: every row decided at most once, only pending rows, holds in the future ---------

_MONITORS = ["api", "web", "db"]
_STATES = [PENDING, PENDING, PENDING, SENDING, SENT, FAILED, SUPPRESSED]


@st.composite
def outboxes(draw: st.DrawFn) -> tuple[list[Row], Situation]:
    n = draw(st.integers(min_value=0, max_value=14))
    ids = sorted(draw(st.sets(st.integers(min_value=1, max_value=60), min_size=n, max_size=n)))
    rows = []
    for id_ in ids:
        kind = draw(st.sampled_from(list(Kind)))
        monitor = "" if kind is Kind.PROBER_NETWORK else draw(st.sampled_from(_MONITORS))
        start = draw(st.sampled_from([1, 2]))
        if kind is Kind.PROBER_NETWORK:
            incident = f"here/prober-network/{start}"
            data: Mapping[str, object] = draw(st.sampled_from([DOWN_DATA, BACK_DATA]))
        elif kind is Kind.CERT_EXPIRING:
            incident, data = f"here/{monitor}/cert-{start}", {"since_ms": 1}
        else:
            incident, data = inc(monitor, start), {"since_ms": start}
        created = NOW + draw(st.integers(min_value=-5_000, max_value=3_000))
        rows.append(
            row(
                id_,
                kind,
                notifier=draw(st.sampled_from(["hook", "mail"])),
                monitor=monitor,
                incident=incident,
                created_ms=created,
                due_ms=created + draw(st.integers(min_value=0, max_value=4_000)),
                state=draw(st.sampled_from(_STATES)),
                batch=draw(st.sampled_from([None, None, ids[0], id_])),
                silenced=draw(st.booleans()),
                data=data,
            )
        )
    open_incidents = {
        m: inc(m, start)
        for m, start in draw(
            st.dictionaries(st.sampled_from(_MONITORS), st.sampled_from([1, 2]))
        ).items()
    }
    windows = draw(  # an end at or before now: the window is over
        st.dictionaries(
            st.sampled_from(_MONITORS), st.integers(min_value=NOW - 1_000, max_value=NOW + 100_000)
        )
    )
    parents = draw(
        st.dictionaries(
            st.sampled_from(_MONITORS), st.lists(st.sampled_from(_MONITORS), max_size=2)
        )
    )
    openings = draw(
        st.dictionaries(
            st.tuples(
                st.sampled_from([inc("api", 1), inc("web", 2), "here/prober-network/1"]),
                st.sampled_from(["hook", "mail"]),
            ),
            st.sampled_from([SENT, FAILED, SUPPRESSED]),
        )
    )
    return rows, situation(
        open_incidents=open_incidents, windows=windows, parents=parents, openings=openings
    )


@settings(max_examples=200, deadline=None)
@given(outboxes())
def test_every_row_decided_at_most_once(drawn: tuple[list[Row], Situation]) -> None:
    rows, s = drawn
    got = plan(rows, s)
    decided = (
        [r for batch in got.send for r in batch]
        + [r for r, _ in got.hold]
        + [r for r, _ in got.drop]
    )
    ids = [r.id for r in decided]
    assert len(ids) == len(set(ids))
    assert all(r.state == PENDING for r in decided)
    assert all(until > s.now_ms for _, until in got.hold)
    for batch in got.send:
        assert batch
        assert [r.id for r in batch] == sorted(r.id for r in batch)
        assert len({r.batch for r in batch}) == 1  # one retry batch, or fresh rows only
        if batch[0].batch is None:
            assert len({(r.notifier, r.kind) for r in batch}) == 1
            assert min(r.due_ms for r in batch) <= s.now_ms
        else:
            assert all(r.due_ms <= s.now_ms for r in batch)
    assert all(r.batch is None for r, _ in got.hold)
    assert all(r.batch is None for r, _ in got.drop)

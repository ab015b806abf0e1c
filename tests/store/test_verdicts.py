"""The combined verdict of a monitor probed from several locations, as the writer keeps it
(prober.store.ledger with prober.quorum): each location's own figures, one incident
derivation on the quorum's verdict, alerts told once, late results re-deriving the past
without a second alert, and a restart going on where it was."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober.config.locations import COMBINED
from prober.config.types import DownAfter
from prober.incidents import Opened, Resolved, Rule
from prober.results import Outcome
from prober.store.ledger import Ledger, TrackSpec, rebuild_combined
from prober.store.tables import OUTCOME_CODES

MIN = 60_000
T0 = 1_790_000_000_000 // MIN * MIN
U, D, X = Outcome.UP, Outcome.DOWN, Outcome.UNKNOWN
PLACES = ("seoul", "frankfurt", "virginia")
IDS = {"seoul": 1, "frankfurt": 2, "virginia": 3, COMBINED: 4}


def spec(down_after: DownAfter | None = None, quorum: int = 2) -> TrackSpec:
    rule = Rule(down_after or DownAfter(seconds=0.0), up_after=1)
    return TrackSpec("api", "http", rule, 2 * MIN, PLACES, quorum)


class Hub:
    """A ledger on a real SQLite database, fed as the writer feeds it: each result's row
    inserted, then `apply`, then `settle` at the end of the batch."""

    def __init__(self, track: TrackSpec, conn: sqlite3.Connection | None = None) -> None:
        self.spec = track
        if conn is None:
            conn = sqlite3.connect(":memory:", isolation_level=None)
            _schema(conn)
        self.conn = conn
        self.told: list[tuple[str, int, int | None]] = []  # (kind, start_ms, end_ms)
        self.regional: list[tuple[tuple[str, ...], int]] = []
        self.ledger = Ledger(
            IDS["seoul"], {"api": 1}, [track], self._tell, IDS, on_regional=self._regional
        )

    def _regional(
        self, _conn: sqlite3.Connection, slug: str, where: tuple[str, ...], since: int,
        cause: str | None,
    ) -> None:  # fmt: skip
        assert slug == "api" and cause
        self.regional.append((where, since))

    def _tell(self, _conn: sqlite3.Connection, slug: str, change: Opened | Resolved) -> None:
        assert slug == "api"
        kind = "opened" if isinstance(change, Opened) else "resolved"
        self.told.append((kind, change.incident.start_ms, change.incident.end_ms))

    def start(self, now_ms: int) -> None:
        self.ledger.load(self.conn, now_ms)

    def batch(self, results: list[tuple[str, int, Outcome]], now_ms: int) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        for place, ts, outcome in results:
            error = f"HTTP 503 at {place}" if outcome is D else None
            conn.execute(
                "INSERT OR IGNORE INTO result (monitor_id, ts_ms, location_id, outcome, error)"
                " VALUES (1, ?, ?, ?, ?)",
                (ts, IDS[place], OUTCOME_CODES[outcome], error),
            )
            self.ledger.apply(conn, "api", ts, outcome, error, IDS[place])
        self.ledger.settle(conn, now_ms)
        conn.execute("COMMIT")

    def minute(self, i: int, outcomes: dict[str, Outcome], lag_ms: int = 2_000) -> None:
        """Every location's result of minute i, arriving together."""
        ts = T0 + i * MIN
        self.batch([(p, ts, o) for p, o in outcomes.items()], ts + lag_ms)

    def incidents(self, place: str = COMBINED) -> list[tuple[int, int | None]]:
        return self.conn.execute(
            "SELECT start_ms, end_ms FROM incident WHERE location_id = ? ORDER BY start_ms",
            (IDS[place],),
        ).fetchall()

    def transitions(self, place: str = COMBINED) -> list[tuple[int, str | None, str]]:
        return self.conn.execute(
            "SELECT ts_ms, old, new FROM transition WHERE location_id = ? ORDER BY ts_ms",
            (IDS[place],),
        ).fetchall()

    def state(self) -> str:
        (state,) = self.conn.execute(
            "SELECT state FROM monitor_state WHERE location_id = ?", (IDS[COMBINED],)
        ).fetchone()
        return str(state)


def _schema(conn: sqlite3.Connection) -> None:
    from sqlmodel import SQLModel

    from prober.store import tables

    engine_conn = SQLModel.metadata
    assert tables  # the tables are registered on import
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateTable

    for table in engine_conn.sorted_tables:
        conn.execute(str(CreateTable(table).compile(dialect=sqlite_dialect.dialect())))


ALL_UP = {p: U for p in PLACES}


def test_one_location_failing_is_regional_never_an_incident() -> None:
    hub = Hub(spec())
    hub.start(T0)
    for i in range(10):
        hub.minute(i, {**ALL_UP, "frankfurt": D if 2 <= i < 8 else U})
    assert hub.incidents() == []
    assert hub.told == []
    assert hub.incidents("frankfurt") == [(T0 + 2 * MIN, T0 + 8 * MIN)]  # its own figures
    assert [new for _, _, new in hub.transitions()] == ["up"]
    assert '"regional":null' in hub.state()


@pytest.mark.parametrize(
    ("down_after", "told_at"), [(DownAfter(seconds=120.0), 3), (DownAfter(count=3), 3)]
)
def test_a_regional_problem_is_told_once_when_it_lasted_down_after(
    down_after: DownAfter, told_at: int
) -> None:
    hub = Hub(spec(down_after))
    hub.start(T0)
    for i in range(8):
        hub.minute(i, {**ALL_UP, "virginia": D if i >= 1 else U})
        if i == 0:
            continue
        flag = "true" if i >= told_at else "false"
        told = f'"regional":{{"locations":["virginia"],"since_ms":{T0 + MIN},"told":{flag}}}'
        assert told in hub.state(), i
        assert hub.regional == ([(("virginia",), T0 + MIN)] if i >= told_at else []), i
    hub.minute(8, ALL_UP)
    assert '"regional":null' in hub.state()
    assert hub.told == []


def test_two_of_three_open_one_incident_dated_when_the_quorum_was_met() -> None:
    hub = Hub(spec())
    hub.start(T0)
    for i in range(12):
        outcomes = dict(ALL_UP)
        if 2 <= i < 9:
            outcomes["frankfurt"] = D
        if 4 <= i < 8:
            outcomes["virginia"] = D
        hub.minute(i, outcomes)
    assert hub.incidents() == [(T0 + 4 * MIN, T0 + 8 * MIN)]
    assert hub.told == [("opened", T0 + 4 * MIN, None), ("resolved", T0 + 4 * MIN, T0 + 8 * MIN)]


def test_count_based_confirmation_counts_checks_at_each_location_of_the_quorum() -> None:
    hub = Hub(spec(DownAfter(count=3)))
    hub.start(T0)
    for i in range(8):
        outcomes = dict(ALL_UP)
        if i >= 1:
            outcomes["frankfurt"] = D
        if i >= 3:
            outcomes["virginia"] = D
        hub.minute(i, outcomes)
        opened_at = [t for t in hub.transitions() if t[2] == "down"]
        if i < 5:  # virginia's third down is minute 5
            assert opened_at == [], i
    assert hub.incidents() == [(T0 + 3 * MIN, None)]
    assert [t for t in hub.transitions() if t[2] == "down"] == [(T0 + 5 * MIN, "pending", "down")]


def test_a_dead_agent_makes_its_location_unknown_never_downtime() -> None:
    hub = Hub(spec())
    hub.start(T0)
    for i in range(3):
        hub.minute(i, ALL_UP)
    # frankfurt and virginia die; seoul alone goes on, and fails
    for i in range(3, 20):
        hub.minute(i, {"seoul": D})
    assert hub.incidents() == []
    assert hub.told == []
    assert hub.transitions()[-1][2] == "unknown"
    (covered_until,) = hub.conn.execute(
        "SELECT max(coalesce(end_ms, 0)) FROM coverage WHERE location_id = ?", (IDS[COMBINED],)
    ).fetchone()
    assert covered_until <= T0 + 5 * MIN  # no known time once two of three went quiet


def test_held_until_every_live_location_reported() -> None:
    """Seoul's result of a minute waits for the agents' of the same minute: no verdict,
    and no Rewind, when they arrive a few seconds later in another batch."""
    hub = Hub(spec())
    hub.start(T0)
    hub.minute(0, ALL_UP)
    ts = T0 + MIN
    hub.batch([("seoul", ts, D)], ts + 1_000)
    assert hub.transitions() == [(T0, None, "up")]  # seoul's down alone is not judged yet
    hub.batch([("frankfurt", ts + 40, D), ("virginia", ts + 90, U)], ts + 3_000)
    assert hub.incidents() == [(ts + 40, None)]
    (rewrites,) = hub.conn.execute("SELECT count(*) FROM meta WHERE key = 'rewrites'").fetchone()
    assert rewrites == 0  # nothing was re-derived


def test_late_results_rederive_the_past_and_keep_the_incident_identity() -> None:
    """Virginia is cut off from the hub; seoul and frankfurt fail and open an incident
    (2 of 3, virginia's location lapsed); virginia's queued results arrive later and show
    it failing earlier than frankfurt: the incident's start moves back, no second alert,
    and its resolution is told under the start its opening was told with."""
    hub = Hub(spec())
    hub.start(T0)
    for i in range(3):
        hub.minute(i, ALL_UP)
    queued = []
    for i in range(3, 12):
        ts = T0 + i * MIN
        queued.append(("virginia", ts, D if i >= 4 else U))
        hub.batch(
            [("seoul", ts, D if i >= 5 else U), ("frankfurt", ts, D if i >= 6 else U)],
            ts + 2_000,
        )
    assert hub.incidents() == [(T0 + 6 * MIN, None)]
    assert hub.told == [("opened", T0 + 6 * MIN, None)]
    # virginia comes back: its queue first, then live
    hub.batch(queued, T0 + 11 * MIN + 5_000)
    assert hub.incidents() == [(T0 + 5 * MIN, None)]  # seoul + virginia from minute 5
    assert hub.told == [("opened", T0 + 6 * MIN, None)]
    for i in range(12, 14):
        hub.minute(i, ALL_UP)
    assert hub.incidents() == [(T0 + 5 * MIN, T0 + 12 * MIN)]
    assert hub.told == [
        ("opened", T0 + 6 * MIN, None),
        ("resolved", T0 + 6 * MIN, T0 + 12 * MIN),  # keyed as it was opened
    ]


def test_a_restart_goes_on_exactly_where_it_was() -> None:
    def outcomes(i: int) -> dict[str, Outcome]:
        return {
            "seoul": D if 5 <= i < 9 else U,
            "frankfurt": D if 4 <= i < 10 else U,
            "virginia": X if i == 6 else U,
        }

    straight = Hub(spec())
    straight.start(T0)
    for i in range(14):
        straight.minute(i, outcomes(i))

    restarted = Hub(spec())
    restarted.start(T0)
    for i in range(7):
        restarted.minute(i, outcomes(i))
    # results committed but not judged yet (held by the gate) when the process dies
    ts = T0 + 7 * MIN
    restarted.batch([("seoul", ts, outcomes(7)["seoul"])], ts + 500)
    again = Hub(spec(), restarted.conn)
    again.told = restarted.told
    again.start(ts + 1_000)
    again.batch([(p, ts, o) for p, o in outcomes(7).items() if p != "seoul"], ts + 2_000)
    for i in range(8, 14):
        again.minute(i, outcomes(i))
    assert again.incidents() == straight.incidents() == [(T0 + 5 * MIN, T0 + 9 * MIN)]
    assert again.transitions() == straight.transitions()
    assert again.told == straight.told


@pytest.mark.parametrize("changed", ["quorum", "locations"])
def test_a_config_edit_rederives_the_combined_verdict(changed: str) -> None:
    hub = Hub(spec())
    hub.start(T0)
    for i in range(6):
        hub.minute(i, {**ALL_UP, "frankfurt": D if i >= 2 else U})
    assert hub.incidents() == []
    if changed == "quorum":
        edited = spec(quorum=1)
    else:
        edited = TrackSpec("api", "http", spec().rule, 2 * MIN, ("seoul", "frankfurt"), 1)
    again = Hub(edited, hub.conn)
    again.start(T0 + 6 * MIN)
    assert again.incidents() == [(T0 + 2 * MIN, None)]


ARRIVALS = st.lists(
    st.tuples(
        st.sampled_from([U, U, U, D, D, X]),
        st.sampled_from([U, U, D, D]),
        st.sampled_from([U, U, D, X]),
        st.sampled_from([0, 0, 0, 1, 3]),  # how many minutes late virginia's result arrives
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ARRIVALS, st.sampled_from([DownAfter(seconds=0.0), DownAfter(seconds=120.0),
                                  DownAfter(count=2)]))  # fmt: skip
def test_live_derivation_equals_a_rebuild_from_the_stored_results(
    minutes: list[tuple[Outcome, Outcome, Outcome, int]], down_after: DownAfter
) -> None:
    """However results arrive (virginia's up to 3 minutes late, in order but out of step
    with the others), what the ledger keeps live is what a rebuild from the stored
    results gives."""
    track = spec(down_after)
    hub = Hub(track)
    hub.start(T0)
    late: list[tuple[int, tuple[str, int, Outcome]]] = []
    arrives = 0  # an agent sends its results in order, however late
    for i, (seoul, frankfurt, virginia, lag) in enumerate(minutes):
        ts = T0 + i * MIN
        arrives = max(arrives, i + lag)
        late.append((arrives, ("virginia", ts + 30, virginia)))
        due = [r for at, r in late if at <= i]
        late = [(at, r) for at, r in late if at > i]
        hub.batch([("seoul", ts, seoul), ("frankfurt", ts + 10, frankfurt), *due], ts + 2_000)
    end = T0 + len(minutes) * MIN
    hub.batch([r for _, r in late], end)
    live = (hub.incidents(), hub.transitions())
    hub.conn.execute("BEGIN")
    rebuild_combined(hub.conn, track, 1, IDS, end)
    hub.conn.execute("COMMIT")
    assert (hub.incidents(), hub.transitions()) == live

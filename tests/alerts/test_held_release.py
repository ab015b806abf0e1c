"""A dependent's opening, held while its parent was down, is judged after the dependent's
own next check (issue 16, item 5): sent if its incident is still open then, dropped with
its resolution if it ended. The plan's rule as a table, then the real writer and
dispatcher (the rig), then `prober run` with loopback targets."""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from prober.alerts.message import Kind
from prober.alerts.outbox import PENDING, Row
from prober.alerts.plan import SETTLE_MS, Recovery, Situation, plan
from prober.scheduler import phase_offset
from tests.alerts.rig import Rig, write_config
from tests.support.net import free_port
from tests.support.proc import ProberRun
from tests.support.proc import until_async as _until
from tests.support.sink import Sink, running_sink

# -- the rule, as a table -------------------------------------------------------------

NOW = 10_000_000
UP_MS = NOW - 500  # the parent's resolving result
EVERY = 6_000  # the dependent's interval
CHILD = "here/shop/100"


def opening(id_: int = 1, *, due_ms: int = NOW) -> Row:
    return Row(id_, f"{CHILD}/opened/hook", "hook", Kind.OPENED, "shop", CHILD, 100, due_ms,
               PENDING, 0, None, None, True, None, {"since_ms": 100})  # fmt: skip


def resolution(id_: int = 2) -> Row:
    data = {"since_ms": 100, "until_ms": NOW - 100}
    return Row(id_, f"{CHILD}/resolved/hook", "hook", Kind.RESOLVED, "shop", CHILD, NOW - 100,
               NOW - 100, PENDING, 0, None, None, False, None, data)  # fmt: skip


Decided = tuple[list[list[int]], list[tuple[int, int]], list[int]]  # sent, held, dropped


def decide(
    rows: list[Row], recovery: Recovery, *, still_open: bool = True, now: int = NOW
) -> Decided:
    s = Situation(
        now_ms=now,
        open_incidents={"shop": CHILD} if still_open else {},
        parents={"shop": ("db",)},
        in_maintenance=lambda _monitor, _at: None,
        openings={},
        recoveries={"shop": recovery},
    )
    got = plan(rows, s)
    return (
        [[r.id for r in batch] for batch in got.send],
        [(r.id, until) for r, until in got.hold],
        [r.id for r, _ in got.drop],
    )


def rec(checked_ms: int | None, down: bool = True, up_after: int = 1) -> Recovery:
    return Recovery(UP_MS, checked_ms, down, EVERY, up_after)


def test_no_check_of_its_own_since_the_parent_recovered_holds_until_its_next_one() -> None:
    last = NOW - 2_000  # a check before the parent's recovery: it says nothing of now
    assert decide([opening()], rec(last)) == ([], [(1, last + EVERY + SETTLE_MS)], [])


def test_a_check_at_the_very_moment_of_the_recovery_is_not_after_it() -> None:
    assert decide([opening()], rec(UP_MS)) == ([], [(1, UP_MS + EVERY + SETTLE_MS)], [])


def test_an_overdue_check_is_looked_for_again_shortly() -> None:
    late = NOW - 30_000  # its check is late (or never came): look again soon, not never
    assert decide([opening()], rec(late)) == ([], [(1, NOW + SETTLE_MS)], [])


def test_the_hold_never_outlasts_twice_the_interval_after_the_recovery() -> None:
    late = UP_MS + 2 * EVERY - 300  # its check is overdue; the hold stops at the deadline
    assert decide([opening()], rec(UP_MS - 1), now=late) == (
        [],
        [(1, UP_MS + 2 * EVERY)],
        [],
    )


def test_still_down_at_its_own_next_check_is_sent() -> None:
    assert decide([opening()], rec(NOW - 100)) == ([[1]], [], [])


def test_recovered_at_its_own_next_check_sends_neither_opening_nor_resolution() -> None:
    got = decide([opening(), resolution()], rec(NOW - 100, down=False), still_open=False)
    assert got == ([], [], [1, 2])


def test_a_resolution_waits_while_its_opening_waits_for_the_check() -> None:
    got = decide([opening(), resolution()], rec(UP_MS - 1000))
    assert got == ([], [(1, UP_MS - 1000 + EVERY + SETTLE_MS)], [])


def test_up_but_still_open_waits_for_the_rest_of_its_recovery() -> None:
    """up_after = 2: one success after the parent's recovery is half a recovery."""
    got = decide([opening()], rec(NOW - 100, down=False, up_after=2))
    assert got == ([], [(1, NOW - 100 + EVERY + SETTLE_MS)], [])


def test_past_the_deadline_it_is_judged_on_what_is_known() -> None:
    late = UP_MS + 2 * EVERY
    assert decide([opening(due_ms=late)], rec(UP_MS - 1), now=late) == ([[1]], [], [])
    got = decide([opening(due_ms=late), resolution()], rec(None), still_open=False, now=late)
    assert got == ([], [], [1, 2])


# -- the real writer and dispatcher, results by hand ----------------------------------

RIG_MONITORS = """
[defaults]
down_after = 1
notify = ["hook"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "{url}"

[[monitors]]
id = "db"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "shop"
type = "http"
url = "http://127.0.0.1:9/"
interval = "5s"
depends_on = ["db"]
"""


def _rows(db: pathlib.Path, monitor: str) -> dict[str, tuple[str, int, int | None]]:
    """kind -> (state, due_ms, sent_ms) of a monitor's outbox rows."""
    conn = sqlite3.connect(db, timeout=5)
    try:
        return {
            k: (s, d, t)
            for k, s, d, t in conn.execute(
                "SELECT kind, state, due_ms, sent_ms FROM alert WHERE monitor = ?", (monitor,)
            )
        }
    finally:
        conn.close()


def _events(sink: Sink) -> list[tuple[str, str]]:
    return [
        (str(e["kind"]), str(e["monitor"]))
        for r in sink.received
        for e in r.json()["events"]  # type: ignore[attr-defined]
    ]


async def _parent_recovers_while_shop_is_held(
    rig: Rig, sink: Sink, db: pathlib.Path
) -> tuple[str, int, int | None]:
    """Both down: only db's alert. Then db recovers; returns shop's opening row once the
    dispatcher has looked at it after the recovery."""
    await rig.down("db", "shop")
    await sink.wait_for(1)
    await _until(lambda: _rows(db, "shop").get("opened", ("", 0, None))[0] == PENDING)
    assert _events(sink) == [("opened", "db")]
    before = round(time.time() * 1000)
    await rig.up("db")
    await sink.wait_for(2)

    def looked_at() -> bool:
        state, due, _ = _rows(db, "shop")["opened"]
        return state != PENDING or due >= before + SETTLE_MS

    await _until(looked_at)
    return _rows(db, "shop")["opened"]


async def test_rig_child_up_at_its_next_check_sends_nothing_for_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prober.alerts.plan.HOLD_MS", 200)
    async with running_sink() as sink:
        cfg = write_config(tmp_path, RIG_MONITORS.format(url=sink.url), alert_group_wait='"100ms"')
        db = cfg.database_path
        async with Rig(cfg) as rig:
            state, _, _ = await _parent_recovers_while_shop_is_held(rig, sink, db)
            assert state == PENDING, "sent before shop's own next check"
            await rig.up("shop")
            await _until(lambda: _rows(db, "shop").get("resolved", ("",))[0] == "suppressed")
            assert _rows(db, "shop")["opened"][0] == "suppressed"
    assert _events(sink) == [("opened", "db"), ("resolved", "db")]
    conn = sqlite3.connect(db)
    try:  # the incident stays recorded
        [(end,)] = conn.execute(
            "SELECT i.end_ms FROM incident i JOIN monitor m ON m.id = i.monitor_id"
            " WHERE m.slug = 'shop'"
        ).fetchall()
    finally:
        conn.close()
    assert end is not None


async def test_rig_child_still_down_at_its_next_check_is_alerted_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prober.alerts.plan.HOLD_MS", 200)
    async with running_sink() as sink:
        cfg = write_config(tmp_path, RIG_MONITORS.format(url=sink.url), alert_group_wait='"100ms"')
        db = cfg.database_path
        async with Rig(cfg) as rig:
            state, _, _ = await _parent_recovers_while_shop_is_held(rig, sink, db)
            assert state == PENDING, "sent before shop's own next check"
        # the dispatcher stops (as a restart would): what it waits for is in the database
        async with Rig(cfg) as rig:
            await rig.down("shop")
            await sink.wait_for(3, within=20)
            await rig.up("shop")
            await sink.wait_for(4, within=20)
    assert _events(sink) == [
        ("opened", "db"),
        ("resolved", "db"),
        ("opened", "shop"),
        ("resolved", "shop"),
    ]


# -- `prober run`: the parent recovers first, the children's own checks decide --------

PARENT_EVERY, CHILD_EVERY = 1.0, 6.0


def _twin(slug: str, interval: float) -> str:
    """A slug whose checks fall (within 50 ms) at the same moments as `slug`'s."""
    want = phase_offset(slug, interval)
    for n in range(100_000):
        name = f"cart-{n}"
        if abs(phase_offset(name, interval) - want) < 0.05:
            return name
    raise AssertionError("no twin found")


@dataclasses.dataclass
class Targets:
    port: int = 0
    db_up: bool = False
    db_served_up: bool = False  # the parent answered up at least once: its recovery began
    cart_up: bool = False


@asynccontextmanager
async def targets() -> AsyncIterator[Targets]:
    state = Targets(port=free_port())

    async def db(_: web.Request) -> web.Response:
        if state.db_up:
            state.db_served_up = True
            return web.Response(text="ok")
        return web.Response(status=503, text="down")

    async def shop(_: web.Request) -> web.Response:  # back as soon as its parent is
        return web.Response(text="ok") if state.db_served_up else web.Response(status=503)

    async def cart(_: web.Request) -> web.Response:  # stays down after its parent recovers
        return web.Response(text="ok") if state.cart_up else web.Response(status=503)

    app = web.Application()
    app.router.add_get("/db", db)
    app.router.add_get("/shop", shop)
    app.router.add_get("/cart", cart)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", state.port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


def _config(tmp_path: pathlib.Path, sink: Sink, port: int, cart: str) -> pathlib.Path:
    children = "".join(
        f"""
[[monitors]]
id = "{slug}"
type = "http"
url = "http://127.0.0.1:{port}/{path}"
interval = "{CHILD_EVERY:g}s"
timeout = "1s"
depends_on = ["db"]
"""
        for slug, path in (("shop", "shop"), (cart, "cart"))
    )
    path = tmp_path / "monitors.toml"
    path.write_text(f"""
[settings]
listen = "127.0.0.1:{free_port()}"
metrics = {{ listen = "" }}
database = "sqlite:///{tmp_path / "prober.db"}"
alert_group_wait = "3s"

[defaults]
down_after = 1
notify = ["hook"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "{sink.url}"

[[monitors]]
id = "db"
type = "http"
url = "http://127.0.0.1:{port}/db"
interval = "{PARENT_EVERY:g}s"
timeout = "500ms"
{children}""")
    return path


def _query(db: pathlib.Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def _held(db: pathlib.Path) -> list[int]:
    """The due times of the children's openings while both are held; [] otherwise."""
    rows = _query(db, "SELECT due_ms, silenced, state FROM alert WHERE kind = 'opened'"
                      " AND monitor != 'db'")  # fmt: skip
    if len(rows) == 2 and all(s == 1 and st == PENDING for _, s, st in rows):
        return sorted(int(d) for d, _, _ in rows)  # type: ignore[call-overload]
    return []


def _moment(dues: list[int], now: float) -> float | None:
    """When to bring the parent back so that it has recovered before the held openings
    are due again, and no child checks between its recovery and that time: the moment the
    old rule sent a dependent's opening without its own next check. None: not this time."""
    due = dues[0] / 1000
    phase = phase_offset("shop", CHILD_EVERY)
    before = (due - phase) // CHILD_EVERY * CHILD_EVERY + phase  # the children's last check
    if before + CHILD_EVERY < dues[-1] / 1000 + 0.6:
        return None  # a child checks right after: no room
    flip = max(now + 0.1, before + 0.4)
    recovered = flip + PARENT_EVERY + 0.1  # at the parent's next check, at the latest
    return flip if recovered + 0.6 <= due else None


async def test_prober_run_a_held_opening_waits_for_the_dependents_own_next_check(
    tmp_path: pathlib.Path,
) -> None:
    db = tmp_path / "prober.db"
    cart = _twin("shop", CHILD_EVERY)
    async with targets() as state, running_sink() as sink:
        run = ProberRun(["run", "-c", str(_config(tmp_path, sink, state.port, cart))], tmp_path)
        try:
            await sink.wait_for(1, within=30)
            await _until(lambda: _held(db), within=30)
            assert _events(sink) == [("opened", "db")]  # both down: only the parent's alert
            while True:
                dues = _held(db)
                assert dues, "a child's opening went out while its parent was down"
                flip = _moment(dues, time.time())
                if flip is not None:
                    break
                await _until(lambda: _held(db) != dues, within=30)  # noqa: B023  (held again)
            await _until(lambda: time.time() >= flip, within=20)
            state.db_up = True
            await _until(lambda: ("resolved", "db") in _events(sink), within=20)
            [(parent_up,)] = _query(db, "SELECT MAX(resolved_ms) FROM incident i JOIN monitor"
                                        " m ON m.id = i.monitor_id WHERE m.slug = 'db'")  # fmt: skip

            def states(slug: str) -> dict[object, object]:
                rows = _query(db, "SELECT kind, state FROM alert WHERE monitor = ?", slug)
                return {kind: state for kind, state in rows}

            # shop came back at its own next check: neither its opening nor its resolution
            done = ("sent", "failed", "suppressed")
            await _until(lambda: states("shop").get("resolved") in done, within=30)
            assert states("shop") == {"opened": "suppressed", "resolved": "suppressed"}
            # cart is still down at its own next check: its opening goes out, once, after it
            await _until(lambda: ("opened", cart) in _events(sink), within=30)
            [(checked,)] = _query(db, "SELECT MIN(r.ts_ms) FROM result r JOIN monitor m ON"
                                      " m.id = r.monitor_id WHERE m.slug = ? AND r.ts_ms > ?",
                                  cart, parent_up)  # fmt: skip
            [(sent,)] = _query(db, "SELECT sent_ms FROM alert WHERE monitor = ? AND kind ="
                                   " 'opened'", cart)  # fmt: skip
            assert checked is not None and sent is not None
            assert sent > checked  # type: ignore[operator]
            state.cart_up = True
            await _until(lambda: ("resolved", cart) in _events(sink), within=30)
        finally:
            run.stop()
    assert _events(sink) == [
        ("opened", "db"),
        ("resolved", "db"),
        ("opened", cart),
        ("resolved", cart),
    ]
    [(shop_end,)] = _query(db, "SELECT i.end_ms FROM incident i JOIN monitor m"
                               " ON m.id = i.monitor_id WHERE m.slug = 'shop'")  # fmt: skip
    assert shop_end is not None  # its incident stays recorded

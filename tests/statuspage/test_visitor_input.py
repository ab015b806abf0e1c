"""What a visitor types cannot make the page lie, fail or grow: unknown ids, `days`,
badge windows and languages never become kept bodies, the kept ones are bounded, reports
exist only for months with data, and no path or query answers 500."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pathlib
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from prober.config import load_config
from prober.config.load import Config
from prober.config.monitors import PushMonitor
from prober.push import PushHub
from prober.report import monthly
from prober.results import CheckResult, Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from prober.timeline import to_ms
from statuspage.app import create_app
from statuspage.health import Health
from statuspage.publisher import MAX_BODIES, MAX_BODY_BYTES, Bodies, Publisher, Rendered

CONFIG = """
[settings]
timezone = "Asia/Seoul"
public_reports = true

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:9/"
interval = "1m"

[[monitors]]
id = "web"
type = "http"
url = "http://127.0.0.1:9/"
interval = "1m"

[[monitors]]
id = "secret-db"
type = "tcp"
host = "127.0.0.1"
port = 9
public = false
"""
NOW = dt.datetime.now(dt.UTC)
FIRST = NOW - dt.timedelta(days=70)  # api's first result, a few months back
SEOUL = ZoneInfo("Asia/Seoul")
TOKEN = "p" * 32
HISTORY_DAYS = 90  # settings.history_days by default


def _config(tmp_path: pathlib.Path) -> Config:
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG)
    return load_config(path)


def _write(config: Config) -> None:
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    writer.submit(Observation("api", FIRST, CheckResult(Outcome.UP, 30.0, status_code=200)))
    writer.submit(Observation("secret-db", FIRST - dt.timedelta(days=200), _up()))
    for minutes in range(20, 0, -1):
        at = NOW - dt.timedelta(minutes=minutes)
        for mid in ("api", "web", "secret-db"):
            writer.submit(Observation(mid, at, _up()))
    assert writer.flush(10)
    writer.close()


def _up() -> CheckResult:
    return CheckResult(Outcome.UP, 20.0, status_code=200)


def _month(moment: dt.datetime) -> str:
    local = moment.astimezone(SEOUL)
    return f"{local.year:04d}-{local.month:02d}"


def _shift(month: str, by: int) -> str:
    year, number = divmod(int(month[:4]) * 12 + int(month[5:]) - 1 + by, 12)
    return f"{year:04d}-{number + 1:02d}"


@dataclasses.dataclass
class Site:
    client: TestClient[web.Request, web.Application]
    publisher: Publisher

    async def statuses(self, paths: Iterable[str]) -> list[int]:
        """Each path sent as it is written (percent escapes and all), 50 at a time."""
        paths = list(paths)
        out: list[int] = []
        for start in range(0, len(paths), 50):
            chunk = paths[start : start + 50]
            out += await asyncio.gather(*(self.status(p) for p in chunk))
        return out

    async def status(self, path: str) -> int:
        async with self.client.get(URL(path, encoded=True)) as response:
            await response.read()
            return response.status


async def _site(
    tmp_path: pathlib.Path,
    aiohttp_client: AiohttpClient,
    max_bodies: int = MAX_BODIES,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Site:
    config = _config(tmp_path)
    _write(config)
    # no refresh during a test: the counts below are those of one snapshot
    publisher = Publisher(
        config,
        min_age=3600.0,
        max_age=3600.0,
        max_bodies=max_bodies,
        max_body_bytes=max_body_bytes,
    )
    job = PushMonitor.model_validate({"id": "job", "type": "push", "period": "1h"})
    hub = PushHub([job], {"job": TOKEN}, "UTC", lambda *_: None)
    hub.restore({}, to_ms(NOW))

    def receive(token: str, action: str, query: Mapping[str, str]) -> tuple[int, str]:
        status, text = hub.receive(token, action, query, to_ms(NOW))
        return status, text

    app = create_app(
        config, Health(lambda: True, lambda: True), publisher=publisher, push_receiver=receive
    )
    return Site(await aiohttp_client(app), publisher)


@pytest.fixture
async def site(tmp_path: pathlib.Path, aiohttp_client: AiohttpClient) -> Site:
    return await _site(tmp_path, aiohttp_client)


# -- the render cache: only known keys -----------------------------------------------------


async def test_visitor_input_never_becomes_a_kept_body(site: Site) -> None:
    assert site.publisher.renders == 1  # the front page, warm
    bogus_ids = [f"/monitors/nope-{n}" for n in range(1000)]
    bogus_ids += ["/monitors/secret-db", "/api/v1/monitors/nope/days", "/badge/nope/status.svg"]
    assert set(await site.statuses(bogus_ids)) == {404}
    assert site.publisher.renders == 1  # a 404 costs no render and takes no room
    days = [f"/api/v1/monitors/api/days?days={n}" for n in range(-500, 1500)]
    assert set(await site.statuses(days)) == {200}
    windows = [f"/badge/api/status.svg?window=w{n}" for n in range(500)]
    windows += [f"/badge/api/response.svg?window=w{n}" for n in range(500)]
    windows += [f"/badge/api/uptime.svg?window={w}" for w in ("24h", "7d", "30d", "90d")] * 20
    assert set(await site.statuses(windows)) == {200}
    assert set(await site.statuses(f"/badge/api/uptime.svg?window=w{n}" for n in range(500))) == {
        400
    }
    langs = [f"/monitors/web?lang=l{n}" for n in range(500)] + ["/?lang=xx", "/?lang=en"]
    assert set(await site.statuses(langs)) == {200}
    assert site.publisher.builds == 1
    # front page + 90 clamped `days` + status + response + 4 uptime windows + web's page
    assert site.publisher.renders == 1 + HISTORY_DAYS + 1 + 1 + 4 + 1
    assert site.publisher.cached[0] == site.publisher.renders


async def test_days_are_clamped_before_they_name_a_body(site: Site) -> None:
    async def days(asked: str) -> tuple[int, str, int]:
        url = URL(f"/api/v1/monitors/api/days?days={asked}", encoded=True)
        async with site.client.get(url) as response:
            if response.status != 200:
                return response.status, "", 0
            return 200, response.headers["ETag"], len((await response.json())["days"])

    everything = await days(str(HISTORY_DAYS))
    assert everything[2] == HISTORY_DAYS
    renders = site.publisher.renders
    assert await days("100000") == everything  # the same body, rendered once
    assert await days("999999999999") == everything
    assert site.publisher.renders == renders
    one = await days("-5")
    assert one == await days("0") == await days("1")
    assert one[2] == 1
    renders = site.publisher.renders
    for refused in ("", "abc", "1.5", "+5", "%D9%A3", "%EF%BC%93", "1_0", "9" * 13, "%201"):
        assert (await days(refused))[0] == 400, refused
    assert site.publisher.renders == renders


async def test_badge_windows_only_key_uptime_badges(site: Site) -> None:
    first = await site.client.get("/badge/api/status.svg")
    renders = site.publisher.renders
    other = await site.client.get("/badge/api/status.svg?window=whatever")
    assert other.status == 200
    assert other.headers["ETag"] == first.headers["ETag"]
    assert site.publisher.renders == renders
    assert (await site.client.get("/badge/api/uptime.svg?window=1y")).status == 400


async def test_the_cache_is_bounded_whatever_is_asked(
    tmp_path: pathlib.Path, aiohttp_client: AiohttpClient
) -> None:
    site = await _site(tmp_path, aiohttp_client, max_bodies=40, max_body_bytes=60_000)
    known = [
        f"/api/v1/monitors/{m}/days?days={n}" for m in ("api", "web") for n in range(1, 91)
    ] + [f"/badge/{m}/uptime.svg?window={w}" for m in ("api", "web") for w in ("7d", "90d")]
    largest = 0
    for path in known:
        response = await site.client.get(path, headers={"Accept-Encoding": "identity"})
        assert response.status == 200
        largest = max(largest, len(await response.read()))
        entries, size = site.publisher.cached
        assert entries <= 40 + 1, path  # + the warm front page
        assert size <= 60_000 + 2 * largest, path  # + the newest body (and its gzip form)
    renders = site.publisher.renders
    assert (await site.client.get("/")).status == 200  # the warm page is never pushed out
    again = await site.client.get(known[-1])  # the newest is kept
    assert again.status == 200
    assert site.publisher.renders == renders
    assert (await site.client.get(known[0])).status == 200  # pushed out: rendered again
    assert site.publisher.renders == renders + 1


def _rendered(size: int) -> Rendered:
    return Rendered(b"x" * size, None, '"e"', "", "text/plain")


async def test_bodies_evict_least_recently_used_and_keep_no_404s() -> None:
    loop = asyncio.get_running_loop()
    bodies = Bodies(3, 1000, frozenset({"front"}))

    def add(key: str, value: Rendered | None) -> None:
        pending: asyncio.Future[Rendered | None] = loop.create_future()
        bodies.add(key, pending)
        pending.set_result(value)

    add("front", _rendered(5000))  # warm: kept, not counted against the bound
    for key in ("a", "b", "c"):
        add(key, _rendered(100))
    await asyncio.sleep(0)  # done callbacks run on the loop
    assert (len(bodies), bodies.bytes) == (4, 300)
    assert bodies.get("a") is not None  # now the most recently used
    add("d", _rendered(100))
    await asyncio.sleep(0)
    assert [k for k in "abcd" if bodies.get(k) is not None] == ["a", "c", "d"]  # b: oldest
    add("missing", None)
    await asyncio.sleep(0)
    assert bodies.get("missing") is None  # a 404 is not kept
    add("big", _rendered(950))  # over the byte bound: everything older goes, it stays
    await asyncio.sleep(0)
    assert [k for k in ("a", "c", "d", "big") if bodies.get(k) is not None] == ["big"]
    assert bodies.bytes == 950
    assert bodies.get("front") is not None


# -- reports: months with data only ----------------------------------------------------


async def test_reports_only_for_months_with_data(site: Site) -> None:
    first, current = _month(FIRST), _month(NOW)
    assert first < current
    for month in (first, _shift(first, 1), current):
        for fmt in ("json", "csv", "html"):
            assert await site.status(f"/reports/{month}.{fmt}") == 200, (month, fmt)
    renders = site.publisher.renders
    # secret-db's older results do not open older months: only public monitors count
    refused = [_shift(first, -1), _shift(current, 1), "0000-01", "9999-12", "0001-01"]
    refused += ["2026-13", "2026-00", "2026-1", "202-12", "%D9%A2%D9%A0%D9%A2%D9%A6-12"]
    refused += ["%EF%BC%92026-12", f"{current}%0A", f"%20{current}", "x" * 300]
    for month in refused:
        for fmt in ("json", "csv", "html"):
            assert await site.status(f"/reports/{month}.{fmt}") == 404, (month, fmt)
    assert site.publisher.renders == renders  # refused without rendering


def test_first_result_is_one_seek_per_monitor(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path)
    _write(config)
    conn = connect_raw(config.database_path)
    try:
        assert monthly.first_result_ms(conn, ["api", "web"]) == to_ms(FIRST)
        assert monthly.first_result_ms(conn, ["web"]) == to_ms(NOW - dt.timedelta(minutes=20))
        assert monthly.first_result_ms(conn, ["nope"]) is None
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT min(c.start_ms) FROM coverage c WHERE c.monitor_id = 1"
            )
        )
        assert "SEARCH" in plan  # the key, not a scan of every span
    finally:
        conn.close()


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "0001-01", "2026-13", "٢٠٢٦-01"])
def test_months_the_calendar_cannot_hold_are_user_errors(
    tmp_path: pathlib.Path, month: str
) -> None:
    config = _config(tmp_path)  # Asia/Seoul: 0001-01 starts in year 0 in UTC
    open_engine(config.database_path).dispose()
    with pytest.raises(monthly.HistoryError):
        monthly.report(config, month, "json", now=NOW)


def test_reportable_months() -> None:
    first = to_ms(dt.datetime(2026, 9, 30, 15, 30, tzinfo=dt.UTC))  # 10-01 00:30 in Seoul
    now = dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.UTC)  # 2027-01-01 01:00 in Seoul
    months = ("2026-09", "2026-10", "2026-12", "2027-01", "2027-02")
    answers = [monthly.reportable(m, first, now, "Asia/Seoul") for m in months]
    assert answers == [False, True, True, True, False]
    assert monthly.reportable("2026-09", first, now, "UTC")
    assert not monthly.reportable("2027-01", first, now, "UTC")
    assert not monthly.reportable("2026-11", None, now, "UTC")  # no data: no month
    assert not monthly.reportable("2026-11\n", first, now, "UTC")


# -- nothing a visitor sends answers 500 ---------------------------------------------------

WEIRD = [
    "",
    "%00",
    "%0A",
    "%20",
    "%C2%B2",
    "%D9%A3",
    "%EF%BC%93",
    "%FF%FE",
    "%ED%A0%80",
    "..%2F..%2Fetc",
    "-1",
    "1234",
    "99999999999999999999999",
    "1e3",
    "0x10",
    "NaN",
    "%3Cscript%3E",
    "a" * 1000,
    "%25",
    "api%00",
    "0000-01",
    "9999-12",
    "0001-01",
]
TEMPLATES = [
    "/monitors/{}",
    "/monitors/api?lang={}",
    "/?lang={}",
    "/api/v1/monitors/{}/days",
    "/api/v1/monitors/api/days?days={}",
    "/badge/{}/status.svg",
    "/badge/api/uptime.svg?window={}",
    "/reports/{}.json",
    "/reports/2026-{}.csv",
    "/push/{}",
    "/push/{}/{}",
    "/push/pp/{}",
    "/static/{}",
]


async def test_no_visitor_input_answers_500(site: Site) -> None:
    paths = [t.format(w, w) for t in TEMPLATES for w in WEIRD]
    paths += [f"/push/{TOKEN}/{w}" for w in WEIRD]
    assert len(paths) <= 350
    statuses = await site.statuses(paths)
    failed = [(p, s) for p, s in zip(paths, statuses, strict=True) if s >= 500]
    assert failed == []

"""The status page in a real browser: Debian's chromium driven by Playwright (async API).

The real app on a free 127.0.0.1 port over a real database (`write_world`: two groups, an
incident, maintenance now, markup in a name), loaded at desktop and phone sizes in light
and dark. One browser serves every case; each case gets its own context and page, with
every request to anything but 127.0.0.1 aborted (and counted: there must be none).
Full-page screenshots land in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pathlib
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Request,
    Response,
    Route,
    async_playwright,
    expect,
)
from playwright.async_api import Error as PlaywrightError

from prober.cli import main
from prober.config.load import Config
from statuspage import pages
from statuspage.app import SECURITY_HEADERS, STATIC_DIR, create_app
from statuspage.health import Health
from statuspage.i18n import CATALOGUES
from statuspage.publisher import Publisher
from statuspage.snapshot import DayLevel, Group, Snapshot, State
from tests.statuspage import factory
from tests.statuspage.test_export import HOSTILE, PUBLIC, write_world

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 3,
    },
}
PAGES = {  # name: (path, expected html[lang])
    "index": ("/", "en"),
    "index-ko": ("/?lang=ko", "ko"),
    "monitor-api": ("/monitors/api", "en"),
}
BACKGROUND = {"light": "rgb(246, 247, 249)", "dark": "rgb(13, 17, 23)"}  # --bg in style.css
# by structure, not class names (the markup is kept short): in <ol class="bars">, each
# <li> is a run of days that read the same (class nN: N days wide) and its <span> the
# tooltip, which is also the run's text equivalent
BAR = ":scope > li"
TIP = ":scope > li > span"
LEVELS = ("up", "minor", "major", "down", "maintenance", "unknown")  # the bars' lvl-* classes
HANGUL = re.compile("[\uac00-\ud7a3]")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclasses.dataclass
class Site:
    base: str
    config: Config
    publisher: Publisher
    browser: Browser


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    config = write_world(tmp_path_factory.mktemp("browser"), dt.datetime.now(dt.UTC))
    # one snapshot for the whole module: results go stale two intervals after write_world
    publisher = Publisher(config, min_age=3600, max_age=3600)
    runner = web.AppRunner(
        create_app(config, Health(lambda: True, lambda: True), publisher=publisher)
    )
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Site(f"http://127.0.0.1:{port}", config, publisher, browser)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


@dataclasses.dataclass
class Trouble:
    """Everything a page did that it should not have."""

    console: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    bad_status: list[str] = dataclasses.field(default_factory=list)
    outside: list[str] = dataclasses.field(default_factory=list)
    dialogs: list[str] = dataclasses.field(default_factory=list)

    def watch(self, page: Page) -> None:
        def console(message: ConsoleMessage) -> None:
            if message.type in ("error", "assert"):
                self.console.append(f"{message.type}: {message.text} ({message.location})")

        def failed(request: Request) -> None:
            self.failed.append(f"{request.method} {request.url}: {request.failure}")

        def response(answer: Response) -> None:
            if answer.status >= 400:
                self.bad_status.append(f"{answer.status} {answer.url}")

        async def dialog(opened: Dialog) -> None:
            self.dialogs.append(f"{opened.type}: {opened.message}")
            await opened.dismiss()

        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("requestfailed", failed)
        page.on("response", response)
        page.on("dialog", dialog)

    async def route(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            self.outside.append(route.request.url)
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    def assert_none(self) -> None:
        assert dataclasses.asdict(self) == dataclasses.asdict(Trouble())


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(PAGES))
async def test_page_in_chromium(site: Site, name: str, size: str, scheme: str) -> None:
    path, lang = PAGES[name]
    phone = size == "phone"
    context = await site.browser.new_context(
        **SIZES[size], color_scheme=scheme, locale="ko-KR" if lang == "ko" else "en-US"
    )
    try:
        page = await context.new_page()
        trouble = Trouble()
        trouble.watch(page)
        await page.route("**/*", trouble.route)
        response = await page.goto(site.base + path, wait_until="load")
        assert response is not None and response.status == 200
        # first, so a failing case leaves its picture too
        await page.screenshot(path=ARTIFACTS / f"{name}-{size}-{scheme}.png", full_page=True)
        await _check(page, site, name, lang, phone, scheme)
        trouble.assert_none()
    finally:
        await context.close()


async def _check(page: Page, site: Site, name: str, lang: str, phone: bool, scheme: str) -> None:
    shot = f"{name}-{'phone' if phone else 'desktop'}-{scheme}"
    snapshot = await site.publisher.current()
    words = CATALOGUES[lang]
    days = site.config.settings.history_days
    assert await page.get_attribute("html", "lang") == lang
    background = await page.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == BACKGROUND[scheme]  # the colour scheme took
    assert await page.locator("script").count() == 0

    if name.startswith("index"):
        banner = page.locator("section.banner")
        await expect(banner).to_be_visible()
        title = words[f"overall.{snapshot.overall}"]
        await expect(banner.locator("h2")).to_have_text(title)
        if lang == "ko":
            assert HANGUL.search(title), title
        rows = page.locator("li.monitor")
        assert await rows.count() == len(PUBLIC)
        for mid, monitor_name in PUBLIC.items():
            link = rows.locator(f'.monitor-name a[href^="/monitors/{mid}"]')
            await expect(link).to_have_text(monitor_name)
        # the maintenance window is on the page, its title as text
        await expect(page.get_by_text("Web <b>upgrade</b>")).to_be_visible()
        shown = list(PUBLIC.items())
    else:
        heading = page.locator(".monitor-title h1")
        await expect(heading).to_be_visible()
        await expect(heading).to_have_text(HOSTILE)
        await expect(page.locator(".monitor-title .state")).to_be_visible()
        shown = [("api", HOSTILE)]

    # the <script> name is text, and ran nothing
    await expect(page.get_by_text(HOSTILE, exact=True).first).to_be_visible()

    # bars: runs of days that read the same, history_days in all per row, each run with
    # its words, and a label per row
    colours = await _level_colours(page)
    lists = page.locator("ol.bars")
    assert await lists.count() == len(shown)
    for i, (_, monitor_name) in enumerate(shown):
        bars = lists.nth(i)
        label = words["bars.label"].format(name=monitor_name, days=days)
        assert await bars.get_attribute("aria-label") == label
        await expect(page.get_by_role("list", name=label, exact=True)).to_have_count(1)
        widths = await _run_days(bars)
        assert sum(widths) == days, widths
        runs = len(widths)
        texts = await bars.locator(TIP).all_text_contents()
        assert len(texts) == runs
        assert all(text.strip() for text in texts), texts
        # what assistive technology gets: each run a list item with its days in words
        spoken = _list_items(await bars.aria_snapshot())
        assert len(spoken) == runs and all(spoken), spoken
        boxes = await bars.locator(BAR).evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().width)"
        )
        per_day = [w / n for w, n in zip(boxes, widths, strict=True)]
        assert min(per_day) >= 1.5, per_day  # 90 days still show on a phone
        # a run is as wide as its days (within a pixel of rounding)
        unit = sum(boxes) / days
        assert all(abs(w - n * unit) <= 1 for w, n in zip(boxes, widths, strict=True))
        # each bar painted in its level's colour (--c-LEVEL), not all in one grey
        painted = await bars.locator(BAR).evaluate_all(
            """els => els.map(e => [(e.className.match(/lvl-(\\w+)/) || [])[1],
                                    getComputedStyle(e, '::before').backgroundColor])"""
        )
        assert all(level in colours for level, _ in painted), painted
        wrong = [(n, level, got) for n, (level, got) in enumerate(painted) if got != colours[level]]
        assert not wrong, (colours, wrong[:5], len(wrong))
        tab_stops = await bars.locator(BAR).evaluate_all("els => els.map(e => e.tabIndex)")
        assert set(tab_stops) == {0}  # each run is reachable with Tab
    tips = _list_items(await lists.first.aria_snapshot())
    assert words["level.unknown"] in tips[0]  # before the history began
    assert words["level.unknown"] not in tips[-1], tips[-1]  # today has results
    # the incident's day (today, or yesterday just after midnight in Seoul)
    assert any(words["level.down"] in tip for tip in tips[-2:]), tips[-2:]

    # a bar's tooltip: hidden until focused, then shown and on screen (first, middle, last)
    width = page.viewport_size["width"] if page.viewport_size else 0
    first_runs = await _run_days(lists.first)
    for day in (0, days // 2, days - 1):  # the run holding that day
        index = next(i for i in range(len(first_runs)) if sum(first_runs[: i + 1]) > day)
        bar = lists.first.locator(BAR).nth(index)
        tip = bar.locator(":scope > span")
        box = await tip.bounding_box()
        assert box is not None and box["width"] <= 1 and box["height"] <= 1, (index, box)
        await bar.focus()
        assert await bar.evaluate("e => e === document.activeElement")
        await expect(tip).to_be_visible()
        assert await tip.evaluate("e => getComputedStyle(e).clipPath") == "none"
        box = await tip.bounding_box()
        assert box is not None and box["width"] > 40 and box["height"] > 20, (index, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (index, box, width)
        assert box["y"] >= 0, (index, box)
        if day == days - 1:  # the tooltip at the right edge, for a human to look at
            around = await bar.bounding_box()
            assert around is not None
            left = max(0, min(box["x"], around["x"]) - 8)
            top = max(0, box["y"] - 8)
            clip = {
                "x": left,
                "y": top,
                "width": min(width, max(box["x"] + box["width"], around["x"] + 8) + 8) - left,
                "height": around["y"] + around["height"] + 16 - top,
            }
            await page.screenshot(path=ARTIFACTS / f"{shot}-tip.png", clip=clip)
        if phone:
            assert await _overflow(page) is None, index
        await bar.evaluate("e => e.blur()")

    if phone:
        assert await _overflow(page) is None


async def _run_days(bars: Locator) -> list[int]:
    """How many days each run of a bar list stands for (class nN; 1 without)."""
    found: list[int] = await bars.locator(BAR).evaluate_all(
        "els => els.map(e => +((e.className.match(/\\bn(\\d+)\\b/) || [0, 1])[1]))"
    )
    return found


async def _level_colours(page: Page) -> dict[str, str]:
    """Each day level's colour as the browser computes it: style.css's --c-LEVEL (#rrggbb)."""
    found: dict[str, str] = await page.evaluate(
        """levels => Object.fromEntries(levels.map(l => [l,
            getComputedStyle(document.documentElement).getPropertyValue('--c-' + l).trim()]))""",
        list(LEVELS),
    )
    colours = {}
    for level, value in found.items():
        assert re.fullmatch("#[0-9a-f]{6}", value), (level, value)
        r, g, b = (int(value[i : i + 2], 16) for i in (1, 3, 5))
        colours[level] = f"rgb({r}, {g}, {b})"
    assert len(set(colours.values())) == len(LEVELS), colours
    return colours


def _list_items(aria: str) -> list[str]:
    """The text of each `- listitem: ...` in an ARIA snapshot of a list."""
    items = []
    for line in aria.splitlines():
        item = re.match(r"\s*- listitem(?: \"[^\"]*\")?:?(.*)$", line)
        if item:
            items.append(item.group(1).strip().strip('"'))
    return items


async def _overflow(page: Page) -> str | None:
    """None when nothing sticks out sideways; else the widths and the widest culprit."""
    result: str | None = await page.evaluate(
        """() => {
            const doc = document.documentElement;
            if (doc.scrollWidth <= window.innerWidth) return null;
            let worst = null;
            for (const e of document.body.querySelectorAll('*')) {
                const r = e.getBoundingClientRect();
                if (r.right > window.innerWidth + 0.5 && (!worst || r.right > worst.right))
                    worst = {right: r.right, tag: e.tagName, cls: e.className};
            }
            return `scrollWidth ${doc.scrollWidth} > innerWidth ${window.innerWidth}: `
                + JSON.stringify(worst);
        }"""
    )
    return result


async def test_requests_elsewhere_are_blocked_and_counted(site: Site) -> None:
    """The guard the page tests rely on: it does catch and stop a request that leaves."""
    context = await site.browser.new_context()
    try:
        page = await context.new_page()
        trouble = Trouble()
        trouble.watch(page)
        await page.route("**/*", trouble.route)
        await page.set_content('<img src="http://192.0.2.1/pixel.png" alt="">')
        with pytest.raises(PlaywrightError, match="ERR_BLOCKED_BY_CLIENT"):
            await page.goto("http://example.com/")
        assert trouble.outside == ["http://192.0.2.1/pixel.png", "http://example.com/"]
        assert len(trouble.failed) == 2
    finally:
        await context.close()


# Chrome DevTools' "Fast 3G" (latency 562.5 ms, 1.44 Mbit/s down, 675 kbit/s up) and a
# CPU 4 times slower: a mid-range phone on a poor network, as during an outage.
SLOW_NETWORK = {
    "offline": False,
    "latency": 562.5,
    "downloadThroughput": 1_440_000 / 8,
    "uploadThroughput": 675_000 / 8,
}
SLOW_CPU = 4
FIRST_PAINT_BOUND_MS = 60_000  # generous on purpose: a sanity bound, never a target


def hundred() -> Snapshot:
    """100 monitors in 10 groups, 90 days each with a few bad days (different per
    monitor), one monitor down: the page size issue 14 measures."""
    groups = []
    for g in range(10):
        members = []
        for i in range(10):
            n = g * 10 + i
            bad = {n % 90: DayLevel.MINOR, (n * 7) % 90: DayLevel.MAJOR, 40: DayLevel.MAINTENANCE}
            members.append(
                factory.monitor(
                    f"m{n:03d}",
                    name=f"Service {n}",
                    group=f"Group {g}",
                    state=State.DOWN if n == 42 else State.UP,
                    days=factory.days(bad=bad),
                )
            )
        groups.append(Group(f"Group {g}", tuple(members)))
    return dataclasses.replace(factory.sample(), groups=tuple(groups))


async def test_first_paint_throttled(site: Site) -> None:
    """Parse-to-first-paint of `/` for 100 monitors x 90 days in Chromium on a slow
    network and a slow CPU (CDP Network.emulateNetworkConditions and
    Emulation.setCPUThrottlingRate): printed for the record (issue 14 asks for the
    figure); the only assertion on time is a generous bound."""
    body = pages.render_index(hundred(), "en", pages.make_environment())

    async def index(_request: web.Request) -> web.Response:
        answer = web.Response(text=body, content_type="text/html", headers=SECURITY_HEADERS)
        answer.enable_compression()
        return answer

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    context = await site.browser.new_context(**SIZES["phone"])
    try:
        page = await context.new_page()
        page.set_default_timeout(120_000)  # a throttled page on a busy machine
        trouble = Trouble()
        trouble.watch(page)
        await page.route("**/*", trouble.route)
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send("Network.emulateNetworkConditions", SLOW_NETWORK)
        await cdp.send("Emulation.setCPUThrottlingRate", {"rate": SLOW_CPU})
        response = await page.goto(f"http://127.0.0.1:{runner.addresses[0][1]}/")
        assert response is not None and response.status == 200
        # polled from here: wait_for_function's string predicate is an eval the CSP refuses
        deadline = asyncio.get_running_loop().time() + 120
        while not await page.evaluate(
            "() => performance.getEntriesByName('first-contentful-paint').length > 0"
        ):
            assert asyncio.get_running_loop().time() < deadline, "no first paint in 120 s"
            await asyncio.sleep(0.05)
        timing = await page.evaluate(
            """() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const paint = name => (performance.getEntriesByName(name)[0] || {}).startTime;
                return {response_start: nav.responseStart, response_end: nav.responseEnd,
                        dom_interactive: nav.domInteractive, first_paint: paint('first-paint'),
                        first_contentful_paint: paint('first-contentful-paint'),
                        transfer_bytes: nav.transferSize, body_bytes: nav.decodedBodySize};
            }"""
        )
        await expect(page.locator("li.monitor")).to_have_count(100)
        trouble.assert_none()
    finally:
        await context.close()
        await runner.cleanup()
    fcp = timing["first_contentful_paint"]
    print(
        f"\nfirst paint, 100 monitors, Fast 3G + CPU x{SLOW_CPU}:"
        f" body {timing['body_bytes']:,} B ({timing['transfer_bytes']:,} B on the wire);"
        f" first contentful paint {fcp:.0f} ms after navigation start,"
        f" {fcp - timing['response_start']:.0f} ms after the first byte"
        f" (DOM interactive {timing['dom_interactive']:.0f} ms)"
    )
    assert fcp < FIRST_PAINT_BOUND_MS, timing


async def test_export_under_a_sub_path_in_chromium(site: Site, tmp_path: pathlib.Path) -> None:
    """`prober export-static` behind a plain static server under /sub/: the page, its
    stylesheet, the language switch to the Korean page and a monitor's page all load, with
    no request failing or leaving /sub/."""
    out = tmp_path / "site"
    assert main(["export-static", "-c", str(site.config.path), str(out)]) == 0
    app = web.Application()
    app.router.add_static("/sub/", out)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    context = await site.browser.new_context(**SIZES["desktop"], color_scheme="light")
    try:
        page = await context.new_page()
        trouble = Trouble()
        trouble.watch(page)
        await page.route("**/*", trouble.route)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(urlsplit(request.url).path))
        await page.goto(f"{base}/sub/index.html")
        assert await page.get_attribute("html", "lang") == "en"
        styled = "b => getComputedStyle(b).backgroundColor"
        assert await page.locator("body").evaluate(styled) == BACKGROUND["light"]
        await page.get_by_role("link", name=CATALOGUES["en"]["lang.ko"]).click()
        await page.wait_for_url(f"{base}/sub/ko/index.html")
        assert await page.get_attribute("html", "lang") == "ko"
        title = await page.locator("section.banner h2").inner_text()
        assert HANGUL.search(title), title
        assert await page.locator("body").evaluate(styled) == BACKGROUND["light"]
        await page.locator(".monitor-name a").first.click()
        await page.wait_for_url(f"{base}/sub/ko/monitors/api/index.html")
        assert await page.get_attribute("html", "lang") == "ko"
        await expect(page.locator(".monitor-title h1")).to_have_text(HOSTILE)
        assert await page.locator("body").evaluate(styled) == BACKGROUND["light"]
        trouble.assert_none()
        assert asked and all(path.startswith("/sub/") for path in asked), asked
    finally:
        await context.close()
        await runner.cleanup()

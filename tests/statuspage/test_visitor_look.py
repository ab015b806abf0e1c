"""What a visitor sees of issue 14 in Debian's chromium, found by trying the product as a
new user: an incident written by people is not drawn as the stale-results warning (which
shared its class), it does not touch the overall banner, and the subscription form and the
pages its mail links open are styled like the rest of the site (not browser-default
controls), in light and dark. Computed styles, read in a real browser."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Literal

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from prober.config import load_config
from prober.store.db import open_engine
from statuspage.app import create_app
from statuspage.publisher import Publisher
from statuspage.subscribe import GATE, Gate
from tests.statuspage.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG = """
[settings]
title = "Acme"
public_url = "https://status.example.com"
database = "sqlite:///prober.db"
subscriptions = { email = "mail" }

[[monitors]]
id = "api"
name = "API"
type = "tcp"
host = "127.0.0.1"
port = 9

[[monitors]]
id = "web"
name = "Website"
type = "tcp"
host = "127.0.0.1"
port = 9

[[notifiers]]
id = "mail"
type = "email"
host = "127.0.0.1"
port = 9
from = "Acme status <status@example.com>"
to = ["ops@example.com"]
security = "none"
"""
TOKEN = "A" * 24  # the shape of a link's token; GET only shows the button
CARD = {"light": "rgb(255, 255, 255)", "dark": "rgb(22, 27, 34)"}  # --card in style.css


@dataclasses.dataclass
class Site:
    base: str
    browser: Browser


async def _unused(asked: Mapping[str, str]) -> str:
    raise AssertionError(f"a GET forwarded {dict(asked)}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    folder = tmp_path_factory.mktemp("look")
    (folder / "monitors.toml").write_text(CONFIG)
    (folder / "incidents").mkdir()
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat(timespec="seconds")
    (folder / "incidents" / "api-errors.toml").write_text(
        'title = "Elevated API errors"\nimpact = "major"\n'
        'components = { api = "partial_outage", web = "degraded_performance" }\n'
        f'[[updates]]\nat = "{at}"\nstatus = "investigating"\nbody = "Looking into it."\n'
    )
    config = load_config(folder / "monitors.toml", env={})
    assert config.notices
    open_engine(config.database_path).dispose()
    app = create_app(config, _Health(), publisher=Publisher(config))
    app[GATE] = Gate(_unused)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Site(f"http://127.0.0.1:{runner.addresses[0][1]}", browser)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


class _Health:
    def report(self) -> dict[str, object]:
        return {"status": "ok", "problems": []}


Scheme = Literal["light", "dark"]


async def _open(site: Site, path: str, scheme: Scheme) -> Page:
    context = await site.browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, color_scheme=scheme
    )
    page = await context.new_page()
    answer = await page.goto(site.base + path)
    assert answer is not None and answer.status == 200
    return page


async def _style(page: Page, selector: str, prop: str, pseudo: str | None = None) -> str:
    value = await page.locator(selector).first.evaluate(
        "(el, [prop, pseudo]) => getComputedStyle(el, pseudo).getPropertyValue(prop)",
        [prop, pseudo],
    )
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_an_incident_by_people_is_not_drawn_as_the_stale_warning(
    site: Site, scheme: Scheme
) -> None:
    page = await _open(site, "/", scheme)
    try:
        assert await page.locator("li.notice").count() == 1
        assert await _style(page, "li.notice", "content", "::before") in ("none", "normal")
        assert await _style(page, "li.notice", "background-color") == "rgba(0, 0, 0, 0)"
        # its components, inline and joined by CSS's ", ", have no space before the comma
        # (white space between inline items is drawn)
        between = await page.locator("li.notice .notice-components").evaluate(
            "ul => [...ul.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).length"
        )
        assert between == 0
        # its status ("Investigating") is a pill like the incidents' "Ongoing", not bare text
        for where in ("li.notice", ".notice-banner"):
            pill = f"{where} .notice-status"
            assert await _style(page, pill, "background-color") != "rgba(0, 0, 0, 0)"
        # the banner for it is apart from the overall banner below it
        gap = await page.evaluate(
            "document.querySelector('.banner').getBoundingClientRect().top"
            " - document.querySelector('.notices-banner').getBoundingClientRect().bottom"
        )
        assert gap >= 8
    finally:
        await page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_subscription_form_is_styled_like_the_site(site: Site, scheme: Scheme) -> None:
    page = await _open(site, "/", scheme)
    try:
        assert await page.locator("form.subscribe").count() == 1
        # in a card like every other section, with the site's button, not the browser's
        section = page.locator("section:has(form.subscribe)")
        assert await section.evaluate("el => getComputedStyle(el).backgroundColor") == CARD[scheme]
        link = await _style(page, "a[href='/feed.atom']", "color")
        assert await _style(page, "form.subscribe button", "background-color") == link
    finally:
        await page.context.close()


@pytest.mark.parametrize("path", [f"/subscribe/confirm/{TOKEN}", f"/unsubscribe/{TOKEN}?lang=ko"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_pages_mail_links_open_are_styled_like_the_site(
    site: Site, path: str, scheme: Scheme
) -> None:
    page = await _open(site, path, scheme)
    try:
        assert await _style(page, "main section", "background-color") == CARD[scheme]
        button = await _style(page, "main form button", "background-color")
        assert button == await _style(page, "main a", "color")
    finally:
        await page.context.close()


@pytest.mark.parametrize("path", ["/", "/monitors/api", f"/subscribe/confirm/{TOKEN}"])
async def test_every_page_names_its_icon(site: Site, path: str) -> None:
    """Unless a page names its icon, browsers ask for /favicon.ico after loading it: a 404 on
    every visit, in the console and the server's log (reported in the console only, so the
    page's own declaration is what is checked)."""
    context = await site.browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(site.base + path)
        icons = page.locator("head link[rel='icon']")
        assert await icons.count() == 1
        assert await icons.get_attribute("href") == "data:,"
    finally:
        await context.close()

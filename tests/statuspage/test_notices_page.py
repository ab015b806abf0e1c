"""Incidents written by people on the public side: `attach` (declared statuses raise states,
the banner is recomputed, a detected incident is attached), hostile Markdown rendered
harmless, and the banner and the list on the page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html.parser
import logging
import pathlib

import pytest

from prober.config import Config, load_config
from prober.notices import ComponentStatus, Impact, Notice, Progress, Update
from prober.store.db import open_engine
from statuspage.i18n import Translator
from statuspage.notices import attach, naming, render_markdown, safe_link, unresolved
from statuspage.pages import make_environment, render_index
from statuspage.publisher import Publisher
from statuspage.snapshot import Group, Overall, Snapshot, State
from tests.statuspage.factory import NOW, ONGOING, SEOUL, calm, monitor, sample


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("cfg") / "monitors.toml"
    monitors = "".join(
        f'\n[[monitors]]\nid = "{m}"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n'
        for m in ("api", "db", "web", "cron", "secret")
    )
    path.write_text(f'[settings]\ntimezone = "Asia/Seoul"\n{monitors}')
    return load_config(path, env={})


def notice(
    stem: str,
    components: dict[str, ComponentStatus] | None = None,
    *,
    at: dt.datetime = NOW - dt.timedelta(minutes=10),
    statuses: tuple[Progress, ...] = (Progress.INVESTIGATING,),
    detected: str | None = None,
    bodies: tuple[str, ...] = (),
) -> Notice:
    return Notice(
        id=stem,
        title=f"Title of {stem}",
        impact=Impact.MAJOR,
        components=tuple((components or {}).items()),
        detected=detected,
        updates=tuple(
            Update(
                at + dt.timedelta(minutes=i),
                status,
                bodies[i] if i < len(bodies) else f"{stem} update {i + 1}",
            )
            for i, status in enumerate(statuses)
        ),
    )


def two_up() -> Snapshot:
    return dataclasses.replace(
        calm(), groups=(Group("", (monitor("api", name="API"), monitor("db", name="DB"))),)
    )


def test_no_notices_leaves_the_snapshot_as_it_is(config: Config) -> None:
    snapshot = sample()
    assert attach(snapshot, (), config) is snapshot


def test_declared_status_raises_the_state_and_the_banner(config: Config) -> None:
    snapshot = two_up()
    assert snapshot.overall is Overall.OPERATIONAL
    open_one = notice(
        "db-down",
        {
            "db": ComponentStatus.PARTIAL_OUTAGE,
            "api": ComponentStatus.DEGRADED_PERFORMANCE,
            "secret": ComponentStatus.MAJOR_OUTAGE,  # not public: never named
        },
    )
    milder = notice("db-slow", {"db": ComponentStatus.DEGRADED_PERFORMANCE})
    resolved = notice(
        "old",
        {"api": ComponentStatus.MAJOR_OUTAGE},
        statuses=(Progress.INVESTIGATING, Progress.RESOLVED),
    )
    out = attach(snapshot, (resolved, milder, open_one), config)
    states = {m.id: m.state for m in out.monitors}
    assert states == {"api": State.DEGRADED, "db": State.DOWN}
    assert out.monitor("db").since == open_one.created_at  # type: ignore[union-attr]
    assert out.overall is Overall.MAJOR_OUTAGE  # one of two down
    assert dict(out.declared) == {"api": "degraded_performance", "db": "partial_outage"}
    (view,) = [n for n in out.notices if n.id == "db-down"]
    assert view.components == (
        ("db", "DB", "partial_outage"),
        ("api", "API", "degraded_performance"),
    )
    assert "secret" not in repr(out)
    assert [n.id for n in out.notices] == ["db-slow", "db-down", "old"]  # unresolved first
    assert [n.id for n in unresolved(out.notices)] == ["db-slow", "db-down"]
    assert [n.id for n in naming(out.notices, "api")] == ["db-down", "old"]


def test_a_declaration_never_lowers_a_state(config: Config) -> None:
    snapshot = sample()  # api down, db in maintenance, web degraded, cron unknown
    out = attach(
        snapshot,
        (
            notice(
                "mild",
                {
                    "api": ComponentStatus.DEGRADED_PERFORMANCE,
                    "web": ComponentStatus.OPERATIONAL,
                    "cron": ComponentStatus.UNDER_MAINTENANCE,
                    "db": ComponentStatus.DEGRADED_PERFORMANCE,
                },
            ),
        ),
        config,
    )
    before = {m.id: m.state for m in snapshot.monitors}
    after = {m.id: m.state for m in out.monitors}
    assert after == before | {"db": State.DEGRADED}
    assert out.overall is snapshot.overall


def test_under_maintenance_and_resolution(config: Config) -> None:
    snapshot = two_up()
    maint = notice("works", {"api": ComponentStatus.UNDER_MAINTENANCE})
    out = attach(snapshot, (maint,), config)
    assert out.monitor("api").state is State.MAINTENANCE  # type: ignore[union-attr]
    assert out.overall is Overall.MAINTENANCE
    done = notice(
        "works",
        {"api": ComponentStatus.UNDER_MAINTENANCE},
        statuses=(Progress.MONITORING, Progress.RESOLVED),
    )
    out = attach(snapshot, (done,), config)
    assert out.monitor("api").state is State.UP  # type: ignore[union-attr]
    assert out.overall is Overall.OPERATIONAL
    assert out.declared == ()
    assert out.notices[0].resolved_at == done.updates[-1].at


def test_old_resolved_notices_are_not_shown(config: Config) -> None:
    old = notice(
        "old", at=NOW - dt.timedelta(days=91), statuses=(Progress.INVESTIGATING, Progress.RESOLVED)
    )
    recent = notice("recent", at=NOW - dt.timedelta(days=89), statuses=(Progress.RESOLVED,))
    out = attach(sample(), (old, recent), config)
    assert [n.id for n in out.notices] == ["recent"]


def test_detected_incident_is_attached(config: Config) -> None:
    snapshot = sample()  # api has ONGOING, started NOW - 25 min
    inside = notice("inside", detected="api", at=NOW - dt.timedelta(minutes=5))
    after = notice("after", detected="api", at=NOW + dt.timedelta(hours=2))
    far = notice("far", detected="api", at=NOW - dt.timedelta(days=2))
    private = notice("private", detected="secret")
    out = {n.id: n for n in attach(snapshot, (inside, after, far, private), config).notices}
    assert out["inside"].detected == ONGOING
    assert out["inside"].created_at == ONGOING.start  # one incident: the earlier start
    assert out["after"].detected == ONGOING  # ongoing: it holds any later time
    assert out["far"].detected is None  # nothing within a day
    assert out["private"].detected is None
    assert out["far"].created_at == far.created_at


def test_updates_are_newest_first_in_the_page_timezone(config: Config) -> None:
    n = notice(
        "steps",
        at=dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC),
        statuses=(Progress.INVESTIGATING, Progress.IDENTIFIED, Progress.MONITORING),
        bodies=("one", "**two**", "three"),
    )
    (view,) = attach(sample(), (n,), config).notices
    assert [u.id for u in view.updates] == ["steps-3", "steps-2", "steps-1"]
    assert [u.status for u in view.updates] == ["monitoring", "identified", "investigating"]
    assert view.updates[1].html == "<p><strong>two</strong></p>"
    assert view.updates[1].body == "**two**"
    assert view.updates[-1].at == dt.datetime(2026, 11, 23, 12, 0, tzinfo=SEOUL)
    assert view.updates[-1].at.utcoffset() == dt.timedelta(hours=9)
    assert view.status == "monitoring"
    assert view.impact == "major"
    # rendered once: the next snapshot reuses it
    again = attach(sample(), (n,), config).notices[0]
    assert again.updates[1].html is view.updates[1].html


class Links(html.parser.HTMLParser):
    """Every element and attribute the browser would see."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def elements(text: str) -> list[tuple[str, dict[str, str]]]:
    parser = Links()
    parser.feed(text)
    parser.close()
    return parser.tags


DANGEROUS = [
    "[a](javascript:alert(1))",
    "[a](JaVaScRiPt:alert(1))",
    "[a](javascript&#58;alert(1))",
    "[a](&#106;avascript:alert(1))",
    "[a](&#x6A;avascript:alert(1))",
    "[a](<java\tscript:alert(1)>)",
    "[a](<java&#x09;script:alert(1)>)",
    "[a](< javascript:alert(1)>)",
    "[a](\\javascript:alert(1))",
    "[a](vbscript:msgbox(1))",
    "[a](data:text/html;base64,PHNjcmlwdD4=)",
    "[a](DATA:image/png;base64,AAAA)",
    "[a](file:///etc/passwd)",
    "<javascript:alert(1)>",
    "<data:text/html,x>",
    "[a][r]\n\n[r]: javascript:alert(1)",
]


@pytest.mark.parametrize("source", DANGEROUS)
def test_dangerous_links_are_not_links(source: str) -> None:
    out = render_markdown(source)
    assert [tag for tag, _ in elements(out) if tag not in ("p",)] == [], out
    assert "href" not in out


def test_raw_html_is_text_and_images_are_their_alt_text() -> None:
    out = render_markdown(
        '<script>alert("x")</script>\n\n<img src=x onerror=alert(1)> <b onclick="x">b</b>\n\n'
        '![the *graph*](https://evil.example/track.png "t") ![](data:image/png;base64,AA)\n\n'
        '<div>\n<iframe src="https://evil.example"></iframe>\n</div>'
    )
    assert {tag for tag, _ in elements(out)} == {"p"}, out
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
    assert "the graph" in out
    assert "track.png" not in out  # an image costs the visitor no request


def test_safe_links_stay_links() -> None:
    out = render_markdown(
        "[a](https://example.com/x?y=1#z) [b](http://example.com) [c](mailto:ops@example.com) "
        "[d](/monitors/api) [e](#notice-x) [f](?lang=ko) [g](../up) <https://example.com/auto>"
    )
    hrefs = [attrs["href"] for tag, attrs in elements(out) if tag == "a"]
    assert hrefs == [
        "https://example.com/x?y=1#z",
        "http://example.com",
        "mailto:ops@example.com",
        "/monitors/api",
        "#notice-x",
        "?lang=ko",
        "../up",
        "https://example.com/auto",
    ]
    assert safe_link("HTTPS://example.com")
    assert not safe_link(" \x01javascript:x")


def _render_list(snapshot: Snapshot, lang: str, **kwargs: object) -> str:
    env = make_environment()
    template = env.from_string(
        '{% from "_notices.html" import notice_list with context %}'
        "{{ notice_list(snapshot.notices, **kwargs) }}"
    )
    return template.render(snapshot=snapshot, t=Translator(lang), href=lambda p: p, kwargs=kwargs)


HOSTILE_TITLE = '<script>alert("t")</script> & "quotes"'


def _with_notices(config: Config) -> Snapshot:
    hostile = dataclasses.replace(
        notice(
            "api-errors",
            {"api": ComponentStatus.PARTIAL_OUTAGE},
            statuses=(Progress.INVESTIGATING, Progress.IDENTIFIED),
            bodies=("First *words*.", "Rolled back: <b>not bold</b> [x](javascript:alert(1))"),
            detected="api",
        ),
        title=HOSTILE_TITLE,
    )
    done = notice("done", {"db": ComponentStatus.MAJOR_OUTAGE}, statuses=(Progress.RESOLVED,))
    return attach(sample(), (hostile, done), config)


def test_the_page_shows_a_banner_for_unresolved_ones(config: Config) -> None:
    snapshot = _with_notices(config)
    page = render_index(snapshot, "en", make_environment())
    assert page is not None
    banner = page[page.index('class="notices-banner"') :]
    banner = banner[: banner.index("</section>")]
    assert 'href="#notice-api-errors"' in banner
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt; &amp; &#34;quotes&#34;" in banner
    assert "Identified" in banner and "Major" in banner
    assert "Rolled back: &lt;b&gt;not bold&lt;/b&gt; [x](javascript:alert(1))" in banner
    assert "First" not in banner  # only the newest update
    assert "done" not in banner  # resolved: not in the banner
    assert page.index('class="notices-banner"') < page.index('id="banner-title"')
    assert 'id="notice-api-errors"' in page  # where the banner's link leads, on the page
    assert "<script>" not in page and "javascript:alert" not in page.replace(
        "[x](javascript:alert(1))", ""
    )
    korean = render_index(snapshot, "ko", make_environment())
    assert korean is not None and "원인 파악" in korean and "진행 중인 장애 안내" in korean


def test_the_list_shows_each_notice_with_its_updates(config: Config) -> None:
    snapshot = _with_notices(config)
    out = _render_list(snapshot, "en")
    tags = elements(out)
    ids = [attrs["id"] for _, attrs in tags if "id" in attrs]
    assert ids == [
        "notice-api-errors",
        "update-api-errors-2",
        "update-api-errors-1",
        "notice-done",
        "update-done-1",
    ]
    assert out.index("Rolled back") < out.index("First <em>words</em>.")  # newest first
    assert '<time datetime="2026-11-23T12:56:00+09:00">' in out
    assert "Partial outage" in out and 'href="/monitors/api"' in out
    assert "Detected by monitoring: API, from" in out
    assert "<h3" in out and "<h4" not in out
    assert "<h4" in _render_list(snapshot, "en", heading_level=4)
    only_db = _render_list(snapshot, "en", monitor_id="db")
    assert 'id="notice-done"' in only_db and "notice-api-errors" not in only_db
    assert _render_list(snapshot, "en", monitor_id="web").strip() == ""
    korean = _render_list(snapshot, "ko")
    assert "해결됨" in korean and "부분 장애" in korean and "영향도" in korean


def test_the_banner_is_absent_without_open_notices(config: Config) -> None:
    page = render_index(
        attach(calm(), (notice("x", statuses=(Progress.RESOLVED,)),), config),
        "en",
        make_environment(),
    )
    assert page is not None and "notices-banner" not in page


async def test_the_publisher_attaches_them_and_a_notice_only_reload_stays_incremental(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "monitors.toml"
    path.write_text(
        '[settings]\ntimezone = "Asia/Seoul"\n[[monitors]]\nid = "api"\ntype = "tcp"\n'
        'host = "127.0.0.1"\nport = 9\n'
    )
    first = load_config(path, env={})
    open_engine(first.database_path).dispose()
    publisher = Publisher(first)
    caplog.set_level(logging.DEBUG, logger="statuspage.publisher")
    try:
        assert (await publisher.current()).notices == ()
        (tmp_path / "incidents").mkdir()
        (tmp_path / "incidents" / "slow.toml").write_text(
            'title = "Slow API"\nimpact = "minor"\ncomponents = { api = "major_outage" }\n'
            '[[updates]]\nat = 2026-12-03T10:00:00+09:00\nstatus = "identified"\nbody = "*Slow*."\n'
        )
        caplog.clear()
        publisher.reconfigure(load_config(path, env={}))
        await publisher.start()  # the next build, now
        snapshot = await publisher.current()
        assert [n.title for n in snapshot.notices] == ["Slow API"]
        assert snapshot.notices[0].updates[0].html == "<p><em>Slow</em>.</p>"
        assert snapshot.monitor("api").state is State.DOWN  # type: ignore[union-attr]
        assert snapshot.declared == (("api", "major_outage"),)
        assert "full=False" in caplog.text  # the incremental state went on

        caplog.clear()
        path.write_text(path.read_text().replace("port = 9", "port = 10"))
        publisher.reconfigure(load_config(path, env={}))
        await publisher.start()
        snapshot = await publisher.current()
        assert [n.title for n in snapshot.notices] == ["Slow API"]
        assert "full=True" in caplog.text  # a monitor changed: built afresh
    finally:
        await publisher.close()

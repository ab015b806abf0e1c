"""The status page's HTML, rendered from hand-built snapshots and parsed back: what a reader,
a screen reader and an attacker would see, in English and Korean."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

from statuspage import charts
from statuspage.i18n import CATALOGUES, LANGUAGES, Translator, placeholders
from statuspage.pages import (
    PAGE_SIZE,
    Links,
    make_environment,
    page_count,
    render_index,
    render_monitor,
    render_page,
)
from statuspage.snapshot import (
    DayLevel,
    Group,
    LatencyPoint,
    Overall,
    PushView,
    Snapshot,
    State,
)
from tests.statuspage.factory import HOSTILE, NOW, calm, days, latency, monitor, sample

TEMPLATES = pathlib.Path(__file__).parents[2] / "statuspage" / "templates"
VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr"}
ATTRIBUTES = {
    "open",
    *("action", "method", "for", "value", "required", "maxlength", "autocomplete"),
    *("lang", "charset", "name", "content", "rel", "href", "hreflang", "type", "title"),
    *("class", "id", "tabindex", "role", "datetime", "scope", "focusable"),
    *("aria-label", "aria-labelledby", "aria-hidden", "aria-current"),
    *("viewbox", "width", "height", "d", "cx", "cy", "r", "x", "y", "x1", "x2", "y1", "y2"),
    *("dy", "fill", "stroke", "stroke-width", "stroke-linecap", "stroke-linejoin"),
    *("stroke-dasharray", "vector-effect", "text-anchor"),
}
# Words allowed in Korean text: names, units and abbreviations that Korean pages use as is.
KO_LATIN = {"KST", "ms", "HTTP", "TLS", "TCP", "DNS", "JSON", "API", "Atom", "English"}
KO_LATIN |= {"p50", "p95", "prober"}


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)
        ]

    def one(self, tag: str | None = None, cls: str | None = None) -> Node:
        (found,) = self.find(tag, cls)
        return found

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    @property
    def text(self) -> str:
        parts = [c if isinstance(c, str) else f" {c.text} " for c in self.children]
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    def texts(self) -> Iterator[str]:
        for child in self.children:
            if isinstance(child, str):
                if child.strip():
                    yield child.strip()
            else:
                yield from child.texts()


class Tree(HTMLParser):
    """A strict little DOM: every element closed in order, or the test fails."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.attribute_names: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = self._add(tag, attrs)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._add(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    def _add(self, tag: str, attrs: list[tuple[str, str | None]]) -> Node:
        names = [name for name, _ in attrs]
        assert len(names) == len(set(names)), f"<{tag}> repeats an attribute: {names}"
        self.attribute_names.update(names)
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        return node


def parse(html: str) -> Tree:
    tree = Tree()
    tree.feed(html)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree


@pytest.fixture(scope="module")
def env():  # type: ignore[no-untyped-def]
    return make_environment()


def index(snapshot: Snapshot, lang: str, env) -> Node:  # type: ignore[no-untyped-def]
    return parse(render_index(snapshot, lang, env)).root


def monitor_page(snapshot: Snapshot, monitor_id: str, lang: str, env) -> Node:  # type: ignore[no-untyped-def]
    html = render_monitor(snapshot, monitor_id, lang, env)
    assert html is not None
    return parse(html).root


def data_strings(snapshot: Snapshot) -> list[str]:
    """Everything on the page that comes from the operator's config or the targets."""
    out = [snapshot.title, snapshot.timezone]
    for group in snapshot.groups:
        out.append(group.name)
        for m in group.monitors:
            out += [m.name, m.description]
    for i in snapshot.incidents:
        out += [i.monitor_name, i.cause]
    for w in snapshot.maintenance_active + snapshot.maintenance_upcoming:
        out += [w.title, *w.monitor_names]
    return sorted({s for s in out if s}, key=len, reverse=True)


# --- catalogues and formats -----------------------------------------------------------


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    en, ko = CATALOGUES["en"], CATALOGUES["ko"]
    assert set(CATALOGUES) == set(LANGUAGES)
    assert en.keys() == ko.keys()
    for key in en:
        assert placeholders(en[key]) == placeholders(ko[key]), key


def test_formats_per_language() -> None:
    en, ko = Translator("en"), Translator("ko")
    assert en.datetime(NOW) == "Nov 23, 2026, 13:05 KST"
    assert ko.datetime(NOW) == "2026년 11월 23일 13:05 KST"
    assert (en.date(NOW.date()), ko.date(NOW.date())) == ("Nov 23, 2026", "2026년 11월 23일")
    assert [en.duration(s) for s in (0, 0.2, 43, 720, 3725, 3600, 183600)] == [
        *("0s", "1s", "43s", "12m", "1h 2m", "1h", "2d 3h")
    ]
    assert [ko.duration(s) for s in (43, 720, 3725)] == ["43초", "12분", "1시간 2분"]
    assert en.percent(99.996) == "99.99 %"  # cut, never rounded up to a perfect 100
    assert (en.percent(100.0), en.percent(99.95), en.percent(None)) == ("100 %", "99.95 %", "–")
    assert ko.percent(99.95) == "99.95%"
    assert en.percent(None, empty="fmt.no_data") == "No data"
    assert (en.ms(1234.4), en.ms(None)) == ("1,234 ms", "–")
    assert (en.plural("bar.incidents", 1), en.plural("bar.incidents", 2)) == (
        "1 incident",
        "2 incidents",
    )


def test_templates_hold_no_words_of_their_own() -> None:
    """Every visible word and label comes from the catalogues, not from template text."""

    class Words(HTMLParser):
        found: list[str] = []

        def handle_data(self, data: str) -> None:
            self.found.append(data)

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found += [v or "" for k, v in attrs if k in ("aria-label", "title", "alt")]

    for path in TEMPLATES.glob("*.html"):
        source = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", "", path.read_text(), flags=re.S)
        words = Words()
        words.found = []
        words.feed(source)
        leftovers = [w.strip() for w in words.found if re.search(r"[^\W\d_]", w)]
        assert leftovers == [], path.name


# --- the index page -------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("make", [sample, calm])
def test_page_is_well_formed_safe_and_in_its_language(make, lang, env) -> None:  # type: ignore[no-untyped-def]
    snapshot = make()
    html = render_index(snapshot, lang, env)
    tree = parse(html)
    root = tree.root
    assert root.one("html").attrs["lang"] == lang
    assert "<script" not in html.lower()
    assert root.find("script") == [] and root.find("style") == []
    assert not any("bold" in n.text for n in root.find("b"))  # bars' dates are <b>; names are text
    # a stray attribute name would mean a quote broke out of an attribute value
    assert tree.attribute_names <= ATTRIBUTES
    assert "style" not in tree.attribute_names
    assert [n.tag for n in root.find() if n.tag in ("header", "main", "footer")] == [
        "header",
        "main",
        "footer",
    ]
    links = [n.attrs["href"] for n in root.find("link")]
    assert links == ["data:,", "/static/style.css", "/feed.atom"]  # an icon: no /favicon.ico
    switch = [a.attrs["href"] for a in root.one("nav").find("a")]
    assert switch == ["/?lang=en", "/?lang=ko"]
    hrefs = [a.attrs["href"] for a in root.find("a")]
    assert all(h.startswith(("/", "#")) for h in hrefs), hrefs
    assert "/feed.atom" in hrefs and "/api/v1/status" in hrefs


def test_hostile_names_come_out_escaped(env) -> None:  # type: ignore[no-untyped-def]
    for lang in LANGUAGES:
        html = render_index(sample(), lang, env)
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &#34;quoted&#34;" in html
        assert "Acme &lt;Status&gt;" in html and "Frontend &lt;&amp;&gt;" in html
        root = parse(html).root
        names = [n.text for n in root.find("h3", "monitor-name")]
        assert HOSTILE in names  # shown as the text it is
        labels = [n.attrs["aria-label"] for n in root.find("ol", "bars")]
        assert any(HOSTILE in label for label in labels)  # and intact inside an attribute


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("overall", list(Overall))
def test_banner_says_the_overall_state(overall, lang, env) -> None:  # type: ignore[no-untyped-def]
    snapshot = dataclasses.replace(sample(), overall=overall)
    banner = index(snapshot, lang, env).one("section", "banner")
    assert f"banner-{overall}" in banner.classes
    assert banner.one("h2").text == CATALOGUES[lang][f"overall.{overall}"]
    assert banner.one("time").attrs["datetime"] == NOW.isoformat()


def days_of(strip: Node) -> list[Node]:
    """Each day of a bar strip: a run of N days (class nN) stands for N days (its <li>
    repeated), so tests can read day by day."""
    found = []
    for run in strip.find("li"):
        width = [int(c[1:]) for c in run.classes if re.fullmatch("n[0-9]+", c)]
        found += [run] * (width[0] if width else 1)
    return found


def test_90_days_per_monitor_as_runs_each_with_a_text_equivalent(env) -> None:  # type: ignore[no-untyped-def]
    t = Translator("en")
    snapshot = sample()
    root = index(snapshot, "en", env)
    strips = root.find("ol", "bars")
    assert len(strips) == len(snapshot.monitors)
    for strip, m in zip(strips, snapshot.monitors, strict=True):
        runs, days = strip.find("li"), days_of(strip)
        assert len(days) == 90
        assert len(runs) < 90  # equal days merged: what makes a page of 100 monitors light
        assert strip.attrs["aria-label"] == f"Daily uptime of {m.name}, last 90 days"
        for bar, day in zip(days, m.days, strict=True):
            assert bar.attrs["tabindex"] == "0"  # focusable: the tooltip shows on focus too
            assert f"lvl-{day.level}" in bar.classes
            quiet = not (day.downtime_seconds or day.incidents or day.maintenance_seconds)
            if quiet:  # a day with nothing to tell says so briefly
                assert bar.text.endswith(t(f"level.{day.level}"))
            else:
                assert "incident" in bar.text
        at = 0
        for run in runs:  # each run names its days: one date, or first - last (N days)
            n = len(days_of(Node("ol", {}, [run])))
            first, last = m.days[at].date, m.days[at + n - 1].date
            when = t.date(first) if n == 1 else f"{t.date(first)} – {t.date(last)} ({n} days)"
            assert run.one("b").text == when, (m.id, at)
            at += n
    api = days_of(strips[0])
    assert api[-1].text == "Nov 23, 2026 Major outage Uptime 80.00 % Downtime 4h 48m 1 incident"
    assert "marked" in api[-1].classes  # a mark under the bar, not only red
    assert "marked" not in api[0].classes
    assert strips[0].find("li")[0].text == "Aug 26, 2026 – Nov 10, 2026 (77 days) No downtime"
    web = days_of(strips[2])
    assert web[-4].text == "Nov 20, 2026 Minor downtime Uptime 99.95 % Downtime 43s 0 incidents"
    assert web[-41].text == "Oct 14, 2026 Maintenance Downtime 0s Maintenance 1h 0 incidents"
    cron = days_of(strips[3])
    assert cron[0].text.endswith(" No data")
    ko = days_of(index(snapshot, "ko", env).find("ol", "bars")[2])
    assert ko[-4].text == "2026년 11월 20일 짧은 다운타임 가동률 99.95% 다운타임 43초 장애 0건"


def test_a_short_history_is_padded_to_90_unknown_days(env) -> None:  # type: ignore[no-untyped-def]
    snapshot = sample()
    api = snapshot.monitors[0]
    short = dataclasses.replace(api, days=api.days[-10:])
    snapshot = dataclasses.replace(
        snapshot, groups=(dataclasses.replace(snapshot.groups[0], monitors=(short,)),)
    )
    strip = index(snapshot, "en", env).one("ol", "bars")
    bars = days_of(strip)
    assert len(bars) == 90
    assert all("lvl-unknown" in b.classes for b in bars[:80])
    assert strip.find("li")[0].text == "Aug 26, 2026 – Nov 13, 2026 (80 days) No data"
    fresh = charts.day_bars((), 90, NOW.date())  # a monitor added a minute ago
    assert len(fresh) == 90 and {b.day.level for b in fresh} == {DayLevel.UNKNOWN}
    assert (fresh[0].day.date, fresh[-1].day.date) == (dt.date(2026, 8, 26), NOW.date())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_state_words_uptimes_and_sparklines_per_monitor(lang, env) -> None:  # type: ignore[no-untyped-def]
    t = Translator(lang)
    snapshot = sample()
    root = index(snapshot, lang, env)
    rows = root.find("li", "monitor")
    assert len(rows) == 4
    for row, m in zip(rows, snapshot.monitors, strict=True):
        assert row.one("h3").one("a").attrs["href"].startswith(f"/monitors/{m.id}")
        state = row.one("span", "state")
        assert f"state-{m.state}" in state.classes and state.text == t(f"state.{m.state}")
        uptimes = [(d.text, d.text) for d in row.one("dl", "uptimes").find("dd")]
        assert [u for u, _ in uptimes] == [
            t.percent(m.uptime[w]) for w in ("24h", "7d", "30d", "90d")
        ]
    api = rows[0]
    spark = api.one("svg", "spark")
    assert spark.attrs["role"] == "img"
    assert spark.one("title").text == t("sparkline.label", avg=t.ms(52.78), max=t.ms(64))
    # hour 5 has no value: two runs in the path, no point dropped to 0 ms
    assert spark.one("path").attrs["d"].count("M") == 2
    assert rows[3].find("svg", "spark") == []  # no latency at all: no line drawn
    assert rows[3].one("span", "spark-empty").text.endswith(t("sparkline.empty"))


def test_korean_page_shows_only_korean_words(env) -> None:  # type: ignore[no-untyped-def]
    for make in (sample, calm):
        snapshot = make()
        for html in (
            render_index(snapshot, "ko", env),
            render_monitor(snapshot, "api", "ko", env),
        ):
            assert html is not None
            root = parse(html).root
            body = root.one("body")
            texts = list(body.texts())
            texts += [
                n.attrs[a] for n in body.walk() for a in ("aria-label", "title") if a in n.attrs
            ]
            texts += [n.text for n in body.find("title")]
            words = set()
            for text in texts:
                for data in data_strings(snapshot):
                    text = text.replace(data, " ")
                words |= set(re.findall(r"[A-Za-z][A-Za-z0-9]*", text))
            assert words <= KO_LATIN, words - KO_LATIN
            for key in ("overall.partial_outage", "state.up", "incidents.heading"):
                assert CATALOGUES["en"][key] not in html


def test_stale_snapshot_and_stale_monitor_are_called_out(env) -> None:  # type: ignore[no-untyped-def]
    snapshot = sample()
    root = index(snapshot, "en", env)
    notices = [n.text for n in root.find("p", "notice")]
    assert notices == ["Some monitors have no recent data; their state is unknown."]
    cron = root.find("li", "monitor")[3]
    assert cron.one("p", "stale-note").text == "No recent data Last check 1d 6h ago"
    assert root.find("li", "monitor")[0].find("p", "stale-note") == []

    stuck = dataclasses.replace(snapshot, stale=True, last_result_at=NOW - dt.timedelta(minutes=45))
    for lang, expected in (
        (
            "en",
            "This page may be out of date: the latest check ran 45m ago (Nov 23, 2026, 12:20 KST).",
        ),
        (
            "ko",
            "이 페이지의 정보가 오래되었을 수 있습니다. 마지막 검사는 45분 전(2026년 11월 23일 12:20 KST)에",
        ),
    ):
        notices = [n.text for n in index(stuck, lang, env).find("p", "notice")]
        assert len(notices) == 1 and notices[0].startswith(expected)
        page = monitor_page(stuck, "api", lang, env)
        assert len(page.find("p", "notice")) == 1
    never = dataclasses.replace(stuck, last_result_at=None)
    assert [n.text for n in index(never, "en", env).find("p", "notice")] == [
        CATALOGUES["en"]["stale.snapshot_never"]
    ]
    assert index(calm(), "en", env).find("p", "notice") == []


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "en",
            [
                "DB upgrade Nov 23, 2026, 12:55 KST – 13:55 KST Ends in 50m Affects: Database",
                "Network <maintenance> Nov 25, 2026, 13:05 KST – 14:05 KST Starts in 2d "
                "Expected to take 1h Affects: API, Database",
            ],
        ),
        (
            "ko",
            [
                "DB upgrade 2026년 11월 23일 12:55 KST – 13:55 KST 50분 후 종료 대상: Database",
                "Network <maintenance> 2026년 11월 25일 13:05 KST – 14:05 KST 2일 후 시작 "
                "예상 소요 시간 1시간 대상: API, Database",
            ],
        ),
    ],
)
def test_maintenance_is_listed_with_times_and_durations(lang, expected, env) -> None:  # type: ignore[no-untyped-def]
    root = index(sample(), lang, env)
    assert [n.text for n in root.find("li", "maint")] == expected
    assert index(calm(), lang, env).find("li", "maint") == []


def test_incidents_are_listed_with_start_end_duration_and_cause(env) -> None:  # type: ignore[no-untyped-def]
    root = index(sample(), "en", env)
    ongoing, resolved = root.find("li", "incident")
    assert ongoing.text == (
        "API Ongoing Started Nov 23, 2026, 12:40 KST Ended Ongoing "
        "Duration 25m so far Cause status: saw 503, wanted [200]"
    )
    assert resolved.text == (
        f"{HOSTILE} Resolved Started Nov 20, 2026, 11:05 KST Ended Nov 20, 2026, 11:17 KST "
        f"Duration 12m Cause body: {HOSTILE}"
    )
    assert ongoing.one("a").attrs["href"] == "/monitors/api"
    ko = index(sample(), "ko", env).find("li", "incident")
    assert "지속 시간 25분 경과" in ko[0].text and "지속 시간 12분" in ko[1].text
    calm_page = index(calm(), "ko", env)
    assert calm_page.find("li", "incident") == []
    assert "최근 90일 동안 장애가 없었습니다." in calm_page.text


def test_links_keep_a_language_chosen_against_the_default(env) -> None:  # type: ignore[no-untyped-def]
    root = index(sample(), "ko", env)  # the snapshot's default is en
    assert root.find("h3", "monitor-name")[0].one("a").attrs["href"] == "/monitors/api?lang=ko"
    assert root.one("h1", "brand").one("a").attrs["href"] == "/?lang=ko"
    default = index(sample(), "en", env)
    assert default.find("h3", "monitor-name")[0].one("a").attrs["href"] == "/monitors/api"
    # an unsupported language falls back to the configured one
    assert index(sample(), "fr", env).one("html").attrs["lang"] == "en"
    korean = dataclasses.replace(sample(), language="ko")
    assert index(korean, "fr", env).one("html").attrs["lang"] == "ko"


# --- the monitor page -----------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_monitor_page_has_chart_incidents_and_certificate(lang, env) -> None:  # type: ignore[no-untyped-def]
    t = Translator(lang)
    html = render_monitor(sample(), "api", lang, env)
    assert html is not None
    tree = parse(html)
    root = tree.root
    assert tree.attribute_names <= ATTRIBUTES and "<script" not in html
    assert root.one("html").attrs["lang"] == lang
    assert root.one("head").one("title").text == "API — Acme <Status>"
    assert root.one("h1").text == "API"
    assert len(days_of(root.one("ol", "bars"))) == 90
    chart = root.one("figure", "chart").one("svg")
    assert chart.attrs["role"] == "img"
    assert chart.one("title").text == t("chart.heading")
    p50 = chart.one("path", "line-p50").attrs["d"]
    p95 = chart.one("path", "line-p95").attrs["d"]
    assert p50.count("M") == 2 and p95.count("M") == 2  # the missing hour is a gap
    labels = [n.text for n in chart.find("text")]
    assert labels[:4] == ["0", "50", "100", "150"]
    assert {"18:00", "00:00", "06:00", "12:00"} <= set(labels)
    assert t("chart.axis_y") in labels and t("chart.axis_x", zone="KST") in labels
    assert len(root.one("details").find("tr")) == 25  # the same numbers as a table
    cert = root.one("dd", "cert").text
    assert cert == (
        "Jan 2, 2027, 13:05 KST (in 40d)" if lang == "en" else "2027년 1월 2일 13:05 KST (40일 후)"
    )
    (incident,) = root.find("li", "incident")
    assert incident.one("h3").text == "status: saw 503, wanted [200]"
    assert t("incidents.so_far", duration="25m" if lang == "en" else "25분") in incident.text
    assert [n.text.split(" ")[0] for n in root.find("li", "maint")] == ["Network"]


def test_monitor_page_without_certificate_or_latency(env) -> None:  # type: ignore[no-untyped-def]
    root = monitor_page(sample(), "cron", "en", env)
    assert root.find("dd", "cert") == []  # no certificate row where there is none (issue 14)
    assert root.find("figure", "chart") == []
    assert "No response times were recorded in the last 24 hours." in root.text
    assert root.one("p", "stale-note").text.startswith("No recent data")
    web = monitor_page(sample(), "web", "en", env)
    assert web.one("h1").text == HOSTILE
    assert web.one("h3", "incident-name").text == f"body: {HOSTILE}"


def test_unknown_monitor_has_no_page(env) -> None:  # type: ignore[no-untyped-def]
    assert render_monitor(sample(), "nope", "en", env) is None
    assert render_monitor(calm(), "web", "ko", env) is None


def test_a_page_without_public_monitors(env) -> None:  # type: ignore[no-untyped-def]
    empty = dataclasses.replace(
        calm(), groups=(), overall=Overall.UNKNOWN, last_result_at=None, stale=True
    )
    root = index(empty, "en", env)
    assert root.one("section", "banner").one("h2").text == "Status unknown"
    assert root.find("ol", "bars") == [] and root.find("div", "legend") == []


def big(groups: int = 40, size: int = 10) -> Snapshot:
    """`groups` groups of `size` monitors with a few bad days each; group 25 has a monitor
    down, group 3 one degraded."""
    made = []
    for g in range(groups):
        members = []
        for i in range(size):
            n = g * size + i
            state = {(25, 4): State.DOWN, (3, 0): State.DEGRADED}.get((g, i), State.UP)
            bad = {n % 90: DayLevel.MINOR, (n * 7) % 90: DayLevel.MAJOR, 40: DayLevel.MAINTENANCE}
            members.append(
                monitor(
                    f"m{n:04d}", name=f"Service {n}", group=f"G{g}", state=state, days=days(bad=bad)
                )
            )
        made.append(Group(f"G{g}", tuple(members)))
    return dataclasses.replace(sample(), groups=tuple(made))


def test_a_big_page_is_paginated_with_problems_first_and_groups_folded(env) -> None:  # type: ignore[no-untyped-def]
    snapshot = big()
    assert page_count(snapshot) == 4  # 400 monitors, whole groups of 10, <= PAGE_SIZE a page
    shown: list[str] = []
    for number in range(1, 5):
        html = render_page(snapshot, "en", env, number)
        assert html is not None
        assert len(html.encode()) <= 300_000, number  # light enough for a phone
        root = parse(html).root
        sections = root.find("details", "group")
        names = [d.one("h2").text for d in sections]
        rows = root.find("li", "monitor")
        assert len(rows) <= PAGE_SIZE
        shown += [r.one("h3").one("a").attrs["href"].split("?")[0] for r in rows]
        if number == 1:  # the groups with a problem first, and unfolded; the rest folded
            assert names[:3] == ["G3", "G25", "G0"]
            assert [("open" in d.attrs) for d in sections[:3]] == [True, True, False]
            assert root.find("section", "banner")
        assert all(
            ("open" in d.attrs) == (n in ("G3", "G25"))
            for d, n in zip(sections, names, strict=True)
        )
        pager = root.find("nav", "pager")
        assert len(pager) == 2  # above and below the groups
        links = pager[0].find("a")
        assert [a.text for a in links] == ["Page 1 (has problems)"] + [
            f"Page {n}" for n in range(2, 5)
        ]
        assert [a.attrs.get("aria-current") for a in links] == [
            "page" if n == number else None for n in range(1, 5)
        ]
        assert [a.attrs["href"] for a in links] == ["/", "/?page=2", "/?page=3", "/?page=4"]
        assert "problems" in links[0].classes and "problems" not in links[1].classes
        incidents = root.find("section", None)
        assert any(x.attrs.get("aria-labelledby") == "incidents-title" for x in incidents) == (
            number == 1
        )
    assert sorted(shown) == sorted(f"/monitors/{m.id}" for m in snapshot.monitors)  # each once
    assert render_page(snapshot, "en", env, 5) is None
    assert render_page(snapshot, "en", env, 0) is None
    ko = parse(render_page(snapshot, "ko", env, 2) or "").root
    assert [a.attrs["href"] for a in ko.find("nav", "pager")[0].find("a")][:2] == [
        "/?lang=ko",
        "/?page=2&lang=ko",
    ]
    switch = [a.attrs["href"] for a in ko.one("nav", "lang-switch").find("a")]
    assert switch == ["/?page=2&lang=en", "/?page=2&lang=ko"]


def test_monitors_whose_days_all_differ_get_more_pages(env) -> None:  # type: ignore[no-untyped-def]
    """Pages are cut by weight too: 100 monitors with a different day every day (nothing
    merges) would be 1.5 MB on one page; each page stays light, every monitor once."""
    groups = []
    for g in range(10):
        members = []
        for i in range(10):
            n = g * 10 + i
            noisy = tuple(
                dataclasses.replace(
                    d,
                    level=DayLevel.MINOR,
                    uptime_percent=99.9 - k / 1000,
                    downtime_seconds=30.0 + k,
                    incidents=1,
                )
                for k, d in enumerate(days())
            )
            members.append(monitor(f"m{n:03d}", name=f"Service {n}", group=f"G{g}", days=noisy))
        groups.append(Group(f"G{g}", tuple(members)))
    groups[3:4] = [Group(f"G3-{m.id}", (m,)) for m in groups[3].monitors]  # small groups too
    snapshot = dataclasses.replace(sample(), groups=tuple(groups))
    count = page_count(snapshot)
    assert count > 1
    shown = []
    for number in range(1, count + 1):
        korean = render_page(snapshot, "ko", env, number) or ""  # Hangul: 3 bytes a letter
        assert 0 < len(korean.encode()) <= 300_000, number
        html = render_page(snapshot, "en", env, number) or ""
        assert 0 < len(html.encode()) <= 300_000, number
        root = parse(html).root
        assert all(len(s.find("li")) == 90 for s in root.find("ol", "bars"))  # no day merged
        shown += [a.text for a in root.find("h3", "monitor-name")]
    assert sorted(shown) == sorted(f"Service {n}" for n in range(100))


def test_a_push_monitor_on_the_index_has_its_last_ping_not_a_sparkline(env) -> None:  # type: ignore[no-untyped-def]
    snapshot = sample()
    ping = NOW - dt.timedelta(hours=30)
    cron = dataclasses.replace(
        snapshot.monitors[3], push=PushView(None, "0 3 * * *", 600.0, ping, 42.0)
    )
    groups = (*snapshot.groups[:2], Group("", (cron,)))
    row = index(dataclasses.replace(snapshot, groups=groups), "en", env).find("li", "monitor")[3]
    assert row.find("svg") == [] and row.find("span", "spark-empty") == []
    assert row.one("span", "latency-now").text == f"Last ping: {Translator('en').datetime(ping)}"


def test_a_short_page_has_every_group_open_and_no_pager(env) -> None:  # type: ignore[no-untyped-def]
    root = index(sample(), "en", env)
    groups = root.find("details", "group")
    assert len(groups) == 3 and all("open" in g.attrs for g in groups)
    assert root.find("nav", "pager") == []
    assert page_count(sample()) == 1


def test_links_of_an_export_are_relative_to_each_file(env) -> None:  # type: ignore[no-untyped-def]
    files = Links("en", files=True)
    assert files.file("/", "ko", 3) == "ko/index-3.html"
    assert files.file("/monitors/api", "en") == "monitors/api/index.html"
    assert files.file("/api/v1/status") == "api/v1/status.json"
    assert files.file("/api/v2/summary.json") == "api/v2/summary.json"
    root = parse(render_monitor(sample(), "api", "ko", env, files) or "").root
    hrefs = {a.text.lstrip("← "): a.attrs["href"] for a in root.find("a")}
    assert hrefs[Translator("ko")("nav.back")] == "../../index.html"  # ko/index.html
    assert hrefs["English"] == "../../../monitors/api/index.html"
    assert hrefs["한국어"] == "index.html"
    (css,) = [n.attrs["href"] for n in root.find("link") if n.attrs.get("rel") == "stylesheet"]
    assert css == "../../../static/style.css"
    assert not [n for n in root.find() if n.attrs.get("href", "").startswith("/")]


async def test_the_app_serves_pages_of_the_index(tmp_path: pathlib.Path) -> None:
    """`/?page=N` through the real app: page 1 is `/`; a page past the last is 404 and a
    malformed number 400, both before any render."""
    from aiohttp import ClientSession, web

    from statuspage.app import create_app
    from statuspage.health import Health
    from statuspage.publisher import Publisher
    from tests.statuspage.test_export import write_world

    config = write_world(tmp_path, dt.datetime.now(dt.UTC))
    publisher = Publisher(config, min_age=3600, max_age=3600)
    runner = web.AppRunner(
        create_app(config, Health(lambda: True, lambda: True), publisher=publisher)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with ClientSession() as http:
            answers = {}
            for path in ("/", "/?page=1", "/?page=2", "/?page=x", "/?page=-1", "/?page=1&lang=ko"):
                async with http.get(base + path) as answer:
                    answers[path] = (answer.status, await answer.text())
    finally:
        await runner.cleanup()
    assert answers["/"][0] == 200 and answers["/?page=1"] == answers["/"]
    assert answers["/?page=2"][0] == 404  # four monitors: one page
    assert answers["/?page=x"][0] == 400
    assert answers["/?page=-1"][0] == 404
    assert answers["/?page=1&lang=ko"][0] == 200 and 'lang="ko"' in answers["/?page=1&lang=ko"][1]
    assert publisher.cached[0] <= 4  # no body kept for a page that does not exist


# --- geometry -------------------------------------------------------------------------


def test_sparkline_leaves_gaps_for_hours_without_data() -> None:
    points = latency()
    line = charts.sparkline(points)
    runs = line.line.path.split("M")[1:]
    assert [len(run.split("L")) for run in runs] == [5, 18]  # 23 hours drawn, hour 5 skipped
    ys = [float(xy.split(",")[1]) for run in runs for xy in run.replace("L", "").split()]
    assert min(ys) >= 3 and max(ys) <= 25  # within the box; no dive to a zero baseline
    lonely = [
        LatencyPoint(p.hour, None, None, None) if i not in (0, 1, 10) else p
        for i, p in enumerate(points)
    ]
    sparse = charts.sparkline(lonely)
    assert sparse.line.path.count("M") == 1 and len(sparse.line.dots) == 1
    assert charts.sparkline(()).empty
    assert charts.sparkline([LatencyPoint(NOW, None, None, None)]).empty


def test_chart_ticks_are_round_and_cover_the_data() -> None:
    chart = charts.latency_chart(latency(), Translator("en").hour)
    assert [tick.label for tick in chart.y_ticks] == ["0", "50", "100", "150"]
    assert chart.y_ticks[0].at == chart.bottom and chart.y_ticks[-1].at == chart.top
    big = [dataclasses.replace(p, p95_ms=4321.0) if p.p95_ms else p for p in latency()]
    labels = [tick.label for tick in charts.latency_chart(big, str).y_ticks]
    assert labels == ["0", "2,000", "4,000", "6,000"]
    assert charts.latency_chart((), str).empty


@pytest.mark.parametrize(("lang", "done"), [("en", "Completed"), ("ko", "완료")])
def test_maintenance_lifecycle_on_the_page(lang, done, env) -> None:  # type: ignore[no-untyped-def]
    """Scheduled, in progress and completed windows each under their own heading; only
    the three newest completed ones, on the first page."""
    s = sample()
    ended = [
        dataclasses.replace(s.maintenance_active[0], id=f"done-{n}", title=f"Done {n}")
        for n in range(5)
    ]
    root = index(dataclasses.replace(s, maintenance_completed=tuple(ended)), lang, env)
    (section,) = [
        n for n in root.find("section") if n.attrs.get("aria-labelledby") == "maint-completed"
    ]
    items = section.find("li", "maint")
    assert [i.find("h3")[0].text for i in items] == ["Done 0", "Done 1", "Done 2"]
    assert all(done in i.text for i in items)
    headings = [n.text for n in root.find("h2", "section-title")]
    words = CATALOGUES[lang]
    for key in ("maintenance.active", "maintenance.upcoming", "maintenance.completed"):
        assert words[key] in headings
    assert not [
        n
        for n in index(s, lang, env).find("section")
        if n.attrs.get("aria-labelledby") == "maint-completed"
    ]

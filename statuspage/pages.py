"""The status page's HTML: `/` and `/monitors/{id}` rendered from a Snapshot.

Pure functions of (snapshot, language): no I/O and no clock ("now" is
`snapshot.generated_at`), so the app can render once per snapshot and language and cache
the strings. Python prepares everything a template would otherwise compute (bars, chart
geometry, links); templates only place it, and every word they show comes from i18n.

Light on purpose (a phone during an outage): a monitor's 90 days are a few runs of days
that read the same, each one focusable element with its dates and words; groups are
<details>, open only when they have a problem (or the page is short); past `PAGE_SIZE`
monitors or about `PAGE_BYTES`, `/` is paginated (`?page=N`), groups with a problem first.
Links come from a `Links` (the live routes, or an export's files relative to the page).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import posixpath
from typing import Any

import jinja2
from markupsafe import Markup

from statuspage import charts
from statuspage.i18n import LANGUAGES, Translator, resolve
from statuspage.snapshot import (
    DayView,
    Group,
    IncidentView,
    MaintenanceView,
    MonitorView,
    Snapshot,
    State,
)

RECENT_INCIDENTS = 10  # on `/`; a monitor's page lists all of its own
UPTIME_WINDOWS = ("24h", "7d", "30d", "90d")
PAGE_SIZE = 120  # monitors on one page of `/` at most (whole groups; a bigger one is cut)
PAGE_BYTES = 280_000  # and about this much HTML (a phone during an outage)
ROW_BYTES, RUN_BYTES = 1_200, 190  # a row without its bars; a run of days (in Korean), about
OPEN_ALL = 30  # up to this many monitors on a page, every group is open


def make_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("statuspage", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Links:
    """Where a page's links point. Live: the server's routes, absolute, with `?lang=` when
    the language is not the configured one and `?page=N`. Export (`files=True`): the files
    `statuspage.export` writes, relative to the page's own file, so the directory works
    from any static host under any path; other languages under `LANG/`."""

    default_lang: str
    files: bool = False

    def file(self, route: str, lang: str | None = None, page: int = 1) -> str:
        """The exported file of a route: `/` -> index.html (index-N.html), `/monitors/ID`
        -> monitors/ID/index.html, both under `ko/` in another language; JSON routes get
        `.json`; everything else (static/, feeds, a monitor's feed, badges) keeps its name."""
        name = route.lstrip("/")
        prefix = "" if lang is None or lang == self.default_lang else f"{lang}/"
        if route == "/":
            return prefix + ("index.html" if page == 1 else f"index-{page}.html")
        if route.startswith("/monitors/") and "." not in posixpath.basename(name):
            return f"{prefix}{name}/index.html"
        if route.startswith("/api/") and not name.endswith(".json"):
            return name + ".json"
        return name

    def url(self, route: str, here: str, lang: str | None = None, page: int = 1) -> str:
        """A link to `route` from the page at `here` (a route too); `lang` None: no language
        (stylesheet, feeds, JSON)."""
        if self.files:
            start = posixpath.dirname(self.file(here, lang)) or "."
            return posixpath.relpath(self.file(route, lang, page), start)
        query = [f"page={page}"] if page != 1 else []
        if lang is not None and lang != self.default_lang:
            query.append(f"lang={lang}")
        return route + ("?" + "&".join(query) if query else "")


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """Consecutive days that read the same: one bar on the page, as wide as its days."""

    first: dt.date
    days: int
    bar: charts.Bar  # its first day's (level, mark and words are the same for every day)
    tip: str  # where the tooltip anchors: start | mid | end


@dataclasses.dataclass(frozen=True, slots=True)
class MonitorRow:
    """A monitor with its bars and sparkline, as a row of `/` or the head of its own page."""

    monitor: MonitorView
    href: str
    bars: tuple[charts.Bar, ...]
    runs: tuple[Run, ...]
    bars_html: Markup  # the <li> of every run, built in Python (thousands on a big page)
    sparkline: charts.Sparkline
    period_uptime: float | None  # over the bars' days, when the snapshot has that window

    @property
    def uptimes(self) -> tuple[tuple[str, float | None], ...]:
        return tuple((w, self.monitor.uptime.get(w)) for w in UPTIME_WINDOWS)


@dataclasses.dataclass(frozen=True, slots=True)
class GroupSection:
    key: str  # for element ids
    heading: str  # the group's name, or a catalogue word for monitors without a group
    state: State
    rows: tuple[MonitorRow, ...]
    open: bool  # shown unfolded: it has a problem, or the page is short


@dataclasses.dataclass(frozen=True, slots=True)
class PageLink:
    number: int
    href: str
    current: bool
    problems: bool  # holds a group with a problem


@dataclasses.dataclass(frozen=True, slots=True)
class LanguageLink:
    code: str
    label: str
    href: str
    current: bool


class _Page:
    """What both pages share: the translator, links that keep the language, now."""

    def __init__(self, snapshot: Snapshot, lang: str, path: str, links: Links | None) -> None:
        self.snapshot = snapshot
        self.lang = resolve(lang, snapshot.language)
        self.t = Translator(self.lang)
        self.path = path
        self.links = links or Links(snapshot.language)
        # a day's words by what they depend on: most days repeat across monitors
        self._words: dict[tuple[object, ...], Markup] = {}

    def href(self, route: str, page: int = 1) -> str:
        """A page of the site in this page's language."""
        return self.links.url(route, self.path, self.lang, page)

    def asset(self, route: str) -> str:
        """A file without a language: the stylesheet, feeds, JSON."""
        if not self.links.files:
            return route
        return posixpath.relpath(self.links.file(route), self._folder())

    def _language(self, code: str, page: int) -> str:
        """This page in language `code` (live: always with `?lang=`, a visitor's choice)."""
        if not self.links.files:
            return self.path + ("?" if page == 1 else f"?page={page}&") + f"lang={code}"
        return posixpath.relpath(self.links.file(self.path, code, page), self._folder())

    def _folder(self) -> str:
        return posixpath.dirname(self.links.file(self.path, self.lang)) or "."

    def row(self, monitor: MonitorView) -> MonitorRow:
        days = self.snapshot.history_days
        bars = charts.day_bars(monitor.days, days, self.snapshot.generated_at.date())
        runs = self.runs(bars)
        return MonitorRow(
            monitor=monitor,
            href=self.href(f"/monitors/{monitor.id}"),
            bars=bars,
            runs=runs,
            bars_html=Markup("").join(self.run_html(run) for run in runs),
            sparkline=charts.sparkline(monitor.latency),
            period_uptime=monitor.uptime.get(f"{days}d"),
        )

    def runs(self, bars: tuple[charts.Bar, ...]) -> tuple[Run, ...]:
        """Consecutive bars whose words and colour are the same, merged."""
        spans: list[list[charts.Bar]] = []
        for bar in bars:
            if spans and self._same(spans[-1][0], bar):
                spans[-1].append(bar)
            else:
                spans.append([bar])
        count, third, at, runs = len(bars), max(1, len(bars) // 3), 0, []
        for span in spans:
            end = at + len(span) - 1
            tip = "start" if at < third else "end" if end >= count - third else "mid"
            runs.append(Run(span[0].day.date, len(span), span[0], tip))
            at = end + 1
        return tuple(runs)

    def _same(self, a: charts.Bar, b: charts.Bar) -> bool:
        return (a.day.level, a.marked) == (b.day.level, b.marked) and self.words(
            a.day
        ) == self.words(b.day)

    def words(self, d: DayView) -> Markup:
        """What a day's bar says besides its date: `<i>No downtime</i>`, or its level,
        uptime, downtime, maintenance and incidents. A quiet day says so in a few words."""
        key = _day(d)
        found = self._words.get(key)
        if found is not None:
            return found
        t = self.t
        lines = [t("level." + d.level)]
        quiet = not (d.downtime_seconds or d.incidents or d.maintenance_seconds)
        if d.uptime_percent is not None and not (quiet and d.uptime_percent >= 100):
            lines.append(t("bar.uptime", value=t.percent(d.uptime_percent)))
        if not quiet:
            lines.append(t("bar.downtime", duration=t.duration(d.downtime_seconds)))
            if d.maintenance_seconds:
                lines.append(t("bar.maintenance", duration=t.duration(d.maintenance_seconds)))
            lines.append(t.plural("bar.incidents", d.incidents))
        found = Markup("").join(Markup("<i>%s</i>") % line for line in lines)
        self._words[key] = found
        return found

    def run_html(self, run: Run) -> Markup:
        """One run of days and its tooltip (also its text equivalent): `<li class="lvl-up
        n29 s" tabindex="0"><span><b>dates</b><i>No downtime</i></span></li>`; `nN` makes
        it N days wide (style.css), `s`/`e` anchor the tooltip at the start or end."""
        t, d = self.t, run.bar.day
        if run.days == 1:
            when = t.date(run.first)
        else:
            last = run.first + dt.timedelta(days=run.days - 1)
            when = t("bar.range", start=t.date(run.first), end=t.date(last), days=run.days)
        edge = {"start": " s", "end": " e"}.get(run.tip, "")
        return Markup('<li class="lvl-%s%s%s%s" tabindex="0"><span><b>%s</b>%s</span></li>') % (
            d.level.value,
            f" n{run.days}" if run.days > 1 else "",
            edge,
            " marked" if run.bar.marked else "",
            when,
            self.words(d),
        )

    def elapsed(self, moment: dt.datetime) -> float:
        return (self.snapshot.generated_at - moment).total_seconds()

    def until(self, moment: dt.datetime) -> float:
        return (moment - self.snapshot.generated_at).total_seconds()

    def incident_seconds(self, incident: IncidentView) -> float:
        """The whole incident, or how long it has lasted so far while it is open."""
        if incident.duration_seconds is not None:
            return incident.duration_seconds
        return self.elapsed(incident.start)

    def context(self, **page: Any) -> dict[str, Any]:
        snapshot = self.snapshot
        return {
            "t": self.t,
            "lang": self.lang,
            "snapshot": snapshot,
            "now": snapshot.generated_at,
            "href": self.href,
            "asset": self.asset,
            "elapsed": self.elapsed,
            "until": self.until,
            "incident_seconds": self.incident_seconds,
            "languages": tuple(
                LanguageLink(
                    code,
                    self.t(f"lang.{code}"),
                    self._language(code, page.get("page_number", 1)),
                    code == self.lang,
                )
                for code in LANGUAGES
            ),
            "any_stale": any(m.stale for m in snapshot.monitors),
            "live": not self.links.files,  # served by the app (forms work), not exported
            "page_number": 1,
            **page,
        }


def paginate(
    snapshot: Snapshot, size: int = PAGE_SIZE, budget: int = PAGE_BYTES
) -> tuple[tuple[Group, ...], ...]:
    """The groups on each page of `/`: at most `size` monitors and about `budget` bytes a
    page (`_weight`: a monitor whose days all differ weighs as much as ten calm ones), whole
    groups where they fit (a bigger group is cut), in config order on one page; on several
    pages, the groups with a problem (not all up) first, so page 1 shows them. Kept for the
    latest snapshot: every page's render and the app's page check ask again."""
    global _paged
    kept = _paged
    if kept is not None and kept[0] is snapshot and kept[1] == (size, budget):
        return kept[2]
    groups = [g for g in snapshot.groups if g.monitors]
    weights = {m.id: _weight(m, snapshot.history_days) for g in groups for m in g.monitors}
    if len(weights) > size or sum(weights.values()) > budget:
        groups.sort(key=lambda g: g.state is State.UP)  # stable: config order within each
    pages: list[list[Group]] = [[]]
    count = weight = 0
    for group in groups:
        n, w = len(group.monitors), sum(weights[m.id] for m in group.monitors)
        if pages[-1] and (count + n > size or weight + w > budget):
            pages.append([])
            count = weight = 0
        if n <= size and w <= budget:  # the group fits a page: whole
            pages[-1].append(group)
            count, weight = count + n, weight + w
            continue
        part: list[MonitorView] = []
        for m in group.monitors:
            if (part or pages[-1]) and (count + 1 > size or weight + weights[m.id] > budget):
                if part:
                    pages[-1].append(Group(group.name, tuple(part)))
                    part = []
                pages.append([])
                count = weight = 0
            part.append(m)
            count, weight = count + 1, weight + weights[m.id]
        if part:
            pages[-1].append(Group(group.name, tuple(part)))
    found = tuple(tuple(page) for page in pages)
    _paged = (snapshot, (size, budget), found)
    return found


_paged: tuple[Snapshot, tuple[int, int], tuple[tuple[Group, ...], ...]] | None = None


def _weight(monitor: MonitorView, days: int) -> int:
    """About how many bytes of `/` a monitor takes: its row, and each run of equal days
    (an upper bound: runs merge days whose words are equal, this counts equal values)."""
    keys = [_day(d) for d in monitor.days[-days:]]
    runs = 2 + sum(a != b for a, b in itertools.pairwise(keys))
    return ROW_BYTES + RUN_BYTES * runs  # one more run: the days before the history


def _day(d: DayView) -> tuple[object, ...]:
    return (d.level, d.uptime_percent, d.downtime_seconds, d.maintenance_seconds, d.incidents)


def page_count(snapshot: Snapshot) -> int:
    return len(paginate(snapshot))


def render_index(
    snapshot: Snapshot, lang: str, env: jinja2.Environment, links: Links | None = None
) -> str:
    """`/`: its first page (there always is one)."""
    found = render_page(snapshot, lang, env, 1, links)
    assert found is not None
    return found


def render_page(
    snapshot: Snapshot,
    lang: str,
    env: jinja2.Environment,
    page: int,
    links: Links | None = None,
) -> str | None:
    """Page `page` of `/` (from 1); None past the last one."""
    pages = paginate(snapshot)
    if not 1 <= page <= len(pages):
        return None
    shown = pages[page - 1]
    view = _Page(snapshot, lang, "/", links)
    named = [g for g in snapshot.groups if g.name]
    short = sum(len(g.monitors) for g in shown) <= OPEN_ALL
    sections = tuple(
        GroupSection(
            key=f"group-{page}-{n}",
            heading=group.name or view.t("group.other" if named else "group.none"),
            state=group.state,
            rows=tuple(view.row(m) for m in group.monitors),
            open=short or group.state is not State.UP,
        )
        for n, group in enumerate(shown)
    )
    first = page == 1
    return env.get_template("index.html").render(
        view.context(
            has_template=_finder(env),
            groups=sections,
            page_number=page,
            page_links=tuple(
                PageLink(
                    n,
                    view.href("/", n),
                    n == page,
                    any(g.state is not State.UP for g in groups),
                )
                for n, groups in enumerate(pages, 1)
            )
            if len(pages) > 1
            else (),
            incidents=snapshot.incidents[:RECENT_INCIDENTS] if first else (),
            incidents_limited=first and len(snapshot.incidents) > RECENT_INCIDENTS,
            recent_limit=RECENT_INCIDENTS,
            maintenance_active=snapshot.maintenance_active,
            maintenance_upcoming=snapshot.maintenance_upcoming if first else (),
        )
    )


def render_monitor(
    snapshot: Snapshot,
    monitor_id: str,
    lang: str,
    env: jinja2.Environment,
    links: Links | None = None,
) -> str | None:
    """One public monitor's page; None when the snapshot has no such monitor."""
    monitor = snapshot.monitor(monitor_id)
    if monitor is None:
        return None
    page = _Page(snapshot, lang, f"/monitors/{monitor.id}", links)
    return env.get_template("monitor.html").render(
        page.context(
            has_template=_finder(env),
            row=page.row(monitor),
            chart=charts.latency_chart(monitor.latency, page.t.hour),
            incidents=monitor.incidents,
            maintenance_active=_affecting(snapshot.maintenance_active, monitor.id),
            maintenance_upcoming=_affecting(snapshot.maintenance_upcoming, monitor.id),
        )
    )


def _finder(env: jinja2.Environment) -> Any:
    """`has_template(name)` for templates including another helper's file only once it
    exists (statuspage/templates/_notices.html, _subscribe.html)."""

    def has_template(name: str) -> bool:
        try:
            env.get_template(name)
        except jinja2.TemplateNotFound:
            return False
        return True

    return has_template


def _affecting(
    windows: tuple[MaintenanceView, ...], monitor_id: str
) -> tuple[MaintenanceView, ...]:
    return tuple(w for w in windows if monitor_id in w.monitor_ids)

"""The status page's HTML: `/` and `/monitors/{id}` rendered from a Snapshot.

Pure functions of (snapshot, language): no I/O and no clock ("now" is
`snapshot.generated_at`), so the app can render once per snapshot and language and cache
the strings. Python prepares everything a template would otherwise compute (bars, chart
geometry, links); templates only place it, and every word they show comes from i18n.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import jinja2
from markupsafe import Markup

from statuspage import charts
from statuspage.i18n import LANGUAGES, Translator, resolve
from statuspage.snapshot import (
    IncidentView,
    MaintenanceView,
    MonitorView,
    Snapshot,
    State,
)

RECENT_INCIDENTS = 10  # on `/`; a monitor's page lists all of its own
UPTIME_WINDOWS = ("24h", "7d", "30d", "90d")


def make_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("statuspage", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class MonitorRow:
    """A monitor with its bars and sparkline, as a row of `/` or the head of its own page."""

    monitor: MonitorView
    href: str
    bars: tuple[charts.Bar, ...]
    bars_html: Markup  # the <li> of every bar, built in Python (9,000 of them on a big page)
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


@dataclasses.dataclass(frozen=True, slots=True)
class LanguageLink:
    code: str
    label: str
    href: str
    current: bool


class _Page:
    """What both pages share: the translator, links that keep the language, now."""

    def __init__(self, snapshot: Snapshot, lang: str, path: str) -> None:
        self.snapshot = snapshot
        self.lang = resolve(lang, snapshot.language)
        self.t = Translator(self.lang)
        self.path = path
        self._bar_html: dict[charts.Bar, Markup] = {}  # most days repeat across monitors

    def href(self, path: str) -> str:
        """An absolute path that keeps a language chosen against the configured default."""
        return path if self.lang == self.snapshot.language else f"{path}?lang={self.lang}"

    def row(self, monitor: MonitorView) -> MonitorRow:
        days = self.snapshot.history_days
        bars = charts.day_bars(monitor.days, days, self.snapshot.generated_at.date())
        return MonitorRow(
            monitor=monitor,
            href=self.href(f"/monitors/{monitor.id}"),
            bars=bars,
            bars_html=Markup("\n").join(self.bar_html(bar) for bar in bars),
            sparkline=charts.sparkline(monitor.latency),
            period_uptime=monitor.uptime.get(f"{days}d"),
        )

    def bar_html(self, bar: charts.Bar) -> Markup:
        """One bar and its tooltip (also its text equivalent): `<li class="lvl-up"
        tabindex="0"><span><b>date</b>No downtime</span></li>`. Short on purpose: a page
        of 100 monitors has 9,000; a day with nothing to tell says so in a few words."""
        found = self._bar_html.get(bar)
        if found is not None:
            return found
        t, d = self.t, bar.day
        lines = [t("level." + d.level)]
        quiet = not (d.downtime_seconds or d.incidents or d.maintenance_seconds)
        if d.uptime_percent is not None and not (quiet and d.uptime_percent >= 100):
            lines.append(t("bar.uptime", value=t.percent(d.uptime_percent)))
        if not quiet:
            lines.append(t("bar.downtime", duration=t.duration(d.downtime_seconds)))
            if d.maintenance_seconds:
                lines.append(t("bar.maintenance", duration=t.duration(d.maintenance_seconds)))
            lines.append(t.plural("bar.incidents", d.incidents))
        text = Markup("").join(Markup("<i>%s</i>") % line for line in lines)
        edge = {"start": " s", "end": " e"}.get(bar.tip, "")  # where the tooltip anchors
        found = Markup('<li class="lvl-%s%s%s" tabindex="0"><span><b>%s</b>%s</span></li>') % (
            d.level.value,
            edge,
            " marked" if bar.marked else "",
            t.date(d.date),
            text,
        )
        self._bar_html[bar] = found
        return found

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
            "elapsed": self.elapsed,
            "until": self.until,
            "incident_seconds": self.incident_seconds,
            "languages": tuple(
                LanguageLink(
                    code, self.t(f"lang.{code}"), f"{self.path}?lang={code}", code == self.lang
                )
                for code in LANGUAGES
            ),
            "any_stale": any(m.stale for m in snapshot.monitors),
            **page,
        }


def render_index(snapshot: Snapshot, lang: str, env: jinja2.Environment) -> str:
    page = _Page(snapshot, lang, "/")
    named = [g for g in snapshot.groups if g.name]
    sections = tuple(
        GroupSection(
            key=f"group-{i}",
            heading=group.name or page.t("group.other" if named else "group.none"),
            state=group.state,
            rows=tuple(page.row(m) for m in group.monitors),
        )
        for i, group in enumerate(snapshot.groups)
        if group.monitors
    )
    return env.get_template("index.html").render(
        page.context(
            groups=sections,
            incidents=snapshot.incidents[:RECENT_INCIDENTS],
            incidents_limited=len(snapshot.incidents) > RECENT_INCIDENTS,
            recent_limit=RECENT_INCIDENTS,
            maintenance_active=snapshot.maintenance_active,
            maintenance_upcoming=snapshot.maintenance_upcoming,
        )
    )


def render_monitor(
    snapshot: Snapshot, monitor_id: str, lang: str, env: jinja2.Environment
) -> str | None:
    """One public monitor's page; None when the snapshot has no such monitor."""
    monitor = snapshot.monitor(monitor_id)
    if monitor is None:
        return None
    page = _Page(snapshot, lang, f"/monitors/{monitor.id}")
    return env.get_template("monitor.html").render(
        page.context(
            row=page.row(monitor),
            chart=charts.latency_chart(monitor.latency, page.t.hour),
            incidents=monitor.incidents,
            maintenance_active=_affecting(snapshot.maintenance_active, monitor.id),
            maintenance_upcoming=_affecting(snapshot.maintenance_upcoming, monitor.id),
        )
    )


def _affecting(
    windows: tuple[MaintenanceView, ...], monitor_id: str
) -> tuple[MaintenanceView, ...]:
    return tuple(w for w in windows if monitor_id in w.monitor_ids)

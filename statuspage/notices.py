"""Incidents written by people (prober.notices) on the public side: `attach` puts them on a
Snapshot, with their Markdown rendered safely.

Called on every snapshot the Publisher makes (after statuspage.incremental, which never
sees them), so it costs one walk over the monitors and no Markdown rendering once a body
has been rendered (`render_markdown` keeps what it rendered). A notice's declared
component status raises that monitor's public state (never lowers it) and the banner is
recomputed; `detected` attaches the monitor's detected incident at the notice's start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import html
import re
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

from prober.config import Config
from prober.notices import ComponentStatus, Notice
from statuspage.build import overall_of
from statuspage.snapshot import (
    Group,
    IncidentView,
    MonitorView,
    NoticeUpdateView,
    NoticeView,
    Snapshot,
    State,
    worst,
)

# What a declared component status makes of the monitor's public state (at least).
RAISES = {
    ComponentStatus.UNDER_MAINTENANCE: State.MAINTENANCE,
    ComponentStatus.DEGRADED_PERFORMANCE: State.DEGRADED,
    ComponentStatus.PARTIAL_OUTAGE: State.DOWN,
    ComponentStatus.MAJOR_OUTAGE: State.DOWN,
}
# `detected` attaches the incident holding the notice's start, else the nearest one
# starting or ending this close to it (a notice written soon after an outage ended)
NEAREST = dt.timedelta(hours=24)


def attach(snapshot: Snapshot, notices: Sequence[Notice], config: Config) -> Snapshot:
    """`snapshot` with the notices to show (unresolved ones, and resolved ones within
    history_days), the statuses they declare and the states those raise."""
    if not notices:
        if snapshot.notices or snapshot.declared:
            return dataclasses.replace(snapshot, notices=(), declared=())
        return snapshot
    tz = ZoneInfo(config.settings.timezone)
    horizon = snapshot.generated_at - dt.timedelta(days=snapshot.history_days)
    shown = [n for n in notices if not n.resolved or n.updated_at >= horizon]
    wanted = {m for n in shown for m, _ in n.components} | {n.detected for n in shown}
    declared = _declared(n for n in shown if not n.resolved)

    found: dict[str, MonitorView] = {}  # the monitors notices name, public ones only
    raised: list[tuple[str, str]] = []
    states: list[State] = []
    groups: list[Group] = []
    for group in snapshot.groups:  # the one walk over every monitor
        members: list[MonitorView] | None = None
        for i, view in enumerate(group.monitors):
            if view.id in wanted:
                found[view.id] = view
            status = declared.get(view.id)
            if status is not None:
                raised.append((view.id, str(status[0])))
                state = worst((view.state, RAISES.get(status[0], view.state)))
                if state is not view.state:
                    members = members or list(group.monitors)
                    since = status[1].astimezone(tz)
                    members[i] = dataclasses.replace(view, state=state, since=since)
            states.append(view.state if members is None else members[i].state)
        groups.append(group if members is None else Group(group.name, tuple(members)))

    changed = any(a is not b for a, b in zip(groups, snapshot.groups, strict=True))
    views = sorted(
        (_view(n, found, tz) for n in shown),
        key=lambda v: (v.resolved_at is None, v.created_at),
        reverse=True,
    )
    return dataclasses.replace(
        snapshot,
        groups=tuple(groups) if changed else snapshot.groups,
        overall=overall_of(states) if changed else snapshot.overall,
        notices=tuple(views),
        declared=tuple(raised),
    )


def _declared(
    notices: Iterable[Notice],
) -> dict[str, tuple[ComponentStatus, dt.datetime]]:
    """Each monitor's worst status the unresolved notices declare, and since when."""
    worst_of: dict[str, tuple[ComponentStatus, dt.datetime]] = {}
    for notice in notices:
        for monitor_id, status in notice.components:
            held = worst_of.get(monitor_id)
            if held is None or status.severity > held[0].severity:
                worst_of[monitor_id] = (status, notice.created_at)
    return worst_of


def _view(notice: Notice, monitors: dict[str, MonitorView], tz: ZoneInfo) -> NoticeView:
    detected = None
    if notice.detected is not None and notice.detected in monitors:
        detected = detected_incident(monitors[notice.detected].incidents, notice.created_at)
    created = notice.created_at.astimezone(tz)
    if detected is not None:
        created = min(created, detected.start)
    count = len(notice.updates)
    updates = tuple(
        NoticeUpdateView(
            id=f"{notice.id}-{count - i}",
            status=str(update.status),
            at=update.at.astimezone(tz),
            body=update.body,
            html=render_markdown(update.body),
            notify=update.notify,
        )
        for i, update in enumerate(reversed(notice.updates))
    )
    resolved = notice.resolved_at
    return NoticeView(
        id=notice.id,
        title=notice.title,
        impact=str(notice.impact),
        status=str(notice.status),
        created_at=created,
        updated_at=notice.updated_at.astimezone(tz),
        resolved_at=None if resolved is None else resolved.astimezone(tz),
        components=tuple(
            (m, monitors[m].name, str(s)) for m, s in notice.components if m in monitors
        ),
        updates=updates,
        detected=detected,
    )


def detected_incident(incidents: Sequence[IncidentView], at: dt.datetime) -> IncidentView | None:
    """The incident holding `at` (the latest to start, if several), else the nearest one
    within NEAREST before or after it."""
    best: tuple[dt.timedelta, IncidentView] | None = None
    for incident in incidents:  # newest first
        if incident.start <= at and (incident.end is None or at <= incident.end):
            return incident
        gap = incident.start - at if incident.start > at else at - (incident.end or at)
        if gap <= NEAREST and (best is None or gap < best[0]):
            best = (gap, incident)
    return None if best is None else best[1]


def unresolved(notices: Iterable[NoticeView]) -> tuple[NoticeView, ...]:
    """The ones still open (the banner's); usable as a Jinja filter."""
    return tuple(n for n in notices if n.resolved_at is None)


def naming(notices: Iterable[NoticeView], monitor_id: str) -> tuple[NoticeView, ...]:
    """The ones whose components or detected incident name this monitor."""
    return tuple(
        n
        for n in notices
        if any(m == monitor_id for m, _, _ in n.components)
        or (n.detected is not None and n.detected.monitor_id == monitor_id)
    )


# ---- Markdown: CommonMark, raw HTML off, links http(s), mailto or relative only ----

SAFE_SCHEMES = ("http", "https", "mailto")
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)


def safe_link(url: str) -> bool:
    """Whether a link's (normalised, entity-decoded) target may be an href. Browsers drop
    tabs and newlines anywhere in a URL and spaces and controls around it, so those go
    before the scheme is read; a colon before any `/`, `?` or `#` is a scheme."""
    bare = re.sub(r"[\t\n\r]", "", url).strip(_C0_AND_SPACE)
    bare = re.sub(r"%0[9ad]", "", bare, flags=re.IGNORECASE)  # encoded by the normaliser
    head = re.split(r"[/?#]", bare, maxsplit=1)[0]
    if ":" not in head:
        return True  # relative: a path, a query or a fragment of this site
    scheme = _SCHEME.match(bare)
    return scheme is not None and scheme.group(1).lower() in SAFE_SCHEMES


def _image_as_text(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """An image shows as its alt text: no request leaves a visitor's browser for it."""
    children = tokens[idx].children or []
    return html.escape(self.renderInlineAsText(children, options, env))


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.validateLink = safe_link  # type: ignore[method-assign]
    md.add_render_rule("image", _image_as_text)
    return md


_MARKDOWN = _parser()


@functools.lru_cache(maxsize=512)
def render_markdown(text: str) -> Markup:
    """A body as HTML safe to place in the page as it is (kept: bodies rarely change)."""
    rendered: Any = _MARKDOWN.render(text)
    return Markup(str(rendered).strip())  # noqa: S704 (raw HTML off, links checked above)

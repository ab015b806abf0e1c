"""Incidents written by people: the files in `settings.incidents_dir`, as read.

Detected incidents (prober.incidents) say what failed and when; a notice says why and what
next, in the operator's words, with the Statuspage lifecycle (investigating -> identified
-> monitoring -> resolved). One file per notice; its stem is its id in the APIs. Loading
and validation: `load_notices` (file:line errors); writing: the `prober incident` command.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import StrEnum


class Impact(StrEnum):
    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class Progress(StrEnum):
    """An update's status, in Statuspage's words."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class ComponentStatus(StrEnum):
    """A component's status as a person declares it (Statuspage's vocabulary), mildest first."""

    OPERATIONAL = "operational"
    UNDER_MAINTENANCE = "under_maintenance"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"

    @property
    def severity(self) -> int:
        return _COMPONENT_ORDER.index(self)


_COMPONENT_ORDER = tuple(ComponentStatus)


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    at: dt.datetime  # aware, as written
    status: Progress
    body: str  # Markdown source, as written
    notify: bool = True  # tell subscribers


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    id: str  # the file's stem
    title: str
    impact: Impact
    components: tuple[tuple[str, ComponentStatus], ...]  # monitor id -> status, file order
    detected: str | None  # a monitor id: attach to its incident at the first update's time
    updates: tuple[Update, ...]  # oldest first (files append)

    @property
    def status(self) -> Progress:
        return self.updates[-1].status

    @property
    def resolved(self) -> bool:
        return self.status is Progress.RESOLVED

    @property
    def created_at(self) -> dt.datetime:
        return self.updates[0].at

    @property
    def updated_at(self) -> dt.datetime:
        return self.updates[-1].at

    @property
    def resolved_at(self) -> dt.datetime | None:
        return self.updates[-1].at if self.resolved else None

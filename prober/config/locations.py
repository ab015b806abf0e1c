"""Where each monitor is probed: `[[agents]]` checked, then `locations` and `quorum` resolved.

A hub declares its own location (`settings.location`) and one per `[[agents]]` entry. A
monitor is probed from `locations` (default: every declared location) and is down when
`quorum` of them agree (default: a majority, floor(n/2) + 1). After the load every
monitor carries both, resolved; a push monitor is judged where its pushes arrive, at the
hub: `(settings.location,)` with quorum 1. Hubs sharing a PostgreSQL database declare each
other (`[[hubs]]`); a push is a push whichever of them took it, kept at the first of their
locations in sorted order (the same on every hub).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from prober.config.monitors import Monitor, PushMonitor
from prober.config.settings import Agent, HubPeer
from prober.config.tomlpos import Path


class Report(Protocol):
    """Where errors go (the loader's collector): at a key, or at the [defaults] key an
    entry inherited."""

    def add(self, path: Path, message: str) -> None: ...

    def add_inherited(self, path: Path, key: str, message: str) -> None: ...


# The location name under which a monitor probed from several places keeps its combined
# verdict's transitions, incidents, coverage and state (not a slug: no location is named so).
COMBINED = "*"


def verdict_location(monitor: Monitor, hub: str) -> str:
    """Where a monitor's verdict is kept: its one location, or `COMBINED` when the quorum
    of several decides. A config without agents reads every monitor where it always did
    (`hub`, settings.location: also for a monitor built without load_config)."""
    if len(monitor.locations) > 1:
        return COMBINED
    return monitor.locations[0] if monitor.locations else hub


def probed_at(monitor: Monitor, location: str) -> bool:
    """Whether `location` runs this monitor's checks (a monitor built without load_config
    has no locations: wherever it runs)."""
    return not monitor.locations or location in monitor.locations


def latency_location(monitor: Monitor, hub: str) -> str:
    """Whose response times a monitor's charts and reports show: the hub's own when it
    probes the monitor, else the monitor's first location."""
    if hub in monitor.locations or not monitor.locations:
        return hub
    return monitor.locations[0]


def majority(count: int) -> int:
    """The default quorum of `count` locations: 1 of 1, 2 of 2, 2 of 3, 3 of 4."""
    return count // 2 + 1


def resolve_locations(
    out: Report,
    data: Mapping[str, Any],
    defaults: Mapping[str, Any],
    agents: Sequence[tuple[int, Agent]],
    monitors: Sequence[tuple[int, Monitor]],
    hubs: Sequence[tuple[int, HubPeer]] = (),
) -> list[tuple[int, Monitor]]:
    """Report what is wrong (to `out`) and return the monitors with `locations` and
    `quorum` filled. `data` is the interpolated file, `defaults` its valid [defaults]."""
    hub = _hub_location(data)
    peers = [h.location for _, h in hubs]
    _check_agents(out, hub, agents, peers)
    declared = _declared(hub, data, peers)
    push_home = min([hub, *peers])  # the same on every hub sharing the database
    if "locations" in defaults:
        _check_declared(out, ("defaults", "locations"), defaults["locations"], declared)
    if "quorum" in defaults:
        whose = "[defaults] locations" if "locations" in defaults else "declared locations"
        default_count = len(defaults.get("locations", declared))
        if defaults["quorum"] > default_count:
            out.add(("defaults", "quorum"), _too_many(defaults["quorum"], default_count, whose))
    raw = data.get("monitors")
    items = raw if isinstance(raw, list) else []
    resolved = []
    for i, monitor in monitors:
        item = items[i] if i < len(items) and isinstance(items[i], dict) else {}
        resolved.append((i, _resolve(out, i, monitor, item, defaults, declared, hub, push_home)))
    return resolved


def _resolve(
    out: Report,
    i: int,
    monitor: Monitor,
    item: Mapping[str, Any],
    defaults: Mapping[str, Any],
    declared: tuple[str, ...],
    hub: str,
    push_home: str,
) -> Monitor:
    if isinstance(monitor, PushMonitor):
        return monitor.model_copy(update={"locations": (push_home,), "quorum": 1})
    own_locations = "locations" in item  # else from [defaults] (checked there) or all
    own_quorum = "quorum" in item
    locations = monitor.locations or declared
    if own_locations:
        _check_declared(out, ("monitors", i, "locations"), locations, declared)
    quorum = monitor.quorum or majority(len(locations))
    # [defaults] quorum against [defaults] (or all) locations is reported once, there
    if quorum > len(locations) and (own_quorum or own_locations):
        message = _too_many(quorum, len(locations), "this monitor's locations")
        if own_quorum:
            out.add(("monitors", i, "quorum"), message)
        else:
            out.add_inherited(("monitors", i, "quorum"), "quorum", message)
    return monitor.model_copy(update={"locations": tuple(locations), "quorum": quorum})


def _too_many(quorum: int, count: int, whose: str) -> str:
    return f"must be at most {count}, the number of {whose}; got {quorum} (never reachable)"


def _hub_location(data: Mapping[str, Any]) -> str:
    """settings.location as written (also when another settings key is invalid)."""
    settings = data.get("settings")
    location = settings.get("location") if isinstance(settings, dict) else None
    return location if isinstance(location, str) else "default"


def _declared(hub: str, data: Mapping[str, Any], peers: Sequence[str]) -> tuple[str, ...]:
    """The hub's location, the other hubs', then every `[[agents]]` location written, valid
    entry or not (an invalid entry's own errors are reported already; no cascade from it)."""
    raw = data.get("agents")
    items = raw if isinstance(raw, list) else []
    names = [
        a["location"] for a in items if isinstance(a, dict) and isinstance(a.get("location"), str)
    ]
    return tuple(dict.fromkeys([hub, *peers, *names]))


def _check_agents(
    out: Report, hub: str, agents: Sequence[tuple[int, Agent]], peers: Sequence[str]
) -> None:
    locations: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for i, agent in agents:
        if agent.location == hub:
            out.add(
                ("agents", i, "location"),
                f"{hub!r} is this hub's own settings.location; an agent probes from "
                "elsewhere and needs a name of its own",
            )
        elif agent.location in peers:
            out.add(
                ("agents", i, "location"),
                f"{agent.location!r} is a [[hubs]] location; an agent needs a name of its own",
            )
        elif agent.location in locations:
            out.add(
                ("agents", i, "location"),
                f"{agent.location!r} is already used by agents[{locations[agent.location]}]",
            )
        locations.setdefault(agent.location, i)
        token = agent.token.get_secret_value()
        if token in tokens:
            out.add(
                ("agents", i, "token"),
                f"the same token as agents[{tokens[token]}]: each agent needs its own "
                "(a token tells the hub which location sent a result)",
            )
        tokens.setdefault(token, i)


def _check_declared(
    out: Report, path: Path, names: Sequence[str], declared: tuple[str, ...]
) -> None:
    for name in names:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.add(
                path,
                f"no hub or [[agents]] entry declares location {name!r}{hint}; declared: "
                + ", ".join(declared),
            )

"""Layers you can see: what each part may import, transitively, checked in a fresh
interpreter (an import anywhere down the chain counts)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules that do I/O: network, database, processes.
IO = ("aiohttp", "sqlite3", "sqlalchemy", "sqlmodel", "dns.query", "dns.asyncquery")
PROBING = ("prober.checks", "prober.scheduler", "prober.alerts", "prober.runtime.probe")

RULES: dict[str, tuple[str, ...]] = {
    # The public side reads the database; it never checks, schedules or alerts.
    "statuspage.app": PROBING,
    "statuspage.export": PROBING,
    "statuspage.publisher": PROBING,
    "prober.runtime.web": PROBING,
    "prober.report.monthly": PROBING,
    # The store knows neither checks nor alerts (alerts reach it through store.hooks).
    "prober.store.writer": ("prober.checks", "prober.scheduler", "prober.alerts"),
    "prober.store.upkeep": ("prober.checks", "prober.scheduler", "prober.alerts"),
    "prober.store.ledger": ("prober.checks", "prober.scheduler", "prober.alerts"),
    # The pure core: no I/O, none of the layers above it.
    "prober.results": (*IO, "prober.store", "prober.checks"),
    "prober.incidents": (*IO, "prober.store", "prober.checks"),
    "prober.quorum": (*IO, "prober.store", "prober.checks"),
    "prober.timeline": (*IO, "prober.store", "prober.checks", "prober.config"),
    "prober.maintenance": (*IO, "prober.store", "prober.checks"),
    "prober.config": (*IO, "prober.store", "prober.checks"),
    "prober.alerts.message": (*IO, "prober.store", "prober.checks"),
    "prober.alerts.plan": ("aiohttp", "prober.checks", "prober.alerts.channels"),
    # The agent's batch format is pure; its disk queue is stdlib sqlite3 and nothing above.
    "prober.agent.wire": (*IO, "prober.store", "prober.checks", "prober.config"),
    "prober.agent.queue": ("aiohttp", "sqlalchemy", "prober.store", "prober.checks"),
    "prober.agent.assign": (*IO, "prober.store", "prober.checks"),
}


def _imported(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", sorted(RULES))
def test_module_keeps_to_its_layer(module: str) -> None:
    loaded = _imported(module)
    broken = sorted(
        name
        for name in loaded
        for banned in RULES[module]
        if name == banned or name.startswith(banned + ".")
    )
    assert broken == [], f"{module} imports {broken}"

"""Build validated monitor specs in tests the way the config loader does."""

from __future__ import annotations

from typing import Any

from prober.config.monitors import MONITOR_TYPES, MonitorBase


def monitor(type_: str, **fields: Any) -> Any:
    """`monitor("http", url=...)` -> a validated HttpMonitor with id "t"."""
    model: type[MonitorBase] = MONITOR_TYPES[type_]
    return model.model_validate({"id": "t", "type": type_, **fields})

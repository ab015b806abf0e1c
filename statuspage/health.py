"""What /healthz asks of the running prober, without importing the scheduler or store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Health:
    scheduler_running: Callable[[], bool]
    database_writable: Callable[[], bool]

    def problems(self) -> list[str]:
        out = []
        if not self.scheduler_running():
            out.append("scheduler not running")
        if not self.database_writable():
            out.append("database not taking writes")
        return out

"""What the writer tells others inside the transaction that caused it.

The store does not know about alerts: it calls an `EventHook` (prober.alerts.outbox.Outbox
in `prober run`, none in the CLI), so the alert rows of an incident commit or vanish with
the incident itself, and the store's imports stay below the alerting layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prober.incidents import Opened, Resolved
from prober.store.engine import Connection


class EventHook(Protocol):
    # grows with every row the hook writes: the writer wakes the dispatcher when it moved
    added: int

    def incident(
        self, conn: Connection, monitor: str, change: Opened | Resolved, now_ms: int
    ) -> None:
        """An incident opened or resolved (live or replayed)."""

    def certificate(self, conn: Connection, monitor: str, not_after_ms: int, now_ms: int) -> None:
        """A result saw a certificate expiring at `not_after_ms`."""

    def regional(
        self,
        conn: Connection,
        monitor: str,
        locations: Sequence[str],
        since_ms: int,
        cause: str | None,
        now_ms: int,
    ) -> None:
        """A regional problem (failing at fewer than `quorum` locations) lasted down_after."""

    def network(self, conn: Connection, failing: bool, at_ms: int) -> None:
        """The prober's own network went down (every canary fails) or came back."""

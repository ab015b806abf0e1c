"""Canaries: is a failure the target's, or the prober's own network's?

`settings.canaries` names independent targets (`tcp://1.1.1.1:53`, `https://www.google.com`).
When a check fails and every canary fails too, the prober cannot tell an outage from its
own lost network, so the result is `unknown`, not `down` (see docs/REFERENCE.md, Results).

A canary proves only that the network carries traffic: any HTTP response, whatever its
status, counts as reachable; only connect, timeout and TLS failures count as failing.
One round probes every canary at once; its verdict is kept for `ttl` seconds, and callers
that arrive while a round is running wait for that round instead of starting another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.config.monitors import HttpMonitor, ProbingMonitor, TcpMonitor
from prober.redact import redact_url
from prober.results import CheckResult, Outcome

log = logging.getLogger(__name__)

TIMEOUT = "5s"
ANY_RESPONSE = ["100-599"]


def canary_monitor(index: int, spec: str) -> ProbingMonitor:
    """`tcp://HOST:PORT` -> a TcpMonitor, `http(s)://…` -> an HttpMonitor, id `canary-N`."""
    fields = {"id": f"canary-{index}", "timeout": TIMEOUT}
    parts = urlsplit(spec)
    if parts.scheme == "tcp":
        return TcpMonitor.model_validate(
            {**fields, "type": "tcp", "host": parts.hostname, "port": parts.port}
        )
    return HttpMonitor.model_validate(
        {
            **fields,
            "type": "http",
            "url": spec,
            "method": "HEAD",  # the body proves nothing more
            "expect_status": ANY_RESPONSE,
            "follow_redirects": False,  # a redirect is a response too
        }
    )


class Canaries:
    """The prober's own network, judged by its canaries; `judge` applies the verdict."""

    def __init__(
        self,
        specs: Sequence[str],
        shared: Shared,
        ttl: float = 30.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._on_change = on_change  # told True when every canary fails, False when back
        self._specs = list(specs)
        self._monitors = [canary_monitor(i, spec) for i, spec in enumerate(self._specs, start=1)]
        self._shared = shared
        self._ttl = ttl
        self._failing = False
        self._judged_at: float | None = None  # clock.monotonic() of the last verdict
        self._round: asyncio.Task[bool] | None = None

    async def all_failing(self) -> bool:
        """True only when every canary failed; False when there are none."""
        if not self._monitors:
            return False
        judged_at = self._judged_at
        if judged_at is not None and self._shared.clock.monotonic() - judged_at < self._ttl:
            return self._failing
        if self._round is None:
            self._round = asyncio.create_task(self._probe(), name="canaries")
        # Shielded: a caller cancelled while waiting must not cancel the round for the rest.
        return await asyncio.shield(self._round)

    async def judge(self, result: CheckResult) -> CheckResult:
        """A `down` result becomes `unknown` while every canary fails; others pass unchanged.
        A success while the network was judged down proves it is back."""
        if result.outcome in (Outcome.UP, Outcome.DEGRADED) and self._failing:
            self._failing = False
            self._judged_at = None
            self._log_change(False, [])
        if result.outcome is not Outcome.DOWN or not await self.all_failing():
            return result
        return dataclasses.replace(
            result,
            outcome=Outcome.UNKNOWN,
            error=(
                "not judged: the prober's own network is failing (every canary is down); "
                f"the check saw: {result.error}"
            ),
            details={**result.details, "canaries_failing": True},
        )

    async def _probe(self) -> bool:
        try:
            results = await asyncio.gather(*(run_check(m, self._shared) for m in self._monitors))
            # `unknown` (a prober bug) proves nothing about the network: only `down` counts.
            failing = all(r.outcome is Outcome.DOWN for r in results)
            if failing != self._failing:
                self._log_change(failing, results)
            self._failing = failing
            self._judged_at = self._shared.clock.monotonic()
            return failing
        finally:
            self._round = None

    def _log_change(self, failing: bool, results: Sequence[CheckResult]) -> None:
        if self._on_change is not None:
            self._on_change(failing)
        if not failing:
            log.info("canaries reachable again")
            return
        seen = "; ".join(
            f"{redact_url(spec)}: {r.error}" for spec, r in zip(self._specs, results, strict=True)
        )
        log.info(
            "prober network check: all %d canaries failing: results that fail become unknown"
            ' canaries="%s"',
            len(results),
            seen,
        )

"""Check kinds: one module each, one signature `async def check(spec, ctx) -> CheckResult`.

Adding a kind: write `prober/checks/<kind>.py`, add its spec model to
`prober.config.monitors.MONITOR_TYPES`, add one line here, one row in the docs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prober.checks import dns, http, tcp, tls
from prober.results import CheckResult

CheckFn = Callable[[Any, Any], Awaitable[CheckResult]]

CHECKS: dict[str, CheckFn] = {
    "http": http.check,
    "tls": tls.check,
    "tcp": tcp.check,
    "dns": dns.check,
}

"""Placeholder replaced by the real tls check."""

from __future__ import annotations

from typing import Any

from prober.checks.result import CheckResult, Outcome


async def check(spec: Any, ctx: Any) -> CheckResult:
    return CheckResult(Outcome.UNKNOWN, 0.0, error="not implemented")

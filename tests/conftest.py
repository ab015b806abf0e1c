"""Shared fixtures: the outbound check context against real loopback servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from prober.checks.context import Shared
from prober.checks.session import open_shared


@pytest.fixture
async def shared() -> AsyncIterator[Shared]:
    async with open_shared() as value:
        yield value

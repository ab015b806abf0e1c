"""What a channel's send() gets from the process: the one outbound HTTP session."""

from __future__ import annotations

import dataclasses

import aiohttp

from prober.alerts.channels.base import SEND_TIMEOUT


@dataclasses.dataclass(frozen=True, slots=True)
class SendContext:
    session: aiohttp.ClientSession
    timeout: float = SEND_TIMEOUT

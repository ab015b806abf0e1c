"""What every channel shares: the request a payload builder returns, the error a send
raises, and one way to POST it.

Channels do not retry: the dispatcher owns retries and backoff. A send either returns the
channel's answer (a short text for logs and `notify-test`) or raises `NotifyError`, which
says whether trying again could help (`permanent`) and when (`retry_after`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import time
from collections.abc import Mapping

import aiohttp

ANSWER_LIMIT = 64 * 1024  # of a channel's reply read at most; the rest is not waited for
SEND_TIMEOUT = 15.0
USER_AGENT = "prober-alerts/1"
RETRYABLE_STATUS = frozenset({408, 425, 429})


class NotifyError(Exception):
    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST. `body` is exactly what goes on the wire (signatures are over it)."""

    url: str
    body: bytes
    headers: Mapping[str, str]

    @classmethod
    def json(
        cls, url: str, payload: object, headers: Mapping[str, str] | None = None
    ) -> HttpRequest:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(url, body, {"Content-Type": "application/json", **(headers or {})})

    def payload(self) -> object:
        """The JSON body, parsed (for tests and logs)."""
        return json.loads(self.body)


async def post(
    session: aiohttp.ClientSession, request: HttpRequest, within: float = SEND_TIMEOUT
) -> str:
    """POST once; the answer as `HTTP 200: <first bytes of the body>`.

    2xx is delivered. 408, 425, 429 and 5xx may pass: NotifyError(permanent=False) with the
    server's Retry-After. Any other status (a 3xx too: a moved webhook must be fixed in the
    config, not followed with the payload) is permanent. Network errors and timeouts are
    not permanent.
    """
    headers = {"User-Agent": USER_AGENT, **request.headers}
    try:
        async with asyncio.timeout(within):
            async with session.post(
                request.url, data=request.body, headers=headers, allow_redirects=False
            ) as response:
                text = (await response.content.read(ANSWER_LIMIT)).decode("utf-8", "replace")
                answer = f"HTTP {response.status}: {' '.join(text.split())[:200]}".rstrip(": ")
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except TimeoutError:
        raise NotifyError(f"no answer within {within:g}s", permanent=False) from None
    except aiohttp.InvalidURL:
        raise NotifyError("the URL is not valid", permanent=True) from None
    except aiohttp.ClientResponseError as exc:  # its str() carries the URL: a secret, often
        words = " ".join(exc.message.split())
        raise NotifyError(f"{type(exc).__name__}: {exc.status}, {words}", permanent=False) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise NotifyError(f"{type(exc).__name__}: {exc}", permanent=False) from None
    if 200 <= status < 300:
        return answer
    permanent = not (status >= 500 or status in RETRYABLE_STATUS)
    raise NotifyError(answer, permanent=permanent, retry_after=retry_after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds: `120` or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))

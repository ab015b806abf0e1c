"""The agent's side of the hub's API (`/api/agent/v1/`): one keep-alive session, bearer
token, and what each answer means, logged once per change.

The session is the agent's own, not the checks' (theirs opens a fresh connection per check
and guards addresses; this one talks to one known hub). Redirects are not followed: the
token goes to hub.url and nowhere else.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import ssl
from typing import Literal

import aiohttp

from prober.checks.session import user_agent
from prober.config.agent import AgentConfig

log = logging.getLogger(__name__)

MONITORS = "/api/agent/v1/monitors"
RESULTS = "/api/agent/v1/results"
GZIP_OVER = 8 * 1024  # bytes of JSON: smaller batches go as they are
TIMEOUT = 30.0  # seconds for one request, body included

# What went wrong with the hub, one kind at a time (each logged when it starts and ends).
Trouble = Literal["unreachable", "busy", "token", "clock", "refused"]


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no answer (connection failed, timed out)
    body: bytes = b""
    etag: str | None = None
    error: str = ""  # why there was no answer

    @property
    def trouble(self) -> Trouble | None:
        """None for an answer the caller acts on (200, 304)."""
        if self.status in (200, 304):
            return None
        if self.status == 0:
            return "unreachable"
        if self.status == 401:
            return "token"
        if self.status == 409:
            return "clock"
        if self.status >= 500 or self.status == 429:
            return "busy"
        return "refused"

    def hub_says(self) -> str:
        """The hub's `error` line, or the status when it gave none."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            doc = None
        said = doc.get("error") if isinstance(doc, dict) else None
        return f"{said}" if isinstance(said, str) and said else f"HTTP {self.status}"


class HubClient:
    def __init__(self, config: AgentConfig) -> None:
        self.url = config.hub.url
        self.location = config.settings.location
        self._token = config.hub.token.get_secret_value()
        self._ssl: ssl.SSLContext | bool = True
        if config.hub.ca_file:
            self._ssl = ssl.create_default_context()
            self._ssl.load_verify_locations(config.hub.ca_file)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HubClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            headers={"User-Agent": user_agent(self.location)},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def monitors(self, etag: str | None) -> Answer:
        """GET the assignment, conditionally on the ETag of the one we hold."""
        headers = {"If-None-Match": etag} if etag else {}
        return await self._request("GET", MONITORS, headers, None)

    async def results(self, body: bytes) -> Answer:
        """POST a batch (wire.encode's bytes), gzipped when large."""
        headers = {"Content-Type": "application/json"}
        if len(body) > GZIP_OVER:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return await self._request("POST", RESULTS, headers, body)

    async def _request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> Answer:
        assert self._session is not None, "use HubClient as an async context manager"
        headers = {**headers, "Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.request(
                method,
                self.url + path,
                headers=headers,
                data=body,
                ssl=self._ssl,
                allow_redirects=False,
            ) as response:
                return Answer(response.status, await response.read(), response.headers.get("ETag"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Answer(0, error=_reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:.0f} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (exc.os_error.strerror or str(exc.os_error)).lower()
    return str(exc) or type(exc).__name__


class Link:
    """The state of the agent's link to its hub, logged once per change: trouble starting
    (its kind and the hub's words), trouble ending. `contacted`: the hub has accepted this
    agent's token at least once since start."""

    def __init__(self, url: str, location: str) -> None:
        self._url = url
        self._location = location
        self.trouble: Trouble | None = None
        self._on_batch = False  # the trouble was seen on a batch of results
        self.contacted = False

    def fine(self, batch: bool = False) -> None:
        """The hub answered as it should; `batch`: it took a batch of results. Trouble seen
        on a batch (a 409, a 503 from the probing process) ends only with a batch taken."""
        self.contacted = True
        if self.trouble is None or (self._on_batch and not batch):
            return
        what = {"clock": "accepts this agent's clock again"}.get(self.trouble, "answers again")
        log.warning("hub %s hub=%s", what, self._url)
        self.trouble = None

    def failed(self, answer: Answer, queued: int, batch: bool = False) -> None:
        kind = answer.trouble
        if kind is None:
            return
        if kind in ("clock", "refused"):  # answers to an authenticated request
            self.contacted = True
        if kind == self.trouble:
            self._on_batch = self._on_batch or batch
            return
        self.trouble, self._on_batch = kind, batch
        log.error("%s (queued=%d)", self.describe(answer), queued)

    def describe(self, answer: Answer) -> str:
        kind = answer.trouble
        if kind == "unreachable":
            return f"hub unreachable hub={self._url}: {answer.error}; results kept queued"
        if kind == "token":
            return (
                f"hub refused this agent's token (401 {answer.hub_says()}): hub.token is not"
                f" the token of the [[agents]] entry for location {self._location!r} on the"
                f" hub at {self._url}; results kept queued"
            )
        if kind == "clock":
            return f"hub refused the batch (409): {answer.hub_says()}"
        if kind == "busy":
            return f"hub cannot take results now ({answer.status}): {answer.hub_says()}; retrying"
        return f"hub refused the request ({answer.status}): {answer.hub_says()}; retrying"

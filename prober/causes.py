"""What the public reads as an incident's cause: the failure class, never the target's words.

An incident's cause is stored as its first `down` result's error, whole ("json status ==
\"ok\": saw \"BODY-LEAK-4242\", wanted ..."): alerts and logs need it. The status page,
its APIs and feeds, and reports show `public_cause(error, monitor)` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prober.config.monitors import MonitorBase, PushMonitor, TcpMonitor
from prober.redact import public_text, visible_text

CHECK_FAILED = "check failed"

# The errors the checks write (prober/checks/*, runner), matched at their start, which is
# always the prober's own words: whatever the target sent comes later in the text. Each
# class is a fixed phrase; the only number kept is an HTTP status code.
_CLASSES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"status: saw (\d{3}),"), lambda m: f"HTTP {m.group(1)}"),
    (re.compile(r"timed out\b"), "timed out"),
    (re.compile(r"connection refused\b"), "connection refused"),
    (
        re.compile(r"(?:connect failed|connection error|sending failed|reading the reply failed):"),
        "connection failed",
    ),
    (re.compile(r"connection reset\b"), "connection reset"),
    (re.compile(r"refused to connect to "), "connection blocked"),
    (re.compile(r"server closed the connection without a response"), "no response"),
    (re.compile(r"connection closed before "), "expected reply not received"),
    (
        re.compile(
            r"(?:DNS lookup failed|cannot query|no nameserver answered|no nameservers configured)\b"
        ),
        "DNS lookup failed",
    ),
    (re.compile(r"ip_version is \d but "), "connection failed"),
    (re.compile(r"TLS certificate rejected: certificate has expired"), "certificate expired"),
    (re.compile(r"certificate expired\b"), "certificate expired"),
    (re.compile(r"certificate expires in\b"), "certificate expires soon"),
    (
        re.compile(r"(?:TLS certificate rejected|the server's certificate could not be read)\b"),
        "certificate invalid",
    ),
    (re.compile(r"TLS handshake failed\b"), "TLS handshake failed"),
    (re.compile(r"(?:contains|not_contains) "), "keyword check failed"),
    (re.compile(r"regex "), "regex check failed"),
    (re.compile(r"json\b"), "JSON assertion failed"),
    (re.compile(r"reading the body failed\b"), "reading the response failed"),
    (re.compile(r"invalid (?:HTTP response|body)\b"), "invalid HTTP response"),
    (re.compile(r"too many redirects\b"), "too many redirects"),
    (re.compile(r"HTTP \d{3} redirect |redirect to "), "redirect refused"),
    (re.compile(r"HTTP (\d{3})\b"), lambda m: f"HTTP {m.group(1)}"),  # imported results
    (re.compile(r"(?:rcode |no \w+ records in the answer|saw \[)"), "DNS answer did not match"),
]
_PUSH_MISSED = re.compile(r"no ping (?:within|for the) ")
_PUSH_UNFINISHED = re.compile(r"started, not finished within ")
_PUSH_EXIT = re.compile(r"exit code (\d{1,3})(?:: (.*))?$", re.DOTALL)


def public_cause(error: str, monitor: MonitorBase) -> str:
    """An incident's cause as the public reads it: the monitor's `public_cause` when the
    operator wrote one, else the failure class of the check's error ("HTTP 503", "timed
    out", "JSON assertion failed", ...; "check failed" for anything not recognised), never
    text the target sent. A push monitor's cause is the job's own report, its message
    masked by `public_text`. The stored error (alerts, logs) stays whole."""
    if monitor.public_cause:
        return visible_text(monitor.public_cause)
    if isinstance(monitor, PushMonitor):
        return _push_cause(error)
    if isinstance(monitor, TcpMonitor) and monitor.expect is not None:
        waited = repr(monitor.expect)
        if error.startswith(f"{waited} not in the first "):
            return "expected reply not received"
    for pattern, phrase in _CLASSES:
        match = pattern.match(error)
        if match is not None:
            return phrase if isinstance(phrase, str) else phrase(match)
    return CHECK_FAILED


def _push_cause(error: str) -> str:
    """What the job said (written by the operator's own job, masked), or that it was silent."""
    if _PUSH_MISSED.match(error):
        return "missed heartbeat"
    if _PUSH_UNFINISHED.match(error):
        return "run did not finish in time"
    exit_code = _PUSH_EXIT.match(error)
    if exit_code is not None:
        said = f"job reported failure (exit code {int(exit_code.group(1))})"
        msg = exit_code.group(2)
    else:
        said, msg = "job reported failure", "" if error in ("", "down", "reported down") else error
    return public_text(f"{said}: {msg}") if msg else said

"""A monitor's `remediate` and `escalate` keys (contract: "Remediation and escalation").

`remediate = { command = [...], timeout = "60s", after = 2, attempts = 2, within = "1h",
verify = 2 }` runs an argv (never a shell) after `after` consecutive down results, or
`remediate = { webhook = "NOTIFIER_ID" }` calls a webhook notifier instead. `escalate`
lists steps that notify more notifiers while an incident stays open. What refers to other
sections (notifier ids, settings.allow_commands) is checked by `reference_errors`, for the
loader; the rest here, at validation.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prober.config.types import PositiveDuration, Slug

MAX_TIMEOUT = 600.0  # a remediation holds the opening alert back at most this long (+ verify)


class Remediate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    command: list[str] | None = Field(default=None, repr=False)  # may carry ${ENV} secrets
    webhook: Slug | None = None
    timeout: PositiveDuration = 60.0
    after: int = Field(default=2, ge=1)
    attempts: int = Field(default=2, ge=1)
    within: PositiveDuration = 3600.0
    verify: int = Field(default=2, ge=1)
    # the values `${VAR}` put into `command` (set by the loader): redacted like secrets
    _env_values: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError('needs the program and its arguments, e.g. ["/usr/local/bin/x"]')
        if any("\0" in arg for arg in value):
            raise ValueError("an argument contains a NUL character")
        if not os.path.isabs(value[0]):
            raise ValueError(
                f"{value[0]!r} is not an absolute path: the program is run as written, "
                "never looked up in PATH nor through a shell"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, value: float) -> float:
        if value > MAX_TIMEOUT:
            raise ValueError(
                f"must be at most 10m; got {value:g}s (the opening alert waits for it)"
            )
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Remediate:
        if (self.command is None) == (self.webhook is None):
            raise ValueError(
                "needs exactly one of command (an argv list) or webhook (a notifier id)"
            )
        return self

    @property
    def env_values(self) -> frozenset[str]:
        return self._env_values


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    after: PositiveDuration  # after the opening alert went out
    notify: list[Slug] = Field(min_length=1)


def check_steps(steps: list[EscalationStep], info: ValidationInfo) -> list[EscalationStep]:
    """`escalate`: steps in increasing `after`, on a monitor that notifies someone (the
    steps count from its opening alert: with `notify = []` there is none)."""
    if steps and info.data.get("notify") == []:
        raise ValueError(
            "the steps count from the monitor's opening alert, and with notify = [] none "
            "is sent, so nothing would escalate: list a notifier in notify (the first step "
            "may follow it within seconds)"
        )
    for before, step in itertools.pairwise(steps):
        if step.after <= before.after:
            raise ValueError(
                f"steps must be in increasing `after`: {step.after:g}s comes after "
                f"{before.after:g}s"
            )
    return steps


def check_verify(remediate: Remediate | None, up_after: object) -> Remediate | None:
    """`verify` is at least the monitor's `up_after`: a recovery the incident logic would
    not yet call a recovery must not silence the alert."""
    if remediate is not None and isinstance(up_after, int) and remediate.verify < up_after:
        raise ValueError(
            f"verify ({remediate.verify}) must be at least up_after ({up_after}): "
            "a remediation is verified by as many successes as end an incident"
        )
    return remediate


_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def env_values(raw: object, env: Mapping[str, str]) -> frozenset[str]:
    """The values `${VAR}` references in a command as written (`raw`) put into it."""
    found: set[str] = set()
    for arg in raw if isinstance(raw, list) else []:
        for match in _REF.finditer(arg if isinstance(arg, str) else ""):
            if match.group(1) is not None:
                value = env.get(match.group(1)) or match.group(2) or ""
                if len(value) >= 4:  # as Config.secret_values: short ones hit ordinary words
                    found.add(value)
    return frozenset(found)


def reference_errors(
    item: Mapping[str, Any], notifier_types: Mapping[object, object], allow_commands: bool
) -> list[tuple[tuple[str | int, ...], str]]:
    """One `[[monitors]]` table as written: (path inside it, message) for what names other
    sections. Only well-formed values are judged (the model reports the others)."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    remediate = item.get("remediate")
    if isinstance(remediate, dict):
        if remediate.get("command") is not None and not allow_commands:
            errors.append(
                (
                    ("remediate", "command"),
                    "settings.allow_commands is false: a remediation command runs a program "
                    "on this host; set allow_commands = true in [settings] to allow it",
                )
            )
        webhook = remediate.get("webhook")
        if isinstance(webhook, str):
            found = notifier_types.get(webhook)
            if webhook not in notifier_types:
                errors.append((("remediate", "webhook"), f"no notifier has id {webhook!r}"))
            elif found != "webhook":
                errors.append(
                    (
                        ("remediate", "webhook"),
                        f"notifier {webhook!r} is of type {found!r}; remediate needs a webhook one",
                    )
                )
    steps = item.get("escalate")
    for n, step in enumerate(steps if isinstance(steps, list) else []):
        names = step.get("notify") if isinstance(step, dict) else None
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and name not in notifier_types:
                errors.append((("escalate", n, "notify"), f"no notifier has id {name!r}"))
    return errors

"""`${VAR}` and `${VAR:-default}` in config strings; `$${` is a literal `${`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path = tuple[str | int, ...]


class MissingVariable(Exception):
    def __init__(self, path: Path, name: str) -> None:
        super().__init__(f"environment variable {name} is not set (use ${{{name}:-default}})")
        self.path = path
        self.name = name


def substitute(text: str, env: Mapping[str, str], path: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise MissingVariable(path, name)
            return default
        return value

    return _REF.sub(replace, text)


def interpolate(data: Any, env: Mapping[str, str]) -> tuple[Any, list[MissingVariable]]:
    """A copy of parsed TOML with every string interpolated, and the references that failed."""
    errors: list[MissingVariable] = []

    def walk(node: Any, path: Path) -> Any:
        if isinstance(node, str):
            try:
                return substitute(node, env, path)
            except MissingVariable as exc:
                errors.append(exc)
                return node
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return node

    return walk(data, ()), errors

"""Where the store lives (`settings.database`): a value the config holds; the store opens
it (prober.store.engine.connect)."""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse
from typing import Literal

Kind = Literal["sqlite", "postgresql"]


@dataclasses.dataclass(frozen=True)
class Database:
    """`sqlite:///relative/or////absolute.db` (relative to the config's folder) or
    `postgresql://user:password@host:port/name`."""

    url: str
    path: pathlib.Path | None = None  # SQLite's file

    @classmethod
    def of(cls, url: str, base: pathlib.Path) -> Database:
        if url.startswith(("postgresql://", "postgres://")):
            return cls(url)
        return cls(url, base / url.removeprefix("sqlite:///"))

    @property
    def kind(self) -> Kind:
        return "sqlite" if self.path is not None else "postgresql"

    def shown(self) -> str:
        """For logs and errors: the file, or the URL without its password."""
        if self.path is not None:
            return str(self.path)
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}"  # `postgresql:///name?host=...` too

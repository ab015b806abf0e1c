"""The combined verdict of monitors probed from several locations, for tools that rewrite
history (`import-results`): a thin entry over prober.store.ledger, which keeps it live."""

from __future__ import annotations

import time

from prober.config import Config
from prober.config.locations import COMBINED
from prober.store.engine import Connection
from prober.store.ledger import TrackSpec
from prober.store.ledger import rebuild_combined as _rebuild


def rebuild_combined(
    conn: Connection, config: Config, slug: str, now_ms: int | None = None
) -> bool:
    """Re-derive `slug`'s combined verdict from its stored results, inside the caller's
    transaction, after each location's own derived data was rebuilt. False (nothing to
    do) for a monitor with one location."""
    monitor = config.monitor(slug)
    if monitor is None:
        raise KeyError(f"no monitor {slug!r} in the config")
    spec = TrackSpec.of(monitor)
    if not spec.multi:
        return False
    conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", (COMBINED,))
    for name in spec.locations:
        conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", (name,))
    places = {name: lid for lid, name in conn.execute("SELECT id, name FROM location")}
    (mid,) = conn.execute("SELECT id FROM monitor WHERE slug = ?", (slug,)).fetchone()
    now = round(time.time() * 1000) if now_ms is None else now_ms
    _rebuild(conn, spec, mid, places, now)
    return True

"""`prober agent`: probes for a hub from another location.

`run.py` is the process; `assign.py` what the hub assigns it (pure); `wire.py` the batch
format agents send and hubs parse (pure); `queue.py` the results on disk until the hub has
them; `send.py` drains that queue to the hub; `link.py` the HTTP client of the hub and how
its answers are logged. The hub's side: `gate.py` (web process) and `hub.py` (probing
process).
"""

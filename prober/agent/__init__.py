"""`prober agent`: probes for a hub from another location.

`wire.py` is the batch format agents send and hubs parse (pure); `queue.py` is the
agent's on-disk queue of results while the hub cannot be reached.
"""

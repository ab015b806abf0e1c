"""prober: an external synthetic uptime prober with a public status page."""

__version__ = "0.1.0"

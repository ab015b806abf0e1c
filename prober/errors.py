"""Errors meant for the person at the terminal: the CLI prints them and exits 1."""

from __future__ import annotations


class UserError(Exception):
    """A clear reason a command cannot go on, written for its user (no traceback)."""

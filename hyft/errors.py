"""Errors a user can fix, at the bottom of the layer order so that every package may raise them.

``ConfigError`` (a config could not be used; re-exported from ``hyft.config``) and ``UserError`` (any
other input the user can fix; re-exported from ``hyft.cli.errors``, which turns both into exit 2).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config could not be used. ``problems`` holds one human-readable line per mistake."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the config:\n{listing}")


class UserError(RuntimeError):
    """An error caused by input the user can fix (message says what to fix); no traceback shown."""

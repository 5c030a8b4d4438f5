"""Turn expected failures (bad config, missing file) into a clean message and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from hyft.errors import ConfigError, UserError  # defined in the base layer (hyft.errors); re-exported


@contextmanager
def user_errors() -> Iterator[None]:
    """Print ConfigError/UserError/FileNotFoundError as plain text and exit with status 2."""
    try:
        yield
    except (ConfigError, UserError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


def guarded(function: Callable) -> Callable:
    """Decorator form of :func:`user_errors` for CLI verbs."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with user_errors():
            return function(*args, **kwargs)

    return wrapper

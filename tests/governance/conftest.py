"""Fixtures for the governance tests: real XNLI/FLORES slices from ../shared/data, loaded detectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from tests.conftest import require_shared_data

REPO = Path(__file__).resolve().parents[2]


def xnli_rows(lang: str, split: str = "dev") -> list[dict]:
    path = require_shared_data() / "xnli" / f"{split}.{lang}.jsonl"
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def flores_lines(lang: str) -> list[str]:
    path = require_shared_data() / "flores" / f"devtest.{lang}.txt"
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="session")
def detectors():
    from hyft.governance.lid import Detectors

    loaded = Detectors()
    loaded.fasttext, loaded.py3langid  # noqa: B018 - load both once per session
    return loaded


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """``hyft curate`` as a typer app (a second command keeps typer in multi-command mode, as in hyft)."""
    from hyft.cli import curate as curate_cli

    application = typer.Typer()
    curate_cli.register(application)

    @application.command("noop")
    def _noop() -> None: ...

    return application

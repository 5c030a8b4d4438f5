"""Data shipped inside the package: the small hand-written multilingual demo set.

Files live in ``hyft/data/demo/`` (see its README.md for how they were made): the topic set
``topic.{dev,test}.<lang>.jsonl`` that ``make demo`` trains on, its noisy curation pool ``pool.jsonl``
with the answer key ``pool.truth.jsonl``, and the NLI set ``nli.{dev,test}.<lang>.jsonl`` with its own
pool ``nli.pool.jsonl`` and key ``nli.pool.truth.jsonl``. They are found through
:mod:`importlib.resources`, so the same code works from a source checkout and from an installed wheel.
"""

from __future__ import annotations

import atexit
import difflib
from contextlib import ExitStack
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

DEMO_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "hi", "zh")
"""Languages of the demo NLI set, in file-name order."""

DEMO_SPLITS: tuple[str, ...] = ("dev", "test")
"""``dev`` feeds the k-shot sampler; ``test`` is only evaluated on (the pool never contains it)."""

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")

TOPIC_LABELS: tuple[str, ...] = ("sports", "food", "weather", "technology")
"""Labels of the demo topic set, in the order of an encoder head's classes."""

# Only used when the package is imported from a zip: files are extracted once and removed at exit.
_extracted = ExitStack()
atexit.register(_extracted.close)


def _demo_dir() -> Traversable:
    return resources.files(__name__) / "demo"


def demo_names() -> list[str]:
    """Names of the shipped demo data files (``.jsonl``), sorted."""
    return sorted(entry.name for entry in _demo_dir().iterdir() if entry.name.endswith(".jsonl"))


def demo_path(name: str) -> Path:
    """Path of a shipped demo file, e.g. ``demo_path("nli.dev.hi.jsonl")``.

    ``name`` is a plain file name from :func:`demo_names` (no folders). Raises FileNotFoundError,
    naming the closest match and every available file, when the name is unknown.
    """
    available = demo_names()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise FileNotFoundError(
            f"no demo data file named {name!r} in hyft/data/demo.{hint} Available: {', '.join(available)}"
        )
    resource = _demo_dir() / name
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))


def _split_file_name(kind: str, split: str, lang: str) -> str:
    if split not in DEMO_SPLITS:
        raise FileNotFoundError(f"demo {kind} split must be one of {DEMO_SPLITS}, got {split!r}")
    if lang not in DEMO_LANGUAGES:
        raise FileNotFoundError(f"demo {kind} language must be one of {DEMO_LANGUAGES}, got {lang!r}")
    return f"{kind.lower()}.{split}.{lang}.jsonl"


def topic_file_name(split: str, lang: str) -> str:
    """File name of one topic split, e.g. ``topic_file_name("dev", "hi") == "topic.dev.hi.jsonl"``."""
    return _split_file_name("topic", split, lang)


def nli_file_name(split: str, lang: str) -> str:
    """File name of one NLI split, e.g. ``nli_file_name("test", "zh") == "nli.test.zh.jsonl"``."""
    return _split_file_name("NLI", split, lang)

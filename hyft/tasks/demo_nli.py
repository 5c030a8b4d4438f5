"""``demo-nli``: the small NLI set shipped inside the package (hyft/data/demo), for the offline demo.

Same layout and labels as XNLI (premise, hypothesis, label); shots from ``dev``, evaluation on ``test``.
Written by the hyft team for the demo; see hyft/data/demo/README.md.
"""

from __future__ import annotations

from hyft.data import DEMO_LANGUAGES, demo_path, nli_file_name
from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource
from hyft.tasks.registry import register_task
from hyft.tasks.xnli import NLI_LABELS, load_nli_file


def load_demo_nli(split: str, lang: str, data: DataSource) -> list[Example]:
    """The shipped file; ``data`` is ignored (the set lives inside the package, not in a data folder)."""
    path = demo_path(nli_file_name(split, lang))
    return load_nli_file(DataSource(path.parent, "local"), path.name, f"demo-nli/{split}/{lang}", lang)


DEMO_NLI = register_task(
    Task(
        name="demo-nli",
        family="demo-nli",
        kind="classification",
        metric="accuracy",
        description="hyft's hand-written demo NLI set, en/es/fr/hi/zh (shots: dev, evaluation: test)",
        languages=DEMO_LANGUAGES,
        loader=load_demo_nli,
        eval_split="test",
        shot_split="dev",
        labels=NLI_LABELS,
        text_fields=("premise", "hypothesis"),
    )
)

"""``demo-topic``: the small topic-classification set shipped inside the package, for the offline demo.

One sentence per example (field ``text``) and one of four topics (sports, food, weather, technology), in
en/es/fr/hi/zh with parallel ids; shots from ``dev``, evaluation on ``test``. Written by the hyft team
for the demo; see hyft/data/demo/README.md. An encoder reads the sentence alone (one text field).
"""

from __future__ import annotations

from hyft.data import DEMO_LANGUAGES, TOPIC_LABELS, demo_path, topic_file_name
from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataSource, format_error, load_records
from hyft.tasks.registry import register_task


def load_demo_topic(split: str, lang: str, data: DataSource) -> list[Example]:
    """The shipped file; ``data`` is ignored (the set lives inside the package, not in a data folder)."""
    path = demo_path(topic_file_name(split, lang))
    expected = (
        f"JSONL at hyft/data/demo/{path.name}, one object per line with string fields 'text' and "
        f"'label' in {{{', '.join(TOPIC_LABELS)}}}"
    )
    where, records = load_records(
        DataSource(path.parent, "local"), path.name, {"text": str, "label": str}, expected, hub=None
    )
    examples = []
    for line, record in records:
        if record["label"] not in TOPIC_LABELS:
            raise format_error(where, line, f"label {record['label']!r} is not a topic", expected)
        examples.append(
            {
                "id": f"demo-topic/{split}/{lang}/{line}",
                "lang": lang,
                "text": record["text"],
                "label": record["label"],
            }
        )
    return examples


DEMO_TOPIC = register_task(
    Task(
        name="demo-topic",
        family="demo-topic",
        kind="classification",
        metric="accuracy",
        description="hyft's hand-written demo topic set (sports/food/weather/technology), en/es/fr/hi/zh "
        "(shots: dev, evaluation: test)",
        languages=DEMO_LANGUAGES,
        loader=load_demo_topic,
        eval_split="test",
        shot_split="dev",
        labels=TOPIC_LABELS,
        text_fields=("text",),
    )
)

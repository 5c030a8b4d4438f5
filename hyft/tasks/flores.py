"""FLORES-200 devtest translation, EN→X (any direction whose two files are present).

Only devtest exists locally, so k-shot demonstrations are drawn from devtest and removed from the
evaluated lines (``shot_split=None``); the metric is BLEU/chrF per direction from
:mod:`hyft.evaluation.metrics`.
"""

from __future__ import annotations

from hyft.tasks.base import Example, Task
from hyft.tasks.loading import DataError, DataSource, load_hub_rows, read_lines
from hyft.tasks.registry import register_task

# hyft code -> FLORES-200 code (the table in shared/data/README.md)
FLORES_CODES = {
    "en": "eng_Latn", "zh": "zho_Hans", "zh_Hant": "zho_Hant", "es": "spa_Latn", "hi": "hin_Deva",
    "ar": "arb_Arab", "sw": "swh_Latn", "de": "deu_Latn", "fr": "fra_Latn", "ru": "rus_Cyrl",
    "th": "tha_Thai", "vi": "vie_Latn", "tr": "tur_Latn", "ur": "urd_Arab", "bg": "bul_Cyrl",
    "el": "ell_Grek", "ja": "jpn_Jpan", "ko": "kor_Hang", "pt": "por_Latn", "it": "ita_Latn",
    "id": "ind_Latn", "bn": "ben_Beng", "ta": "tam_Taml", "te": "tel_Telu", "fa": "pes_Arab",
    "pl": "pol_Latn", "nl": "nld_Latn", "uk": "ukr_Cyrl", "he": "heb_Hebr", "fi": "fin_Latn",
    "et": "est_Latn",
}  # fmt: skip
_HUB_DATASET = "openlanguagedata/flores_plus"


def _side(split: str, lang: str, data: DataSource) -> list[str]:
    relative = f"flores/{split}.{lang}.txt"
    local = data.root / relative
    if data.use_hub(local):
        rows = load_hub_rows(_HUB_DATASET, FLORES_CODES[lang], split, local)
        return [str(row["text"]) for row in rows]
    return read_lines(
        local, f"UTF-8 text at <data_dir>/{relative}, one sentence per line, aligned across languages"
    )


def load_flores(split: str, language: str, data: DataSource) -> list[Example]:
    """Aligned sentence pairs of direction ``language`` (``src-tgt``), ids ``flores/devtest/en-de/<line>``."""
    source_lang, target_lang = language.split("-", 1)
    sources, targets = _side(split, source_lang, data), _side(split, target_lang, data)
    if len(sources) != len(targets):
        raise DataError(
            f"flores/{split}.{source_lang}.txt has {len(sources)} lines but flores/{split}.{target_lang}.txt "
            f"has {len(targets)} (under {data.root}); the files must be line-aligned"
        )
    return [
        {
            "id": f"flores/{split}/{language}/{line}",
            "lang": language,
            "src_lang": source_lang,
            "tgt_lang": target_lang,
            "source": source,
            "target": target,
        }
        for line, (source, target) in enumerate(zip(sources, targets, strict=True), start=1)
    ]


FLORES = register_task(
    Task(
        name="flores",
        family="flores",
        kind="translation",
        metric="bleu",
        description="FLORES-200 devtest translation EN→X (BLEU and chrF per direction)",
        languages=tuple(FLORES_CODES),
        loader=load_flores,
        eval_split="devtest",
        shot_split=None,
        max_new_tokens=256,
        hub_dataset=_HUB_DATASET,
        extra={"reference_field": "target"},
    )
)

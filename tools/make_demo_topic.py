"""Build the demo's noisy curation pool (`pool.jsonl`) and its answer key (`pool.truth.jsonl`).

The topic files `topic.{dev,test}.{lang}.jsonl` are hand-written and edited in place; this script only
derives the pool from the *dev* files plus the hand-written noise below, so the test set never leaks
into it. Deterministic: one seeded `random.Random`, no `hash()`, sorted inputs. Run from anywhere:

    .venv/bin/python tools/make_demo_topic.py          # rewrite the two pool files
    .venv/bin/python tools/make_demo_topic.py --check  # exit 1 if the committed files are stale

(The NLI set has its own pool, `nli.pool.jsonl`, built by tools/make_demo_data.py.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[1] / "hyft" / "data" / "demo"
LANGUAGES = ("en", "es", "fr", "hi", "zh")
LABELS = ("sports", "food", "weather", "technology")
SEED = 20240613
POOL, TRUTH = "pool.jsonl", "pool.truth.jsonl"

# Sentences in another language under a declared code (kind = the text's real language), with the topic
# they are about. Written for this pool, not taken from any corpus.
WRONG_LANGUAGE: dict[str, list[tuple[str, str, str]]] = {
    "en": [
        ("nl", "De wedstrijd werd afgelast omdat het veld onder water stond.", "sports"),
        ("de", "Morgen wird es im Süden sonnig und sehr warm.", "weather"),
        ("sw", "Timu yetu ilishinda mechi ya mpira wa miguu jana jioni.", "sports"),
        ("id", "Ibu memasak nasi goreng dengan telur untuk sarapan kami.", "food"),
        ("es", "Mi ordenador nuevo se apaga solo cada dos horas.", "technology"),
        ("fr", "Il pleut depuis trois jours sur toute la région.", "weather"),
        ("pt", "O restaurante da esquina serve um ótimo peixe grelhado.", "food"),
        ("it", "Il mio telefono non si carica più con questo cavo.", "technology"),
        ("de", "Die Mannschaft trainiert jeden Dienstag im Stadion.", "sports"),
    ],
    "es": [
        ("fr", "Nous avons mangé une excellente paella au bord de la mer.", "food"),
        ("pt", "Amanhã vai chover muito no norte do país.", "weather"),
        ("it", "La squadra di calcio ha vinto il campionato dopo vent'anni.", "sports"),
        ("de", "Ich habe gestern ein neues Handy mit einer besseren Kamera gekauft.", "technology"),
        ("en", "The bakery on our street makes the best apple cake in town.", "food"),
        ("ca", "Avui fa molt de vent i el cel està ennuvolat.", "weather"),
        ("fr", "Le logiciel se met à jour automatiquement chaque nuit.", "technology"),
        ("pt", "Ela corre dez quilómetros todas as manhãs antes do trabalho.", "sports"),
        ("it", "Ho preparato una zuppa di verdure con fagioli e pane.", "food"),
    ],
    "fr": [
        ("es", "El equipo de baloncesto ganó el partido en el último segundo.", "sports"),
        ("it", "Domani è prevista neve in montagna sopra i mille metri.", "weather"),
        ("en", "My laptop keeps losing the Wi-Fi connection.", "technology"),
        ("de", "Wir haben zum Abendessen Nudeln mit Tomatensoße gekocht.", "food"),
        ("nl", "Het heeft de hele nacht gesneeuwd in het oosten van het land.", "weather"),
        ("pt", "O novo computador da escola é muito mais rápido.", "technology"),
        ("es", "Mi abuela prepara una tortilla de patatas buenísima.", "food"),
        ("ro", "Echipa noastră a câștigat meciul de fotbal aseară.", "sports"),
        ("en", "The referee stopped the game after a bad tackle.", "sports"),
    ],
    "hi": [
        ("hi_latn", "Kal raat bahut tez baarish hui aur sadak par paani bhar gaya.", "weather"),
        ("hi_latn", "Mera naya phone bahut jaldi garam ho jaata hai.", "technology"),
        ("hi_latn", "Bharat ne aakhri over mein match jeet liya.", "sports"),
        ("ur", "آج دوپہر کو بہت تیز دھوپ تھی اور گرمی بہت زیادہ تھی۔", "weather"),
        ("mr", "आईने आज संध्याकाळी गरम गरम पोहे बनवले.", "food"),
        ("ne", "हाम्रो टोलीले हिजो फुटबल खेल जित्यो।", "sports"),
        ("en", "The street food near the station is cheap and tasty.", "food"),
        ("bn", "আমার নতুন ল্যাপটপটা খুব দ্রুত চলে।", "technology"),
        ("en", "Heavy fog delayed the trains this morning.", "weather"),
    ],
    "zh": [
        ("ja", "明日は全国的に雨が降るでしょう。", "weather"),
        ("ja", "新しいパソコンは起動がとても速いです。", "technology"),
        ("ko", "우리 팀이 어제 축구 경기에서 이겼습니다.", "sports"),
        ("en", "My uncle runs a small noodle shop in Chengdu.", "food"),
        ("en", "The football match was cancelled because of the typhoon.", "sports"),
        ("ja", "母は毎朝みそ汁を作ります。", "food"),
        ("vi", "Điện thoại của tôi hết pin rất nhanh.", "technology"),
        ("zh_latn", "Mingtian hui xia xue, qing duo chuan yifu.", "weather"),
        ("ko", "이 노트북은 배터리가 오래 갑니다.", "technology"),
    ],
}

# One-word edits of a dev sentence that keep its topic (near duplicates). Parallel items across languages.
WORD_EDITS: dict[str, list[tuple[str, str, str]]] = {
    "en": [
        ("en-dev-003", "finished", "completed"),
        ("en-dev-026", "taste", "are"),
        ("en-dev-019", "strong", "powerful"),
        ("en-dev-043", "fixing", "chasing"),
    ],
    "es": [
        ("es-dev-003", "Terminó", "Acabó"),
        ("es-dev-026", "saben", "están"),
        ("es-dev-019", "fuerte", "violento"),
        ("es-dev-043", "arreglando", "buscando"),
    ],
    "fr": [
        ("fr-dev-003", "terminé", "fini"),
        ("fr-dev-026", "sont meilleures", "ont meilleur goût"),
        ("fr-dev-019", "violent", "puissant"),
        ("fr-dev-043", "corriger", "chercher"),
    ],
    "hi": [
        ("hi-dev-003", "पूरी की", "खत्म की"),
        ("hi-dev-026", "स्वादिष्ट", "मज़ेदार"),
        ("hi-dev-019", "तेज़", "ज़ोरदार"),
        ("hi-dev-043", "ठीक करने", "सुधारने"),
    ],
    "zh": [
        ("zh-dev-003", "跑完了", "完成了"),
        ("zh-dev-026", "好吃", "香"),
        ("zh-dev-019", "大风", "狂风"),
        ("zh-dev-043", "修复", "修改"),
    ],
}

KEYBOARD_MASH = {
    "en": "qwerty asdfgh zxcvbn qwerty hjkl",
    "es": "ñlkjh asdfñ qwertyuiop ñññ asdasd",
    "fr": "azerty azerty qsdfgh wxcvbn aaaazzz",
    "hi": "कककक खखखख गगगग ऽऽऽ ्््् ाााा",
    "zh": "的的的的的的的的的啊啊啊啊",
}
BOILERPLATE = {
    "en": "Home | About us | Contact | Privacy policy | © 2024 All rights reserved",
    "es": "Inicio | Quiénes somos | Contacto | Política de privacidad | © 2024",
    "fr": "Accueil | Qui sommes-nous | Contact | Mentions légales | © 2024",
    "hi": "होम | हमारे बारे में | संपर्क करें | गोपनीयता नीति | © 2024",
    "zh": "首页 | 关于我们 | 联系我们 | 隐私政策 | 版权所有 © 2024",
}
HTML_ANCHOR = {"en": "Home", "es": "Inicio", "fr": "Accueil", "hi": "होम", "zh": "首页"}
REPEATED_MIN_CHARS = 4500  # above the curation design's 4000-character bound
NUKTA_PRECOMPOSED = {
    "\u091c\u093c": "\u095b",
    "\u092b\u093c": "\u095e",
    "\u0921\u093c": "\u095c",
    "\u0916\u093c": "\u0959",
}
FORMAT_KINDS = {
    "zh": ("punct_halfwidth", "punct_removed", "whitespace", "punct_changed"),
    "hi": ("danda_to_period", "punct_removed", "whitespace", "precomposed_nukta"),
    "latin": ("uppercase", "punct_removed", "whitespace", "lowercase_nfd"),
}


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _text(record: dict, text: str, label: str | None = None) -> dict:
    return {"lang": record["lang"], "text": text, "label": label or record["label"]}


def _format_variant(kind: str, record: dict) -> dict | None:
    """Same text up to case, punctuation, white space or Unicode form; None if `kind` changes nothing."""
    text = record["text"]
    if kind == "punct_halfwidth":
        text = text.translate(str.maketrans({"，": ",", "。": ".", "、": ","}))
    elif kind == "punct_removed":
        text = text.rstrip("。.!?।")
    elif kind == "punct_changed":
        text = text[:-1] + "！" if text.endswith("。") else text
    elif kind == "whitespace":
        text = "\u3000" + text + " \t" if " " not in text else "  " + text.replace(" ", "  ", 2) + " "
    elif kind == "danda_to_period":
        text = text.replace("।", ".")
    elif kind == "precomposed_nukta":  # U+095B etc. are NFC-excluded: NFC maps them back to the pair
        for pair, single in NUKTA_PRECOMPOSED.items():
            text = text.replace(pair, single)
    elif kind == "uppercase":
        text = text.upper()
    elif kind == "lowercase_nfd":
        text = unicodedata.normalize("NFD", text.lower())
    return None if text == record["text"] else _text(record, text)


def _junk(lang: str, rng: random.Random, clean: list[dict]) -> list[tuple[str, dict]]:
    def shuffled(text: str) -> str:
        chars = list(text)
        rng.shuffle(chars)
        return "".join(chars)

    picks = rng.sample(clean, 6)
    # Three different sentences repeated, so the line is not a near duplicate of any one clean line (near
    # dedup runs before the length filter and would otherwise drop the clean original in its favour).
    repeated = " ".join(pick["text"] for pick in picks[2:3] + picks[4:6])
    repeated = " ".join([repeated] * (REPEATED_MIN_CHARS // len(repeated) + 1))
    first_token = picks[3]["text"][:2] if lang == "zh" else picks[3]["text"].split()[0]
    return [
        ("shuffled_chars", _text(picks[0], shuffled(picks[0]["text"]))),
        ("shuffled_chars", _text(picks[1], shuffled(picks[1]["text"]))),
        ("keyboard_mash", _text(picks[0], KEYBOARD_MASH[lang], label=rng.choice(LABELS))),
        ("boilerplate", _text(picks[0], BOILERPLATE[lang], label=rng.choice(LABELS))),
        (
            "url",
            _text(
                picks[0],
                f"https://www.example.com/{lang}/news/2024/03/article-{rng.randrange(10**5)}"
                f"?ref=home&session={rng.randrange(16**8):08x}",
                label=rng.choice(LABELS),
            ),
        ),
        ("truncated", _text(picks[3], first_token)),
        (
            "html",
            _text(
                picks[1],
                f'<div class="nav"><a href="/">{HTML_ANCHOR[lang]}</a> | <a href="/contact">…</a>'
                "</div><p>&nbsp;</p><script>var page = 1;</script>",
                label=rng.choice(LABELS),
            ),
        ),
        ("repeated_text", _text(picks[2], repeated)),
        (
            "no_letters",
            _text(
                picks[3], f"{rng.randrange(10, 24)}:30 — 14:45 | 3/4 | 1000 € | {rng.randrange(10**6):06d}"
            ),
        ),
    ]


def _malformed(
    rng: random.Random, clean_by_lang: dict[str, list[dict]]
) -> list[tuple[str, str | None, Callable[[str], str]]]:
    """(kind, declared language or None, line renderer given the id). Each line has exactly one fault:
    it fails JSON parsing, or parses but breaks the record schema."""
    es, en, zh, fr, hi = (rng.choice(clean_by_lang[lang]) for lang in ("es", "en", "zh", "fr", "hi"))

    def record(source: dict, record_id: str, **changes) -> dict:
        return {"id": record_id, **_text(source, source["text"]), **changes}

    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    return [
        ("truncated_json", "es", lambda i: dumps(record(es, i))[:50]),
        ("single_quotes", "en", lambda i: str(record(en, i))),
        ("trailing_comma", "zh", lambda i: dumps(record(zh, i))[:-1] + ",}"),
        ("bare_text", None, lambda i: fr["text"]),
        ("two_objects", "fr", lambda i: dumps(record(fr, i)) + dumps(record(fr, i + "b"))),
        ("json_array", "hi", lambda i: dumps([i, "hi", hi["text"], hi["label"]])),
        ("missing_field", "en", lambda i: dumps({k: v for k, v in record(en, i).items() if k != "text"})),
        ("unknown_lang", None, lambda i: dumps(record(fr, i, lang="french"))),
        ("wrong_type", "es", lambda i: dumps(record(es, i, text=42))),
    ]


def _language_items(lang: str, rng: random.Random, clean: list[dict]) -> tuple[list[dict], list[dict]]:
    """(items placed anywhere, duplicates that must follow their original) for one declared language.

    Item: {"cat", "kind", "lang", "record" | "render", "of": original item (duplicates), "source": dev id}.
    """
    by_id = {r["id"]: r for r in clean}
    originals = {
        r["id"]: {
            "cat": "clean",
            "kind": "dev_text",
            "lang": lang,
            "source": r["id"],
            "record": _text(r, r["text"]),
        }
        for r in clean
    }
    base = list(originals.values())
    for kind, text, label in WRONG_LANGUAGE[lang]:
        base.append(
            {
                "cat": "wrong_lang",
                "kind": kind,
                "lang": lang,
                "record": {"lang": lang, "text": text, "label": label},
            }
        )
    for kind, record in _junk(lang, rng, clean):
        base.append({"cat": "junk", "kind": kind, "lang": lang, "record": record})
    for kind, text, source in zip(
        ("empty_text", "blank_text", "control_whitespace"),
        ("", "   ", "\t\n "),
        rng.sample(clean, 3),
        strict=True,
    ):
        base.append({"cat": "empty", "kind": kind, "lang": lang, "record": _text(source, text)})

    dups: list[dict] = []
    edited_ids = {edit[0] for edit in WORD_EDITS[lang]}
    chosen = rng.sample(sorted(set(by_id) - edited_ids), 20)
    for index, record_id in enumerate(chosen[:6]):  # exact copies; the first one is copied twice
        for _ in range(2 if index == 0 else 1):
            dups.append(
                {
                    "cat": "exact_dup",
                    "kind": "copy",
                    "lang": lang,
                    "of": originals[record_id],
                    "record": dict(originals[record_id]["record"]),
                }
            )
    spare = chosen[6:]
    for kind in FORMAT_KINDS.get(lang, FORMAT_KINDS["latin"]):
        record_id = next(i for i in spare if _format_variant(kind, by_id[i]) is not None)
        spare.remove(record_id)
        dups.append(
            {
                "cat": "near_dup",
                "kind": kind,
                "lang": lang,
                "of": originals[record_id],
                "record": _format_variant(kind, by_id[record_id]),
            }
        )
    for record_id, old, new in WORD_EDITS[lang]:
        source = by_id[record_id]
        if source["text"].count(old) != 1:
            raise ValueError(f"word edit {old!r} must occur once in {record_id}: {source['text']!r}")
        dups.append(
            {
                "cat": "near_dup",
                "kind": "word_edit",
                "lang": lang,
                "of": originals[record_id],
                "record": _text(source, source["text"].replace(old, new)),
            }
        )
    return base, dups


def build_pool() -> tuple[list[str], list[dict]]:
    """Return (pool lines, truth rows); line numbers in the truth file are 1-based."""
    rng = random.Random(SEED)
    clean_by_lang = {lang: read_jsonl(DEMO_DIR / f"topic.dev.{lang}.jsonl") for lang in LANGUAGES}
    base: list[dict] = []
    dups: list[dict] = []
    for lang in LANGUAGES:
        lang_base, lang_dups = _language_items(lang, rng, clean_by_lang[lang])
        base += lang_base
        dups += lang_dups
    for kind, lang, render in _malformed(rng, clean_by_lang):
        base.append({"cat": "malformed", "kind": kind, "lang": lang, "render": render})

    rng.shuffle(base)
    for dup in dups:  # a duplicate always comes after its original, as the curation keeps the first
        position = next(i for i, item in enumerate(base) if item is dup["of"])
        base.insert(rng.randrange(position + 1, len(base) + 1), dup)

    line_of = {id(item): number for number, item in enumerate(base, start=1)}
    lines, truth = [], []
    for number, item in enumerate(base, start=1):
        if "render" in item:
            lines.append(item["render"](f"pool-{number:05d}"))
        else:
            lines.append(json.dumps({"id": f"pool-{number:05d}", **item["record"]}, ensure_ascii=False))
        dup_of = line_of[id(item["of"])] if "of" in item else None
        source = item["of"]["source"] if "of" in item else item.get("source")
        truth.append(
            {
                "line": number,
                "category": item["cat"],
                "lang": item["lang"],
                "kind": item["kind"],
                "dup_of": dup_of,
                "source": source,
            }
        )
    return lines, truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files instead of writing"
    )
    args = parser.parse_args()
    lines, truth = build_pool()
    wanted = {
        DEMO_DIR / POOL: "".join(line + "\n" for line in lines),
        DEMO_DIR / TRUTH: "".join(json.dumps(row) + "\n" for row in truth),
    }
    if args.check:
        stale = [
            p.name for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        print("stale: " + ", ".join(stale) if stale else "pool files are up to date")
        return 1 if stale else 0
    for path, text in wanted.items():
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(lines)} pool lines to {DEMO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

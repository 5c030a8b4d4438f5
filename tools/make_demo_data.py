"""Build the NLI set's noisy curation pool (`nli.pool.jsonl`) and its answer key (`nli.pool.truth.jsonl`).

The NLI files `nli.{dev,test}.{lang}.jsonl` are hand-written and edited in place; this script only
derives the pool from the *dev* files plus the hand-written noise below, so the test set never leaks
into it. Deterministic: one seeded `random.Random`, no `hash()`, sorted inputs. (`make demo` uses the
topic set and its pool `pool.jsonl`, built by tools/make_demo_topic.py.) Run from anywhere:

    .venv/bin/python tools/make_demo_data.py          # rewrite the two pool files
    .venv/bin/python tools/make_demo_data.py --check  # exit 1 if the committed files are stale
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
LABELS = ("entailment", "neutral", "contradiction")
SEED = 20240611

# Text in another language under a declared code. kind = the text's real language; "mixed_xx" = only
# the hypothesis is in xx. Written for this pool, not taken from any corpus.
WRONG_LANGUAGE: dict[str, list[tuple[str, str, str, str]]] = {
    "en": [
        (
            "nl",
            "De trein naar Utrecht vertrok tien minuten te laat.",
            "De trein was niet op tijd.",
            "entailment",
        ),
        (
            "de",
            "Meine Schwester arbeitet seit zwei Jahren in einer Bäckerei.",
            "Meine Schwester hat keine Arbeit.",
            "contradiction",
        ),
        ("sw", "Mama alienda sokoni asubuhi kununua mboga.", "Mama alinunua nyanya.", "neutral"),
        ("id", "Kami makan malam di rumah nenek setiap hari Minggu.", "Nenek memasak untuk kami.", "neutral"),
        ("es", "Mi primo vive en Valencia desde hace tres años.", "Mi primo vive en España.", "entailment"),
        (
            "fr",
            "Le boulanger ouvre sa boutique à six heures du matin.",
            "La boutique ouvre tôt.",
            "entailment",
        ),
        (
            "mixed_de",
            "The museum opens at nine every morning.",
            "Das Museum ist am Montag geschlossen.",
            "neutral",
        ),
        (
            "pt",
            "O ônibus para o centro passa a cada vinte minutos.",
            "Não há ônibus para o centro.",
            "contradiction",
        ),
        (
            "it",
            "Ieri sera abbiamo mangiato una pizza in centro.",
            "Abbiamo cenato fuori ieri sera.",
            "entailment",
        ),
    ],
    "es": [
        (
            "fr",
            "Mon voisin promène son chien tous les soirs après le dîner.",
            "Mon voisin a un chien.",
            "entailment",
        ),
        (
            "pt",
            "A minha avó faz pão caseiro todos os domingos.",
            "A minha avó nunca cozinha.",
            "contradiction",
        ),
        (
            "it",
            "Il negozio di scarpe chiude alle sette e mezza.",
            "Il negozio è aperto la domenica.",
            "neutral",
        ),
        (
            "de",
            "Wir sind am Wochenende mit dem Zug nach Hamburg gefahren.",
            "Wir waren am Wochenende unterwegs.",
            "entailment",
        ),
        ("en", "The children built a snowman in the garden.", "It was snowing that day.", "neutral"),
        (
            "ca",
            "La meva germana estudia medicina a Barcelona.",
            "La meva germana és estudiant.",
            "entailment",
        ),
        (
            "mixed_en",
            "Pedro trabaja en una fábrica de coches en Valladolid.",
            "Pedro works in a car factory.",
            "entailment",
        ),
        (
            "fr",
            "Il fait très chaud aujourd'hui, plus de trente degrés.",
            "Il fait froid aujourd'hui.",
            "contradiction",
        ),
        (
            "pt",
            "Ele chegou atrasado ao trabalho por causa do trânsito.",
            "O trânsito estava intenso.",
            "entailment",
        ),
    ],
    "fr": [
        (
            "es",
            "Mi hermano compró una bicicleta nueva la semana pasada.",
            "Mi hermano tiene una bicicleta.",
            "entailment",
        ),
        (
            "it",
            "La nonna prepara il caffè ogni mattina alle sette.",
            "La nonna non beve mai caffè.",
            "contradiction",
        ),
        ("en", "We waited for the bus for almost an hour.", "The bus was late.", "entailment"),
        (
            "de",
            "Das Restaurant am Hafen ist heute Abend ausgebucht.",
            "Das Restaurant ist sehr beliebt.",
            "neutral",
        ),
        (
            "nl",
            "Mijn buurman heeft een nieuwe auto gekocht.",
            "Mijn buurman heeft geen auto.",
            "contradiction",
        ),
        (
            "pt",
            "Os alunos visitaram o museu de ciências na sexta-feira.",
            "Os alunos gostaram da visita.",
            "neutral",
        ),
        ("mixed_en", "Claire a perdu ses lunettes dans le métro.", "Claire lost her glasses.", "entailment"),
        (
            "es",
            "La tienda de la esquina abre los domingos por la mañana.",
            "La tienda cierra todo el fin de semana.",
            "contradiction",
        ),
        (
            "ro",
            "Fratele meu lucrează ca profesor într-un sat mic.",
            "Fratele meu este profesor.",
            "entailment",
        ),
    ],
    "hi": [
        ("hi_latn", "Main kal subah Dilli ke liye train pakdunga.", "Main kal safar karunga.", "entailment"),
        ("hi_latn", "Meri behen ko aam bahut pasand hain.", "Meri behen aam nahi khati.", "contradiction"),
        (
            "hi_latn",
            "Aaj office mein bahut kaam tha, isliye der ho gayi.",
            "Main der se ghar pahuncha.",
            "entailment",
        ),
        (
            "ur",
            "میرا بھائی لاہور میں ایک بینک میں کام کرتا ہے۔",
            "میرا بھائی بینک میں نوکری کرتا ہے۔",
            "entailment",
        ),
        ("mr", "माझी आई रोज सकाळी बाजारात भाजी आणायला जाते.", "माझ्या आईला बाजारात जायला आवडते.", "neutral"),
        ("ne", "मेरो भाइ काठमाडौंमा पढ्छ र हरेक महिना घर आउँछ।", "मेरो भाइ घर कहिल्यै आउँदैन।", "contradiction"),
        (
            "en",
            "The shop near the temple sells flowers and sweets.",
            "You can buy sweets near the temple.",
            "entailment",
        ),
        (
            "mixed_en",
            "रवि हर शाम पार्क में क्रिकेट खेलता है।",
            "Ravi plays cricket in the park every evening.",
            "entailment",
        ),
        ("bn", "আমার দিদি কলকাতায় একটি স্কুলে পড়ান।", "আমার দিদি একজন শিক্ষিকা।", "entailment"),
    ],
    "zh": [
        ("ja", "昨日は雨だったので、家で映画を見ました。", "昨日は家にいました。", "entailment"),
        ("ja", "駅の近くに新しいパン屋ができました。", "そのパン屋はとても人気があります。", "neutral"),
        (
            "ko",
            "우리 가족은 주말마다 공원에 산책하러 갑니다.",
            "우리 가족은 공원에 가지 않습니다.",
            "contradiction",
        ),
        ("en", "My uncle runs a small noodle shop in Chengdu.", "My uncle owns a restaurant.", "entailment"),
        (
            "en",
            "The flight to Shanghai was delayed by two hours.",
            "The flight left on time.",
            "contradiction",
        ),
        ("mixed_en", "小王每天早上七点去跑步。", "Xiao Wang goes running every morning.", "entailment"),
        ("ja", "妹は毎朝バスで学校に行きます。", "妹は学校まで歩きます。", "contradiction"),
        ("vi", "Mẹ tôi nấu phở vào mỗi sáng Chủ nhật.", "Mẹ tôi biết nấu ăn.", "entailment"),
        ("zh_latn", "Wo mama zai yiyuan gongzuo.", "Wo mama shi hushi.", "neutral"),
    ],
}

# One-word edits of a dev premise that keep its meaning, so the label stays right (near duplicates).
WORD_EDITS: dict[str, list[tuple[str, str, str]]] = {
    "en": [
        ("en-dev-001-2", "the station", "the platform"),
        ("en-dev-009-3", "about", "roughly"),
        ("en-dev-018-1", "walked", "strolled"),
        ("en-dev-019-2", "came to", "attended"),
    ],
    "es": [
        ("es-dev-001-2", "tren a", "tren hacia"),
        ("es-dev-009-3", "El autobús", "El bus"),
        ("es-dev-018-1", "andando", "caminando"),
        ("es-dev-022-2", "desde la", "desde su"),
    ],
    "fr": [
        ("fr-dev-001-2", "pour Madrid", "vers Madrid"),
        ("fr-dev-009-3", "met", "prend"),
        ("fr-dev-018-1", "chien", "chiot"),
        ("fr-dev-022-2", "l'adolescence", "son adolescence"),
    ],
    "hi": [
        ("hi-dev-001-2", "ट्रेन", "रेलगाड़ी"),
        ("hi-dev-009-3", "लगभग", "करीब"),
        ("hi-dev-018-1", "से पहले", "के पहले"),
        ("hi-dev-019-2", "लोग आए", "लोग पहुँचे"),
    ],
    "zh": [
        ("zh-dev-001-2", "火车", "列车"),
        ("zh-dev-009-3", "大约", "差不多"),
        ("zh-dev-018-1", "走路", "步行"),
        ("zh-dev-019-2", "参加了", "出席了"),
    ],
}

# Per-language junk text (premise, hypothesis).
KEYBOARD_MASH = {
    "en": ("qwerty asdfgh zxcvbn qwerty", "hjkl hjkl asdf lkj"),
    "es": ("ñlkjh asdfñ qwertyuiop ñññ", "asdasd ñlñlñl"),
    "fr": ("azerty azerty qsdfgh wxcvbn", "aaaaazzzzz eeee"),
    "hi": ("कककक खखखख गगगग", "ऽऽऽ ्््् ाााा"),
    "zh": ("的的的的的的的的的", "asdfasdf 啊啊啊啊"),
}
BOILERPLATE = {
    "en": (
        "Home | About us | Contact | Privacy policy | © 2024 All rights reserved",
        "Click here to subscribe to our newsletter",
    ),
    "es": (
        "Inicio | Quiénes somos | Contacto | Política de privacidad | © 2024",
        "Haz clic aquí para suscribirte a nuestro boletín",
    ),
    "fr": (
        "Accueil | Qui sommes-nous | Contact | Mentions légales | © 2024",
        "Cliquez ici pour vous abonner à notre lettre d'information",
    ),
    "hi": ("होम | हमारे बारे में | संपर्क करें | गोपनीयता नीति | © 2024", "हमारे न्यूज़लेटर की सदस्यता के लिए यहाँ क्लिक करें"),
    "zh": ("首页 | 关于我们 | 联系我们 | 隐私政策 | 版权所有 © 2024", "点击这里订阅我们的新闻邮件"),
}
HTML_ANCHOR = {"en": "Home", "es": "Inicio", "fr": "Accueil", "hi": "होम", "zh": "首页"}
REPEATED_MIN_CHARS = 4500  # above the curation design's 4000-character bound


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _text(record: dict, premise: str, hypothesis: str, label: str | None = None) -> dict:
    return {
        "lang": record["lang"],
        "premise": premise,
        "hypothesis": hypothesis,
        "label": label or record["label"],
    }


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


def _format_variant(kind: str, record: dict) -> dict | None:
    """Same text up to case, punctuation, white space or Unicode form; None if `kind` changes nothing."""
    premise, hypothesis = record["premise"], record["hypothesis"]
    if kind == "punct_halfwidth":
        halfwidth = str.maketrans({"，": ",", "。": ".", "、": ","})
        premise, hypothesis = premise.translate(halfwidth), hypothesis.translate(halfwidth)
    elif kind == "punct_removed":
        premise, hypothesis = premise.rstrip("。.!?।"), hypothesis.rstrip("。.!?।")
    elif kind == "punct_changed":
        premise = premise[:-1] + "！" if premise.endswith("。") else premise
    elif kind == "whitespace":
        premise, hypothesis = "\u3000" + premise + " ", hypothesis + "\t"
        if " " in record["premise"]:
            premise = "  " + record["premise"].replace(" ", "  ", 2) + " "
    elif kind == "danda_to_period":
        premise, hypothesis = premise.replace("।", "."), hypothesis.replace("।", ".")
    elif kind == "precomposed_nukta":  # U+095B etc. are NFC-excluded: NFC maps them back to the pair
        for pair, single in NUKTA_PRECOMPOSED.items():
            premise = premise.replace(pair, single)
    elif kind == "uppercase":
        premise, hypothesis = premise.upper(), hypothesis.upper()
    elif kind == "lowercase_nfd":
        premise = unicodedata.normalize("NFD", premise.lower())
    if (premise, hypothesis) == (record["premise"], record["hypothesis"]):
        return None
    return _text(record, premise, hypothesis)


def _junk(lang: str, rng: random.Random, clean: list[dict]) -> list[tuple[str, dict]]:
    def shuffled(text: str) -> str:
        chars = list(text)
        rng.shuffle(chars)
        return "".join(chars)

    def first_token(text: str) -> str:
        return text[:2] if lang == "zh" else text.split()[0]

    picks = rng.sample(clean, 4)
    repeated = picks[2]["premise"]
    repeated = " ".join([repeated] * (REPEATED_MIN_CHARS // len(repeated) + 1))
    anchor = HTML_ANCHOR[lang]
    return [
        ("shuffled_chars", _text(picks[0], shuffled(picks[0]["premise"]), shuffled(picks[0]["hypothesis"]))),
        ("shuffled_chars", _text(picks[1], shuffled(picks[1]["premise"]), shuffled(picks[1]["hypothesis"]))),
        ("keyboard_mash", _text(picks[0], *KEYBOARD_MASH[lang], label=rng.choice(LABELS))),
        ("boilerplate", _text(picks[0], *BOILERPLATE[lang], label=rng.choice(LABELS))),
        (
            "url",
            _text(
                picks[0],
                f"https://www.example.com/{lang}/news/2024/03/article-{rng.randrange(10**5)}?ref=home&utm_source=feed",
                f"www.example.org/login.php?session={rng.randrange(16**8):08x}",
                label=rng.choice(LABELS),
            ),
        ),
        ("truncated", _text(picks[3], first_token(picks[3]["premise"]), first_token(picks[3]["hypothesis"]))),
        (
            "html",
            _text(
                picks[1],
                f'<div class="nav"><a href="/">{anchor}</a> | <a href="/contact">…</a></div>',
                "<p>&nbsp;</p><script>var page = 1;</script>",
                label=rng.choice(LABELS),
            ),
        ),
        ("repeated_text", _text(picks[2], repeated, picks[2]["hypothesis"])),
        (
            "no_letters",
            _text(
                picks[3],
                f"{rng.randrange(10, 24)}:30 — 14:45 | 3/4 | 1000 € | {rng.randrange(10**6):06d}",
                "0800 123 456",
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
        return {"id": record_id, **_text(source, source["premise"], source["hypothesis"]), **changes}

    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    return [
        ("truncated_json", "es", lambda i: dumps(record(es, i))[:70]),
        ("single_quotes", "en", lambda i: str(record(en, i))),
        ("trailing_comma", "zh", lambda i: dumps(record(zh, i))[:-1] + ",}"),
        ("bare_text", None, lambda i: fr["premise"]),
        ("two_objects", "fr", lambda i: dumps(record(fr, i)) + dumps(record(fr, i + "b"))),
        ("json_array", "hi", lambda i: dumps([i, "hi", hi["premise"], hi["hypothesis"], hi["label"]])),
        (
            "missing_field",
            "en",
            lambda i: dumps({k: v for k, v in record(en, i).items() if k != "hypothesis"}),
        ),
        ("unknown_lang", None, lambda i: dumps(record(fr, i, lang="french"))),
        ("wrong_type", "es", lambda i: dumps(record(es, i, premise=42))),
    ]


def _language_items(lang: str, rng: random.Random, clean: list[dict]) -> tuple[list[dict], list[dict]]:
    """(items placed anywhere, duplicates that must follow their original) for one declared language.

    Item: {"cat", "kind", "lang", "record" | "render", "of": original item (duplicates), "source": dev id}.
    """
    by_id = {r["id"]: r for r in clean}
    originals = {
        r["id"]: {
            "cat": "clean",
            "kind": "dev_pair",
            "lang": lang,
            "source": r["id"],
            "record": _text(r, r["premise"], r["hypothesis"]),
        }
        for r in clean
    }
    base = list(originals.values())
    for kind, premise, hypothesis, label in WRONG_LANGUAGE[lang]:
        base.append(
            {
                "cat": "wrong_lang",
                "kind": kind,
                "lang": lang,
                "record": {"lang": lang, "premise": premise, "hypothesis": hypothesis, "label": label},
            }
        )
    for kind, record in _junk(lang, rng, clean):
        base.append({"cat": "junk", "kind": kind, "lang": lang, "record": record})
    blanks = rng.sample(clean, 3)
    for kind, (premise, hypothesis) in zip(
        ("empty_premise", "blank_hypothesis", "both_empty"),
        (("", blanks[0]["hypothesis"]), (blanks[1]["premise"], "   "), ("", "")),
        strict=True,
    ):
        base.append(
            {"cat": "empty", "kind": kind, "lang": lang, "record": _text(blanks[2], premise, hypothesis)}
        )

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
        if source["premise"].count(old) != 1:
            raise ValueError(f"word edit {old!r} must occur once in {record_id}: {source['premise']!r}")
        dups.append(
            {
                "cat": "near_dup",
                "kind": "word_edit",
                "lang": lang,
                "of": originals[record_id],
                "record": _text(source, source["premise"].replace(old, new), source["hypothesis"]),
            }
        )
    return base, dups


def build_pool() -> tuple[list[str], list[dict]]:
    """Return (pool lines, truth rows); line numbers in the truth file are 1-based."""
    rng = random.Random(SEED)
    clean_by_lang = {lang: read_jsonl(DEMO_DIR / f"nli.dev.{lang}.jsonl") for lang in LANGUAGES}
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
        DEMO_DIR / "nli.pool.jsonl": "".join(line + "\n" for line in lines),
        DEMO_DIR / "nli.pool.truth.jsonl": "".join(json.dumps(row) + "\n" for row in truth),
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

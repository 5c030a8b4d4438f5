"""One language-code normaliser: whatever the pool declares (BCP-47, ISO 639-3, FLORES names) maps
once onto the lid.176 code set, so detectors and declared languages always speak the same codes.

datatrove#365 ("French sentence not detected") was `fra` vs the model's `fr` (datatrove#388); that
class of bug cannot happen when the code is normalised once, here.
"""

from __future__ import annotations

# The 176 labels of fastText lid.176 (tests check this against the bundled model).
LID176_CODES = frozenset(
    """af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb
    co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi
    hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo
    lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or
    os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta
    te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo yue zh""".split()
)

# ISO 639-3 / 639-2 / macrolanguage members -> the lid.176 code (only where they differ).
_ALIASES = {
    "eng": "en",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "spa": "es",
    "hin": "hi",
    "swa": "sw",
    "swh": "sw",
    "ara": "ar",
    "arb": "ar",
    "deu": "de",
    "ger": "de",
    "fra": "fr",
    "fre": "fr",
    "rus": "ru",
    "tha": "th",
    "vie": "vi",
    "tur": "tr",
    "urd": "ur",
    "bul": "bg",
    "ell": "el",
    "gre": "el",
    "jpn": "ja",
    "kor": "ko",
    "por": "pt",
    "ita": "it",
    "ind": "id",
    "ben": "bn",
    "tam": "ta",
    "tel": "te",
    "fas": "fa",
    "per": "fa",
    "pes": "fa",
    "pol": "pl",
    "nld": "nl",
    "dut": "nl",
    "ukr": "uk",
    "heb": "he",
    "fin": "fi",
    "est": "et",
    "ekk": "et",
    "mar": "mr",
    "nep": "ne",
    "npi": "ne",
    "guj": "gu",
    "pan": "pa",
    "kan": "kn",
    "mal": "ml",
    "ori": "or",
    "ory": "or",
    "sin": "si",
    "mya": "my",
    "bur": "my",
    "khm": "km",
    "lao": "lo",
    "kat": "ka",
    "geo": "ka",
    "hye": "hy",
    "arm": "hy",
    "amh": "am",
    "ces": "cs",
    "cze": "cs",
    "slk": "sk",
    "slo": "sk",
    "ron": "ro",
    "rum": "ro",
    "hun": "hu",
    "swe": "sv",
    "dan": "da",
    "nor": "no",
    "nob": "no",
    "nb": "no",
    "nno": "nn",
    "cat": "ca",
    "eus": "eu",
    "baq": "eu",
    "glg": "gl",
    "hrv": "hr",
    "srp": "sr",
    "bos": "bs",
    "slv": "sl",
    "mkd": "mk",
    "mac": "mk",
    "bel": "be",
    "kaz": "kk",
    "uzb": "uz",
    "uzn": "uz",
    "aze": "az",
    "azj": "az",
    "msa": "ms",
    "may": "ms",
    "zsm": "ms",
    "tgl": "tl",
    "fil": "tl",
    "yue": "yue",
    "wuu": "wuu",
    "lit": "lt",
    "lav": "lv",
    "lvs": "lv",
    "isl": "is",
    "ice": "is",
    "gle": "ga",
    "cym": "cy",
    "wel": "cy",
    "afr": "af",
    "yor": "yo",
    "som": "so",
    "pus": "ps",
    "pbt": "ps",
    "kur": "ku",
    "kmr": "ku",
    "snd": "sd",
    "jav": "jv",
    "sun": "su",
    "mlg": "mg",
    "plt": "mg",
    "tat": "tt",
    "kir": "ky",
    "tgk": "tg",
    "tuk": "tk",
    "uig": "ug",
    "sqi": "sq",
    "alb": "sq",
    "mlt": "mt",
    "epo": "eo",
    "lat": "la",
    "san": "sa",
    "bod": "bo",
    "tib": "bo",
    "mon": "mn",
    "khk": "mn",
    "ydd": "yi",
    "yid": "yi",
    "ltz": "lb",
    "fry": "fy",
    "oci": "oc",
    "bre": "br",
    "cos": "co",
    "hat": "ht",
    "que": "qu",
    "ceb": "ceb",
    "ckb": "ckb",
    "iw": "he",
    "in": "id",
    "ji": "yi",
}

# Extra labels a detector may give that still count as the declared language (summed, §3).
SUPPORT_ALIASES: dict[str, frozenset[str]] = {
    "zh": frozenset({"zh", "wuu", "yue"}),
    "no": frozenset({"no", "nn"}),
}

# Expected script(s) per language for the script gate. Languages absent here skip the gate (flagged).
_SCRIPT_LANGS = {
    "Latin": "af als an ast az bar bcl br bs ca cbk ceb co cs cy da de diq dsb en eo es et eu fi fr frr fy "
    "ga gd gl gn gv hif hr hsb ht hu ia id ie ilo io is it jbo jv ku kw la lb li lmo lt lv mg min ms mt "
    "mwl nah nap nds nl nn no oc pam pfl pl pms pt qu rm ro sc scn sco sh sk sl so sq su sv sw tk tl tr "
    "uz vec vep vi vls vo wa war xmf yo",
    "Cyrillic": "av ba be bg bxr ce cv kk krc kv ky lez mhr mk mn mrj myv os ru rue sah tg tt tyv uk xal",
    "Arabic": "ar arz azb ckb fa lrc mzn pnb ps sd ug ur",
    "Devanagari": "bh dty gom hi mai mr ne new sa",
    "Bengali": "as bn bpy",
    "Greek": "el",
    "Hebrew": "he yi",
    "Thai": "th",
    "Gurmukhi": "pa",
    "Gujarati": "gu",
    "Oriya": "or",
    "Tamil": "ta",
    "Telugu": "te",
    "Kannada": "kn",
    "Malayalam": "ml",
    "Sinhala": "si",
    "Myanmar": "my",
    "Khmer": "km",
    "Lao": "lo",
    "Georgian": "ka",
    "Armenian": "hy",
    "Ethiopic": "am",
    "Tibetan": "bo",
    "Thaana": "dv",
}
EXPECTED_SCRIPTS: dict[str, frozenset[str]] = {
    lang: frozenset({script}) for script, langs in _SCRIPT_LANGS.items() for lang in langs.split()
}
EXPECTED_SCRIPTS.update(
    {
        # Han only, and no Kana or Hangul at all (checked separately): Japanese declared zh is a mismatch.
        "zh": frozenset({"Han"}),
        "wuu": frozenset({"Han"}),
        "yue": frozenset({"Han"}),
        "ja": frozenset({"Han", "Hiragana", "Katakana"}),
        "ko": frozenset({"Hangul", "Han"}),
        "sr": frozenset({"Cyrillic", "Latin"}),
        "sh": frozenset({"Latin", "Cyrillic"}),
    }
)
NO_KANA_OR_HANGUL = frozenset({"zh", "wuu", "yue"})

# Han/Kana-dominant languages: the char LM uses a lower order because the alphabet is large (§5).
DENSE_ALPHABET_LANGS = frozenset({"zh", "wuu", "yue", "ja"})


def normalize_language(code: object) -> str | None:
    """Map a declared language onto the lid.176 code set, or None when it is not a known code.

    Accepts ``en``, ``EN``, ``en-US``, ``zh-Hans-CN``, ``zho_Hans`` (FLORES), ``cmn``, ``zh_Hant``.
    Booleans (YAML's bare ``no``) and non-strings are rejected, never guessed.
    """
    if not isinstance(code, str) or not code.strip():
        return None
    primary = code.strip().replace("_", "-").split("-")[0].lower()
    primary = _ALIASES.get(primary, primary)
    return primary if primary in LID176_CODES else None


def support_labels(lang: str) -> frozenset[str]:
    """Detector labels whose probabilities are summed as support for ``lang``."""
    return SUPPORT_ALIASES.get(lang, frozenset({lang}))


def base_language(tag: str) -> str:
    """The lid.176 code of a language or language-script group: ``hi-Latn`` -> ``hi``, ``hi`` -> ``hi``."""
    return tag.split("-", 1)[0]


def script_tag(lang: str, script: str = "Latn") -> str:
    """The BCP-47 tag of ``lang`` written in ``script`` (ISO 15924 code): ``hi`` -> ``hi-Latn``."""
    return f"{base_language(lang)}-{script}"

"""Language codes as strings: YAML 1.1 reads a bare ``no`` (Norwegian) as ``False``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_CODE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{4})?$")


def _as_language_code(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(
            f"language code read as the boolean {value}: YAML turns a bare no/yes/on/off into a "
            "boolean; quote it, e.g. 'no'"
        )
    if not isinstance(value, str) or not _CODE.match(value):
        raise ValueError(f"expected an ISO 639 code such as 'en', 'zh' or 'zh_Hant', got {value!r}")
    return value


LanguageCode = Annotated[str, BeforeValidator(_as_language_code)]

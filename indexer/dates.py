"""Dates as pages show them ("14. 01. 2020, 13:47", "March 3, 2021 at 5:12 pm") to ISO 8601, where they parse.

dateparser knows the month names and orders of the page languages; relative dates ("vor 8 Stunden", "2 days
ago") are not converted, because "now" at indexing time is not the time the page was saved.
"""

from __future__ import annotations

import re
from datetime import datetime

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?")


def to_iso(shown: str | None, language: str | None = None) -> str | None:
    """ISO 8601 of a shown date (date only when no time is shown), or None when it does not parse."""
    if not shown or not shown.strip():
        return None
    text = " ".join(shown.split())
    if _ISO.fullmatch(text):
        return text.replace(" ", "T")
    import dateparser  # imported here: it is slow to import and only pages with dates need it

    settings = {"PARSERS": ["custom-formats", "absolute-time"], "RETURN_AS_TIMEZONE_AWARE": False}
    languages = [language] if language and len(language) == 2 else None
    try:
        parsed = dateparser.parse(text, languages=languages, settings=settings)  # type: ignore[arg-type]
        if parsed is None and languages is not None:
            parsed = dateparser.parse(text, settings=settings)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError, LookupError, AttributeError):  # odd input: the date is not converted
        return None
    if not isinstance(parsed, datetime) or not 1990 <= parsed.year <= 2100:
        return None
    has_time = bool(re.search(r"\d{1,2}[:.h]\d{2}", text.split(str(parsed.year))[-1])) or bool(
        re.search(r"\d{1,2}:\d{2}", text)
    )
    return parsed.isoformat(timespec="minutes") if has_time else parsed.date().isoformat()

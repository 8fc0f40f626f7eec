"""Dates, normalised to ISO 8601: a document's published date, and the dates pages show on reader comments.

A document's published date comes from a jsonl record or page metadata. Sources name it differently
(``published``, ``publish_date``, ``date``, ``datePublished``, …, at the top of a record or inside its ``metadata``)
and write it differently (``2022/06/12``, ``2022-06-12T09:30:00Z``, ``Sun, 12 Jun 2022 09:30:00 GMT``, epoch
seconds). ``parse_date`` (python-dateutil's parser, not ours) stores it as ``Document.metadata["published"]``:
``YYYY-MM-DD`` when the source gives a day only, else a UTC date-time ``YYYY-MM-DDTHH:MM:SSZ`` (a time without zone
is taken as UTC), so that strings compare in time order and ``published_after``/``published_before`` mean the same
on every document.

Dates as pages show them on comments ("14. 01. 2020, 13:47", "March 3, 2021 at 5:12 pm") go through ``to_iso``:
dateparser knows the month names and orders of the page languages; relative dates ("vor 8 Stunden", "2 days ago")
are not converted, because "now" at indexing time is not the time the page was saved.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from dateutil import parser as date_parser

# Checked in this order, first in the record, then in its metadata: the first one that parses wins.
DATE_FIELDS: tuple[str, ...] = (
    "published",
    "publish_date",
    "published_at",
    "publication_date",
    "date_published",
    "datePublished",
    "pubdate",
    "date",
)
METADATA_KEY = "published"
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_DAY_ONLY = re.compile(r"^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\s*$")
_EPOCH_RANGE = (0, 32503680000)  # 1970 .. 3000: a number outside is not a timestamp in seconds


def parse_date(value: Any) -> str | None:
    """``value`` as ISO 8601 (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SSZ``), or None when it is not a date."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]:
            return None
        return _iso(datetime.fromtimestamp(value, tz=UTC))
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        return None
    text = value.strip()
    if not _YEAR.search(text):
        return None  # "10:30" or "June 5" would be completed with a made-up year
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unknown zone name warns; the time is then taken as UTC
            parsed: datetime = date_parser.parse(text, default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        return None
    if _DAY_ONLY.match(text) or (":" not in text and parsed.hour == parsed.minute == parsed.second == 0):
        return parsed.date().isoformat()
    return _iso(parsed)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_published(record: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> str | None:
    """The published date of a record: its own date fields first, then those of its metadata."""
    for source in (record, metadata or {}):
        for name in DATE_FIELDS:
            found = parse_date(source.get(name))
            if found is not None:
                return found
    return None


def timestamp(iso: str) -> float:
    """Seconds since the epoch of a value ``parse_date`` produced (a day-only date is its start, UTC)."""
    if len(iso) == 10:
        return datetime.combine(date.fromisoformat(iso), datetime.min.time(), tzinfo=UTC).timestamp()
    return datetime.fromisoformat(iso).timestamp()


def parse_bound(value: str, field: str) -> float:
    """A filter bound (``published_after``, ``as_of``, …) as epoch seconds; ValueError naming ``field``."""
    iso = parse_date(value)
    if iso is None:
        raise ValueError(f"{field}: {value!r} is not a date (use ISO 8601, such as 2022-06-16 or 2022-06-16T09:00Z)")
    return timestamp(iso)


# -- dates as pages show them (comments) ---------------------------------------------------------------------------
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
        parsed = dateparser.parse(text, languages=languages, settings=settings)
        if parsed is None and languages is not None:
            parsed = dateparser.parse(text, settings=settings)
    except (ValueError, TypeError, OverflowError, LookupError, AttributeError):  # odd input: the date is not converted
        return None
    if not isinstance(parsed, datetime) or not 1990 <= parsed.year <= 2100:
        return None
    has_time = bool(re.search(r"\d{1,2}[:.h]\d{2}", text.split(str(parsed.year))[-1])) or bool(
        re.search(r"\d{1,2}:\d{2}", text)
    )
    return parsed.isoformat(timespec="minutes") if has_time else parsed.date().isoformat()

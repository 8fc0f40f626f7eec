"""A document's published date: found in a jsonl record or page metadata, normalised to ISO 8601.

Sources name it differently (``published``, ``publish_date``, ``date``, ``datePublished``, …, at the top of a
record or inside its ``metadata``) and write it differently (``2022/06/12``, ``2022-06-12T09:30:00Z``,
``Sun, 12 Jun 2022 09:30:00 GMT``, epoch seconds). Parsing is python-dateutil's, not ours. The result is stored
as ``Document.metadata["published"]``: ``YYYY-MM-DD`` when the source gives a day only, else a UTC date-time
``YYYY-MM-DDTHH:MM:SSZ`` (a time without zone is taken as UTC), so that strings compare in time order and
``published_after``/``published_before`` mean the same on every document.
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
            parsed = date_parser.parse(text, default=datetime(2000, 1, 1))
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

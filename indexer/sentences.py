"""Sentence spans: where sentences start and end, as character offsets into the original text.

Line breaks are hard boundaries: scraped pages put list items, headings and one-line comments on their own lines
without final punctuation, and a sentence splitter would otherwise glue them together. Within a line, blingfire
finds the sentences (it works offline and reports offsets into the text it was given).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import blingfire

_LINE = re.compile(r"[^\n]+")


class Span(NamedTuple):
    start: int
    end: int


def _strip_span(text: str, start: int, end: int) -> Span | None:
    """Shrink [start, end) to exclude surrounding whitespace; None if nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end) if start < end else None


def _offsets_are_sane(offsets: list[tuple[int, int]], length: int) -> bool:
    previous_end = 0
    for start, end in offsets:
        if not (previous_end <= start < end <= length):
            return False
        previous_end = end
    return bool(offsets)


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans of ``text[start:end]``, as offsets into ``text``, in order, never overlapping, stripped."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    for line in _LINE.finditer(text, start, end):
        line_span = _strip_span(text, line.start(), line.end())
        if line_span is None:
            continue
        line_text = text[line_span.start : line_span.end]
        _, offsets = blingfire.text_to_sentences_and_offsets(line_text)
        if not _offsets_are_sane(offsets, len(line_text)):
            # Never trust a splitter over the invariant that spans slice the text: fall back to the whole line.
            spans.append(line_span)
            continue
        for sent_start, sent_end in offsets:
            span = _strip_span(text, line_span.start + sent_start, line_span.start + sent_end)
            if span is not None:
                spans.append(span)
    return spans

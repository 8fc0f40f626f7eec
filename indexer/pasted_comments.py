"""Reader comments in pasted page text (a page copied from the browser, or its visible text).

Without markup, a comment section is recognised by its shape: a header line ("20 thoughts on “…”", "17 Kommentare",
"91 Ergänzungen", "Commentaires", …) *followed by comment-shaped text*: "NAME says:" lines, date lines and
"Reply"/"Antworten" buttons. A line that merely looks like a header (a heading "Response" in the article, a
"2 responses" counter under the byline) starts nothing when no comment-shaped text follows it. Each comment ends at
its "Reply" button (or, where a page prints none, the next "NAME says:" line); the name, date, vote counts and
buttons around it are furniture, not comment text. The header shapes and button words are data (``HEADER_SHAPES``,
``REPLY_WORDS``, ``SAYS_WORDS``), in the languages of the pages we have seen: English, German, French, Spanish.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Comment-section headers, whole line, case-insensitive. {n}: a count in digits or words.
_N = r"(?:\d+|no|one|two|ein|eine|einen|zwei|un|une|deux|uno|una|dos)"
HEADER_SHAPES: tuple[str, ...] = (
    # English
    rf"{_N}\s+(?:comments?|responses?|replies|thoughts?)(?:\s+(?:on|to)\s+.*)?",
    r"there (?:are|is) {n}\s+comments?".replace("{n}", _N),
    r"(?:reader\s+)?comments?(?:\s*\(\d+\))?|discussion|join the discussion|responses",
    # German
    rf"{_N}\s+(?:kommentare?|leserkommentare?|gedanken|antworten|ergänzungen|reaktionen|meinungen)(?:\s+(?:zu|auf)\s+.*)?",
    r"(?:leser)?kommentare?(?:\s*\(\d+\))?|diskussion|ihre meinung",
    # French
    rf"{_N}\s+(?:commentaires?|réponses?|réactions?)(?:\s+(?:à|sur|pour)\s+.*)?",
    r"commentaires?(?:\s*\(\d+\))?|réactions",
    # Spanish
    rf"{_N}\s+(?:comentarios?|respuestas?)(?:\s+(?:a|en|para)\s+.*)?",
    r"comentarios?(?:\s*\(\d+\))?",
)
REPLY_WORDS: tuple[str, ...] = (
    "reply", "log in to reply", "antworten", "antwort", "répondre", "repondre", "responder", "responde",
)  # fmt: skip
SAYS_WORDS: tuple[str, ...] = ("says", "said", "sagt", "schreibt", "meint", "dit", "a écrit", "dice", "dijo", "escribe")
# Lines that end the comment section: the reply form and what follows it.
FORM_SHAPES: tuple[str, ...] = (
    r"leave a (?:reply|comment).*",
    r"(?:schreibe|hinterlasse|verfasse)n?\s+(?:einen|eine)\s+(?:kommentar|antwort).*",
    r"(?:kommentar|antwort) (?:verfassen|schreiben|hinterlassen).*",
    r"laisser un commentaire.*|laisser une réponse.*|ajouter un commentaire.*",
    r"(?:deja|dejar|deje) (?:un|una) (?:comentario|respuesta).*",
    r"your email address will not be published.*|ihre e-mail-adresse wird nicht veröffentlicht.*",
)
PINGBACK = re.compile(r"(?:pingback|trackback)\s*:.*", re.IGNORECASE)
# How far after a header comment-shaped lines must start, and how many of them make a comment section.
LOOKAHEAD_LINES = 8
MIN_MARKERS = 2
MAX_NAME_WORDS = 6

_HEADER = re.compile("|".join(f"(?:{shape})" for shape in HEADER_SHAPES), re.IGNORECASE)
_FORM = re.compile("|".join(f"(?:{shape})" for shape in FORM_SHAPES), re.IGNORECASE)
_REPLY = re.compile(
    r"(?:" + "|".join(re.escape(w) for w in REPLY_WORDS) + r")\s*[↓↑→]?(?:\s*(?:report|melden|signaler))?",
    re.IGNORECASE,
)
_SAYS = re.compile(r"(?P<name>.{1,80}?)\s+(?:" + "|".join(re.escape(w) for w in SAYS_WORDS) + r")\s*:?", re.IGNORECASE)
_MONTHS = (
    r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|januar|februar|märz|mai|juni|juli|oktober|dezember|"
    r"janvier|février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|enero|febrero|marzo|abril|"
    r"mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre"
)
_DATE = re.compile(
    rf"(?:\d{{1,2}}[./-]\s?\d{{1,2}}[./-]\s?\d{{2,4}}|\d{{1,2}}\.?\s+(?:{_MONTHS})[a-zäé]*\.?\s+\d{{4}}|"
    rf"(?:{_MONTHS})[a-zäé]*\.?\s+\d{{1,2}},?\s+\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}}|"
    r"(?:vor|il y a|hace)\s+\d+\s+\w+|\d+\s+(?:minutes?|hours?|days?|weeks?|months?|years?)\s+ago)",
    re.IGNORECASE,
)
_VOTES = re.compile(r"[+-]?\d{1,5}|\d+\s*(?:likes?|votes?|points?)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PastedComment:
    """A comment's text lines ``[first, last]`` (indices into the lines given) and what its header showed."""

    first: int
    last: int
    author: str | None
    date: str | None


@dataclass(frozen=True, slots=True)
class CommentSection:
    header: int  # index of the header line
    end: int  # index after the section (the reply form or the end)
    comments: tuple[PastedComment, ...]
    chrome_lines: int  # lines in the section that are furniture


def is_header(text: str) -> bool:
    return bool(_HEADER.fullmatch(text.strip()))


def _is_reply(text: str) -> bool:
    return bool(_REPLY.fullmatch(text))


def _date_line(text: str) -> bool:
    """A line that is a date (and maybe a time), nothing else of substance."""
    match = _DATE.search(text)
    return match is not None and len(text) <= 60 and len(_DATE.sub("", text).split()) <= 4


def _says(text: str) -> re.Match[str] | None:
    match = _SAYS.fullmatch(text)
    if match and len(match.group("name").split()) <= MAX_NAME_WORDS:
        return match
    return None


def _name_date(text: str) -> tuple[str, str] | None:
    """ "photobix 11. Dezember 2012 um 11:07": a short name followed by a date on one line."""
    match = _DATE.search(text)
    if match is None or len(text) > 90:
        return None
    name = text[: match.start()].strip(" ,|-–—")
    name = re.sub(r"\s*(?:autor|author|auteur|autor)$", "", name, flags=re.IGNORECASE).strip()
    if 0 < len(name.split()) <= MAX_NAME_WORDS and len(text[match.end() :].split()) <= 4:
        return name, text[match.start() :].strip()
    return None


def _marker(text: str) -> bool:
    return _is_reply(text) or _says(text) is not None or _name_date(text) is not None


def find_section(lines: Sequence[str], lo: int = 0) -> CommentSection | None:
    """The comment section of ``lines[lo:]``: the first header followed by comment-shaped text, or None."""
    for h in range(lo, len(lines)):
        if not is_header(lines[h]):
            continue
        window = lines[h + 1 : h + 1 + LOOKAHEAD_LINES]
        if not any(_says(t) or _name_date(t) or _date_line(t) for t in window):
            continue  # a heading or a counter, not the start of the comments
        end = next((i for i in range(h + 1, len(lines)) if _FORM.fullmatch(lines[i])), len(lines))
        markers = sum(1 for t in lines[h + 1 : end] if _marker(t))
        if markers < MIN_MARKERS:
            continue
        section = _split(lines, h, end)
        if section.comments:
            return section
    return None


def _split(lines: Sequence[str], header: int, end: int) -> CommentSection:
    """Cut ``lines[header+1:end]`` into comments at their name lines and "Reply" buttons."""
    has_reply = sum(1 for t in lines[header + 1 : end] if _is_reply(t)) >= MIN_MARKERS
    comments: list[PastedComment] = []
    chrome = 1  # the header
    i = header + 1
    while i < end:
        author = date = None
        # The comment's head: "NAME says:", "NAME DATE", a bare name before a date line, date lines.
        while i < end:
            t = lines[i]
            says = _says(t)
            nd = _name_date(t)
            if says is not None and author is None:
                author = says.group("name").strip()
            elif nd is not None and author is None:
                author, date = nd
            elif _date_line(t) and date is None:
                date = t.strip()
            elif (
                author is None
                and i + 1 < end
                and len(t.split()) <= MAX_NAME_WORDS
                and (_date_line(lines[i + 1]) or _says(lines[i + 1]))
                and not t.rstrip().endswith((".", "!", "?"))
            ):
                author = t.strip()
            elif PINGBACK.fullmatch(t) or _is_reply(t):
                pass
            else:
                break
            chrome += 1
            i += 1
        start = i
        # The comment's text: up to its "Reply" button, or up to the next head where the page prints none.
        while i < end and not _is_reply(lines[i]):
            if i > start and not has_reply and (_says(lines[i]) or _name_date(lines[i])):
                break
            if PINGBACK.fullmatch(lines[i]):
                break
            i += 1
        stop = i
        while stop > start and _VOTES.fullmatch(lines[stop - 1]):
            stop -= 1  # vote counts just above the button
            chrome += 1
        if stop > start and not PINGBACK.fullmatch(lines[start]):
            comments.append(PastedComment(start, stop - 1, author, date))
        elif stop > start:
            chrome += stop - start
        if i < end and PINGBACK.fullmatch(lines[i]):
            chrome += 1
            i += 1
            while i < end and not _is_reply(lines[i]) and not _marker(lines[i]):
                chrome += 1
                i += 1
    return CommentSection(header, end, tuple(comments), chrome)

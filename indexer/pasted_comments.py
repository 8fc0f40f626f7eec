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
    rf"{_N}\s*(?:comments?|responses?|replies|thoughts?)(?:\s+(?:on|to)\s+.*)?",
    r"there (?:are|is) {n}\s+comments?".replace("{n}", _N),
    r"(?:reader\s+)?comments(?:\s*\(\d+\))?|discussions?|join the discussion|responses|all (?:replies|comments)",
    r"[{(\[]?\s*{n}\s*(?:comments?|responses?)\b.{0,60}?[})\]]?".replace("{n}", _N),
    r"(?:your|ihre|vos|tus|sus)\s+(?:comments|kommentare|réactions|commentaires|comentarios|reacciones)",
    # A header with the invitation to write on the same line: "Kommentare Schreibe einen Kommentar".
    (
        r"(?:comments|kommentare|commentaires|comentarios)\s+(?:schreibe|leave|add|hinterlasse|verfasse|écrire|"
        r"laisser|ajouter|deja|dejar|escribe)\b.{0,40}"
    ),
    # German
    rf"{_N}\s*(?:kommentare?|leser-?kommentare?|gedanken|antworten|ergänzungen|reaktionen|meinungen)(?:\s+(?:zu|auf)\s+.*)?",
    r"(?:leser-?)?kommentare(?:\s*\(\d+\))?|diskussion|ihre meinung",
    # French
    rf"{_N}\s+(?:commentaires?|réponses?|réactions?)(?:\s+(?:à|sur|pour)\s+.*)?",
    r"commentaires(?:\s*\(\d+\))?|réactions",
    # Spanish
    rf"{_N}\s+(?:comentarios?|respuestas?)(?:\s+(?:a|en|para)\s+.*)?",
    r"comentarios(?:\s*\(\d+\))?|se han publicado\s+{n}\s+comentarios?|{n}\s+comentarios?\b.{0,60}".replace("{n}", _N),
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
    # A sidebar of other articles' comments starts: it is not this page's comment list.
    r"(?:recent|latest|neueste|aktuelle|letzte|derniers|últimos)\s+(?:comments|kommentare|commentaires|comentarios)",
    r"comentarios recientes|commentaires récents",
)
_PINGBACK_EXCERPT = re.compile(r"\[(?:…|\.\.\.)\]")  # a pingback quotes the linking post: "[…] text […]"
PINGBACK = re.compile(r"(?:pingback|trackback)\s*:.*", re.IGNORECASE)
# How far after a header comment-shaped lines must start, and how many of them make a comment section.
LOOKAHEAD_LINES = 8
MIN_MARKERS = 2
MAX_NAME_WORDS = 6
MIN_HEADERLESS_REPLIES = 3
LOOKBACK_LINES = 40

_HEADER = re.compile("|".join(f"(?:{shape})" for shape in HEADER_SHAPES), re.IGNORECASE)
_FORM = re.compile("|".join(f"(?:{shape})" for shape in FORM_SHAPES), re.IGNORECASE)
_REPLY = re.compile(
    r"(?:\d+\s*)*[\[(/]?\s*(?:"
    + "|".join(re.escape(w) for w in REPLY_WORDS)
    + r")\s*[↓↑→]?\s*[\])]?(?:\s*(?:report|melden|signaler))?",
    re.IGNORECASE,
)
_SAYS = re.compile(r"(?P<name>.{1,80}?)\s+(?:" + "|".join(re.escape(w) for w in SAYS_WORDS) + r")\s*:?", re.IGNORECASE)
_MONTHS = (
    r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|januar|februar|märz|mai|juni|juli|oktober|dezember|"
    r"janvier|février|mars|avril|juin|juillet|août|septembre|octobre|novembre|décembre|enero|febrero|marzo|abril|"
    r"mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre"
)
_DATE = re.compile(
    rf"(?:\d{{1,2}}[./-]\s?\d{{1,2}}[./,-]\s?\d{{2,4}}|\d{{1,2}}\.?\s+(?:{_MONTHS})[a-zäé]*\.?\s+\d{{4}}|"
    rf"(?:{_MONTHS})[a-zäé]*\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:\d{{4}}|at\s+\d{{1,2}}:\d{{2}})|\d{{4}}-\d{{2}}-\d{{2}}|"
    r"(?:vor|il y a|hace)\s+\d+\s+\w+|\d+\s+(?:minutes?|hours?|days?|weeks?|months?|years?)\s+ago)",
    re.IGNORECASE,
)
_REPLY_TAIL = re.compile(
    r"\s*[-–|/]?\s*(?:" + "|".join(re.escape(w) for w in REPLY_WORDS) + r")\s*[↓↑→]?\s*$", re.IGNORECASE
)
_BY = re.compile(
    r"^(?:comment by|kommentar von|posted by|geschrieben von|written by|écrit par|von|by|par|por)\s+", re.IGNORECASE
)
_AT = re.compile(r"\s+(?:am|on|at|le|el|um)$", re.IGNORECASE)
_BOX_FURNITURE = re.compile(
    r"(?:like|liked|likeliked|gefällt mir|j'aime|me gusta)(?:\s*(?:liked\s*)?by \d+ (?:people|person))?|"
    r"report|melden|signaler|denunciar|share|teilen|partager|compartir|zitieren|quote|permalink|"
    r"(?:liked|gefällt) (?:by )?\d+ .{0,20}|"
    # Buttons of comment systems' menus: "Edit", "Delete", "Flag", "Hide", "Follow NAME", "Share to Facebook", …
    r"edit|delete|löschen|bearbeiten|supprimer|modifier|invite(?: manually)?|hide|flag|unflag|flagged|dismiss\w*|"
    r"x?dismissx?undismiss|(?:un)?follow(?: \S+)?(?: for .{1,40})?|block(?: for .{1,40})?|share to \w+|"
    r"go to permalink|profilefollowunfollow|profile",
    re.IGNORECASE,
)
# Words that lead into a date and are not a name.
_DATE_WORDS = re.compile(
    r"(?:(?:le|la|el|am|um|on|at|the|den|der|vom|du|del|posted|publié|publicado|veröffentlicht|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|montag|dienstag|mittwoch|donnerstag|freitag|samstag|"
    r"sonntag|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|lunes|martes|miércoles|jueves|viernes|sábado|"
    r"domingo)[,.]?\s*)+",
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
    parent: int | None = None  # index (in the section's comments) of the comment this one quotes


@dataclass(frozen=True, slots=True)
class CommentSection:
    header: int  # index of the header line
    end: int  # index after the section (the reply form or the end)
    comments: tuple[PastedComment, ...]
    chrome_lines: int  # lines in the section that are furniture
    header_line: bool = True  # False: no header line; ``header`` is the article's last line


def is_header(text: str) -> bool:
    return bool(_HEADER.fullmatch(text.strip()))


def _is_reply(text: str) -> bool:
    return bool(_REPLY.fullmatch(text))


def _date_line(text: str) -> bool:
    """A line that is a date (and maybe a time and a "Reply" button), nothing else of substance."""
    text = _REPLY_TAIL.sub("", text)
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
    if _DATE_WORDS.fullmatch(name):
        return None  # "Le 11 septembre 2018", "am 3. Mai": a date line, no name on it
    if 0 < len(name.split()) <= MAX_NAME_WORDS and len(text[match.end() :].split()) <= 4:
        return name, text[match.start() :].strip()
    return None


def is_date_line(text: str) -> bool:
    return _date_line(text)


def _marker(text: str) -> bool:
    return _is_reply(text) or _says(text) is not None or _name_date(text) is not None or _date_line(text)


def _furniture(text: str) -> bool:
    """Buttons and counters of a comment box: "Like", "Liked by 21 people", "Report", "Share", …"""
    return bool(_BOX_FURNITURE.fullmatch(text))


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
            return CommentSection(
                section.header, section.end, with_quoted_parents(lines, section.comments), section.chrome_lines
            )
    return _headerless(lines, lo)


def _headerless(lines: Sequence[str], lo: int) -> CommentSection | None:
    """A comment list without a header (the page's only header is a counter under the byline): at least
    ``MIN_HEADERLESS_REPLIES`` "Reply" buttons, the first with a date line just before it. The section then starts
    at the name line before that date; the line before stays article text."""
    replies = [i for i in range(lo, len(lines)) if _is_reply(lines[i])]
    if len(replies) < MIN_HEADERLESS_REPLIES:
        return None
    first = replies[0]
    dates = [i for i in range(max(lo, first - LOOKBACK_LINES), first) if _date_line(lines[i])]
    if not dates:
        return None
    start = dates[0] - 1 if dates[0] - 1 >= lo and _name_line(lines[dates[0] - 1]) else dates[0]
    end = next((i for i in range(start, len(lines)) if _FORM.fullmatch(lines[i])), len(lines))
    section = _split(lines, start - 1, end)
    if len(section.comments) < MIN_MARKERS:
        return None
    comments = with_quoted_parents(lines, section.comments)
    return CommentSection(start - 1, end, comments, section.chrome_lines - 1, header_line=False)


def _name_line(text: str) -> bool:
    """A line that can be a commenter's name: a few words, not a sentence, not a date."""
    words = text.split()
    return (
        0 < len(words) <= MAX_NAME_WORDS
        and not text.rstrip().endswith((".", "!", "?", ",", ";"))
        and not (_date_line(text))
    )


def _split(lines: Sequence[str], header: int, end: int) -> CommentSection:
    """Cut ``lines[header+1:end]`` into comments: the text between the *head blocks* of consecutive comments.

    A head block is a run of furniture lines: "NAME says:", "NAME DATE", date lines, "Reply" buttons and pingback
    lines, plus the name line and running number just above a date and the vote count just above a button. Whether
    a page prints its "Reply" button after the text or before it, the text lies between two head blocks.
    """
    head = [False] * len(lines)
    for i in range(header + 1, end):
        t = lines[i]
        # "NAME said:" right after a comment's date opens a quote of that comment (forums): it is comment text.
        quote = _says(t) is not None and i - 1 > header and _date_line(lines[i - 1])
        head[i] = not quote and bool(
            _says(t) or _name_date(t) or _date_line(t) or _is_reply(t) or PINGBACK.fullmatch(t) or _furniture(t)
        )
    for i in range(header + 1, end):
        t = lines[i]
        if _is_reply(t) and i - 1 > header and _VOTES.fullmatch(lines[i - 1]):
            head[i - 1] = True
        if _furniture(t) and i - 1 > header and not head[i - 1] and _name_line(lines[i - 1]):
            head[i - 1] = True  # the name above a comment's menu buttons
        if (_date_line(t) or _says(t)) and not _is_reply(t):
            j = i - 1
            if j > header and not head[j] and _name_line(lines[j]):
                head[j] = True
                j -= 1
            if j > header and not head[j] and _VOTES.fullmatch(lines[j]):
                head[j] = True
    # Runs of non-head lines are comment texts; the head block in front of each names it.
    reply_after_text = sum(1 for i in range(header + 2, end) if _is_reply(lines[i]) and not head[i - 1]) > sum(
        1 for i in range(header + 2, end) if _is_reply(lines[i]) and head[i - 1]
    )
    runs: list[tuple[int, int]] = []  # [start, stop) of each text run
    i = header + 1
    while i < end:
        if head[i]:
            i += 1
            continue
        start = i
        while i < end and not head[i]:
            i += 1
        runs.append((start, i))
    first_head = next((k for k in range(header + 1, end) if head[k]), end)
    if runs and runs[0][0] < first_head and not any(_says(lines[k]) for k in range(header + 1, end)):
        first = lines[runs[0][0] : runs[0][1]]
        words = sum(len(t.split()) for t in first)
        if words >= 12 or first[-1].rstrip().endswith((".", "!", "?", "…")):
            return _split_head_after(lines, header, end, head, runs)
    comments: list[PastedComment] = []
    chrome = 1 + sum(head[header + 1 : end])
    block_start = header + 1  # each text run's head block: the lines since the previous run
    for start, stop in runs:
        block = lines[block_start:start]
        if (
            not any(head[k] for k in range(block_start, start))
            or any(PINGBACK.fullmatch(t) for t in block[-1:])
            or _PINGBACK_EXCERPT.match(lines[start])
        ):
            chrome += stop - start  # text before the first head, or a pingback's excerpt
        elif reply_after_text and stop >= end:
            chrome += stop - start  # after the last comment's button: the form and the footer
        else:
            author, date = _who(block)
            comments.append(PastedComment(start, stop - 1, author, date))
        block_start = stop
    return CommentSection(header, end, tuple(comments), chrome)


def with_quoted_parents(lines: Sequence[str], comments: Sequence[PastedComment]) -> tuple[PastedComment, ...]:
    """A comment that opens by quoting "NAME said:" replies to NAME's latest comment before it (forum style). An
    "@name" opening is not taken for a reply: it names someone, it does not say which comment."""
    out: list[PastedComment] = []
    for n, comment in enumerate(comments):
        quoted = _says(lines[comment.first])
        parent = None
        if quoted is not None:
            name = quoted.group("name").strip().casefold()
            parent = next((k for k in range(n - 1, -1, -1) if (comments[k].author or "").casefold() == name), None)
        out.append(PastedComment(comment.first, comment.last, comment.author, comment.date, parent))
    return tuple(out)


def _split_head_after(
    lines: Sequence[str], header: int, end: int, head: list[bool], runs: list[tuple[int, int]]
) -> CommentSection:
    """The layout where each comment's name and date follow its text ("… text / Comment by NAME — DATE")."""
    comments: list[PastedComment] = []
    chrome = 1 + sum(head[header + 1 : end])
    for start, stop in runs:
        block_stop = stop
        while block_stop < end and head[block_stop]:
            block_stop += 1
        if block_stop == stop:
            chrome += stop - start  # no name or date after it: the form or the footer after the last comment
            continue
        author, date = _who(lines[stop:block_stop])
        comments.append(PastedComment(start, stop - 1, author, date))
    return CommentSection(header, end, tuple(comments), chrome)


def _who(block: Sequence[str]) -> tuple[str | None, str | None]:
    """Name and date shown in a comment's head block."""
    author = date = None
    for k, t in enumerate(block):
        says, nd = _says(t), _name_date(t)
        if says is not None and author is None:
            author = says.group("name").strip()
        elif nd is not None and author is None:
            author, date = _AT.sub("", _BY.sub("", nd[0])).strip(), nd[1]
        elif _date_line(t) and date is None:
            date = _REPLY_TAIL.sub("", t).strip()
            if author is None and k > 0 and _name_line(block[k - 1]) and not _is_reply(block[k - 1]):
                author = block[k - 1].strip()
    return author, date

"""Page structure: the headline, article body, author bio and numbered reader comments of a page's text.

News pages saved as text (seeds/003_… is one) carry a site's furniture around the article: a headline marker, the
author box (name, bio, "Latest posts by … (see all)", often printed twice), an "N Comments" header, a numbered
comment list and the reply form. An HTML extractor (trafilatura, used by the loaders for .html) cannot help once the
markup is gone, so the structure is read from the shape of the lines instead, never from one site's wording:

- the headline is the line after a headline marker line;
- the comment list is what follows a comments header, cut into comments at its list numbers ("  1. ", "  2. ", …);
- the author bio is a long paragraph the page prints more than once (kept once), or failing that the paragraph
  before "Latest posts by NAME (see all)" that names the author, and only the author box may follow it (so a pull
  quote the article repeats is not taken for a bio);
- lines that are only page chrome (``CHROME_LINES``) are never inside a unit, and ``END_OF_CONTENT`` ends the page.

Every unit is a span into the unchanged text, stripped of surrounding whitespace, so citations stay exact. A page
without this structure (seeds/000_…) is one article unit.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.bios import byline_in, named_bio
from indexer.dates import to_iso
from indexer.documents import Section, Unit
from indexer.pasted_comments import PastedComment, find_section, is_date_line, is_header
from indexer.sentences import sentence_spans

MAX_TITLE_CHARS = 120
# A line this long that occurs twice is a repeated paragraph (the author box), not a coincidence.
MIN_PARAGRAPH_WORDS = 12
# Lines this short just before the bio are the author box's name lines, not the end of the article.
MAX_BYLINE_WORDS = 6

# All patterns are matched against a whole line with surrounding whitespace removed (``fullmatch``).
HEADLINE_MARKER = re.compile(r"(?:news\s*)?headline:?", re.IGNORECASE)
COMMENTS_HEADER = re.compile(r"(?:(?:\d+|no|one)\s+)?(?:comments?|responses?|replies)", re.IGNORECASE)
AUTHOR_LINE = re.compile(r"latest posts by\s+(?P<name>.+?)\s*\(see all\)", re.IGNORECASE)
# A comment's list number at the start of its first line; the number is numbering, not comment text.
COMMENT_NUMBER = re.compile(r"(?P<no>\d{1,4})[.)](?:\s+|$)")

# Page chrome: furniture of WordPress-style news sites that is never content. Generic phrases only, so that a page
# from another site loses its buttons and forms but never a sentence of its article.
END_OF_CONTENT: tuple[re.Pattern[str], ...] = (
    re.compile(r"leave a (?:reply|comment)(?: cancel reply)?", re.IGNORECASE),  # the reply form follows
    re.compile(r"your email address will not be published\..*", re.IGNORECASE),
    re.compile(r"back to top(?: button)?", re.IGNORECASE),
)
CHROME_LINES: tuple[re.Pattern[str], ...] = (
    *END_OF_CONTENT,
    HEADLINE_MARKER,
    COMMENTS_HEADER,
    AUTHOR_LINE,
    re.compile(r"required fields are marked \*?", re.IGNORECASE),
    re.compile(
        r"(?:share|share this(?: article| story)?|tweet|print|email|reply|cancel reply|log in to reply):?",
        re.IGNORECASE,
    ),
    re.compile(
        r"(?:share on )?(?:facebook|twitter|x|linkedin|whatsapp|telegram|reddit|pinterest|tumblr|vk)", re.IGNORECASE
    ),
    re.compile(r"(?:related (?:articles|posts|stories)|read more|advertisement):?", re.IGNORECASE),
)


@dataclass(frozen=True, slots=True)
class ParsedPage:
    title: str
    units: tuple[Unit, ...]
    chrome_chars: int = 0  # characters of non-blank lines that are in no unit (menus, buttons, forms)
    title_guessed: bool = False  # the title is a guess (no given title, no marked headline): for display only


@dataclass(frozen=True, slots=True)
class _Line:
    """One non-blank line: its span without surrounding whitespace, its indent and whether a blank line precedes it."""

    start: int
    end: int
    indent: int
    text: str
    after_blank: bool


def _lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    offset, blank = 0, True
    for raw in text.split("\n"):
        stripped = raw.strip()  # str.strip and str.isspace agree, so spans are stripped like sentence spans
        if stripped:
            indent = len(raw) - len(raw.lstrip())
            lines.append(_Line(offset + indent, offset + indent + len(stripped), indent, stripped, blank))
        blank = not stripped
        offset += len(raw) + 1
    return lines


def _matches(line: _Line, patterns: Sequence[re.Pattern[str]]) -> bool:
    return any(pattern.fullmatch(line.text) for pattern in patterns)


def _first(lines: list[_Line], lo: int, hi: int, patterns: Sequence[re.Pattern[str]]) -> int | None:
    return next((i for i in range(lo, hi) if _matches(lines[i], patterns)), None)


def _words(line: _Line) -> int:
    return len(line.text.split())


def _runs(lines: Sequence[_Line], section: Section, split_at: frozenset[int] = frozenset()) -> list[Unit]:
    """Runs of consecutive non-chrome lines, one unit each: a chrome line (or a line starting at an offset in
    ``split_at``, a part of its own) in between splits the run."""
    units: list[Unit] = []
    run: list[_Line] = []
    for line in [*lines, None]:
        if line is not None and not _matches(line, CHROME_LINES) and line.start not in split_at:
            run.append(line)
        elif run:
            units.append(Unit(section, run[0].start, run[-1].end))
            run = []
    return units


def chrome_free_runs(text: str, start: int, end: int, section: Section = "article") -> list[Unit]:
    """Units for ``text[start:end]`` with page-chrome lines (``CHROME_LINES``) left out, offsets into ``text``."""
    lines = [
        _Line(line.start + start, line.end + start, line.indent, line.text, line.after_blank)
        for line in _lines(text[start:end])
    ]
    return _runs(lines, section)


def _author_name(lines: list[_Line], lo: int, hi: int) -> tuple[int, str] | None:
    """Where "Latest posts by NAME (see all)" is, and NAME."""
    at = _first(lines, lo, hi, (AUTHOR_LINE,))
    if at is None:
        return None
    match = AUTHOR_LINE.fullmatch(lines[at].text)
    assert match is not None
    return at, match.group("name")


def _is_byline(line: _Line, counts: Counter[str], name: str | None) -> bool:
    """A name line of the author box: the author's name, or a short line the page repeats."""
    return line.text == name or (counts[line.text] > 1 and _words(line) <= MAX_BYLINE_WORDS)


def _only_author_box_after(lines: list[_Line], at: int, hi: int, name: str | None) -> bool:
    """Whether everything after ``lines[at]`` up to ``hi`` is chrome, name lines or repeats of what came before.

    This is what tells a bio from a paragraph the article itself repeats (a pull quote): article text follows that.
    """
    counts = Counter(line.text for line in lines)
    seen = {line.text for line in lines[: at + 1]}
    for line in lines[at + 1 : hi]:
        if not (line.text in seen or _is_byline(line, counts, name) or _matches(line, CHROME_LINES)):
            return False
        seen.add(line.text)
    return True


def _find_bio(lines: list[_Line], lo: int, hi: int, author: tuple[int, str] | None) -> int | None:
    """Index of the author bio's first occurrence in ``lines[lo:hi]``, or None.

    The bio is a long paragraph the page prints more than once, or (printed once) the long paragraph just before
    "Latest posts by NAME" if it names the author; either way only the author box may follow it.
    """
    long_lines = [i for i in range(lo, hi) if _words(lines[i]) >= MIN_PARAGRAPH_WORDS]
    counts = Counter(lines[i].text for i in long_lines)
    candidates = [i for i in long_lines if counts[lines[i].text] > 1]
    if author is not None:
        before = [i for i in long_lines if i < author[0]]
        if before and author[1] in lines[before[-1]].text:
            candidates.append(before[-1])
    name = author[1] if author is not None else None
    return next((i for i in sorted(candidates) if _only_author_box_after(lines, i, hi, name)), None)


def _author_box_start(lines: list[_Line], lo: int, bio_at: int, author: tuple[int, str] | None) -> int:
    """Walk back from the bio over the author box's name lines: the article ends where they begin."""
    counts = Counter(line.text for line in lines)
    name = author[1] if author is not None else None
    start = bio_at
    while start > lo and (_is_byline(lines[start - 1], counts, name) or _matches(lines[start - 1], CHROME_LINES)):
        start -= 1
    return start


def _comment_starts(region: list[_Line]) -> list[tuple[int, int]]:
    """(line index, chars of numbering to skip) where each comment begins.

    Numbered lists are followed number by number at the first number's indent, so a "2020." starting a line inside
    a comment does not split it. A list without numbers falls back to one comment per paragraph.
    """
    starts: list[tuple[int, int]] = []
    indent = None
    for i, line in enumerate(region):
        match = COMMENT_NUMBER.match(line.text)
        if match and int(match.group("no")) == len(starts) + 1 and indent in (None, line.indent):
            starts.append((i, match.end()))
            indent = line.indent
    if starts:
        return starts
    return [(i, 0) for i, line in enumerate(region) if line.after_blank and not _matches(line, CHROME_LINES)]


def _comments(region: list[_Line]) -> list[Unit]:
    """Each comment as a unit, numbered 1.. in page order (a page's "N Comments" header may count differently)."""
    starts = _comment_starts(region)
    units: list[Unit] = []
    for n, (i, skip) in enumerate(starts):
        stop = starts[n + 1][0] if n + 1 < len(starts) else len(region)
        content = [line for line in region[i + 1 : stop] if not _matches(line, CHROME_LINES)]
        first = region[i]
        start = first.start + skip if skip < len(first.text) else (content[0].start if content else None)
        if start is not None:
            end = content[-1].end if content else first.end
            units.append(Unit("comment", start, end, comment_no=len(units) + 1))
    return units


def _first_sentence(text: str, units: Sequence[Unit]) -> str | None:
    """The first sentence of the first unit, whitespace folded, if short enough to be a title."""
    if not units:
        return None
    spans = sentence_spans(text, units[0].char_start, units[0].char_end)
    if not spans:
        return None
    sentence = re.sub(r"^#+\s*", "", " ".join(text[spans[0].start : spans[0].end].split()))  # a Markdown heading
    return sentence if 0 < len(sentence) <= MAX_TITLE_CHARS else None


def parse_page(text: str, *, fallback_title: str, title: str | None = None) -> ParsedPage:
    """Units of a page, in page order, and its title: ``title`` if given, else the headline, else the first
    sentence (if at most ``MAX_TITLE_CHARS``), else ``fallback_title``."""
    lines = _lines(text)
    body_from, headline = 0, None
    marker = _first(lines, 0, len(lines), (HEADLINE_MARKER,))
    if marker is not None and marker + 1 < len(lines):
        headline, body_from = " ".join(lines[marker + 1].text.split()), marker + 2
    content_end = _first(lines, body_from, len(lines), END_OF_CONTENT)
    content_end = len(lines) if content_end is None else content_end
    comments_at = _first(lines, body_from, content_end, (COMMENTS_HEADER,))
    body_end = content_end if comments_at is None else comments_at

    comment_units: list[Unit] = []
    if comments_at is not None:
        comment_units = _comments(lines[comments_at + 1 : content_end])
    if not (_numbered(lines, comments_at) or _counted(lines, comments_at, content_end, comment_units)):
        # No numbered comment list after a header: look for the shapes of pasted comment sections instead.
        section = find_section([line.text for line in lines], body_from)
        if section is not None:
            body_end = section.header if section.header_line else section.header + 1
            comment_units = [_pasted_unit(lines, c, n) for n, c in enumerate(section.comments, start=1)]
            comment_units = _with_depths(comment_units)
        else:
            # Unclear structure: the page stays one article (nothing after a false header is lost).
            body_end, comment_units = content_end, []

    author = _author_name(lines, body_from, body_end)
    bio_at = _find_bio(lines, body_from, body_end, author)
    article_end = body_end if bio_at is None else _author_box_start(lines, body_from, bio_at, author)
    given = title.strip() if title else None
    if marker is None and given is None:
        headline = guess_headline(lines[body_from:body_end], lines)
    # No author box of the seeds' shape: a paragraph naming the byline author is the bio (it stays stored text).
    named = _named_bio(lines[body_from:body_end], headline) if bio_at is None and marker is None else None
    split_at = frozenset(line.start for line in named) if named else frozenset()
    units = _runs(lines[body_from:article_end], "article", split_at)
    if bio_at is not None:
        units.append(Unit("author", lines[bio_at].start, lines[bio_at].end))
    if named:
        units.append(Unit("author", named[0].start, named[-1].end))
        units.sort(key=lambda u: u.char_start)
    units += comment_units
    covered = sum(u.char_end - u.char_start for u in units)
    chrome = max(0, sum(line.end - line.start for line in lines) - covered)
    chosen = given or headline or _first_sentence(text, units) or fallback_title
    stated = bool(given) or (marker is not None and marker + 1 < len(lines))  # given, or marked as the headline
    return ParsedPage(chosen, tuple(units), chrome, title_guessed=not stated)


def _named_bio(lines: Sequence[_Line], headline: str | None) -> list[_Line] | None:
    """The lines of a bio that names the byline author shown near the headline ("Von NAME", "By NAME")."""
    visible = "\n".join(line.text for line in lines)
    bio = named_bio(visible, byline_in(visible, headline), set(), set(), set(), full_name=True)
    if bio is None:
        return None
    first = bio.split("\n")[0]
    at = next((i for i, line in enumerate(lines) if line.text == first), None)
    if at is None:
        return None
    count = bio.count("\n") + 1
    return list(lines[at : at + count])


def _numbered(lines: list[_Line], comments_at: int | None) -> bool:
    """Whether the comment list after the header is numbered "1. ", "2. ", … (the seeds' shape)."""
    if comments_at is None:
        return False
    following = lines[comments_at + 1 : comments_at + 4]
    # "1. Juli 2018 um 11:08" is a date, not the first list number.
    return any(
        COMMENT_NUMBER.match(line.text) and line.text.startswith("1") and not is_date_line(line.text)
        for line in following
    )


def _counted(lines: list[_Line], comments_at: int | None, content_end: int, units: list[Unit]) -> bool:
    """Whether an unnumbered list after the header is the comments: the reply form closes it and the header's count
    ("2 Comments") is the number of paragraphs. A counter under the byline ("2 responses") with the article after it
    does not pass: the article has more paragraphs than the count."""
    if comments_at is None or content_end >= len(lines) or not units:
        return False
    count = re.match(r"\d+", lines[comments_at].text)
    return count is not None and int(count.group()) == len(units)


def _pasted_unit(lines: list[_Line], comment: PastedComment, n: int) -> Unit:
    return Unit(
        "comment",
        lines[comment.first].start,
        lines[comment.last].end,
        comment_no=n,
        comment_author=comment.author,
        comment_date=comment.date,
        comment_date_iso=to_iso(comment.date),
        parent=None if comment.parent is None else comment.parent + 1,
    )


def _with_depths(units: list[Unit]) -> list[Unit]:
    """Each reply one level below the comment it replies to."""
    depth: dict[int, int] = {}
    out = []
    for unit in units:
        level = 0 if unit.parent is None else depth.get(unit.parent, 0) + 1
        assert unit.comment_no is not None
        depth[unit.comment_no] = level
        out.append(dataclasses.replace(unit, depth=level))
    return out


# A headline: a line of a few words that is not a sentence of the body, a date, a menu entry, a caption or a button.
_NOT_HEADLINE = re.compile(
    r".*(?:©|cookie|newsletter|login|log in|anmelden|abonn|menu|menü|search|suche|skip to|zum inhalt|"
    r"foto:|photo:|bild:|credit|getty|affiliate|advert|anzeige|werbung|e-?mail|imprim|print|permalink|"
    r"teilen|share|tweet|previous|next article|vorherige|nächste|gelesen$|read$|views$|compartir|partager|"
    r"telegram|whatsapp|facebook|subscribe|sign up|join thousands|abonnieren|inscri|read more|"
    r"(?:write|post|add|leave) a (?:comment|reply)|kommentar schreiben|kommentieren|"
    r"\d+\s*(?:comments?|kommentare?|commentaires?|comentarios?)|\d{1,2}:\d{2}).*",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"(?:by|von|par|por|author|autor|auteur)\b:?.{0,80}", re.IGNORECASE)
MIN_HEADLINE_WORDS = 3
MAX_HEADLINE_WORDS = 25
LONG_PARAGRAPH_WORDS = 25
HEADLINE_WINDOW = 40


def _body_start(lines: Sequence[_Line]) -> int | None:
    """The first line of running text: a long line with another long line soon after it (a cookie banner or a
    teaser is one long line alone)."""
    for i, line in enumerate(lines):
        # A repeat of the same line (a banner printed twice) is not a second paragraph.
        if _words(line) >= LONG_PARAGRAPH_WORDS and any(
            _words(o) >= 15 and o.text != line.text for o in lines[i + 1 : i + 5]
        ):
            return i
    return next((i for i, line in enumerate(lines) if _words(line) >= LONG_PARAGRAPH_WORDS), None)


def guess_headline_in(text: str) -> str | None:
    """``guess_headline`` over a whole page text (the HTML page's visible text when its title is the site name)."""
    return guess_headline(_lines(text)) if text else None


def guess_headline(lines: Sequence[_Line], page: Sequence[_Line] | None = None) -> str | None:
    """The line most like a headline, among those before the running text: a headline's length, not a sentence,
    date, menu entry or caption; a byline or date just after (or above) it, the standfirst or text right after it,
    a repeat elsewhere on the page and nearness to the text count for it; a teaser's "Read more", a place in a run
    of short links (menus, tables of contents, related articles) and a standfirst's length count against it."""
    start = _body_start(lines)
    if start is None:
        return None
    # Repeats count over the whole page (``page``): the comments or the footer often print the headline again.
    counts = Counter(line.text for line in (lines if page is None else page))
    best: tuple[float, _Line] | None = None
    lo = max(0, start - HEADLINE_WINDOW)
    for i in range(lo, start):
        score = headline_score(lines, i, lo, start, counts)
        if score is not None and (best is None or score > best[0]):
            best = (score, lines[i])
    return " ".join(best[1].text.split()) if best is not None else None


def headline_score(lines: Sequence[_Line], i: int, lo: int, start: int, counts: Counter[str]) -> float | None:
    """How much ``lines[i]`` (in the window ``lo``..``start`` before the running text) is like the headline; None
    where it cannot be one."""
    line = lines[i]
    words = _words(line)
    if not MIN_HEADLINE_WORDS <= words <= MAX_HEADLINE_WORDS or line.text.endswith((":", ",", ";")):
        return None
    if _NOT_HEADLINE.fullmatch(line.text) or _DATEISH.search(line.text) or _matches(line, CHROME_LINES):
        return None
    if _BYLINE.fullmatch(line.text) or is_header(line.text) or re.search(r"\d{4}-\d{2}-\d{2}T", line.text):
        return None  # a byline, a comment counter, a machine timestamp
    if line.text.count(",") >= 2 or line.text.startswith(("|", "#", "*", "•")):
        return None  # a list of tags or a menu entry
    if _FRAGMENT.match(line.text) or is_date_line(line.text) or line.text.endswith("|"):
        return None  # a line broken out of a sentence ("is coddling criminals"): headlines open capitalised
    if _BYLINE_LEAD.search(line.text):
        return None  # "Eine Analyse von", "A column by": the byline's first line
    # The byline or date sits just after the headline (a standfirst may come between) or just above it.
    near = [o.text for o in lines[i + 1 : i + 4]] + [o.text for o in lines[max(lo, i - 2) : i]]
    score = 0.0
    if any(_is_byline_or_date(t) for t in near):
        score += 3
    if line.text.endswith(".") and not _title_case(line.text):
        score -= 2.5  # a sentence (a standfirst, a caption) is rarely the headline; "… So Do We." in title case is
    if i + 1 < len(lines) and _SENTENCE.fullmatch(lines[i + 1].text) and _words(lines[i + 1]) >= 12:
        score += 1.5  # the standfirst or the text follows the headline (a kicker is followed by the headline)
    if counts[line.text] > 1:
        score += 1.5
    if any(_READ_MORE.fullmatch(o.text) for o in lines[i + 1 : i + 3]):
        score -= 3  # a teaser of another article ("… / Read more")
    if _in_list(lines, i, lo, start):
        score -= 2  # one of a run of short links: a menu, a table of contents, related articles
    if words > STANDFIRST_WORDS:
        score -= (words - STANDFIRST_WORDS) / 2  # as long as a standfirst
    score += min(words, 15) / 10 - (start - i) / 6
    return score


_DATEISH = re.compile(
    r"\b\d{1,2}[./]\s?\d{1,2}[./]\s?\d{2,4}\b|\b(?:19|20)\d{2}\b.*\d{1,2}:\d{2}|^(?:von|by|par|por)\s", re.IGNORECASE
)


# The first word all lower case: the tail of a sentence broken over lines, not a headline ("iPhone …" still opens
# with a capital inside the word).
_FRAGMENT = re.compile(r"[^\W\d_A-ZÀ-ÞА-Я]+(?:\s|$)")
_READ_MORE = re.compile(
    r"(?:read more|continue reading|weiterlesen|mehr lesen|lire la suite|leer más|seguir leyendo)\W*", re.IGNORECASE
)
STANDFIRST_WORDS = 20
MAX_BYLINE_LINE_WORDS = 12
LIST_RUN = 3


def _is_byline_or_date(text: str) -> bool:
    """A byline ("By NAME", "Por: A, B, C"), a date line, or a byline with its date ("von NAME am 29. Mai 2017")."""
    if is_date_line(text):
        return True
    if not _BYLINE.fullmatch(text):
        return False
    return len(text.split()) <= MAX_BYLINE_LINE_WORDS or bool(
        _DATEISH.search(text[3:]) or re.search(r"\b\d{4}\b", text)
    )


def _listish(line: _Line) -> bool:
    """A line shaped like a link of a list: a few words, no sentence end, no byline or date."""
    return 2 <= _words(line) <= 15 and not line.text.endswith((".", ":")) and not _is_byline_or_date(line.text)


def _in_list(lines: Sequence[_Line], i: int, lo: int, hi: int) -> bool:
    """Whether ``lines[i]`` is inside a run of at least ``LIST_RUN`` consecutive list-shaped lines."""
    if not _listish(lines[i]):
        return False
    a = i
    while a > lo and _listish(lines[a - 1]):
        a -= 1
    b = i
    while b + 1 < hi and _listish(lines[b + 1]):
        b += 1
    return b - a + 1 >= LIST_RUN


_BYLINE_LEAD = re.compile(r"\b(?:by|von|par|por)\s*:?$", re.IGNORECASE)
_SENTENCE = re.compile(r".*[.!?…:»“”\"]")
TITLE_CASE_SHARE = 0.7


def _title_case(text: str) -> bool:
    """Most words capitalised, as English headlines are ("Want to See a More Diverse … So Do We.")."""
    tokens = [t for t in text.split() if t[:1].isalpha()]
    return bool(tokens) and sum(1 for t in tokens if t[0].isupper()) / len(tokens) >= TITLE_CASE_SHARE

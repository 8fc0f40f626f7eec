"""One HTML page as stored text and units: article (trafilatura), author bio and reader comments (the markup).

The stored text is the article as trafilatura extracts it, then the bio, then each comment, separated by blank
lines; every unit is a span of that text, so citations quote it exactly. Lines of the extracted article that are
the bio's or a comment's own lines are left out of the article (trafilatura sometimes keeps an author box or a
comment), because they are stored, once, in their own part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from indexer.bios import byline_in, first_person_bio, named_bio
from indexer.bios import fold as _fold
from indexer.bios import words as _words
from indexer.dates import parse_date, to_iso
from indexer.documents import Unit
from indexer.html_pages import HtmlPage, read_html_page
from indexer.pages import chrome_free_runs, guess_headline_in

_TITLE_SEPARATORS = re.compile(r"\s+(?:[|»:–—-]|::)\s+")


@dataclass(frozen=True, slots=True)
class BuiltPage:
    title: str
    text: str
    units: tuple[Unit, ...]
    url: str | None
    metadata: dict[str, Any]


MIN_TITLE_OVERLAP = 0.5


def _is_site_name(text: str, names: set[str]) -> bool:
    """ "Internet-Law" on internet-law.de, "TAZ" on taz.de: the site's name, not a headline."""
    folded = _site_key(text)
    return any(folded == n or n.startswith(folded + ".") for n in names)


def _site_key(text: str) -> str:
    """A site name compared loosely: "Internet-Law", "internet law" and "internet-law.de" share "internetlaw"."""
    return re.sub(r"[^\w.]", "", _fold(text))


def choose_headline(title: str | None, headlines: tuple[str, ...], site_names: tuple[str, ...]) -> str | None:
    """The headline as shown. The longest h1 the page's title contains, or that contains the title (the title often
    appends the site name, or leaves out a kicker); else the h1 sharing most of the title's words; else the title
    without a trailing site name. None when all there is is the site's name."""
    folded_title = _fold(title or "")
    shown = [" ".join(h.split()) for h in headlines if 0 < len(h) <= 300]
    names = {_site_key(n) for n in site_names if n}
    shown = [h for h in shown if not _is_site_name(h, names)]
    inside = [h for h in shown if folded_title and (_fold(h) in folded_title or folded_title in _fold(h))]
    if inside:
        return max(inside, key=len)
    title_words = _words(title or "")
    if title_words:
        scored = [(len(_words(h) & title_words) / max(len(_words(h)), 1), h) for h in shown]
        best = max(scored, default=(0.0, ""), key=lambda item: item[0])
        if best[0] >= MIN_TITLE_OVERLAP:
            return best[1]
    if not title:
        return shown[0] if shown else None
    parts = _TITLE_SEPARATORS.split(title)
    if len(parts) > 1:
        tail = _site_key(parts[-1])
        if any(tail and (tail in n or n in tail) for n in names):
            return title[: title.rfind(parts[-1])].rstrip(" |»:–—-")
    if _is_site_name(title, names):
        return None  # the site's name, not a headline
    return " ".join(title.split())


MIN_RESCUE_WORDS = 12
LEAD_LINES = 3
_CAPTION = re.compile(
    r"foto:|photo:|bild:|image:|credit|©|picture alliance|/dpa|dpa/|getty|reuters|afp|imago|shutterstock", re.IGNORECASE
)
_SENTENCE_END = (".", "!", "?", '"', "”", "“", "»", "«", ")", "'")


def rescue_article_lines(article_lines: list[str], visible: str, taken: set[str]) -> list[str]:
    """trafilatura's article lines, plus the page's running-text lines it left out between them (or just before the
    first): so that no sentence of the article is lost. Only long lines that end like a sentence and are no caption,
    teaser ("…"), bio or comment line are taken back, each after the article line it follows on the page."""
    folded = [_fold(line) for line in article_lines]
    position = {f: i for i, f in enumerate(folded) if f}
    lines = [line.strip() for line in visible.split("\n") if line.strip()]
    anchors = [i for i, line in enumerate(lines) if _fold(line) in position]
    if not anchors:
        return article_lines
    after: dict[int, list[str]] = {}
    current = -1  # insert before the first article line
    for i in range(max(0, anchors[0] - LEAD_LINES), anchors[-1] + 1):
        f = _fold(lines[i])
        if f in position:
            current = position[f]
            continue
        line = lines[i]
        if (
            len(line.split()) >= MIN_RESCUE_WORDS
            and line.endswith(_SENTENCE_END)
            and not _CAPTION.search(line)
            and f not in taken
            and not any(f in a for a in folded)
        ):
            after.setdefault(current, []).append(line)
    if not after:
        return article_lines
    out = list(after.get(-1, []))
    for i, line in enumerate(article_lines):
        out.append(line)
        out.extend(after.get(i, []))
    return out


def _trafilatura(html: str) -> dict[str, Any]:
    import trafilatura  # imported here: it takes half a second and only HTML needs it

    extracted = trafilatura.extract(html, output_format="json", with_metadata=True, include_comments=False)
    return json.loads(extracted) if extracted else {}


def build_html_document(html: str, *, fallback_title: str) -> BuiltPage:
    """The page's text and units; ``ValueError`` when it has no text at all."""
    data = _trafilatura(html)
    page: HtmlPage = read_html_page(html)
    own_lines: set[str] = set()
    for chunk in [page.bio or "", *(c.text for c in page.comments)]:
        own_lines.update(_fold(line) for line in chunk.split("\n") if len(line.split()) >= 4)
    article_lines = [
        line for line in (data.get("text") or "").replace("\r\n", "\n").split("\n") if _fold(line) not in own_lines
    ]
    article_lines = rescue_article_lines(article_lines, page.visible_text, own_lines)
    article = "\n".join(article_lines).strip()
    site_names = tuple(n for n in (page.site_name, data.get("sitename"), data.get("hostname")) if isinstance(n, str))
    headline = choose_headline(data.get("title"), page.headlines, site_names)
    author = data.get("author") or byline_in(page.visible_text, headline)
    bio = page.bio
    if bio is None:
        article_set = {_fold(line) for line in article_lines}
        taken = article_set | {_fold(line) for c in page.comments for line in c.text.split("\n")}
        site = {_fold(n) for n in (data.get("sitename"), data.get("hostname")) if isinstance(n, str)}
        bio = named_bio(page.visible_text, author, taken, article_set, site)
        if bio is None:
            comment_lines = {_fold(line) for c in page.comments for line in c.text.split("\n")}
            bio = first_person_bio(page.visible_text, comment_lines, article_set)
            if bio is not None:  # stored once, in its own part, not also in the article
                article_lines = [line for line in article_lines if _fold(line) != _fold(bio)]
                article = "\n".join(article_lines).strip()
    pieces: list[tuple[str, str, int | None]] = []  # (section, text, comment index)
    if article:
        pieces.append(("article", article, None))
    if bio:
        pieces.append(("author", bio, None))
    for position, comment in enumerate(page.comments):
        pieces.append(("comment", comment.text, position))
    if not pieces:
        raise ValueError("no main content found in the HTML")
    text = ""
    units: list[Unit] = []
    language = data.get("language") or page.language
    for section, piece, n in pieces:
        if text:
            text += "\n\n"
        start = len(text)
        text += piece
        if section == "article":
            units += chrome_free_runs(text, start, len(text))
        elif section == "author":
            units.append(Unit("author", start, len(text)))
        else:
            assert n is not None
            c = page.comments[n]
            units.append(
                Unit(
                    "comment",
                    start,
                    len(text),
                    comment_no=n + 1,
                    comment_author=c.author,
                    comment_date=c.date,
                    comment_date_iso=to_iso(c.date_iso or c.date, language),
                    parent=None if c.parent is None else c.parent + 1,
                    depth=c.depth,
                )
            )
    title = headline or guess_headline_in(page.visible_text) or fallback_title
    found: dict[str, Any] = {
        "author": author,
        # The same normal form as a jsonl date (UTC, or a day), so date filters compare like with like.
        "published": parse_date(data.get("date")),
        "site_name": page.site_name or data.get("sitename") or data.get("hostname"),
        "canonical_url": page.canonical_url or data.get("source"),
        "language": language,
    }
    metadata = {key: value for key, value in found.items() if value}
    url = page.canonical_url or data.get("source") or None
    return BuiltPage(title, text, tuple(units), url, metadata)

"""Author bios and bylines found by the author's name, where no markup marks them (shared by HTML and text pages).

A bio box says who wrote the article: it names the byline author ("Henning Lobin ist seit 2018 …", "Hi! My name is
Florina …") or follows a line that is just the author's name ("Ingo Arzt / Redakteur für … / Schreibt seit …").
"""

from __future__ import annotations

import re

_QUOTES = str.maketrans(dict.fromkeys('‘’‚‛“”„‟«»"′″', "'") | dict.fromkeys("–—‐‑−", "-"))


def fold(text: str) -> str:
    """Text compared loosely: case, whitespace, typographic quotes and dashes folded (a <title> often has ASCII)."""
    return " ".join(text.translate(_QUOTES).split()).casefold()


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", fold(text)))


MIN_NAMED_BIO_WORDS = 8
MAX_NAME_LINE_WORDS = 6


def named_bio(
    visible: str, author: str | None, taken: set[str], article: set[str], site: set[str], *, full_name: bool = False
) -> str | None:
    """A bio box without a bio class: a paragraph outside the article's span and the comments (``taken``, folded
    lines) that names the byline author, or that follows a line which is just the author's name. ``full_name``:
    every part of the name must be there (where the article's span is unknown, one name part is too weak a sign)."""
    if not author:
        return None
    tokens = {t for t in words(author) if len(t) >= 3} - {w for n in site for w in re.findall(r"\w+", n)}
    if not tokens:
        return None
    lines = [line.strip() for line in visible.split("\n") if line.strip()]
    in_article = [i for i, line in enumerate(lines) if fold(line) in article and len(line.split()) >= 5]
    first, last = (in_article[0], in_article[-1]) if in_article else (len(lines), -1)
    for i, line in enumerate(lines):
        line_words = line.split()
        if first <= i <= last or len(line_words) < MIN_NAMED_BIO_WORDS or fold(line) in taken:
            continue
        if not line.rstrip().endswith((".", "!", ")")) or re.search(
            r"e-?mail|newsletter|abonn|subscri", line, re.IGNORECASE
        ):
            continue
        previous = lines[i - 1] if i else ""
        need = len(tokens) if full_name else 1
        named_before = len(previous.split()) <= MAX_NAME_LINE_WORDS and len(words(previous) & tokens) >= need
        # The name early in the paragraph, as bios open; as a word of its own ("Henning-Kaufmann-Stiftung" is not).
        opening = {w for w in re.split(r"[\s,.;:!?()]+", fold(" ".join(line_words[:12]))) if w}
        names = len(opening & tokens) >= need
        if named_before or names:
            return line
    # "NAME" on a line, then a short job title, then the bio text ("Ingo Arzt / Redakteur für … / Schreibt seit …").
    for i in range(1, len(lines) - 1):
        if first <= i <= last or fold(lines[i]) in taken:
            continue
        need = len(tokens) if full_name else 1
        name_line = len(lines[i - 1].split()) <= MAX_NAME_LINE_WORDS and len(words(lines[i - 1]) & tokens) >= need
        job = lines[i]
        if (
            name_line
            and 2 <= len(job.split()) <= MAX_NAME_LINE_WORDS * 2
            and not re.search(r"\d", job)
            and len(lines[i + 1].split()) >= 8
            and fold(lines[i + 1]) not in taken
            and lines[i + 1].rstrip().endswith((".", "!", ")"))
        ):
            return lines[i] + "\n" + lines[i + 1]
    return None


_BYLINE = re.compile(r"(?:by|von|par|por|autor|author|auteur)\s*:?\s+(?P<name>[^\d|]{3,80})", re.IGNORECASE)


def byline_in(visible: str, headline: str | None) -> str | None:
    """The byline name printed near the headline ("Por: NAME", "Von NAME"), where the meta tags name nobody."""
    lines = [line.strip() for line in visible.split("\n") if line.strip()]
    at = next((i for i, line in enumerate(lines) if headline and fold(line) == fold(headline)), None)
    if at is None:
        return None
    for line in lines[max(0, at - 3) : at + 6]:
        match = _BYLINE.fullmatch(line)
        if match:
            return match.group("name").strip()
    return None


# A short bio in the first person, as a site owner's "about" box opens ("I'm Joachim Schork. On this website …",
# "Hi, my name is …", "Ich bin …"): the opening then a capitalised name. Data, one entry per language.
_FIRST_PERSON_OPENINGS = (
    r"i'm",
    r"i am",
    r"my name is",
    r"ich bin",
    r"ich heiße",
    r"mein name ist",
    r"je suis",
    r"je m'appelle",
    r"soy",
    r"me llamo",
    r"mi nombre es",
)
_FIRST_PERSON_BIO = re.compile(
    r"(?:(?:hi|hello|hey|hallo|hola|bonjour|salut)\s*[!,.]?\s*(?:there\s*[!,.]?\s*)?)?(?:"
    + "|".join(_FIRST_PERSON_OPENINGS)
    + r")\s+(?:[A-ZÀ-Þ][\w'’-]+)(?:\s+[A-ZÀ-Þ][\w'’-]+){0,3}\s*[.,!]",
    re.IGNORECASE,
)


def first_person_bio(visible: str, comments: set[str], article: set[str]) -> str | None:
    """A first-person bio box where the page names no byline author to look for: outside the article's span, or
    after the last comment (an extractor may take a sidebar box after the comments into the article), and no
    comment's line (``comments``, folded lines)."""
    lines = [line.strip() for line in visible.split("\n") if line.strip()]
    in_article = [i for i, line in enumerate(lines) if fold(line) in article and len(line.split()) >= 5]
    first, last = (in_article[0], in_article[-1]) if in_article else (len(lines), -1)
    in_comments = [i for i, line in enumerate(lines) if fold(line) in comments]
    if in_comments:
        last = min(last, in_comments[-1])
    for i, line in enumerate(lines):
        if first <= i <= last or len(line.split()) < MIN_NAMED_BIO_WORDS or fold(line) in comments:
            continue
        name = _FIRST_PERSON_BIO.match(line.translate(_QUOTES))
        # The name must be capitalised as written ("I am happy to …" names nobody).
        if (
            name
            and line.rstrip().endswith((".", "!", ")"))
            and _capitalised_name(line[: name.end()])
            and not re.search(r"e-?mail|newsletter|abonn|subscri", line, re.IGNORECASE)
        ):
            return line
    return None


def _capitalised_name(opening: str) -> bool:
    tail = re.split(r"\s+", opening.rstrip(".,! "))[-1]
    return tail[:1].isupper()

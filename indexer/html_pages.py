"""Reader comments, author bio and article metadata read from a page's HTML markup.

trafilatura finds a page's main text well, but its comment extraction returns one run of text without boundaries.
The markup does mark each comment: comment systems give every comment its own element (WordPress
``li.comment#comment-N``, Drupal ``article.comment`` after ``a#comment-N``, ``[data-comment-id]``, schema.org
``Comment``, ``reply_N``/``message_N`` ids), put replies in nested lists or ``children``/``indented``/``replies``
containers (or mark ``depth-N``, or ``data-parentid``), and wrap names, dates and buttons in elements named for them.
The rules below are keyed on those markup conventions only, never on one site.

A *comment box* is the innermost comment-marked element with text of its own (text outside nested comment
elements, once names, dates and buttons are taken out): an ``li`` whose comment sits in an inner ``article`` is a
wrapper, not a second comment. Boxes inside sidebars/widgets ("recent comments"), forms and pingbacks are not
comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import lxml.html
from lxml import etree

# Elements that are never visible text (as a browser renders the page).
_DROP_TAGS = frozenset(
    {"head", "script", "style", "noscript", "template", "svg", "iframe", "select", "option", "object", "embed"}
)
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "dd", "details", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
        "center", "caption", "label", "button", "textarea", "input",
    }
)  # fmt: skip
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)

# What marks an element as one comment.
_COMMENT_ID = re.compile(r"(?:^|[-_])(?:comment|message|reply)[-_]?(?:body[-_])?\d+$", re.IGNORECASE)
_COMMENT_CLASS = re.compile(
    r"comment|[a-z]+-comment|comment(?:-|__)(?:item|wrap|wrapper|article|entry|body|box|container|inner)|"
    r"(?:w-)?comments-item|the-comment|single-comment|media-comment",
    re.IGNORECASE,
)
_COMMENT_ITEMTYPE = re.compile(r"schema\.org/(?:Comment|Answer)\b", re.IGNORECASE)
# Where a comment-marked element is not a reader comment of this page.
# Whole class/id tokens only: a body class such as "has-sidebar" says nothing about where the comments are.
_NOT_A_COMMENT = re.compile(
    r"sidebar(?:[-_]\w+)?|secondary|widget[-_]area|widget_\w+|[\w-]*recent[-_]?comments?[\w-]*|"
    r"[\w-]*(?:popular|most)[-_]comments[\w-]*|pingback|trackback|respond|comment-respond|comment-form|commentform|"
    r"[\w-]*(?:loader|load-more|more-comments|show-more)[\w-]*",
    re.IGNORECASE,
)
# Containers of replies: each one around a comment is one level of nesting.
_REPLY_CONTAINER = re.compile(
    r"(?:^|[-_ ])(?:children|child-comments|replies|indented|sub-?comments|nested|comment-replies)(?:$|[-_ ])",
    re.IGNORECASE,
)
_DEPTH_CLASS = re.compile(r"(?:^|\s)(?:[\w-]*[-_])?(?:depth|level)-(\d+)(?:\s|$)")
# Furniture inside a comment box: who, when, and the buttons. Matched against class and id tokens.
_AUTHOR_TOKEN = re.compile(
    r"(?:^|[-_])(?:author|fn|username|user-name|user|name|nick|nickname|commenter|poster)(?:$|[-_])", re.IGNORECASE
)
_DATE_TOKEN = re.compile(r"(?:^|[-_])(?:date|time|timestamp|published|datum|posted)(?:$|[-_])", re.IGNORECASE)
_FURNITURE_TOKEN = re.compile(
    r"(?:^|[-_])(?:meta|metadata|commentmetadata|header|footer|avatar|reply|replies-link|actions?|links|like|likes|"
    r"dislike|vote|votes|voting|rating|report|flag|share|tools|toolbar|edit|permalink|number|badge|icon|says|"
    r"counter|nav|button|btn|img|photo|picture|respond|moderation)(?:$|[-_])",
    re.IGNORECASE,
)
_FURNITURE_TAGS = frozenset({"form", "button", "img", "time", "input", "textarea", "label", "footer", "header"})
_CONTENT_TOKEN = re.compile(
    r"(?:^|[-_])(?:content|text|texte|body|message|entry|comment-body|commenttext)$", re.IGNORECASE
)
_SAYS = re.compile(
    r"\s*(?:says|said|wrote|sagt|schreibt|meint|dit|dice|dijo|escribe|escribió|a écrit)\s*:?\s*$", re.IGNORECASE
)
_BY = re.compile(r"^(?:comment by|kommentar von|von|by|par|por)\s+", re.IGNORECASE)
# Author bio boxes: marked by class/id, or introduced by a heading in one of the set's languages.
_BIO_TOKEN = re.compile(
    r"author[-_]?(?:bio|box|info|description|about|details|card|profile)|about[-_]?(?:the[-_]?)?author|"
    r"autor(?:en)?[-_]?(?:info|box|bio)|biography|byline[-_]?bio|post-author|entry-author|author-wrap",
    re.IGNORECASE,
)
_BIO_HEADING = re.compile(
    r"(?:about the author|about me|über den autor|über die autorin|zum autor|zur autorin|autoreninfo|"
    r"à propos de l'auteur|sobre el autor|sobre la autora)\s*:?",
    re.IGNORECASE,
)
MIN_BIO_WORDS = 6
_BUTTON_LINE = re.compile(
    r"(?:reply|antworten|antwort|répondre|responder|report|melden|signaler|like|gefällt mir|j'aime|share|teilen|"
    r"partager|compartir|quote|zitieren|permalink|edit|bearbeiten|modifier|editar)\s*[↓↑→]?",
    re.IGNORECASE,
)
# What is left after a name once the date is cut off: "on", "am", "le mercredi", "- Antworten".
_NAME_TAIL = re.compile(
    r"\s*(?:\b(?:on|at|am|um|le|el|the|den|der|monday|tuesday|wednesday|thursday|friday|saturday|sunday|montag|"
    r"dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|lunes|"
    r"martes|miércoles|jueves|viernes|sábado|domingo|reply|antworten|répondre|responder)\b\.?|[,|/–—-])\s*$",
    re.IGNORECASE,
)
# A shown date somewhere in a line: day/month/year in digits or with a month name, optionally a time.
_DATE_IN_TEXT = re.compile(
    r"\d{4}[/.-]\d{1,2}[/.-]\d{1,2}(?:\s+\d{1,2}:\d{2})?|"
    r"\d{1,2}[./]\s?\d{1,2}[./,]\s?\d{2,4}(?:[^\n\d]{0,6}\d{1,2}[:.h]\d{2})?|"
    r"\d{1,2}\.?\s+[A-Za-zÄÖÜäöüéû]{3,}\.?\s+\d{4}(?:[^\n\d]{0,8}\d{1,2}[:.h]\d{2})?|"
    r"[A-Z][a-z]{2,8}\.?\s+\d{1,2},?\s+\d{4}(?:[^\n\d]{0,8}\d{1,2}[:.]\d{2}\s?(?:[ap]\.?m\.?)?)?",
)


@dataclass(frozen=True, slots=True)
class HtmlComment:
    """One reader comment as the markup shows it; ``parent`` indexes the list it belongs to."""

    text: str
    author: str | None
    date: str | None
    date_iso: str | None
    parent: int | None
    depth: int


@dataclass(frozen=True, slots=True)
class HtmlPage:
    comments: tuple[HtmlComment, ...]
    bio: str | None
    headlines: tuple[str, ...]  # visible h1 texts, in page order
    language: str | None
    canonical_url: str | None
    visible_text: str = ""  # the page body's visible text, one block a line
    site_name: str | None = None  # og:site_name as the page declares it


def parse_html(html: str) -> etree._Element:
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html)
    return lxml.html.document_fromstring(html)


def _tag(el: etree._Element) -> str:
    return el.tag.lower() if isinstance(el.tag, str) else ""


def _tokens(el: etree._Element) -> list[str]:
    return [*(el.get("class") or "").split(), *((el.get("id") or "").split())]


def _hidden(el: etree._Element) -> bool:
    if not isinstance(el.tag, str) or _tag(el) in _DROP_TAGS or el.get("hidden") is not None:
        return True
    if _tag(el) == "input" and (el.get("type") or "").lower() == "hidden":
        return True
    style = el.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


def visible_text(el: etree._Element, skip: frozenset[etree._Element] | set[etree._Element] = frozenset()) -> str:
    """The text a browser shows for ``el``, one block per line, whitespace collapsed; ``skip`` subtrees left out."""
    out: list[str] = []
    # Only blocks and <br> break lines; a line break in the source text is just a space, as a browser shows it.
    brk = "\x00"

    def walk(node: etree._Element) -> None:
        tag = _tag(node)
        if not _hidden(node) and node not in skip:
            block = tag in _BLOCK_TAGS
            if block or tag == "br":
                out.append(brk)
            if node.text and tag != "br":
                out.append(node.text.replace("\n", " ").replace(brk, " "))
            for child in node:
                walk(child)
                if child.tail:
                    out.append(child.tail.replace("\n", " ").replace(brk, " "))
            if block:
                out.append(brk)

    walk(el)
    lines = (re.sub(r"[ \t\r\f\v\u00a0\u200b]+", " ", line).strip() for line in "".join(out).split(brk))
    return "\n".join(line for line in lines if line)


def _is_comment_element(el: etree._Element) -> bool:
    if not isinstance(el.tag, str) or _tag(el) in {"a", "span", "i", "img", "form", "textarea", "input", "body"}:
        return False
    if _COMMENT_ID.search(el.get("id") or ""):
        return True
    if el.get("data-comment-id") or el.get("data-commentid") or el.get("data-parentid"):
        return True
    classes = (el.get("class") or "").split()
    if any(_CONTENT_TOKEN.search(token) for token in classes):
        return False  # the text part of a comment ("comment-content", Drupal's itemprop=comment body), not the comment
    if _COMMENT_ITEMTYPE.search(el.get("itemtype") or "") or (el.get("itemprop") or "").lower() == "comment":
        return True
    return any(_COMMENT_CLASS.fullmatch(token) for token in classes)


def _excluded(el: etree._Element) -> bool:
    """Inside a sidebar, a form, a pingback, … (checked on the element and its ancestors)."""
    node: etree._Element | None = el
    while node is not None and isinstance(node.tag, str) and _tag(node) not in {"body", "html"}:
        if _tag(node) in {"form", "textarea", "nav"}:
            return True
        if any(_NOT_A_COMMENT.fullmatch(token) for token in _tokens(node)):
            return True
        node = node.getparent()
    return False


def _furniture(el: etree._Element, box: etree._Element) -> bool:
    if el is box or not isinstance(el.tag, str):
        return False
    if _tag(el) in _FURNITURE_TAGS:
        return True
    tokens = _tokens(el)
    if any(_CONTENT_TOKEN.search(t) for t in tokens):
        return False
    return any(_FURNITURE_TOKEN.search(t) or _AUTHOR_TOKEN.search(t) or _DATE_TOKEN.search(t) for t in tokens)


def _descendants_outside(box: etree._Element, stop: set[etree._Element]) -> Iterator[etree._Element]:
    """Descendants of ``box`` that are not inside a nested comment element."""
    stack = list(reversed(list(box)))
    while stack:
        node = stack.pop()
        if node in stop or not isinstance(node.tag, str):
            continue
        yield node
        stack.extend(reversed(list(node)))


def _first_text(elements: Iterator[etree._Element] | list[etree._Element]) -> str | None:
    for el in elements:
        text = visible_text(el)
        if text:
            return text.split("\n")[0]
    return None


def _author(box: etree._Element, inner: list[etree._Element]) -> str | None:
    named = [el for el in inner if any(_AUTHOR_TOKEN.search(t) for t in _tokens(el))]
    named += [el for el in inner if (el.get("itemprop") or "").lower() in {"author", "name"}]
    # The most specific element: one with no other author element inside it ("fn" inside "comment-author").
    specific = [el for el in named if not any(o is not el and el in o.iterancestors() for o in named)]
    name = _first_text(specific or named)
    if name is None and box.get("data-authorname"):
        name = box.get("data-authorname")
    if name is None:
        # "<cite>Comment by <a>NAME</a> — date</cite>", "<cite><strong>NAME</strong> dijo:</cite>"
        for cite in (el for el in inner if _tag(el) == "cite"):
            inside = [c for c in cite.iter() if _tag(c) in {"a", "strong", "b"} and visible_text(c)]
            name = visible_text(inside[0]) if inside else visible_text(cite)
            if name:
                break
    if not name:
        return None
    name = _BY.sub("", _SAYS.sub("", name.split("\n")[0])).strip(" ,")
    date = _DATE_IN_TEXT.search(name)
    if date is not None and date.start() > 0:
        name = name[: date.start()]  # "Rolf Buckpesch 29.07.2020 // 12:56": the name line also shows the date
    while True:
        stripped = _NAME_TAIL.sub("", name).strip(" ,|/-–—")
        if stripped == name:
            break
        name = stripped
    name = _SAYS.sub("", name).strip(" ,")
    return name or None


def _date(inner: list[etree._Element]) -> tuple[str | None, str | None]:
    times = [el for el in inner if _tag(el) == "time"]
    for el in times:
        shown = visible_text(el)
        if shown:
            return shown, el.get("datetime")
    dated = [el for el in inner if any(_DATE_TOKEN.search(t) for t in _tokens(el))]
    found = _first_text(dated)
    if found is None:
        # A date printed next to the name in a <cite> or a metadata line: its text after a dash, "am", "on", "le".
        for el in inner:
            if _tag(el) == "cite" or any("meta" in t.lower() for t in _tokens(el)):
                match = _DATE_IN_TEXT.search(visible_text(el))
                if match:
                    return match.group(0).strip(), None
    return found, None


def _box_text(box: etree._Element, nested: set[etree._Element]) -> tuple[str, list[etree._Element]]:
    inner = list(_descendants_outside(box, nested))
    content = [el for el in inner if any(_CONTENT_TOKEN.search(t) for t in _tokens(el)) or
               (el.get("itemprop") or "").lower() in {"text", "commenttext"}]  # fmt: skip
    # The outermost content element, if any: everything else in the box is furniture around it.
    roots = [el for el in content if not any(o in el.iterancestors() for o in content)]
    furniture = {el for el in inner if _furniture(el, box) and not any(r in el.iterancestors() for r in roots)}
    # "<cite>NAME dijo:</cite>" / "<cite>Comment by NAME — date</cite>": a name line, not comment text.
    furniture |= {
        el for el in inner if _tag(el) == "cite" and (_SAYS.search(visible_text(el)) or _BY.match(visible_text(el)))
    }
    skip = nested | furniture
    text = "\n".join(t for t in (visible_text(r, skip) for r in roots) if t) if roots else visible_text(box, skip)
    # A button whose element says nothing about itself ("<li><a>Antworten</a></li>" inside the text's element).
    text = "\n".join(line for line in text.split("\n") if not _BUTTON_LINE.fullmatch(line))
    return text, inner


def _depth_class(el: etree._Element) -> int | None:
    for node in [el, *el.iterancestors()]:
        match = _DEPTH_CLASS.search(" " + (node.get("class") or "") + " ")
        if match:
            return int(match.group(1)) - 1
    return None


def _nesting(el: etree._Element, boxes: set[etree._Element]) -> int:
    """Levels of reply nesting around ``el``: reply containers, and lists nested inside another comment's item."""
    depth = 0
    for node in el.iterancestors():
        tokens = " ".join(_tokens(node))
        if _REPLY_CONTAINER.search(tokens) or (
            _tag(node) in {"ul", "ol"}
            and any(_tag(a) == "li" or a in boxes or _is_comment_element(a) for a in node.iterancestors())
        ):
            depth += 1
    return depth


def _repeated_item(el: etree._Element, levels: int = 4) -> etree._Element | None:
    """The nearest ancestor of ``el`` that is one of several like siblings (same tag and class): a list item."""
    node = el.getparent()
    for _ in range(levels):
        if node is None or _tag(node) in {"body", "html"}:
            return None
        parent = node.getparent()
        if parent is not None:
            alike = [c for c in parent if c.tag == node.tag and c.get("class") == node.get("class")]
            if len(alike) >= 2:
                return node
        node = parent
    return None


def _promoted_anchors(root: etree._Element, marked: set[etree._Element]) -> list[etree._Element]:
    """List items marked only by an empty anchor inside them (``<p id="comment-N"/>``, ``<a name="comment-N">``)."""
    found: list[etree._Element] = []
    with_text = {m for m in marked if visible_text(m)}
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        key = el.get("id") or (el.get("name") if _tag(el) == "a" else None) or ""
        if not _COMMENT_ID.search(key) or visible_text(el):
            continue
        item = _repeated_item(el)
        if item is None or item in found or any(m in with_text for m in item.iter()):
            continue
        if any(a in with_text for a in item.iterancestors()):
            continue
        found.append(item)
    return found


def _only_links(el: etree._Element, text: str) -> bool:
    linked = " ".join(visible_text(a) for a in el.iter("a"))
    return len(text.split()) <= 5 and " ".join(text.split()) == " ".join(linked.split())


# The blog owner's answer printed inside a reader's comment box: its own comment, a reply to the box's comment.
_OWNER_REPLY = re.compile(r"reply[-_](?:text|content|body)|(?:author|owner|admin)[-_]reply", re.IGNORECASE)


def extract_comments(root: etree._Element) -> list[HtmlComment]:
    marked = [el for el in root.iter() if _is_comment_element(el) and not _hidden(el)]
    promoted = set(_promoted_anchors(root, set(marked)))
    if promoted:
        marked = [el for el in root.iter() if el in promoted or el in set(marked)]
    marked_set = set(marked)
    boxes: list[tuple[etree._Element, str, list[etree._Element]]] = []
    for el in marked:
        if _excluded(el):
            continue
        nested = {d for d in el.iterdescendants() if d in marked_set}
        owner = [d for d in el.iterdescendants() if any(_OWNER_REPLY.fullmatch(t) for t in _tokens(d))]
        content = [d for d in el.iterdescendants() if any(_CONTENT_TOKEN.search(t) for t in _tokens(d))]
        if not any(
            c not in owner
            and not any(o in c.iterancestors() or c in o.iterancestors() for o in owner)
            and not any(_AUTHOR_TOKEN.search(t) for t in _tokens(c))
            and len(visible_text(c).split()) >= 1
            for c in content
        ):
            owner = []  # the reply class names the comment's own text, not a second answer inside it
        text, inner = _box_text(el, nested | set(owner))
        if len(re.findall(r"\w", text)) < 2:
            continue  # a wrapper whose comment sits in a nested element, or an empty anchor
        if _only_links(el, text):
            continue  # "Leave a comment", "Load more comments": a link, not a comment
        if nested and not _COMMENT_ID.search(el.get("id") or "") and any(_tag(d) == "form" for d in inner):
            continue  # the comment section around the list and the reply form ("Your comment *"), not a comment
        boxes.append((el, text, inner))
        for reply in owner:
            reply_text, reply_inner = _box_text(reply, nested)
            if len(re.findall(r"\w", reply_text)) >= 2:
                boxes.append((reply, reply_text, reply_inner))
    box_set = {b[0] for b in boxes}
    # A box inside another box's text would be counted twice: keep the inner one only when the outer has own text.
    by_id = {}
    for n, (el, _text, _inner) in enumerate(boxes):
        for key in ("data-id", "data-comment-id"):
            if el.get(key):
                by_id[el.get(key)] = n
    use_depth_class = all(_depth_class(el) is not None for el, _t, _i in boxes)
    comments: list[HtmlComment] = []
    last_at_depth: dict[int, int] = {}
    for n, (el, text, box_inner) in enumerate(boxes):
        inner = box_inner
        # Name and date may sit in the wrapper around the box (Drupal's article around the comment body).
        wrapper = next((a for a in el.iterancestors() if a in marked_set), None)
        if (
            wrapper is not None
            and wrapper not in box_set
            and not any(
                b is not el and wrapper in b.iterancestors() for b in box_set if b in set(wrapper.iterdescendants())
            )
        ):
            inner = list(_descendants_outside(wrapper, {b for b in box_set if b is not el}))
        author = _author(el, inner)
        if author is None:
            for node in [el, *list(el.iterancestors())[:2]]:
                prev = node.getprevious()
                if prev is not None and prev not in box_set:
                    author = _author(prev, list(prev.iter()))
                    if author:
                        break
        shown, iso = _date(inner)
        parent: int | None = None
        parent_id = el.get("data-parentid")
        host = next((i for i in range(n - 1, -1, -1) if boxes[i][0] in set(el.iterancestors())), None)
        if host is not None and any(_OWNER_REPLY.fullmatch(t) for t in _tokens(el)):
            parent, depth = host, comments[host].depth + 1
            if author is None:
                author = next((visible_text(a) for a in el.iter("a") if visible_text(a)), None)
            if shown is None:
                found = _DATE_IN_TEXT.search(visible_text(el))
                shown = found.group(0) if found else None
        elif parent_id and parent_id in by_id and by_id[parent_id] < n:
            parent = by_id[parent_id]
            depth = comments[parent].depth + 1
        else:
            depth = (_depth_class(el) if use_depth_class else _nesting(el, box_set)) or 0
            if depth > 0:
                candidates = [d for d in range(depth - 1, -1, -1) if d in last_at_depth]
                if candidates:
                    parent = last_at_depth[candidates[0]]
                    depth = comments[parent].depth + 1
                else:
                    depth = 0
        last_at_depth[depth] = n
        for deeper in [d for d in last_at_depth if d > depth]:
            del last_at_depth[deeper]
        comments.append(HtmlComment(text, author, shown, iso, parent, depth))
    # Where most boxes name their author, a box with neither name nor date is a notice, not a reader comment.
    if sum(1 for c in comments if c.author) * 2 > len(comments):
        keep = [i for i, c in enumerate(comments) if c.author or c.date]
        if len(keep) < len(comments):
            renumber = {old: new for new, old in enumerate(keep)}
            comments = [
                HtmlComment(
                    c.text,
                    c.author,
                    c.date,
                    c.date_iso,
                    renumber.get(c.parent) if c.parent is not None else None,
                    c.depth,
                )
                for i, c in enumerate(comments)
                if i in renumber
            ]
    return comments


def extract_bio(root: etree._Element) -> str | None:
    """The author bio box's text (its heading left out), if the page has one."""
    for el in root.iter():
        if not isinstance(el.tag, str) or _hidden(el) or _excluded_bio(el):
            continue
        heading = _tag(el) in {"h2", "h3", "h4", "h5", "h6", "strong", "p", "span", "div"} and bool(
            _BIO_HEADING.fullmatch(visible_text(el) or "-")
        )
        if heading:
            box = el.getparent()
            text = visible_text(box, {el}) if box is not None else ""
        elif any(_BIO_TOKEN.search(t) for t in _tokens(el)):
            text = visible_text(el)
        else:
            continue
        lines = [line for line in text.split("\n") if not _BIO_HEADING.fullmatch(line)]
        long_lines = [line for line in lines if len(line.split()) >= MIN_BIO_WORDS]
        if long_lines:
            return "\n".join(long_lines)
    return None


def _excluded_bio(el: etree._Element) -> bool:
    return any(_is_comment_element(a) for a in el.iterancestors())


def read_html_page(html: str) -> HtmlPage:
    root = parse_html(html)
    body = root.find("body")
    scope = body if body is not None else root
    headlines = tuple(t for t in (visible_text(h) for h in scope.iter("h1")) if t)
    language = (root.get("lang") or "").split("-")[0].lower() or None
    canonical = next((link.get("href") for link in root.iter("link") if (link.get("rel") or "") == "canonical"), None)
    site_name = next(
        (
            (meta.get("content") or "").strip()
            for meta in root.iter("meta")
            if (meta.get("property") or meta.get("name") or "").lower() in {"og:site_name", "application-name"}
        ),
        None,
    )
    return HtmlPage(
        tuple(extract_comments(scope)),
        extract_bio(scope),
        headlines,
        language,
        canonical or None,
        visible_text(scope),
        site_name or None,
    )

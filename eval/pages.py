"""``citesearch eval pages DIR``: how well pages are split into headline, article, bio and reader comments.

DIR holds ``pages/NAME.html``, a ``truth.jsonl`` (one record per page, the format of ``news-pages``: headline,
body_first/body_last, author_bio_start, comments with start/author/date/parent) and ``tools/render.py``, whose
``visible_text`` defines the "pasted text" rendering of a page. Every page is scored twice: loaded as its HTML file
and as its visible text saved to a ``.txt`` file, both through the same loaders ``citesearch index`` uses.

Comments are matched one-to-one in page order: truth comment i matches the next predicted comment (after the last
match) whose text contains its ``start``; a reply's parent is right when the predicted parent is the comment matched
to the truth parent. Snippets are compared with whitespace collapsed, as the truth is written.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from indexer.documents import Document
from indexer.errors import IngestError
from indexer.loaders import load_documents

RENDERINGS = ("html", "text")
# Lines of comment/article furniture that should never be left inside a part: buttons and labels of comment boxes,
# in the languages of the data. Counted, not used by the indexer (so the eval does not grade its own list).
FURNITURE_LINE = re.compile(
    r"(?:reply|antworten|répondre|responder|report|melden|like|log in to reply|says:|sagt:|dice:|dit\s?:|"
    r"permalink|quote|zitieren|\d+\s*(?:likes?|votes?)|flag|share|teilen)",
    re.IGNORECASE,
)
# A visible-text line of the article body with at least this many words is text, not furniture: if no part holds
# it, article text was dropped.
MIN_TEXT_LINE_WORDS = 8


class EvalPagesError(ValueError):
    """The folder is not a pages evaluation set (missing truth.jsonl or renderer, malformed record)."""


def norm(text: str) -> str:
    return re.sub(r"[\s\u00a0\u200b]+", " ", text).strip()


@dataclass(frozen=True, slots=True)
class PageScore:
    """One page in one rendering."""

    file: str
    rendering: str
    control: bool
    headline_expected: str | None
    headline_got: str
    headline_ok: bool | None  # None: the page has no headline
    body_first_ok: bool
    body_last_ok: bool
    bio_expected: bool
    bio_ok: bool | None
    comments_expected: int
    comments_got: int
    comments_matched: int
    replies_expected: int
    replies_ok: int
    authors_ok: int
    dates_ok: int
    fake_comments: int  # comment parts on a page without comments
    furniture_lines: int
    dropped_chars: int
    error: str | None = None
    misses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RenderingSummary:
    rendering: str
    pages: int
    comments_matched: float
    replies_parent: float
    authors: float
    dates: float
    fake_comments_controls: int
    headline_exact: float
    body_first_last: float
    bio_found: float
    furniture_lines: int
    dropped_chars: int
    pages_dropping: int
    errors: int
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PagesReport:
    dataset: str
    summaries: tuple[RenderingSummary, ...]
    pages: tuple[PageScore, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "summaries": [asdict(s) for s in self.summaries],
            "pages": [asdict(p) for p in self.pages],
        }


def load_renderer(dataset: Path) -> Callable[[str], str]:
    """``visible text`` of a page file, as the dataset's own tools/render.py defines it."""
    path = dataset / "tools" / "render.py"
    if not path.is_file():
        raise EvalPagesError(f"{path} not found: the visible-text renderer of the dataset is needed")
    spec = importlib.util.spec_from_file_location("_pages_render", path)
    if spec is None or spec.loader is None:
        raise EvalPagesError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def render(page: str) -> str:
        doc = module.parse(page)
        body = doc.find("body")
        return str(module.visible_text(body if body is not None else doc))

    return render


def load_truth(dataset: Path) -> list[dict[str, Any]]:
    path = dataset / "truth.jsonl"
    if not path.is_file():
        raise EvalPagesError(f"{path} not found")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalPagesError(f"{path}:{n}: malformed JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "file" not in record or not isinstance(record.get("comments"), list):
            raise EvalPagesError(f"{path}:{n}: not a truth record (needs file and comments)")
        records.append(record)
    return records


def _parts(doc: Document, section: str) -> list[str]:
    return [norm(doc.unit_text(u)) for u in doc.units if u.section == section]


def _match_comments(truth: Sequence[dict[str, Any]], got: Sequence[str]) -> list[int | None]:
    """For each truth comment, the index of the predicted comment matched to it (monotone, one-to-one)."""
    matched: list[int | None] = []
    j = 0
    for comment in truth:
        start = norm(str(comment.get("start") or ""))
        hit = next((k for k in range(j, len(got)) if start and start in got[k]), None)
        matched.append(hit)
        if hit is not None:
            j = hit + 1
    return matched


def _dropped_chars(visible: str, body_first: str | None, body_last: str | None, parts: Iterable[str]) -> int:
    """Characters of long body lines (between body_first and body_last in the visible text) that are in no part."""
    if not body_first or not body_last:
        return 0
    lines = visible.split("\n")
    first = next((i for i, line in enumerate(lines) if norm(body_first)[:60] in norm(line)), None)
    if first is None:
        return 0
    last = next((i for i in range(first, len(lines)) if norm(body_last)[-60:] in norm(lines[i])), None)
    if last is None:
        return 0
    joined = "\n".join(parts)
    dropped = 0
    for line in lines[first : last + 1]:
        text = norm(line)
        if len(text.split()) >= MIN_TEXT_LINE_WORDS and text not in joined:
            dropped += len(text)
    return dropped


def score_page(
    record: dict[str, Any], doc: Document | None, rendering: str, visible: str, error: str | None
) -> PageScore:
    truth_comments: list[dict[str, Any]] = record["comments"]
    control = not truth_comments
    replies = sum(1 for c in truth_comments if c.get("parent") is not None)
    headline = record.get("headline")
    if doc is None:
        return PageScore(
            record["file"], rendering, control, headline, "", False if headline else None, False, False,
            bool(record.get("author_bio_start")), False if record.get("author_bio_start") else None,
            len(truth_comments), 0, 0, replies, 0, 0, 0, 0, 0, 0, error,
        )  # fmt: skip
    articles = _parts(doc, "article")
    bios = _parts(doc, "author")
    comment_units = [u for u in doc.units if u.section == "comment"]
    comments = [norm(doc.unit_text(u)) for u in comment_units]
    misses: list[str] = []
    headline_ok = None if headline is None else norm(doc.title) == norm(headline)
    if headline_ok is False:
        misses.append(f"headline {doc.title!r}")
    body_first: str | None = record.get("body_first")
    body_last: str | None = record.get("body_last")
    first_ok = body_first is not None and any(norm(body_first) in a for a in articles)
    last_ok = body_last is not None and any(norm(body_last) in a for a in articles)
    if not first_ok:
        misses.append("body_first not in an article part")
    if not last_ok:
        misses.append("body_last not in an article part")
    bio_start = record.get("author_bio_start")
    bio_ok = None if not bio_start else any(norm(bio_start) in b for b in bios)
    if bio_ok is False:
        misses.append("bio not found")
    matched = _match_comments(truth_comments, comments)
    replies_ok = authors_ok = dates_ok = 0
    for i, comment in enumerate(truth_comments):
        hit = matched[i]
        if hit is None:
            continue
        unit = comment_units[hit]
        if comment.get("author") and unit.comment_author and norm(unit.comment_author) == norm(comment["author"]):
            authors_ok += 1
        if comment.get("date") and unit.comment_date and norm(comment["date"]) in norm(unit.comment_date):
            dates_ok += 1
        parent = comment.get("parent")
        if parent is not None:
            want = matched[parent]
            if want is not None and unit.parent == comment_units[want].comment_no:
                replies_ok += 1
    n_matched = sum(1 for m in matched if m is not None)
    if n_matched < len(truth_comments):
        first_miss = next(i for i, m in enumerate(matched) if m is None)
        misses.append(f"{len(truth_comments) - n_matched} comments unmatched (first #{first_miss})")
    furniture = sum(
        1
        for u in doc.units
        for line in doc.unit_text(u).split("\n")
        if line.strip() and FURNITURE_LINE.fullmatch(line.strip())
    )
    dropped = _dropped_chars(visible, body_first, body_last, [*articles, *bios, *comments])
    return PageScore(
        file=record["file"],
        rendering=rendering,
        control=control,
        headline_expected=headline,
        headline_got=doc.title,
        headline_ok=headline_ok,
        body_first_ok=first_ok,
        body_last_ok=last_ok,
        bio_expected=bool(bio_start),
        bio_ok=bio_ok,
        comments_expected=len(truth_comments),
        comments_got=len(comments),
        comments_matched=n_matched,
        replies_expected=replies,
        replies_ok=replies_ok,
        authors_ok=authors_ok,
        dates_ok=dates_ok,
        fake_comments=len(comments) if control else 0,
        furniture_lines=furniture,
        dropped_chars=dropped,
        misses=tuple(misses),
    )


def _ratio(num: int, den: int) -> float:
    return round(num / den, 4) if den else 1.0


def summarise(rendering: str, scores: Sequence[PageScore], truth: Sequence[dict[str, Any]]) -> RenderingSummary:
    comments = sum(s.comments_expected for s in scores)
    with_author = sum(1 for r in truth for c in r["comments"] if c.get("author"))
    with_date = sum(1 for r in truth for c in r["comments"] if c.get("date"))
    replies = sum(s.replies_expected for s in scores)
    headlines = [s for s in scores if s.headline_ok is not None]
    bios = [s for s in scores if s.bio_expected]
    return RenderingSummary(
        rendering=rendering,
        pages=len(scores),
        comments_matched=_ratio(sum(s.comments_matched for s in scores), comments),
        replies_parent=_ratio(sum(s.replies_ok for s in scores), replies),
        authors=_ratio(sum(s.authors_ok for s in scores), with_author),
        dates=_ratio(sum(s.dates_ok for s in scores), with_date),
        fake_comments_controls=sum(s.fake_comments for s in scores),
        headline_exact=_ratio(sum(1 for s in headlines if s.headline_ok), len(headlines)),
        body_first_last=_ratio(sum(1 for s in scores if s.body_first_ok and s.body_last_ok), len(scores)),
        bio_found=_ratio(sum(1 for s in bios if s.bio_ok), len(bios)),
        furniture_lines=sum(s.furniture_lines for s in scores),
        dropped_chars=sum(s.dropped_chars for s in scores),
        pages_dropping=sum(1 for s in scores if s.dropped_chars),
        errors=sum(1 for s in scores if s.error),
        counts={"comments": comments, "replies": replies, "headlines": len(headlines), "bios": len(bios)},
    )


def _load_one(path: Path) -> tuple[Document | None, str | None]:
    try:
        result = load_documents([path])
    except IngestError as exc:
        return None, str(exc).splitlines()[0]
    return result.documents[0], None


def run_pages(dataset: Path, renderings: Sequence[str] = RENDERINGS) -> PagesReport:
    truth = load_truth(dataset)
    render = load_renderer(dataset)
    scores: list[PageScore] = []
    summaries = []
    with tempfile.TemporaryDirectory(prefix="citesearch-pages-") as tmp:
        visible = {}
        for record in truth:
            page = dataset / "pages" / record["file"]
            if not page.is_file():
                raise EvalPagesError(f"{page} not found (named in truth.jsonl)")
            visible[record["file"]] = render(str(page))
        for rendering in renderings:
            rendering_scores = []
            for record in truth:
                page = dataset / "pages" / record["file"]
                if rendering == "html":
                    path = page
                else:
                    path = Path(tmp) / (Path(record["file"]).stem + ".txt")
                    path.write_text(visible[record["file"]] + "\n", encoding="utf-8")
                doc, error = _load_one(path)
                rendering_scores.append(score_page(record, doc, rendering, visible[record["file"]], error))
            summaries.append(summarise(rendering, rendering_scores, truth))
            scores += rendering_scores
    return PagesReport(str(dataset), tuple(summaries), tuple(scores))


ROWS: tuple[tuple[str, str], ...] = (
    ("comments matched in order", "comments_matched"),
    ("replies with the right parent", "replies_parent"),
    ("comment author right (of matched)", "authors"),
    ("comment date right (of matched)", "dates"),
    ("fake comments on controls", "fake_comments_controls"),
    ("headline exact", "headline_exact"),
    ("body first+last in article parts", "body_first_last"),
    ("author bio found", "bio_found"),
    ("furniture lines left in parts", "furniture_lines"),
    ("article chars dropped (long lines)", "dropped_chars"),
    ("pages dropping article text", "pages_dropping"),
    ("pages failing to load", "errors"),
)


def format_report(report: PagesReport, *, verbose: bool = False) -> str:
    names = [s.rendering for s in report.summaries]
    lines = [f"eval pages: {report.dataset} ({report.summaries[0].pages if report.summaries else 0} pages)", ""]
    lines.append(f"{'metric':<38}" + "".join(f"{n:>12}" for n in names))
    for label, key in ROWS:
        cells = []
        for s in report.summaries:
            value = getattr(s, key)
            cells.append(f"{value:>12.1%}" if isinstance(value, float) else f"{value:>12}")
        lines.append(f"{label:<38}" + "".join(cells))
    if verbose:
        lines.append("")
        for p in report.pages:
            if p.misses or p.error or p.fake_comments or p.dropped_chars:
                detail = "; ".join([*p.misses, *([p.error] if p.error else [])])
                extra = f" fake={p.fake_comments}" if p.fake_comments else ""
                extra += f" dropped={p.dropped_chars}" if p.dropped_chars else ""
                lines.append(
                    f"{p.rendering:<5} {p.file:<36} comments {p.comments_matched}/{p.comments_expected} "
                    f"(got {p.comments_got}) replies {p.replies_ok}/{p.replies_expected}{extra} {detail}"
                )
    return "\n".join(lines)

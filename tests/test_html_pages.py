"""HTML pages: reader comments, replies, furniture, bio and metadata read from small synthetic pages' markup."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from indexer.documents import Document
from indexer.html_document import choose_headline
from indexer.html_pages import extract_comments, parse_html, read_html_page
from indexer.loaders import load_documents

ARTICLE = " ".join(
    f"Sentence number {i} of the article says something about the council budget and the long debate."
    for i in range(12)
)

WORDPRESS = f"""<html lang="en"><head><title>Council passes the budget | Daily Example</title>
<meta property="og:site_name" content="Daily Example">
<meta property="article:published_time" content="2021-03-02T08:00:00+00:00">
<meta name="author" content="Ana Petrosyan">
<link rel="canonical" href="https://daily.example/council-budget"></head>
<body><nav><a href="/">Home</a></nav>
<article><h1>Council passes the budget</h1><p>{ARTICLE}</p></article>
<div class="author-bio"><h3>About the author</h3><p>Ana Petrosyan covers the city council and its budget for the paper
since 2015.</p></div>
<div id="comments"><h2>2 thoughts on “Council passes the budget”</h2>
<ol class="comment-list">
 <li id="comment-11" class="comment depth-1">
  <article id="div-comment-11" class="comment-body">
   <footer class="comment-meta"><div class="comment-author vcard"><img class="avatar" src="a.png">
    <b class="fn">Mary Reader</b> <span class="says">says:</span></div>
    <div class="comment-metadata"><a href="#comment-11"><time datetime="2021-03-03T17:12:00+00:00">March 3, 2021 at
    5:12 pm</time></a></div></footer>
   <div class="comment-content"><p>The budget leaves out the libraries entirely.</p></div>
   <div class="reply"><a class="comment-reply-link" href="#">Reply</a></div>
  </article>
  <ul class="children">
   <li id="comment-12" class="comment depth-2">
    <article id="div-comment-12" class="comment-body">
     <footer class="comment-meta"><div class="comment-author vcard"><b class="fn">Tom Other</b>
      <span class="says">says:</span></div>
      <div class="comment-metadata"><time datetime="2021-03-04T09:00:00+00:00">March 4, 2021 at 9:00 am</time></div>
     </footer>
     <div class="comment-content"><p>They are funded separately, see page 4.</p></div>
     <div class="reply"><a class="comment-reply-link" href="#">Reply</a></div>
    </article>
   </li>
  </ul>
 </li>
 <li id="comment-13" class="pingback depth-1"><div class="comment-body">Pingback: <a href="#">Another blog</a>
  quoting this article at length</div></li>
</ol>
<div id="respond" class="comment-respond"><h3>Leave a Reply</h3><form class="comment-form"><p>Your email address
 will not be published.</p><textarea name="comment"></textarea></form></div>
</div>
<aside class="widget widget_recent_comments"><ul><li class="recentcomments">Joe on <a href="#">Other story</a></li>
</ul></aside>
</body></html>"""

DRUPAL = (
    "<html><head><title>Drupal story</title></head><body><h1>Drupal story</h1>"
    f"""<div class="content"><p>{ARTICLE}</p>
</div><section id="comments">
<a id="comment-1"></a><div class="comment"><div class="submitted"><span class="username">First Person</span>
 <span class="date">18. Oktober 2023 - 13:11</span></div><div class="field-name-comment-body"><p>Erster Kommentar zum
 Artikel.</p></div><ul class="links"><li class="comment-reply"><a href="#">Antworten</a></li></ul></div>
<div class="indented"><a id="comment-2"></a><div class="comment"><div class="submitted"><span class="username">Second
 Person</span></div><div class="field-name-comment-body"><p>Antwort auf den ersten Kommentar.</p></div></div></div>
<a id="comment-3"></a><div class="comment"><div class="submitted"><span class="username">Third Person</span></div>
<div class="field-name-comment-body"><p>Ein dritter, neuer Kommentar.</p></div></div>
</section></body></html>"""
)

CONTROL = f"""<html><head><title>No comments here</title></head><body><h1>No comments here</h1>
<article><p>{ARTICLE}</p><ol><li>First numbered point of the story.</li><li>Second numbered point.</li></ol></article>
<div class="widget_recent_comments"><h3>Recent comments</h3><ul><li class="recent-comment"><div class="comment-wrap">
<span class="comment-author-link">Joe</span> on <a href="#">Another article entirely</a></div></li></ul></div>
<div id="respond" class="comment-respond"><form id="commentform"><label>Comment *</label><textarea></textarea>
<input type="submit" value="Post Comment"></form></div>
<div class="comments-count"><a href="#">12 Comments</a></div>
</body></html>"""


def _load(tmp_path: Path, name: str, html: str) -> Document:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return load_documents([path]).documents[0]


def _comments(doc: Document) -> list[tuple[int | None, str, str | None, int | None, int]]:
    return [
        (u.comment_no, doc.unit_text(u), u.comment_author, u.parent, u.depth)
        for u in doc.units
        if u.section == "comment"
    ]


def test_wordpress_comments_nesting_and_furniture(tmp_path: Path) -> None:
    doc = _load(tmp_path, "wp.html", WORDPRESS)
    assert _comments(doc) == [
        (1, "The budget leaves out the libraries entirely.", "Mary Reader", None, 0),
        (2, "They are funded separately, see page 4.", "Tom Other", 1, 1),
    ]  # no "says:", "Reply", avatar or date in the text; the pingback, the form and the sidebar are no comments
    first = next(u for u in doc.units if u.section == "comment")
    assert first.comment_date == "March 3, 2021 at 5:12 pm"
    assert first.comment_date_iso == "2021-03-03T17:12:00+00:00"


def test_wordpress_page_metadata_headline_and_bio(tmp_path: Path) -> None:
    doc = _load(tmp_path, "wp.html", WORDPRESS)
    assert doc.title == "Council passes the budget"  # the site name after "|" is not part of the headline
    assert doc.metadata["author"] == "Ana Petrosyan"
    assert doc.metadata["published"].startswith("2021-03-02")
    assert doc.metadata["site_name"] == "Daily Example"
    assert doc.metadata["canonical_url"] == "https://daily.example/council-budget"
    assert doc.metadata["language"] == "en"
    bios = [doc.unit_text(u) for u in doc.units if u.section == "author"]
    assert len(bios) == 1 and bios[0].startswith("Ana Petrosyan covers the city council")
    articles = " ".join(doc.unit_text(u) for u in doc.units if u.section == "article")
    assert "Sentence number 0 of the article" in articles and "Sentence number 11 of the article" in articles
    assert "covers the city council" not in articles  # the bio is its own part, stored once


def test_drupal_indented_replies_and_name_from_the_wrapper() -> None:
    comments = extract_comments(parse_html(DRUPAL))
    assert [(c.text, c.author, c.parent, c.depth) for c in comments] == [
        ("Erster Kommentar zum Artikel.", "First Person", None, 0),  # a source line break is a space
        ("Antwort auf den ersten Kommentar.", "Second Person", 0, 1),
        ("Ein dritter, neuer Kommentar.", "Third Person", None, 0),
    ]  # fmt: skip
    assert comments[0].date == "18. Oktober 2023 - 13:11"


def test_control_page_has_no_comments(tmp_path: Path) -> None:
    """Recent-comments sidebars, reply forms and comment counters are not comments."""
    assert extract_comments(parse_html(CONTROL)) == []
    doc = _load(tmp_path, "control.html", CONTROL)
    assert [u.section for u in doc.units] and all(u.section == "article" for u in doc.units)


def test_owner_answer_inside_a_comment_box_is_its_own_reply() -> None:
    items = "".join(
        f'<ul class="single-post"><li class="post-info"><a name="comment-{n}"></a><span class="user-name">'
        f'<a href="#">Reader {n}</a></span><span class="post-time">2013/12/28 10:2{n}</span></li>'
        f'<li class="post-text"><p id="comment-{n}"></p>Comment text number {n}</li>'
        f'<li class="reply-text">Thanks reader {n}! <p><a href="#">Blog Owner</a> 2014/01/01 20:3{n}</p></li></ul>'
        for n in (1, 2)
    )
    page = read_html_page(f"<html><body><h1>Trip</h1><p>{ARTICLE}</p><div>{items}</div></body></html>")
    assert [(c.author, c.parent) for c in page.comments] == [
        ("Reader 1", None),
        ("Blog Owner", 0),
        ("Reader 2", None),
        ("Blog Owner", 2),
    ]
    assert page.comments[0].text == "Comment text number 1"


@pytest.mark.parametrize(
    ("title", "h1s", "sites", "expected"),
    [
        ("Story title - example.com", ("Story title",), ("example.com",), "Story title"),
        ('"Quote": Story', ("„Quote“: Story",), (), "„Quote“: Story"),  # the h1 as shown, typographic quotes
        ("Kicker: Story", ("Story",), (), "Story"),
        ("Site Name", ("Site Name",), ("site-name.org",), None),
        ("Story » Blog Network", (), ("Blog Network",), "Story"),
    ],
)
def test_choose_headline(title: str, h1s: tuple[str, ...], sites: tuple[str, ...], expected: str | None) -> None:
    names = tuple(s.replace("-", " ") if s.endswith(".org") else s for s in sites)
    assert choose_headline(title, h1s, sites or names) == expected


def test_every_unit_of_an_html_page_is_an_exact_span(tmp_path: Path) -> None:
    doc = _load(tmp_path, "wp.html", WORDPRESS)
    for unit in doc.units:
        text = doc.unit_text(unit)
        assert text == text.strip() and text  # stripped, never empty
    spans = sorted((u.char_start, u.char_end) for u in doc.units)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no overlap

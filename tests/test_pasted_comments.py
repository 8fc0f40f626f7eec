"""Pasted page text: comment sections by their shape in en/de/fr/es, false headers, forms, headlines, chrome."""

from __future__ import annotations

import pytest

from indexer.pages import ParsedPage, parse_page

BODY = "\n".join(
    f"Paragraph {i} of the article explains the council's budget in some detail, with figures and quotes from "
    f"the members who argued about it for hours on Tuesday night."
    for i in range(4)
)


def _comments(page: str, parsed: ParsedPage) -> list[tuple[str, str | None, str | None]]:
    return [
        (page[u.char_start : u.char_end], u.comment_author, u.comment_date)
        for u in parsed.units
        if u.section == "comment"
    ]


def _article(page: str, parsed: ParsedPage) -> str:
    return "\n".join(page[u.char_start : u.char_end] for u in parsed.units if u.section == "article")


def test_english_wordpress_comments_with_says_date_and_reply() -> None:
    page = (
        "Skip to content\nHome\nCouncil passes the budget after a long night\nBy Ana Petrosyan\n"
        f"March 2, 2021\n{BODY}\n"
        "2 thoughts on “Council passes the budget”\n"
        "Mary Reader says:\nMarch 3, 2021 at 5:12 pm\nThe libraries are left out entirely.\nReply\n"
        "Tom Other says:\nMarch 4, 2021 at 9:00 am\nThey are funded separately.\nSee page 4.\nReply\n"
        "Leave a Reply\nYour email address will not be published. Required fields are marked *\nComment *\n"
    )
    parsed = parse_page(page, fallback_title="stem")
    assert _comments(page, parsed) == [
        ("The libraries are left out entirely.", "Mary Reader", "March 3, 2021 at 5:12 pm"),
        ("They are funded separately.\nSee page 4.", "Tom Other", "March 4, 2021 at 9:00 am"),
    ]
    assert [u.comment_no for u in parsed.units if u.section == "comment"] == [1, 2]
    assert "Paragraph 0 of the article" in _article(page, parsed)
    assert "Paragraph 3 of the article" in _article(page, parsed)
    assert parsed.title == "Council passes the budget after a long night"  # not "Skip to content" or the date
    assert parsed.chrome_chars > 0  # the form and the buttons were left out, and counted


@pytest.mark.parametrize(
    ("header", "lines", "expected"),
    [
        (
            "17 Kommentare",
            ["Auslandsoesi sagt:", "1. November 2023 um 11:54 Uhr", "Und wenn ich das sehe.", "3", "Antworten",
             "Anna Schneider sagt:", "1. November 2023 um 11:36 Uhr", "Dieses Amt gehört abgeschafft.", "Antworten"],
            [("Und wenn ich das sehe.", "Auslandsoesi"), ("Dieses Amt gehört abgeschafft.", "Anna Schneider")],
        ),
        (
            "Vos réactions",
            ["très bien vos infos.", "gabriel sempéré", "Le 11 septembre 2018 à 12:57", "Répondre",
             "Articles très bien faits.", "lebrec jacques", "Le 13 septembre 2019 à 22:30"],
            [("très bien vos infos.", "gabriel sempéré"), ("Articles très bien faits.", "lebrec jacques")],
        ),
        (
            "Se han publicado 2 comentarios",
            ["Ramón dijo:", "Estoy convencido de que no son pocos.", "26 abril 2022 a las 14:02", "/ Responder",
             "rebelde dijo:", "Ramón, no entiendo con claridad.", "26 abril 2022 a las 15:11", "/ Responder"],
            [("Estoy convencido de que no son pocos.", "Ramón"), ("Ramón, no entiendo con claridad.", "rebelde")],
        ),
    ],
)  # fmt: skip
def test_comment_shapes_in_german_french_spanish(
    header: str, lines: list[str], expected: list[tuple[str, str]]
) -> None:
    page = "\n".join(["Headline of the story here", BODY, header, *lines]) + "\n"
    parsed = parse_page(page, fallback_title="stem")
    assert [(text, author) for text, author, _date in _comments(page, parsed)] == expected


def test_a_heading_that_looks_like_a_header_keeps_the_article_whole() -> None:
    """'Response' inside the article and a '2 responses' counter under the byline start no comment section."""
    page = f"The mayor's plan\nBy Ana\n2 responses\n{BODY}\nResponse\n{BODY.replace('Paragraph', 'Later paragraph')}\n"
    parsed = parse_page(page, fallback_title="stem")
    assert not _comments(page, parsed)
    article = _article(page, parsed)
    for i in range(4):
        assert f"Paragraph {i} of the article" in article and f"Later paragraph {i} of the article" in article


def test_a_numbered_comment_form_is_not_comments() -> None:
    page = (
        f"Story headline for the form test\n{BODY}\nLeave a comment\n1. Your name *\n2. Your e-mail *\n"
        "3. Spam robots, please fill in this field\n"
    )
    parsed = parse_page(page, fallback_title="stem")
    assert not _comments(page, parsed)
    assert "Paragraph 3 of the article" in _article(page, parsed)


def test_pingbacks_are_not_comments() -> None:
    page = (
        f"Story headline for pingbacks\n{BODY}\n3 thoughts on “Story”\n"
        "photobix 11. Dezember 2012 um 11:07\nDanke!\nAntwort ↓\n"
        "Pingback: Another blog | Somewhere\n"
        "jeuys 11. Dezember 2012 um 12:57\nRichtig, das sehe ich auch so.\nAntwort ↓\n"
    )
    parsed = parse_page(page, fallback_title="stem")
    assert [(t, a) for t, a, _d in _comments(page, parsed)] == [
        ("Danke!", "photobix"),
        ("Richtig, das sehe ich auch so.", "jeuys"),
    ]


def test_every_span_is_exact_and_nothing_outside_the_units_is_article_text() -> None:
    page = (
        f"Menu\nHeadline of the span test story\n{BODY}\nComments\nMary says:\nMarch 3, 2021 at 5:12 pm\nGood.\n"
        "Reply\nTom says:\nMarch 4, 2021\nAgreed with Mary.\nReply\n"
    )
    parsed = parse_page(page, fallback_title="stem")
    for unit in parsed.units:
        text = page[unit.char_start : unit.char_end]
        assert text and text == text.strip()
    covered = "".join(page[u.char_start : u.char_end] for u in parsed.units)
    for line in BODY.split("\n"):
        assert line in covered


def test_a_forum_quote_makes_the_comment_a_reply_but_an_at_name_does_not() -> None:
    page = (
        f"Headline of the forum story\n{BODY}\n3 Comments\n"
        "michaelbrandi\n17 September 2020 16:08\nIt seems mostly to be vaporware.\nReply\n"
        "hotaru.hino\n17 September 2020 16:10\nmichaelbrandi said:\nIt seems mostly to be vaporware.\n"
        "I expect the same thing.\nReply\n"
        "Ast1on\n17 September 2020 16:13\n@hotaru.hino A 650W PSU will be fine.\nReply\n"
    )
    parsed = parse_page(page, fallback_title="stem")
    comments = [u for u in parsed.units if u.section == "comment"]
    assert [(u.comment_author, u.parent, u.depth) for u in comments] == [
        ("michaelbrandi", None, 0),
        ("hotaru.hino", 1, 1),
        ("Ast1on", None, 0),
    ]
    assert page[comments[1].char_start : comments[1].char_end].startswith("michaelbrandi said:")  # quote is text

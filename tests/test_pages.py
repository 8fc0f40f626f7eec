"""Page structure: the seed news page's headline, article, author bio (once) and five comments; plain pages; and the
same rules on pages that share none of the seed's wording."""

from __future__ import annotations

import pytest

from indexer.documents import Unit
from indexer.pages import parse_page
from tests.conftest import SEED_ARTICLE, SEED_PAGE, SEEDS

CHROME_PHRASES = (
    "NewsHeadline",
    "Leave a Reply",
    "Back to top",
    "Latest posts by",
    "(see all)",
    "Your email address",
    "Required fields",
    "6 Comments",
)


def _texts(text: str, units: tuple[Unit, ...], section: str | None = None) -> list[str]:
    return [text[u.char_start : u.char_end] for u in units if section is None or u.section == section]


def _assert_spans_exact_and_ordered(text: str, units: tuple[Unit, ...]) -> None:
    previous_end = 0
    for unit in units:
        quoted = text[unit.char_start : unit.char_end]
        assert quoted and quoted == quoted.strip()
        assert previous_end <= unit.char_start < unit.char_end <= len(text)
        previous_end = unit.char_end


@pytest.fixture(scope="module")
def seed_page() -> tuple[str, tuple[Unit, ...], str]:
    text = (SEEDS / SEED_PAGE).read_text(encoding="utf-8")
    parsed = parse_page(text, fallback_title="003")
    return text, parsed.units, parsed.title


def test_seed_page_title_is_the_headline(seed_page) -> None:
    assert seed_page[2] == "Lavrov’s visit to Yerevan highlights regional tensions and shifting alliances"


def test_seed_page_has_five_comments_in_page_order_without_their_numbers(seed_page) -> None:
    text, units, _ = seed_page
    comments = [u for u in units if u.section == "comment"]
    assert [u.comment_no for u in comments] == [1, 2, 3, 4, 5]  # the page's header says "6 Comments"
    assert [u.char_start for u in comments] == sorted(u.char_start for u in comments)
    first, second, _, fourth, last = _texts(text, units, "comment")
    assert first.startswith("The contrast between Mirzoyan and Lavrov, couldn’t be starker.")
    assert first.endswith("led by such incompetent men during its most perilous moments.")
    assert second.startswith("In recent remarks, Russian Foreign Minister Sergey Lavrov claimed")
    assert second.endswith("The Armenian people will not forget—and neither should the world.")
    assert fourth.startswith("@Hagop") and fourth.endswith("Just look at a map.")
    assert last.startswith("Looking at a map it’s clear that Armenia doesn’t actually adjoin Russia")
    assert last.endswith("Azerbaijan Israel best friend in the area recognised Palestine in 1992")
    for comment in comments:  # the list number sits just before the unit, outside it
        assert text[comment.char_start - 3 : comment.char_start] == f"{comment.comment_no}. "
    assert all(u.comment_no is None for u in units if u.section != "comment")


def test_seed_page_author_bio_is_kept_once(seed_page) -> None:
    text, units, _ = seed_page
    authors = [u for u in units if u.section == "author"]
    assert len(authors) == 1
    bio = text[authors[0].char_start : authors[0].char_end]
    assert bio.startswith("Hoory Minoyan was an active member") and bio.endswith("to the Armenian Weekly.")
    assert text.count(bio) == 2 and authors[0].char_start == text.index(bio)  # the page prints it twice
    assert not any("Hoory Minoyan" in article for article in _texts(text, units, "article"))
    assert sum(bio[:80] in quoted for quoted in _texts(text, units)) == 1


def test_seed_page_article_runs_from_dateline_to_last_paragraph(seed_page) -> None:
    text, units, title = seed_page
    articles = _texts(text, units, "article")
    assert articles[0].startswith("YEREVAN—Armenian Foreign Minister Ararat Mirzoyan")
    assert articles[-1].endswith("distort the true nature of the demand for return.")
    joined = "\n".join(articles)
    assert "Constitutional amendments in Armenia" in joined and "Dissolution of the OSCE Minsk Group" in joined
    assert title not in joined  # the headline is the title, not article text
    assert units[0].section == "article"


def test_seed_page_drops_chrome_and_keeps_spans_exact(seed_page) -> None:
    text, units, _ = seed_page
    _assert_spans_exact_and_ordered(text, units)
    for quoted in _texts(text, units):
        for phrase in CHROME_PHRASES:
            assert phrase not in quoted
    # What no unit covers is the headline, chrome and the author box; no article or comment sentence is lost.
    outside = text
    for unit in sorted(units, key=lambda u: -u.char_start):
        outside = outside[: unit.char_start] + outside[unit.char_end :]
    assert "Lavrov" not in outside.replace("Lavrov’s visit to Yerevan", "")
    assert outside.count("Hoory Minoyan was an active member") == 1  # the second copy of the bio


def test_plain_article_is_one_unit_titled_by_file_name_when_first_sentence_is_long() -> None:
    text = (SEEDS / SEED_ARTICLE).read_text(encoding="utf-8")
    parsed = parse_page(text, fallback_title="000_d73893d2131be99a")
    assert len(parsed.units) == 1 and parsed.units[0].section == "article"
    assert text[parsed.units[0].char_start : parsed.units[0].char_end] == text.strip()
    first_sentence = text[: text.index("in the region.") + len("in the region.")]
    assert len(first_sentence) > 120  # so the file name is the title
    assert parsed.title == "000_d73893d2131be99a"


def test_plain_text_title_is_its_short_first_sentence() -> None:
    text = "\n  Yerevan hosted a chess festival.  It drew players from twenty countries.\n\nMore next year.\n"
    parsed = parse_page(text, fallback_title="stem")
    assert parsed.title == "Yerevan hosted a chess festival."
    assert _texts(text, parsed.units) == [text.strip()]
    assert parse_page("# Chess in Yerevan\n\nBody text here.", fallback_title="stem").title == "Chess in Yerevan"


def test_given_title_wins_over_headline_and_first_sentence() -> None:
    page = "NewsHeadline\n\nThe headline\n\nBody sentence one."
    assert parse_page(page, fallback_title="stem").title == "The headline"
    assert parse_page(page, fallback_title="stem", title="From jsonl").title == "From jsonl"
    assert parse_page("Short body.", fallback_title="stem", title="From jsonl").title == "From jsonl"


@pytest.mark.parametrize("text", ["", "   \n\n\t  \n"])
def test_empty_text_has_no_units(text: str) -> None:
    parsed = parse_page(text, fallback_title="stem")
    assert parsed.units == () and parsed.title == "stem"


BIO = (
    "Ana Petrosyan covers energy and transport for the paper and has reported from Tbilisi, Baku and Tehran since 2015."
)
OTHER_PAGE = f"""Headline

Rail link to reopen after thirty years

GYUMRI—The rail link between the two countries will reopen next spring, officials said on Monday.

Share

The line was closed in 1993 and needs new signalling along most of its length.

Ana Petrosyan

{BIO}

Latest posts by Ana Petrosyan (see all)

Ana Petrosyan

{BIO}

3 Responses

 1. Finally some good news for the region.
    Reply

 2. I remember the old trains.
    2020. was the year they were last discussed, and nothing came of it.
    Reply

 3. Who pays for the signalling?

Leave a Comment

Your email address will not be published. Required fields are marked *

Name *
"""


def test_same_rules_on_a_page_with_other_wording() -> None:
    parsed = parse_page(OTHER_PAGE, fallback_title="stem")
    assert parsed.title == "Rail link to reopen after thirty years"
    _assert_spans_exact_and_ordered(OTHER_PAGE, parsed.units)
    # The "Share" button between two paragraphs splits the article instead of being quoted.
    assert _texts(OTHER_PAGE, parsed.units, "article") == [
        "GYUMRI—The rail link between the two countries will reopen next spring, officials said on Monday.",
        "The line was closed in 1993 and needs new signalling along most of its length.",
    ]
    assert _texts(OTHER_PAGE, parsed.units, "author") == [BIO]
    # "2020." inside comment 2 is not a list number (wrong number, deeper indent); "Reply" buttons are dropped.
    assert _texts(OTHER_PAGE, parsed.units, "comment") == [
        "Finally some good news for the region.",
        "I remember the old trains.\n    2020. was the year they were last discussed, and nothing came of it.",
        "Who pays for the signalling?",
    ]
    assert [u.comment_no for u in parsed.units if u.section == "comment"] == [1, 2, 3]
    assert not any("Name *" in t or "Reply" in t for t in _texts(OTHER_PAGE, parsed.units))


def test_bio_printed_once_is_found_by_the_author_line() -> None:
    page = (
        "The council met on Tuesday and approved the budget for next year after a long debate.\n\n"
        f"{BIO}\n\nLatest posts by Ana Petrosyan (see all)\n"
    )
    parsed = parse_page(page, fallback_title="stem")
    assert [u.section for u in parsed.units] == ["article", "author"]
    assert _texts(page, parsed.units, "author") == [BIO]


@pytest.mark.parametrize("tail", ["", "\n\nLatest posts by Ana Petrosyan (see all)"])
def test_a_paragraph_the_article_repeats_is_not_taken_for_a_bio(tail: str) -> None:
    quote = "We will not accept any agreement that leaves the question of the border open for another decade."
    page = f"First paragraph of the story.\n\n{quote}\n\nMiddle paragraph.\n\n{quote}\n\nLast paragraph.{tail}"
    parsed = parse_page(page, fallback_title="stem")
    assert [u.section for u in parsed.units] == ["article"]
    assert _texts(page, parsed.units) == [page[: page.index("Last paragraph.") + len("Last paragraph.")]]


def test_comments_without_numbers_are_one_per_paragraph() -> None:
    page = "The story itself.\n\n2 Comments\n\nFirst reader here.\n\nSecond reader,\non two lines.\n\nLeave a Reply\n"
    parsed = parse_page(page, fallback_title="stem")
    assert _texts(page, parsed.units, "comment") == ["First reader here.", "Second reader,\non two lines."]
    assert [u.comment_no for u in parsed.units if u.section == "comment"] == [1, 2]
    assert _texts(page, parsed.units, "article") == ["The story itself."]


_BODY = (
    "The council met on Tuesday evening to discuss the new budget for the coming year and the plans for schools. "
    "Members argued for three hours about the money that the city will spend on roads, parks and public transport.\n"
    "A second paragraph of running text follows here, long enough to count as the article body of this page and "
    "not as a teaser or a cookie banner that a page prints only once at the very top of everything else.\n"
)


def test_pasted_headline_is_the_line_before_the_standfirst_not_a_kicker_teaser_or_menu() -> None:
    page = (
        "Home\nNews\nSport\nCulture\n"
        "Council budget\n"  # a kicker: the headline follows it
        "City Council Agrees on a Budget After Long Debate\n"
        "The vote came after hours of argument about roads, schools and the parks of the city.\n"
        "By Jane Doe\nMarch 3, 2021\n"
        "Recent Posts\nMarch 1, 2021\nHow to Plant Tulips in Spring\nRead more\n" + _BODY
    )
    assert parse_page(page, fallback_title="x").title == "City Council Agrees on a Budget After Long Debate"


def test_pasted_headline_skips_a_sentence_fragment_and_a_table_of_contents() -> None:
    page = (
        "Example Site\nAbout\n"
        "Change the Font Size of a Plot in Five Steps\n"
        "In this article, I explain how to increase and decrease the font sizes of the plots you make today.\n"
        "Example 1: Change Font Size of All Text\nExample 2: Change Font Size of Axis Text\n"
        "Example 3: Change Font Size of the Legend\n"
        "continues the sentence of a line before it\n" + _BODY
    )
    assert parse_page(page, fallback_title="x").title == "Change the Font Size of a Plot in Five Steps"


def test_first_person_bio_after_the_comments_needs_a_capitalised_name() -> None:
    from indexer.bios import first_person_bio, fold

    article_line = "The article explains how to change the size of every text element of a plot."
    comment_line = "I'm Anna. Thanks a lot, this helped me with my thesis plots yesterday."
    bio_line = "I’m Joachim Schork. On this website, I provide statistics tutorials in R and Python."
    visible = f"Menu\n{article_line}\n{comment_line}\nLeave a Reply\n{bio_line}\nRelated Tutorials"
    article = {fold(article_line), fold(bio_line)}  # an extractor took the sidebar box into the article
    assert first_person_bio(visible, {fold(comment_line)}, article) == bio_line
    # No name after "I am": no bio; a comment's own line is never the bio.
    plain = visible.replace(bio_line, "I am happy to share these statistics tutorials with all of you every week.")
    assert first_person_bio(plain, {fold(comment_line)}, article) is None

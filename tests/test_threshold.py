"""Calibrating the answer threshold: the choice on hand-made scores, and the calibration on the real seed index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citesearch.cli import main
from citesearch.search import Searcher
from citesearch.settings import Settings
from eval.questions import QuestionSetError
from eval.threshold import (
    ANSWERABLE_MARGIN,
    NEAR_MISS,
    OFF_TOPIC,
    UNANSWERABLE_QUESTIONS,
    accuracy_optimal_threshold,
    calibrate,
    choose_threshold,
    decide,
    format_calibration,
    load_unanswerable,
)
from index_store import open_index


# -- choosing the threshold on hand-made scores --------------------------------------------------------------------
def test_the_threshold_is_the_lowest_answerable_score_minus_the_margin_rounded_down() -> None:
    assert ANSWERABLE_MARGIN == 0.05
    # 0.414 - 0.05 = 0.364 -> 0.36; unanswerable scores, however high, do not move it.
    assert choose_threshold([0.891, 0.414, 0.691]) == 0.36
    # Exactly on two decimals stays there, despite 0.41 - 0.05 being 0.35999999999999993 in floating point.
    assert choose_threshold([0.41, 0.8]) == 0.36
    assert choose_threshold([0.5, 0.6], margin=0.1) == 0.4
    # Rounded down, never up: the margin is at least ANSWERABLE_MARGIN.
    assert choose_threshold([0.419]) == 0.36 and 0.419 - choose_threshold([0.419]) >= ANSWERABLE_MARGIN


def test_every_answerable_question_is_answered_even_when_unanswerable_ones_overlap() -> None:
    answerable = [0.5, 0.6, 0.7, 0.8]
    unanswerable = [0.1, 0.52, 0.53, 0.54]
    threshold = choose_threshold(answerable)
    assert threshold == pytest.approx(0.45)
    decisions = decide(answerable, unanswerable, threshold)
    assert (decisions.answered, decisions.null) == (4, 1)  # the near misses are answered: the rule's known price


def test_a_question_without_a_score_does_not_pull_the_threshold_down() -> None:
    # No passage at all: unanswerable at any threshold, so it cannot set one; it is still counted as not answered.
    assert choose_threshold([None, 0.6]) == 0.55
    assert decide([None, 0.6], [], 0.55).answered == 1
    with pytest.raises(ValueError, match="no answerable question has a score"):
        choose_threshold([None])


def test_accuracy_optimal_threshold_maximises_correct_decisions() -> None:
    # The comparison the report shows next to the chosen threshold.
    answerable = [0.5, 0.6, 0.7, 0.8]
    unanswerable = [0.1, 0.52, 0.53, 0.54]
    # Answering everything above 0.1 gets 5 of 8 right; the gap (0.54, 0.6] gets 7 of 8 (only 0.5 is lost).
    threshold = accuracy_optimal_threshold(answerable, unanswerable)
    assert threshold == pytest.approx(0.57)
    decisions = decide(answerable, unanswerable, threshold)
    assert (decisions.answered, decisions.null, decisions.correct) == (3, 4, 7)
    # Equally good gaps go to the widest and its midpoint: (0.2, 0.5] and (0.55, 0.6] both make 6 of 7 right.
    assert accuracy_optimal_threshold([0.5, 0.6, 0.7, 0.8], [0.1, 0.2, 0.55]) == pytest.approx(0.35)


def test_decisions_follow_extract_answer_and_count_groups() -> None:
    # A score equal to the threshold is answered (extract_answer refuses only below it); no score is never answered.
    decisions = decide([0.5, None], [0.5, None], 0.5)
    assert (decisions.answered, decisions.null, decisions.accuracy) == (1, 1, 0.5)
    grouped = decide([0.6], [0.1, 0.2, 0.4, 0.45], 0.3, [OFF_TOPIC, OFF_TOPIC, NEAR_MISS, NEAR_MISS])
    assert [(g.group, g.null, g.total) for g in grouped.groups] == [(OFF_TOPIC, 2, 2), (NEAR_MISS, 0, 2)]
    assert grouped.null == 2 and grouped.group(NEAR_MISS).total == 2


def test_unanswerable_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text(
        '{"question": "fine?", "note": "near miss: x"}\n\n{"note": "off-topic: no question"}\n', encoding="utf-8"
    )
    with pytest.raises(QuestionSetError, match=r"u\.jsonl:3: expected an object with a non-empty 'question'"):
        load_unanswerable(path)
    path.write_text('{"question": "fine?", "note": "off-topic: x"}\n{"question": "which group?"}\n', encoding="utf-8")
    with pytest.raises(QuestionSetError, match=r"u\.jsonl:2: expected a 'note' starting with 'off-topic:' or"):
        load_unanswerable(path)
    packaged = load_unanswerable(UNANSWERABLE_QUESTIONS)
    assert len(packaged) >= 25
    assert {q.group for q in packaged} == {OFF_TOPIC, NEAR_MISS}


def test_cli_without_an_index_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "threshold", "--index-dir", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("citesearch: error: ") and "\n" not in err


# -- the calibration on the real seed index ------------------------------------------------------------------------
def test_calibration_on_the_seed_index(seed_index, real_embedder) -> None:
    settings = Settings(index_dir=seed_index[0], _env_file=None)
    with open_index(seed_index[0]) as reader:
        result = calibrate(Searcher(reader, real_embedder), settings)
    assert result.chosen.answerable == 34 and result.chosen.unanswerable >= 25
    assert result.chosen.threshold == result.threshold
    assert result.current.threshold == settings.answer_min_score
    assert result.accuracy_optimal.accuracy >= result.accuracy  # the comparison is the best accuracy there is
    assert json.loads(json.dumps(result.to_dict()))["chosen"]["correct"] == result.chosen.correct
    figures = format_calibration(result)
    # The requirement (recall first): at the chosen threshold every answerable seed question is answered and every
    # off-topic question is refused. Near misses are not required to be refused (docs/evaluation.md).
    assert result.chosen.answered == result.chosen.answerable, figures
    off_topic = result.chosen.group(OFF_TOPIC)
    assert off_topic.total >= 10 and off_topic.null == off_topic.total, figures
    assert result.chosen.group(NEAR_MISS).total >= 10, figures
    # The shipped default is the calibrated value: a change to the model, chunker or answer code that moves the
    # lowest answerable score fails here until the default (and docs/evaluation.md) are updated. One step (0.01) of
    # slack: int8 kernels differ between CPUs (AVX2, AVX-512 VNNI) and move scores by thousandths, which may round
    # the calibration to the neighbouring step on another machine. The requirement itself holds at the default:
    default = Settings.model_fields["answer_min_score"].default
    assert abs(default - result.threshold) <= 0.01 + 1e-9, figures
    assert result.current.threshold == default and result.current.answered == result.current.answerable, figures
    assert result.current.group(OFF_TOPIC).null == off_topic.total, figures

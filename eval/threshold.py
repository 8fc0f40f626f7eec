"""Calibrating the answer threshold (``settings.answer_min_score``) on answerable and unanswerable questions.

``POST /ask`` answers null when the best sentence of the top passages scores below the threshold. For every question
this module runs ``citesearch.answer.answer_with_settings``, the very call the ``/ask`` route makes (same plan,
passages, sentence scorer and settings) and records ``Answer.best_score``, the score that decision is made on. The
answerable questions are a labelled set (``eval/data/seed_questions.jsonl``); the unanswerable ones
(``eval/data/unanswerable_questions.jsonl``, one ``{"question": ..., "note": ...}`` a line) ask about things the
indexed documents do not say. Each note starts with its group: ``off-topic:`` (nothing in the documents is on the
subject) or ``near miss:`` (the documents discuss the subject, not the asked fact); the report counts the groups apart.

**Rule: recall first.** The chosen threshold is the lowest best score of an answerable question minus
``ANSWERABLE_MARGIN`` (0.05), rounded down to two decimals, so every answerable question is answered with at least
that much room for a small drift in the model, chunker or question wording. Why not the threshold with the most correct
decisions: the two errors do not cost the same. A null answer to an answerable question is a silent failure (the user
is told the documents say nothing when they do), while an answer to an unanswerable question is an on-topic sentence
quoted with a citation the user can check. Near misses score in the answerable range, so a threshold that refuses them
also refuses answerable questions; the rule accepts answering near misses and refuses what is off-topic.

The threshold with the most correct decisions is still computed (``accuracy_optimal_threshold``) and reported next to
the chosen one and the configured one, as a comparison only. "Answered" is the decision only: it does not check that
the quote is the right one.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from citesearch.answer import SentenceScorer, answer_with_settings
from citesearch.search import Searcher
from citesearch.settings import Settings
from eval.jsonl import read_objects
from eval.questions import PACKAGED_QUESTIONS, QuestionSetError, label_spans, load_questions

UNANSWERABLE_QUESTIONS = Path(__file__).resolve().parent / "data" / "unanswerable_questions.jsonl"
SCORE_RANGE = (-1.0, 1.0)  # cosine similarity: the ends of the range bound the outermost gaps
ANSWERABLE_MARGIN = 0.05  # the chosen threshold stays this far below the lowest answerable best score
OFF_TOPIC, NEAR_MISS = "off-topic", "near miss"
GROUPS = (OFF_TOPIC, NEAR_MISS)  # the note prefixes of the unanswerable set, in report order


@dataclass(frozen=True, slots=True)
class ScoreSummary:
    count: int  # questions with a score (a question with no passage at all has none and is never answered)
    min: float | None
    median: float | None
    max: float | None

    @classmethod
    def of(cls, scores: Sequence[float | None]) -> ScoreSummary:
        values = [s for s in scores if s is not None]
        if not values:
            return cls(0, None, None, None)
        return cls(len(values), min(values), statistics.median(values), max(values))


@dataclass(frozen=True, slots=True)
class GroupDecisions:
    """How one threshold decides one group of unanswerable questions."""

    group: str
    null: int  # answered null (correct)
    total: int


@dataclass(frozen=True, slots=True)
class Decisions:
    """How one threshold decides the two sets."""

    threshold: float
    answered: int  # answerable questions answered (correct)
    answerable: int
    null: int  # unanswerable questions answered null (correct)
    unanswerable: int
    groups: tuple[GroupDecisions, ...] = ()  # the unanswerable set by group (empty when it is not grouped)

    @property
    def correct(self) -> int:
        return self.answered + self.null

    @property
    def accuracy(self) -> float:
        total = self.answerable + self.unanswerable
        return self.correct / total if total else 0.0

    def group(self, name: str) -> GroupDecisions:
        for decided in self.groups:
            if decided.group == name:
                return decided
        return GroupDecisions(name, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct, "accuracy": self.accuracy}


@dataclass(frozen=True, slots=True)
class UnanswerableQuestion:
    question: str
    group: str  # OFF_TOPIC or NEAR_MISS, from the note's prefix
    note: str


@dataclass(frozen=True, slots=True)
class QuestionScore:
    question: str
    answerable: bool
    best_score: float | None
    id: str | None = None  # the labelled question's id (answerable set)
    group: str | None = None  # the unanswerable question's group


@dataclass(frozen=True, slots=True)
class ThresholdCalibration:
    answerable: ScoreSummary
    unanswerable: ScoreSummary
    groups: dict[str, ScoreSummary]  # the unanswerable set by group, in GROUPS order
    threshold: float  # the chosen one (recall first, module docstring)
    chosen: Decisions
    accuracy_optimal: Decisions  # the most correct decisions: a comparison, not the choice
    current: Decisions  # at the configured answer_min_score
    scores: tuple[QuestionScore, ...]
    index_version: str = ""
    margin: float = ANSWERABLE_MARGIN

    @property
    def accuracy(self) -> float:
        return self.chosen.accuracy

    @property
    def current_accuracy(self) -> float:
        return self.current.accuracy

    def wrong(self, threshold: float) -> list[QuestionScore]:
        """The questions ``threshold`` decides wrongly, highest score first."""
        wrong = [
            s
            for s in self.scores
            if (s.answerable and (s.best_score is None or s.best_score < threshold))
            or (not s.answerable and s.best_score is not None and s.best_score >= threshold)
        ]
        return sorted(wrong, key=lambda s: -(s.best_score if s.best_score is not None else -2.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index_version": self.index_version,
            "rule": f"lowest answerable best score - {self.margin}, rounded down to 2 decimals",
            "margin": self.margin,
            "answerable": asdict(self.answerable),
            "unanswerable": asdict(self.unanswerable),
            "groups": {name: asdict(summary) for name, summary in self.groups.items()},
            "threshold": self.threshold,
            "chosen": self.chosen.to_dict(),
            "accuracy_optimal": self.accuracy_optimal.to_dict(),
            "current": self.current.to_dict(),
            "scores": [asdict(s) for s in self.scores],
        }


def load_unanswerable(path: Path | str = UNANSWERABLE_QUESTIONS) -> list[UnanswerableQuestion]:
    """The questions of an unanswerable set with their groups; every problem names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise QuestionSetError(f"question file {path} does not exist")
    questions: list[UnanswerableQuestion] = []
    for where, item in read_objects(path, QuestionSetError):
        if not isinstance(item.get("question"), str) or not item["question"].strip():
            raise QuestionSetError(f"{where}: expected an object with a non-empty 'question' string")
        note = item.get("note")
        group = note.split(":", 1)[0].strip() if isinstance(note, str) and ":" in note else None
        if group is None or not isinstance(note, str) or group not in GROUPS:
            expected = " or ".join(f"'{g}:'" for g in GROUPS)
            raise QuestionSetError(f"{where}: expected a 'note' starting with {expected}")
        questions.append(UnanswerableQuestion(item["question"], group, note))
    if not questions:
        raise QuestionSetError(f"question file {path} holds no questions")
    return questions


def decide(
    answerable: Sequence[float | None],
    unanswerable: Sequence[float | None],
    threshold: float,
    groups: Sequence[str] | None = None,
) -> Decisions:
    """The decisions ``extract_answer`` makes at ``threshold``: answered when the best score is not below it.

    ``groups`` (one name per unanswerable score) also counts the null answers of each group."""
    refused = [s is None or s < threshold for s in unanswerable]
    by_group: tuple[GroupDecisions, ...] = ()
    if groups is not None:
        if len(groups) != len(unanswerable):
            raise ValueError("groups must name the group of every unanswerable score")
        names = [g for g in GROUPS if g in groups] + sorted(set(groups) - set(GROUPS))
        by_group = tuple(
            GroupDecisions(
                name,
                null=sum(1 for r, g in zip(refused, groups, strict=True) if r and g == name),
                total=sum(1 for g in groups if g == name),
            )
            for name in names
        )
    return Decisions(
        threshold=threshold,
        answered=sum(1 for s in answerable if s is not None and s >= threshold),
        answerable=len(answerable),
        null=sum(refused),
        unanswerable=len(unanswerable),
        groups=by_group,
    )


def choose_threshold(answerable: Sequence[float | None], margin: float = ANSWERABLE_MARGIN) -> float:
    """The recall-first threshold: the lowest answerable best score minus ``margin``, rounded down to 2 decimals.

    The unanswerable scores do not move it (module docstring). A question with no score (no passage at all) cannot be
    answered at any threshold and does not count."""
    values = [s for s in answerable if s is not None]
    if not values:
        raise ValueError("no answerable question has a score: nothing to calibrate on")
    # round() first: 0.41 - 0.05 is 0.35999999999999993 in floating point, which must not floor to 0.35
    floored = math.floor(round((min(values) - margin) * 100, 9)) / 100
    return max(floored, SCORE_RANGE[0])


def accuracy_optimal_threshold(answerable: Sequence[float | None], unanswerable: Sequence[float | None]) -> float:
    """The threshold with the most correct decisions (answered if answerable, null if not): a comparison only.

    Every threshold between two neighbouring observed scores makes the same decisions, so the candidates are the
    midpoints of those gaps (and of the gaps to the ends of the cosine range, -1 and 1); among equally good ones the
    midpoint of the widest gap wins (the largest margin on both sides), then the lower one."""
    low, high = SCORE_RANGE
    points = sorted({min(max(s, low), high) for s in (*answerable, *unanswerable) if s is not None} | {low, high})
    best: tuple[int, float, float] | None = None  # (correct, gap width, -threshold): larger is better
    for left, right in itertools.pairwise(points):
        threshold = (left + right) / 2  # anything in (left, right] decides alike; the midpoint keeps a margin
        key = (decide(answerable, unanswerable, threshold).correct, right - left, -threshold)
        if best is None or key > best:
            best = key
    assert best is not None  # points always holds both ends of the range
    return -best[2]


def best_scores(
    searcher: Searcher, scorer: SentenceScorer, questions: Sequence[str], settings: Settings
) -> list[float | None]:
    """Each question's best sentence score on the ``/ask`` path (``Answer.best_score``), with the route's options."""
    return [answer_with_settings(searcher, scorer, q, settings).answer.best_score for q in questions]


def calibrate(
    searcher: Searcher,
    settings: Settings,
    *,
    answerable_path: Path | str = PACKAGED_QUESTIONS,
    unanswerable_path: Path | str = UNANSWERABLE_QUESTIONS,
    scorer: SentenceScorer | None = None,
    margin: float = ANSWERABLE_MARGIN,
) -> ThresholdCalibration:
    """Score both question sets against ``searcher``'s index and choose the threshold (recall first)."""
    labelled = load_questions(answerable_path)
    unanswerable = load_unanswerable(unanswerable_path)
    label_spans(searcher, labelled)  # the answerable set must be about this index, or the calibration means nothing
    scorer = scorer or SentenceScorer(searcher.embedder, cache_size=settings.sentence_cache_size)
    good = best_scores(searcher, scorer, [q.question for q in labelled], settings)
    bad = best_scores(searcher, scorer, [q.question for q in unanswerable], settings)
    groups = [q.group for q in unanswerable]
    threshold = choose_threshold(good, margin)
    scores = tuple(
        [QuestionScore(q.question, True, s, q.id) for q, s in zip(labelled, good, strict=True)]
        + [QuestionScore(q.question, False, s, group=q.group) for q, s in zip(unanswerable, bad, strict=True)]
    )
    return ThresholdCalibration(
        answerable=ScoreSummary.of(good),
        unanswerable=ScoreSummary.of(bad),
        groups={
            name: ScoreSummary.of([s for s, g in zip(bad, groups, strict=True) if g == name])
            for name in GROUPS
            if name in groups
        },
        threshold=threshold,
        chosen=decide(good, bad, threshold, groups),
        accuracy_optimal=decide(good, bad, accuracy_optimal_threshold(good, bad), groups),
        current=decide(good, bad, settings.answer_min_score, groups),
        scores=scores,
        index_version=searcher.index_version,
        margin=margin,
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _share(decided: GroupDecisions) -> str:
    return f"{decided.null}/{decided.total}"


def format_calibration(result: ThresholdCalibration) -> str:
    """Both distributions, the rule, the decisions of three thresholds and the questions the chosen one gets wrong."""
    lines = [
        f"answer threshold calibration (index {result.index_version})",
        "",
        "| set | questions | min | median | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows = [("answerable", result.answerable, result.chosen.answerable)]
    rows += [
        (f"unanswerable: {name}", summary, result.chosen.group(name).total) for name, summary in result.groups.items()
    ]
    for name, summary, total in rows:
        lines.append(f"| {name} | {total} | {_fmt(summary.min)} | {_fmt(summary.median)} | {_fmt(summary.max)} |")
    lines += [
        "",
        f"rule (recall first): lowest answerable best score {_fmt(result.answerable.min)} "
        f"- margin {result.margin:.2f}, rounded down -> {result.threshold:.2f}",
        "",
        "| threshold | answerable answered | off-topic null | near-miss null | accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, d in (
        ("chosen", result.chosen),
        ("accuracy-optimal (comparison)", result.accuracy_optimal),
        ("configured answer_min_score", result.current),
    ):
        decided = f"{d.answered}/{d.answerable} | {_share(d.group(OFF_TOPIC))} | {_share(d.group(NEAR_MISS))}"
        lines.append(f"| {label} {d.threshold:.3f} | {decided} | {d.accuracy:.3f} |")
    if round(result.current.threshold, 6) != round(result.threshold, 6):
        lines += [
            "",
            f"the configured answer_min_score ({result.current.threshold:.2f}) is not the chosen threshold "
            f"({result.threshold:.2f}): update the default in citesearch/settings.py "
            "(or CITESEARCH_ANSWER_MIN_SCORE)",
        ]
    wrong = result.wrong(result.threshold)
    lines.append("")
    if not wrong:
        lines.append(f"wrong decisions at {result.threshold:.2f}: none")
    else:
        lines.append(f"wrong decisions at {result.threshold:.2f} ({len(wrong)}):")
        for s in wrong:
            kind = "answerable, null" if s.answerable else f"{s.group or 'unanswerable'}, answered"
            lines.append(f"  {_fmt(s.best_score)}  {kind}: {s.question!r}")
    return "\n".join(lines)

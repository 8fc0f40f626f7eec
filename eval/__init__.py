"""eval: measuring retrieval quality through the same search code the CLI and the service use.

- ``beir``: BEIR-format datasets (nDCG@10, Recall@100, MRR@10, latency), each indexed into its own folder.
- ``questions``: labelled question sets whose labels are answer text, so they survive re-chunking.
- ``threshold``: calibrating the ``/ask`` answer threshold on answerable and unanswerable questions.
- ``ranking``: passage hits to document rankings (a document ranks at its best passage).
- ``metrics``: ranx for the BEIR metrics; success@k and MRR for question sets.
- ``report``: the JSON report, its table, and the comparison with an earlier report.

Names are re-exported lazily: ``citesearch`` imports this package for its subcommands on every start, and ranx,
the model and the index should only load when an evaluation actually runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BeirDataset": "eval.beir",
    "BeirRun": "eval.beir",
    "PreparedIndex": "eval.beir",
    "load_beir_dataset": "eval.beir",
    "prepare_index": "eval.beir",
    "run_beir": "eval.beir",
    "BEIR_METRICS": "eval.metrics",
    "QUESTION_METRICS": "eval.metrics",
    "MetricResult": "eval.metrics",
    "evaluate_rankings": "eval.metrics",
    "success_metrics": "eval.metrics",
    "LabelledQuestion": "eval.questions",
    "QuestionSetError": "eval.questions",
    "QuestionsRun": "eval.questions",
    "answers_question": "eval.questions",
    "load_questions": "eval.questions",
    "run_questions": "eval.questions",
    "BEST_PASSAGE_RULE": "eval.ranking",
    "RankedDocument": "eval.ranking",
    "best_passage_ranking": "eval.ranking",
    "search_documents": "eval.ranking",
    "EvalReport": "eval.report",
    "ThresholdCalibration": "eval.threshold",
    "calibrate": "eval.threshold",
    "choose_threshold": "eval.threshold",
    "accuracy_optimal_threshold": "eval.threshold",
    "LatencySummary": "eval.report",
    "compare_reports": "eval.report",
    "load_report": "eval.report",
    "write_report": "eval.report",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eval' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

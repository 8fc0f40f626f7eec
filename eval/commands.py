"""``citesearch eval`` subcommands (registered by citesearch.cli): ``eval beir``, ``eval answers``, ``eval
questions``, ``eval threshold``, ``eval pages`` and ``eval compare``.

The first three print a table (or, with ``--json``, one JSON object on stdout) with each metric's 95% interval,
write the same report as JSON into the reports folder (per-query scores included), and with ``--compare
REPORT.json`` show the deltas against an earlier run with a paired test; ``eval compare`` does that for two reports
already written. Progress bars go to stderr, only on a terminal unless ``--progress``. Handlers import the model,
ranx, scipy and the index lazily so that ``citesearch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citesearch.search import MODES

if TYPE_CHECKING:
    from citesearch.settings import Settings
    from eval.report import EvalReport


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, help="retrieval mode (default: the search API's default)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument("--compare", type=Path, metavar="REPORT.json", help="print deltas against an earlier report")
    parser.add_argument(
        "--reports-dir", type=Path, help="where to write the report (default: $CITESEARCH_REPORTS_DIR or reports/)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the report file")
    parser.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``citesearch eval beir``, ``citesearch eval questions`` and ``citesearch eval threshold``."""
    evaluate = subparsers.add_parser("eval", help="measure retrieval quality (BEIR datasets, labelled questions)")
    kinds = evaluate.add_subparsers(dest="eval_command", required=True)

    beir = kinds.add_parser(
        "beir",
        help="index a BEIR dataset and report nDCG@10, Recall@100, MRR@10 and latency",
        description="Index a BEIR-format dataset (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) into its own folder "
        "(reused while corpus and settings are unchanged), run every query of the split through the shared search "
        "and report nDCG@10, Recall@100, MRR@10 and query latency. A document ranks at its best passage.",
    )
    beir.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR")
    beir.add_argument("--split", required=True, help="qrels split to run: reads DATASET_DIR/qrels/SPLIT.tsv")
    beir.add_argument(
        "--index-dir", type=Path, help="index folder (default: $CITESEARCH_EVAL_DIR/<dataset>, var/eval/<dataset>)"
    )
    beir.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N queries (a quick look)")
    beir.add_argument(
        "--baseline",
        choices=("plain-hybrid", "plain-bm25", "plain-dense"),
        help="rank whole documents by the plain recipe instead (bm25s defaults, whole-document MiniLM, min-max "
        "0.5/0.5), for comparison; no passage index is built",
    )
    beir.add_argument(
        "--recency",
        action="store_true",
        help="turn the recency prior on, as_of = each query's metadata.question_date",
    )
    beir.add_argument(
        "--collapse-duplicates",
        action="store_true",
        help="collapse duplicate stories into one hit, as /search does (default: off, so that every judged document "
        "can be found, like for like with the plain baseline and published BEIR figures)",
    )
    beir.add_argument(
        "--keep-identical-ids",
        action="store_true",
        help="keep a hit whose id equals the query id (default: dropped, as BEIR's ignore_identical_ids)",
    )
    _add_common(beir)
    beir.set_defaults(handler=cmd_eval_beir)

    answers = kinds.add_parser(
        "answers",
        help="answer a dataset's questions through /ask and check them against its answer strings",
        description="For a BEIR-format dataset whose queries carry answer strings (metadata.answers), run every "
        "question through the /ask path and /search: the share whose answer contains an answer string, whose top 1 "
        "and top 5 passages do, and the null-answer rate. Reuses the dataset's eval index (as eval beir builds it).",
    )
    answers.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR")
    answers.add_argument("--split", default="test", help="qrels split whose queries are asked (default test)")
    answers.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_EVAL_DIR/<dataset>)")
    answers.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N questions")
    answers.add_argument("--recency", action="store_true", help="recency prior, as_of = each question's date")
    answers.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    answers.add_argument("--compare", type=Path, metavar="REPORT.json", help="print deltas against an earlier report")
    answers.add_argument("--reports-dir", type=Path, help="where to write the report")
    answers.add_argument("--no-write", action="store_true", help="do not write the report file")
    answers.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    answers.set_defaults(handler=cmd_eval_answers)

    questions = kinds.add_parser(
        "questions",
        help="run a labelled question set against the index: success@1, success@5, MRR and the misses",
    )
    questions.add_argument(
        "file",
        type=Path,
        nargs="?",
        metavar="FILE",
        help="question set (.jsonl; default: the packaged eval/data/seed_questions.jsonl)",
    )
    questions.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    _add_common(questions)
    questions.set_defaults(handler=cmd_eval_questions)

    threshold = kinds.add_parser(
        "threshold",
        help="calibrate the /ask answer threshold on answerable and unanswerable questions",
        description="Run the packaged answerable (eval/data/seed_questions.jsonl) and unanswerable "
        "(eval/data/unanswerable_questions.jsonl) questions through the /ask answer path, report the best sentence "
        "scores of each set (answerable, off-topic, near miss) and the chosen threshold: recall first, the lowest "
        "answerable best score minus a 0.05 margin, rounded down to 2 decimals. The threshold with the most correct "
        "decisions (answer vs. null) and the configured answer_min_score are reported for comparison. The index "
        "must hold the seed documents.",
    )
    threshold.add_argument("--index-dir", type=Path, help="index folder (default: $CITESEARCH_INDEX_DIR or var/index)")
    threshold.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    threshold.set_defaults(handler=cmd_eval_threshold)

    pages = kinds.add_parser(
        "pages",
        help="score how pages split into headline, article, bio and reader comments (HTML and visible text)",
        description="Load every page of DIR/pages named in DIR/truth.jsonl twice, as its HTML file and as its visible "
        "text (DIR/tools/render.py) saved as .txt, through the indexer's loaders, and score headline, body sentences "
        "in article parts, author bio, comments matched in order, reply parents, fake comments on pages without "
        "comments, furniture lines left in parts and article text dropped. No model or index is needed.",
    )
    pages.add_argument("dataset_dir", type=Path, metavar="DIR")
    pages.add_argument("--rendering", choices=("html", "text"), action="append", help="only this rendering")
    pages.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    pages.add_argument("--verbose", action="store_true", help="also list every page with a miss")
    pages.add_argument("--output", type=Path, metavar="FILE.json", help="also write the JSON report to FILE.json")
    pages.set_defaults(handler=cmd_eval_pages)

    compare = kinds.add_parser(
        "compare",
        help="compare two eval reports query by query: the deltas, their 95% intervals and paired p-values",
        description="Read two reports written by eval beir, answers or questions and print each metric before and "
        "after, the delta, the 95% bootstrap interval of the per-query difference and the p-value of a two-sided "
        "paired randomization test, over the queries both runs scored. Runs nothing: a baseline and a change, or "
        "two settings, are compared from their files.",
    )
    compare.add_argument("before", type=Path, metavar="BEFORE.json")
    compare.add_argument("after", type=Path, metavar="AFTER.json")
    compare.add_argument("--json", action="store_true", help="print the comparison as one JSON object on stdout")
    compare.set_defaults(handler=cmd_eval_compare)


def _show_progress(args: argparse.Namespace) -> bool:
    return bool(args.progress or sys.stderr.isatty())


def _finish(report: EvalReport, args: argparse.Namespace, settings: Settings, extra_text: str = "") -> int:
    """Compare, write and print a report: the shared tail of both subcommands."""
    from eval.report import compare_reports, format_comparison, format_report, load_report, write_report

    comparison = None
    if args.compare is not None:
        comparison = compare_reports(report, load_report(args.compare), args.compare)
    path = None
    if not args.no_write:
        path = write_report(report, Path(args.reports_dir or settings.reports_dir))
    if args.json:
        data: dict[str, Any] = report.to_dict()
        data["report_path"] = str(path) if path else None
        if comparison is not None:
            data["comparison"] = comparison.to_dict()
        print(json.dumps(data, ensure_ascii=False))
        return 0
    print(format_report(report))
    if extra_text:
        print()
        print(extra_text)
    if comparison is not None:
        print()
        print(format_comparison(comparison))
    if path is not None:
        print(f"\nreport written to {path}")
    return 0


def cmd_eval_beir(args: argparse.Namespace, settings: Settings) -> int:
    from eval.beir import load_beir_dataset, run_beir
    from eval.report import load_report

    dataset = load_beir_dataset(args.dataset_dir, args.split)  # before loading the model: bad input fails fast
    if args.compare is not None:
        load_report(args.compare)  # likewise: a wrong path should not cost an indexing run first
    embedder = settings.load_embedder()
    run = run_beir(
        dataset,
        embedder,
        settings,
        index_dir=args.index_dir,
        mode=args.mode,
        limit=args.limit,
        show_progress=_show_progress(args),
        baseline=args.baseline,
        ignore_identical_ids=not args.keep_identical_ids,
        recency=args.recency,
        collapse_duplicates=args.collapse_duplicates,
    )
    return _finish(run.report, args, settings)


def cmd_eval_compare(args: argparse.Namespace, settings: Settings) -> int:
    from eval.report import compare_reports, format_comparison, load_report

    before, after = load_report(args.before), load_report(args.after)
    comparison = compare_reports(after, before, args.before)
    if not any(delta.paired for delta in comparison.deltas):
        comparison.warnings.append(
            "the two reports share no per-query scores (one predates them, or they differ in kind): deltas only"
        )
    if args.json:
        print(json.dumps({"after": str(args.after), **comparison.to_dict()}, ensure_ascii=False))
    else:
        print(f"{args.after} against {args.before}")
        print(format_comparison(comparison))
    return 0


def cmd_eval_answers(args: argparse.Namespace, settings: Settings) -> int:
    from eval.answers import run_answers
    from eval.beir import load_beir_dataset
    from eval.report import load_report

    dataset = load_beir_dataset(args.dataset_dir, args.split)
    if args.compare is not None:
        load_report(args.compare)
    run = run_answers(
        dataset,
        settings.load_embedder(),
        settings,
        index_dir=args.index_dir,
        limit=args.limit,
        recency=args.recency,
        show_progress=_show_progress(args),
    )
    lines = [f"misses ({len(run.misses)}):"] + [
        f"  {m['id']}: {m['question']!r} wants {m['answers']}; answered {m['answer']!r:.120}" for m in run.misses
    ]
    return _finish(run.report, args, settings, extra_text="\n".join(lines))


def cmd_eval_questions(args: argparse.Namespace, settings: Settings) -> int:
    from citesearch.search import Searcher, check_model_matches
    from citesearch.store import open_store
    from eval.questions import PACKAGED_QUESTIONS, load_questions, run_questions
    from eval.report import format_misses, load_report

    path = Path(args.file) if args.file is not None else PACKAGED_QUESTIONS
    questions = load_questions(path)
    if args.compare is not None:
        load_report(args.compare)
    index_dir = Path(args.index_dir or settings.index_dir)
    with open_store(settings, index_dir) as store:  # before loading the model: a missing index fails fast
        embedder = settings.load_embedder()
        check_model_matches(store, embedder)
        searcher = Searcher(store, embedder, settings.fusion_settings())
        run = run_questions(searcher, questions, dataset=path.stem, mode=args.mode, show_progress=_show_progress(args))
    return _finish(run.report, args, settings, extra_text=format_misses(run.report.misses))


def cmd_eval_threshold(args: argparse.Namespace, settings: Settings) -> int:
    from citesearch.search import Searcher, check_model_matches
    from eval.questions import PACKAGED_QUESTIONS, load_questions
    from eval.threshold import UNANSWERABLE_QUESTIONS, calibrate, format_calibration, load_unanswerable
    from index_store import open_index

    load_questions(PACKAGED_QUESTIONS)  # before loading the model: a broken question file fails fast
    load_unanswerable(UNANSWERABLE_QUESTIONS)
    index_dir = Path(args.index_dir or settings.index_dir)
    with open_index(index_dir) as reader:  # before loading the model: a missing index fails fast
        embedder = settings.load_embedder()
        check_model_matches(reader, embedder)
        searcher = Searcher(reader, embedder)  # as the service builds it (fusion as the index records it)
        result = calibrate(searcher, settings)
    if args.json:
        data = result.to_dict()
        data["answer_min_score"] = settings.answer_min_score
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(format_calibration(result))
    return 0


def cmd_eval_pages(args: argparse.Namespace, settings: Settings) -> int:
    from eval.pages import RENDERINGS, format_report, run_pages

    if not args.dataset_dir.is_dir():
        raise FileNotFoundError(f"{args.dataset_dir} is not a folder")
    report = run_pages(args.dataset_dir, tuple(args.rendering or RENDERINGS))
    data = report.to_dict()
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(format_report(report, verbose=args.verbose))
    return 0

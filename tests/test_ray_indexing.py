"""``citesearch index --ray``: the same index as the local path, nothing published when interrupted, one-line errors.

The Ray tests start a local Ray (loopback only) inside a ``citesearch index --ray`` subprocess with the real model in
its actors: ``subprocess`` and ``slow``. The address handling and the unreachable-cluster error need neither.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from citesearch.cli import main
from eval.bench.ray_index import REPORT_FIELDS, compare_indexes
from index_store import IndexNotFoundError, open_index
from indexer.pipeline import BuildReport
from indexer.ray_indexing import (
    LOCAL,
    RayFillReport,
    RayIndexingError,
    credit_ray_embeddings,
    is_known,
    known_digests,
    parse_address,
    resolve_address,
)

ROOT = Path(__file__).resolve().parent.parent
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (citesearch[ray])")

ARTICLE = (
    "<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article>"
    '<section id="comments"><h2>Comments</h2>{comments}</section></body></html>'
)


def _corpus(folder: Path, documents: int) -> Path:
    """Plain text, Markdown, HTML with reader comments and a jsonl file: every loader and part kind."""
    folder.mkdir(parents=True, exist_ok=True)
    topics = ["volcanic soil", "river deltas", "glacier retreat", "coral bleaching", "desert dunes", "peat bogs"]
    records = []
    for n in range(documents):
        topic = topics[n % len(topics)]
        sentences = " ".join(
            f"Study {n}.{s} of {topic} measured how the samples changed over {s + 2} seasons in the field."
            for s in range(14)
        )
        if n % 3 == 0:
            (folder / f"note-{n:03d}.txt").write_text(f"Notes on {topic} {n}\n\n{sentences}\n", encoding="utf-8")
        elif n % 3 == 1:
            comments = "".join(
                f'<div class="comment"><span class="author">reader{c}</span><p>Comment {c} on {topic}: the '
                f"seasonal figures look plausible to me.</p></div>"
                for c in range(3)
            )
            html = ARTICLE.format(title=f"Report on {topic} {n}", body=f"<p>{sentences}</p>", comments=comments)
            (folder / f"page-{n:03d}.html").write_text(html, encoding="utf-8")
        else:
            records.append({"_id": f"rec-{n}", "title": f"Record on {topic}", "text": sentences})
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "CITESEARCH_RAY_WORKERS": "2"}


def _index(paths: list[Path], index_dir: Path, *extra: str, timeout: float = 600) -> dict[str, object]:
    command = [sys.executable, "-m", "citesearch.cli", "index", *map(str, paths), "--index-dir", str(index_dir)]
    done = subprocess.run([*command, "--json", *extra], env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


# -- no Ray needed -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("local", "local"), ("auto", "auto"), ("10.0.0.5:6379", "10.0.0.5:6379"), ("ray://head", "ray://head")],
)
def test_addresses_accepted(text: str, expected: str) -> None:
    assert parse_address(text) == expected


def test_a_path_given_as_address_is_named(tmp_path: Path) -> None:
    with pytest.raises(RayIndexingError, match="is a path, not a Ray address"):
        parse_address(str(tmp_path))
    with pytest.raises(RayIndexingError, match="not a Ray address"):
        parse_address("no such host or port")


def test_flag_and_setting_choose_the_address() -> None:
    assert resolve_address(None, "") is None  # neither: the local path
    assert resolve_address("", "") == LOCAL  # a bare --ray: a local Ray
    assert resolve_address("", "head:6379") == "head:6379"  # a bare --ray takes the setting
    assert resolve_address("other:1", "head:6379") == "other:1"  # --ray ADDRESS wins
    assert resolve_address(None, "local") == LOCAL  # the setting alone turns Ray on


def test_an_interrupt_that_ray_start_up_swallows_still_stops_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT while Ray starts raises KeyboardInterrupt inside Ray's own code, which may swallow it (a CI run went
    on to publish). The build notes every SIGINT from before Ray starts and stops anyway, before any job runs."""
    import contextlib
    import types

    from indexer import ray_indexing

    jobs: list[object] = []

    @contextlib.contextmanager
    def start_up_that_swallows(options: object) -> Iterator[tuple[object, int]]:
        with contextlib.suppress(KeyboardInterrupt):  # what Ray's start-up did with the interrupt
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C during ray.init does
        yield types.SimpleNamespace(cluster_resources=lambda: {"CPU": 1}), 1

    monkeypatch.setattr(ray_indexing, "ray_session", start_up_that_swallows)

    def job(*args: object) -> tuple[int, int]:
        jobs.append(args)
        return 0, 0

    monkeypatch.setattr(ray_indexing, "_run_on_ray", job)
    embedder = types.SimpleNamespace(name="model", backend="onnx-int8")
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        ray_indexing.fill_embedding_cache(tmp_path, [], embedder, ray_indexing.ChunkerSettings())
    assert jobs == []  # stopped before the job
    assert signal.getsignal(signal.SIGINT) is handler  # and the handler before it is back


def test_build_report_credits_what_ray_embedded() -> None:
    report = BuildReport(passages=10, passages_embedded=0, passages_from_cache=10, seconds={"total": 2.0})
    fill = RayFillReport("local", 2, 4, 10, 3, 7, {"total": 5.0})
    credit_ray_embeddings(report, fill)
    assert (report.passages_embedded, report.passages_from_cache) == (7, 3)
    assert report.seconds["total"] == 7.0


def test_known_keys_are_found_and_others_not() -> None:
    # Keys starting or ending with zero bytes too: numpy's fixed-width bytes drop trailing zeros.
    cached = ["ff" * 32, "00" * 32, "7a" * 31 + "00", "00" + "7a" * 31, "12" * 32]
    digests = known_digests(cached)
    assert digests.dtype == np.dtype("S32") and list(digests) == sorted(digests)
    assert all(is_known(digests, h) for h in cached)
    assert not any(is_known(digests, h) for h in ["7a" * 32, "00" * 31 + "01", "fe" * 32, "13" * 32])
    assert not is_known(known_digests([]), "00" * 32)


@needs_ray
def test_unreachable_cluster_is_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "doc.txt"
    corpus.write_text("A short note about river deltas.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    code = main(["index", str(corpus), "--index-dir", str(index_dir), "--ray", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in err
    assert "Traceback" not in err
    assert not index_dir.exists()


# -- a local Ray in a subprocess -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same corpus indexed by the local path and with --ray (local Ray, 2 workers), each with an empty cache."""
    root = tmp_path_factory.mktemp("ray")
    corpus = _corpus(root / "corpus", 24)
    local = _index([corpus], root / "local")
    on_ray = _index([corpus], root / "ray", "--ray")
    return {"root": root, "corpus": corpus, "local": local, "ray": on_ray}


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_ray_path_builds_the_local_index(built: dict[str, object]) -> None:
    root = Path(str(built["root"]))
    local, on_ray = built["local"], built["ray"]
    assert isinstance(local, dict) and isinstance(on_ray, dict)
    same = compare_indexes(root / "local", root / "ray")
    assert same.passages_a > 40 and same.passages_equal  # documents, ordinals, sections, offsets, texts
    assert same.max_vector_diff <= 1e-6
    for field in REPORT_FIELDS:
        assert local[field] == on_ray[field], field
    assert on_ray["passages_embedded"] == local["passages_embedded"] > 0
    by_section = on_ray["passages_by_section"]
    assert isinstance(by_section, dict) and by_section["article"] > 0 and by_section["comment"] > 0
    ray_info = on_ray["ray"]
    assert (
        isinstance(ray_info, dict) and ray_info["workers"] == 2 and ray_info["embedded"] == local["passages_embedded"]
    )
    with open_index(root / "ray") as reader:
        assert reader.manifest.model.name == "all-MiniLM-L6-v2"


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_ray_reindex_reuses_the_embedding_cache(built: dict[str, object]) -> None:
    root, corpus = Path(str(built["root"])), Path(str(built["corpus"]))
    (corpus / "extra.txt").write_text("A new note on salt marshes and the birds that nest there.\n", encoding="utf-8")
    try:
        again = _index([corpus], root / "ray", "--ray")
    finally:
        (corpus / "extra.txt").unlink()
    ray_info = again["ray"]
    assert isinstance(ray_info, dict)
    assert ray_info["embedded"] == 1  # only the new document's one passage went to the actors
    assert again["passages_embedded"] == 1 and again["added"] == 1 and again["unchanged"] == 24


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_interrupted_ray_run_publishes_nothing(built: dict[str, object], tmp_path: Path) -> None:
    root = Path(str(built["root"]))
    # Big enough that the run is still embedding when the interrupt comes, even on loaded cores: with 60
    # documents a CI run had embedded them all and was publishing (which an interrupt lets finish) by then.
    corpus = _corpus(tmp_path / "bigger", 240)
    index_dir = root / "local"
    with open_index(index_dir) as reader:
        before = reader.version, len(reader.document_ids(limit=1000))
    fresh = tmp_path / "fresh"
    for target in (index_dir, fresh):
        command = [sys.executable, "-m", "citesearch.cli", "index", str(corpus), "--index-dir", str(target), "--ray"]
        process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Once Ray's processes are up the job starts within seconds (the actors load their models).
            deadline = time.monotonic() + 240
            while process.poll() is None and time.monotonic() < deadline and not _has_ray_session(process.pid):
                time.sleep(0.5)
            time.sleep(4)
            assert process.poll() is None, "the build ended before it could be interrupted"
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 130, err[-2000:]
        assert "interrupted; the published index is unchanged" in err
    with open_index(index_dir) as reader:
        assert (reader.version, len(reader.document_ids(limit=1000))) == before
    with pytest.raises(IndexNotFoundError):
        open_index(fresh)


def _has_ray_session(pid: int) -> bool:
    """Whether the process has started Ray's processes (its children: the GCS server and the raylet)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    names = []
    for child in children:
        try:
            names.append(Path(f"/proc/{child}/comm").read_text().strip())
        except OSError:
            continue
    return any(name in ("gcs_server", "raylet") for name in names)


def test_ray_is_imported_only_by_its_module() -> None:
    """The optional dependency stays optional: one module imports it, inside functions, with the install hint."""
    importers = []
    for package in ("citesearch", "indexer", "index_store", "service", "eval"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "\nimport ray" in text or "\nfrom ray" in text or "    import ray\n" in text or "    from ray" in text:
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["indexer/ray_indexing.py"]
    module = (ROOT / "indexer" / "ray_indexing.py").read_text(encoding="utf-8")
    assert "\nimport ray" not in module and "\nfrom ray" not in module  # not at import time
    assert "pip install 'citesearch[ray]'" in module


def _beir_dataset(folder: Path, documents: int) -> Path:
    folder.mkdir(parents=True)
    topics = ["soil carbon", "sea ice", "bird migration", "tree rings"]
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for n in range(documents):
            text = " ".join(f"Finding {n}.{s} about {topics[n % 4]} over {s + 1} decades." for s in range(12))
            corpus.write(json.dumps({"_id": f"d{n}", "title": f"{topics[n % 4]} {n}", "text": text}) + "\n")
    queries = [{"_id": f"q{n}", "text": f"how did {topics[n % 4]} change over decades"} for n in range(4)]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels").mkdir()
    qrels = "".join(f"q{n}\td{n}\t1\n" for n in range(4))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8")
    return folder


@needs_ray
@pytest.mark.subprocess
@pytest.mark.slow
def test_bench_index_ray_compares_both_paths(tmp_path: Path) -> None:
    dataset = _beir_dataset(tmp_path / "dataset", 12)
    command = [sys.executable, "-m", "citesearch.cli", "bench", "index", str(dataset), "--ray", "--json"]
    done = subprocess.run(
        [*command, "--reports-dir", str(tmp_path / "reports")], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    local, on_ray = report["tables"]["Indexing"]
    assert local["passages"] == on_ray["passages"] >= 12 and local["embedded"] == on_ray["embedded"]
    assert on_ray["ray_start_s"] > 0 and on_ray["first_batch_s"] > 0 and on_ray["passages_per_s"] > 0
    targets = {t["target"].split(" (")[0]: t for t in report["targets"]}
    for equal in ("passages", "largest vector coordinate difference", "build report fields differing"):
        assert targets[equal]["met"], targets[equal]
    assert targets["queries whose top-10 ids differ"]["met"]  # the 4 train queries searched in both
    assert "Ray path passages/s / local path passages/s" in targets

"""Runs txtai for ``citesearch bench peer``, inside the separate bench virtualenv (scripts/bench-peer-setup.sh).

Standalone on purpose: it imports nothing from citesearch, which is not installed in that venv.

    BENCH_VENV/bin/python eval/bench/txtai_runner.py INPUT.json OUTPUT.json

INPUT: {"model_path", "documents": [[id, text], ...], "queries": [[id, text], ...], "depth", "encode_batch"}.
OUTPUT: {"txtai_version", "load_seconds", "index_seconds", "rankings": {query id: [doc ids best first]},
"latencies_ms": [...]} where each latency is one ``Embeddings.search`` call (encode the query, search, fetch rows).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: txtai_runner.py INPUT.json OUTPUT.json", file=sys.stderr)
        return 2
    # The model is a local folder: never reach for the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with open(argv[0], encoding="utf-8") as handle:
        job = json.load(handle)

    import txtai
    from txtai import Embeddings

    started = time.perf_counter()
    embeddings = Embeddings(
        path=job["model_path"],
        method="sentence-transformers",  # the same library, pooling and normalisation as citesearch
        content=True,  # store the text (SQLite) like citesearch stores passages, and return it with each hit
        backend="faiss",
        faiss={"components": "IDMap,Flat"},  # exact inner product, like citesearch's IndexFlatIP
        encodebatch=int(job.get("encode_batch", 32)),
    )
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    embeddings.index([(doc_id, text, None) for doc_id, text in job["documents"]])
    index_seconds = time.perf_counter() - started

    depth = int(job.get("depth", 100))
    embeddings.search("warm-up query", limit=depth)  # one-off costs, as citesearch's harness does
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    for query_id, text in job["queries"]:
        started = time.perf_counter()
        hits = embeddings.search(text, limit=depth)
        latencies.append((time.perf_counter() - started) * 1000)
        rankings[query_id] = [str(hit["id"]) for hit in hits]

    result = {
        "txtai_version": getattr(txtai, "__version__", None) or _version("txtai"),
        "load_seconds": load_seconds,
        "index_seconds": index_seconds,
        "rankings": rankings,
        "latencies_ms": latencies,
    }
    with open(argv[1], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001 - only a label in the report
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

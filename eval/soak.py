"""Soak test of live updates: steady searches while documents are added and deleted over the API, then a check
that every accepted document is findable once its version is published and every deleted one is gone.

    python -m eval.soak                                   # own server on a free loopback port, copy of the index
    python -m eval.soak --duration 60 --search-rate 10 --updates 20 --cli-index --json
    python -m eval.soak --url http://127.0.0.1:8000 --api-key KEY   # a running server (loopback only)

Without ``--url`` it copies the index folder (``--index-dir``, default ``$CITESEARCH_INDEX_DIR`` or var/index; built
from seeds/ if there is none) into a temporary folder and serves it with ``citesearch serve``'s app in a subprocess,
with a fresh write key. ``--cli-index`` also runs ``citesearch index seeds/ --add`` once, half-way, against the same
folder: the CLI and the service's writer then share the index's write lock.

Everything is bounded: the duration, the search rate, the number of updates, ``--max-requests`` and
``--publish-timeout`` (how long to wait for the last accepted change to be published). Exit code 0 only when no
accepted document was lost, none deleted came back, nothing answered 5xx and every change was published in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from eval.loadgen import SEED_QUESTIONS, is_loopback, load_questions
from eval.server_process import ServerError, free_port, stop_server, wait_until_ready

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEEDS = PROJECT_ROOT / "seeds"


@dataclass(slots=True)
class SoakResult:
    url: str
    duration_s: float
    requests: int = 0
    errors: int = 0  # non-2xx where 2xx was expected, plus transport errors
    status_5xx: int = 0
    searches: int = 0
    searches_skipped: int = 0  # ticks at which all `concurrency` searches were still in flight
    search_p50_ms: float | None = None
    search_p95_ms: float | None = None
    search_max_ms: float | None = None
    updates_accepted: int = 0
    updates_refused: int = 0
    published: int = 0
    not_published_in_time: int = 0
    publish_lag_p50_s: float | None = None
    publish_lag_max_s: float | None = None
    versions: list[str] = field(default_factory=list)
    documents_checked: int = 0
    lost: int = 0
    deleted_still_present: int = 0
    cli_index: dict[str, Any] | None = None
    status_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.deleted_still_present
            or self.status_5xx
            or self.not_published_in_time
            or (self.cli_index is not None and self.cli_index.get("exit_code") != 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def table(self) -> str:
        def ms(value: float | None, unit: str = "ms") -> str:
            return "n/a" if value is None else f"{value:.1f} {unit}"

        rows = [
            ("server", self.url),
            ("duration", f"{self.duration_s:.1f} s"),
            ("requests", str(self.requests)),
            ("errors", str(self.errors)),
            ("5xx", str(self.status_5xx)),
            ("searches (skipped: all in flight)", f"{self.searches} ({self.searches_skipped})"),
            (
                "search p50 / p95 / max",
                f"{ms(self.search_p50_ms)} / {ms(self.search_p95_ms)} / {ms(self.search_max_ms)}",
            ),
            ("updates accepted", str(self.updates_accepted)),
            ("updates refused", str(self.updates_refused)),
            ("published", str(self.published)),
            ("not published in time", str(self.not_published_in_time)),
            ("publish lag p50 / max", f"{ms(self.publish_lag_p50_s, 's')} / {ms(self.publish_lag_max_s, 's')}"),
            ("versions served", f"{len(self.versions)} ({', '.join(self.versions[:1] + self.versions[-1:])})"),
            ("documents checked", str(self.documents_checked)),
            ("lost", str(self.lost)),
            ("deleted still present", str(self.deleted_still_present)),
        ]
        if self.cli_index is not None:
            outcome = f"exit {self.cli_index.get('exit_code')} in {self.cli_index.get('seconds', 0):.1f} s"
            rows.append(("cli index --add", outcome))
        rows.append(("result", "OK" if self.ok else "FAILED"))
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"problem: {p}" for p in self.problems[:10]]
        return "\n".join(lines)


@dataclass(slots=True)
class _Change:
    seq: int
    op: str
    doc_id: str
    accepted_at: float
    published_at: float | None = None
    version: str | None = None


class _Counters:
    def __init__(self, max_requests: int) -> None:
        self.lock = threading.Lock()
        self.status: Counter[str] = Counter()
        self.requests = 0
        self.errors = 0
        self.max_requests = max_requests
        self.problems: list[str] = []

    def budget_left(self) -> bool:
        with self.lock:
            return self.requests < self.max_requests

    def record(self, response: httpx.Response | None, expected: Sequence[int], what: str) -> None:
        with self.lock:
            self.requests += 1
            if response is None:
                self.errors += 1
                self.status["transport"] += 1
                return
            self.status[str(response.status_code)] += 1
            if response.status_code not in expected:
                self.errors += 1
                if len(self.problems) < 20:
                    self.problems.append(f"{what}: {response.status_code} {response.text[:200]}")


def _request(
    client: httpx.Client,
    counters: _Counters,
    method: str,
    path: str,
    *,
    expected: Sequence[int] = (200,),
    **kwargs: Any,
) -> httpx.Response | None:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        counters.record(None, expected, f"{method} {path}")
        with counters.lock:
            if len(counters.problems) < 20:
                counters.problems.append(f"{method} {path}: {type(exc).__name__}: {exc}")
        return None
    counters.record(response, expected, f"{method} {path}")
    return response


def _soak_document(run: str, i: int) -> dict[str, Any]:
    term = f"soak{run}x{i}"
    animals = ["heron", "lynx", "otter", "ibis", "marmot", "gecko", "tapir", "wren"]
    places = ["the delta", "the ridge", "the old harbour", "the salt flats", "the river bend"]
    return {
        "id": f"soak-{run}-{i:03d}",
        "title": f"Field note {i}: {animals[i % len(animals)]} sighting",
        "text": f"Field note {i} ({term}). A {animals[i % len(animals)]} was seen near {places[i % len(places)]} "
        f"at dawn; observers logged it under the marker {term} and noted the weather was calm.",
        "metadata": {"soak_run": run},
    }


def run_soak(
    url: str,
    *,
    api_key: str | None,
    duration: float = 60.0,
    search_rate: float = 10.0,
    updates: int = 20,
    publish_timeout: float = 120.0,
    max_requests: int = 5000,
    cli_index_dir: Path | None = None,
    allow_remote: bool = False,
    concurrency: int = 8,
    log: Any = sys.stderr,
) -> SoakResult:
    """Soak the server at ``url`` (see the module docstring); returns the figures."""
    if not allow_remote and not is_loopback(url):
        raise ValueError(f"refusing to soak {url}: only loopback addresses")
    questions = load_questions(SEED_QUESTIONS)
    run = secrets.token_hex(3)
    counters = _Counters(max_requests)
    headers = {"X-API-Key": api_key} if api_key else {}
    changes: list[_Change] = []
    posted: dict[str, dict[str, Any]] = {}  # doc_id -> the document as posted (last version)
    final_op: dict[str, str] = {}  # doc_id -> "upsert" or "delete": what the index must show at the end
    search_ms: list[float] = []
    searches_sent = [0]
    searches_skipped = [0]
    slots = threading.Semaphore(concurrency)
    versions: list[str] = []
    changes_lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration
    result = SoakResult(url=url, duration_s=duration)

    def one_search(client: httpx.Client, q: str) -> None:
        try:
            t0 = time.perf_counter()
            response = _request(client, counters, "GET", "/search", params={"q": q, "k": 5})
            if response is not None and response.status_code == 200:
                with changes_lock:
                    search_ms.append((time.perf_counter() - t0) * 1000)
                    version = response.json().get("index_version")
                    if version and version not in versions:
                        versions.append(version)
        finally:
            slots.release()

    def searcher() -> None:
        """Searches at a steady rate, at most ``concurrency`` in flight; a tick with all of them busy is skipped
        (counted), so a slow server is measured, never flooded."""
        interval = 1.0 / search_rate if search_rate > 0 else None
        next_at = time.monotonic()
        i = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        with (
            httpx.Client(base_url=url, headers=headers, timeout=60, limits=limits) as client,
            ThreadPoolExecutor(concurrency, thread_name_prefix="soak-search") as pool,
        ):
            while interval is not None and time.monotonic() < deadline and counters.budget_left():
                q = questions[i % len(questions)]
                if i % 3 == 2:
                    with changes_lock:
                        live = [d for d, op in final_op.items() if op == "upsert"]
                    if live:
                        q = f"marker {posted[live[i % len(live)]]['text'].split('(')[1].split(')')[0]}"
                i += 1
                if slots.acquire(blocking=False):
                    searches_sent[0] += 1
                    pool.submit(one_search, client, q)
                else:
                    searches_skipped[0] += 1
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def updater() -> None:
        spacing = duration * 0.8 / max(updates, 1)
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for i in range(updates):
                if time.monotonic() >= deadline or not counters.budget_left():
                    break
                with changes_lock:
                    live = sorted(d for d, op in final_op.items() if op == "upsert")
                if i % 3 == 2 and live:  # every third update deletes an earlier document
                    doc_id = live[0]
                    response = _request(client, counters, "DELETE", f"/documents/{doc_id}", expected=(202,))
                    docs = [doc_id]
                    op = "delete"
                else:
                    documents = [_soak_document(run, 2 * i)] + ([_soak_document(run, 2 * i + 1)] if i % 4 == 1 else [])
                    response = _request(
                        client,
                        counters,
                        "POST",
                        "/documents",
                        expected=(202,),
                        json=documents[0] if len(documents) == 1 else {"documents": documents},
                    )
                    docs = [d["id"] for d in documents]
                    op = "upsert"
                    if response is not None and response.status_code == 202:
                        for d in documents:
                            posted[d["id"]] = d
                if response is not None and response.status_code == 202:
                    now = time.monotonic()
                    with changes_lock:
                        for seq, doc_id in zip(response.json()["seq"], docs, strict=True):
                            changes.append(_Change(seq, op, doc_id, now))
                            final_op[doc_id] = op
                else:
                    result.updates_refused += len(docs)
                time.sleep(spacing)

    def poller() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while counters.budget_left():
                with changes_lock:
                    waiting = [c for c in changes if c.published_at is None]
                    updater_done = not updater_thread.is_alive()
                if not waiting and updater_done:
                    return
                if time.monotonic() > deadline + publish_timeout:
                    return
                for change in waiting[:10]:
                    response = _request(client, counters, "GET", f"/updates/{change.seq}")
                    if (
                        response is not None
                        and response.status_code == 200
                        and response.json()["status"] == "published"
                    ):
                        change.published_at = time.monotonic()
                        change.version = response.json()["index_version"]
                time.sleep(0.5)

    def cli_index() -> None:
        assert cli_index_dir is not None
        time.sleep(duration / 2)
        result.cli_index = _run_cli_index(cli_index_dir, log)

    updater_thread = threading.Thread(target=updater, name="soak-updates")
    threads = [
        threading.Thread(target=searcher, name="soak-search"),
        updater_thread,
        threading.Thread(target=poller, name="soak-poll"),
    ]
    if cli_index_dir is not None:
        threads.append(threading.Thread(target=cli_index, name="soak-cli"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    _verify(url, headers, counters, final_op, posted, result)
    result.duration_s = elapsed
    result.searches, result.searches_skipped = searches_sent[0], searches_skipped[0]
    result.versions = versions
    return _summarise(result, counters, changes, search_ms)


def _run_cli_index(index_dir: Path, log: Any) -> dict[str, Any]:
    """``citesearch index seeds/ --add`` against the served index folder (the CLI and the writer share its lock)."""
    t0 = time.monotonic()
    print(f"soak: running citesearch index {SEEDS} --add --index-dir {index_dir}", file=log, flush=True)
    command = [sys.executable, "-m", "citesearch.cli", "index", str(SEEDS), "--add", "--index-dir", str(index_dir)]
    try:
        done = subprocess.run(
            [*command, "--wait", "120", "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=PROJECT_ROOT,
            env=_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"exit_code": None, "seconds": time.monotonic() - t0, "stderr": "timed out after 300 s"}
    outcome: dict[str, Any] = {"exit_code": done.returncode, "seconds": time.monotonic() - t0}
    if done.returncode == 0:
        report = json.loads(done.stdout.strip().splitlines()[-1])
        outcome.update(
            version=report.get("version"),
            documents=report.get("documents"),
            passages_embedded=report.get("passages_embedded"),
        )
    else:
        outcome["stderr"] = done.stderr.strip()[-500:]
    return outcome


def _verify(
    url: str,
    headers: dict[str, str],
    counters: _Counters,
    final_op: dict[str, str],
    posted: dict[str, dict[str, Any]],
    result: SoakResult,
) -> None:
    """Every document whose last change is an upsert is stored as posted and found by search; every deleted one is
    gone. Misses are counted in ``result`` (lost, deleted_still_present) and described in its problems."""
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for doc_id, op in sorted(final_op.items()):
            result.documents_checked += 1
            document = _request(client, counters, "GET", f"/documents/{doc_id}", expected=(200, 404))
            if op == "upsert":
                term = posted[doc_id]["text"].split("(")[1].split(")")[0]
                search = _request(client, counters, "GET", "/search", params={"q": f"marker {term}", "k": 10})
                found = (
                    search is not None
                    and search.status_code == 200
                    and doc_id in {h["citation"]["doc_id"] for h in search.json()["results"]}
                )
                stored = (
                    document is not None
                    and document.status_code == 200
                    and document.json()["text"] == posted[doc_id]["text"]
                )
                if not (found and stored):
                    result.lost += 1
                    result.problems.append(f"lost {doc_id}: stored={stored} found_by_search={found}")
            elif document is None or document.status_code != 404:
                result.deleted_still_present += 1
                result.problems.append(f"deleted {doc_id} still present")


def _summarise(result: SoakResult, counters: _Counters, changes: list[_Change], search_ms: list[float]) -> SoakResult:
    """The request counts, search latencies and publish lags of the run, into ``result``."""
    published = [c for c in changes if c.published_at is not None]
    lags = [c.published_at - c.accepted_at for c in published if c.published_at is not None]
    result.requests = counters.requests
    result.errors = counters.errors
    result.status_counts = dict(counters.status)
    result.status_5xx = sum(n for code, n in counters.status.items() if code.startswith("5"))
    if search_ms:
        result.search_p50_ms, result.search_p95_ms = (float(v) for v in np.percentile(search_ms, [50, 95]))
        result.search_max_ms = float(max(search_ms))
    result.updates_accepted = len(changes)
    result.published = len(published)
    result.not_published_in_time = len(changes) - len(published)
    if lags:
        result.publish_lag_p50_s = float(np.percentile(lags, 50))
        result.publish_lag_max_s = float(max(lags))
    result.problems = counters.problems + result.problems
    return result


# -- its own server ----------------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra}


def _serve(index_dir: str, port: str) -> None:
    """The subprocess: the service's app (as ``citesearch serve`` builds it) with the key from the environment."""
    import logging

    import uvicorn

    from citesearch.settings import Settings
    from service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(index_dir=Path(index_dir))
    app = create_app(settings, embedder=settings.load_embedder())
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


@contextlib.contextmanager
def own_server(
    source_index: Path, workdir: Path, *, startup_timeout: float = 240.0, log: Any = sys.stderr
) -> Iterator[tuple[str, str, Path]]:
    """A copy of ``source_index`` (built from seeds/ if it has no version) served on a free loopback port; yields
    (url, write key, index folder) and stops the server (SIGINT, then SIGTERM, then SIGKILL) afterwards."""
    index_dir = workdir / "index"
    if (source_index / "CURRENT").exists():
        shutil.copytree(
            source_index,
            index_dir,
            ignore=shutil.ignore_patterns("journal.sqlite*", "writer.lock", "write.lock", ".tmp-*"),
        )
    else:
        print(f"soak: no index in {source_index}; building one from {SEEDS}", file=log, flush=True)
        subprocess.run(
            [sys.executable, "-m", "citesearch.cli", "index", str(SEEDS), "--index-dir", str(index_dir)],
            check=True,
            cwd=PROJECT_ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
    key = secrets.token_hex(16)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    env = _env(
        CITESEARCH_API_KEYS=f"soak:write:{key}",
        CITESEARCH_RATE_LIMIT_PER_MINUTE="0",
        CITESEARCH_ACCESS_LOG="false",
        CITESEARCH_INDEX_DIR=str(index_dir),
    )
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "eval.soak", "--serve-internal", str(index_dir), str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    try:
        try:
            wait_until_ready(process, url, timeout=startup_timeout, poll_seconds=0.3)
        except ServerError as exc:
            raise RuntimeError(f"{exc}; see {log_path}") from None
        print(f"soak: serving a copy of {source_index} at {url} (log {log_path})", file=log, flush=True)
        yield url, key, index_dir
    finally:
        stop_server(process, grace=60.0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve-internal"]:
        _serve(*argv[1:3])
        return 0
    parser = argparse.ArgumentParser(prog="python -m eval.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="soak this running server (loopback only) instead of starting one")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CITESEARCH_SOAK_KEY"),
        help="write key for --url (default $CITESEARCH_SOAK_KEY)",
    )
    parser.add_argument("--index-dir", type=Path, help="index to copy for the own server (default: settings)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of searches and updates (default 60)")
    parser.add_argument("--search-rate", type=float, default=10.0, help="searches per second (default 10)")
    parser.add_argument("--updates", type=int, default=20, help="updates spread over the run (default 20)")
    parser.add_argument(
        "--cli-index",
        action="store_true",
        help="also run `citesearch index seeds/ --add` once, half-way, on the same folder",
    )
    parser.add_argument(
        "--publish-timeout",
        type=float,
        default=120.0,
        help="seconds to wait after the run for accepted changes to be published (default 120)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="most searches in flight (default 8)")
    parser.add_argument("--max-requests", type=int, default=5000, help="stop sending after this many (default 5000)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be in (0, 3600]")
    if not 0 <= args.search_rate <= 100 or not 0 <= args.updates <= 1000:
        parser.error("--search-rate must be in [0, 100] and --updates in [0, 1000]")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be in [1, 64]")

    if args.url:
        if args.cli_index and args.index_dir is None:
            parser.error("--cli-index with --url needs --index-dir (the folder that server serves)")
        result = run_soak(
            args.url,
            api_key=args.api_key,
            duration=args.duration,
            search_rate=args.search_rate,
            updates=args.updates,
            publish_timeout=args.publish_timeout,
            max_requests=args.max_requests,
            cli_index_dir=args.index_dir if args.cli_index else None,
            concurrency=args.concurrency,
        )
    else:
        from citesearch.settings import Settings

        source = Path(args.index_dir or Settings().index_dir)
        with (
            tempfile.TemporaryDirectory(prefix="citesearch-soak-") as tmp,
            own_server(source, Path(tmp)) as (url, key, index_dir),
        ):
            result = run_soak(
                url,
                api_key=key,
                duration=args.duration,
                search_rate=args.search_rate,
                updates=args.updates,
                publish_timeout=args.publish_timeout,
                max_requests=args.max_requests,
                cli_index_dir=index_dir if args.cli_index else None,
                concurrency=args.concurrency,
            )
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if args.json else result.table())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

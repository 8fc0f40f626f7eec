"""A small, bounded load generator for the HTTP service: N requests at concurrency C within a time limit.

It reports latency percentiles (p50, p95, p99), throughput and errors. It is deliberately bounded: a request count,
a wall-clock limit, and by default only loopback addresses, because it exists to measure this service on this
machine, not to load anything else. ``run_load`` is the function API (``citesearch bench query`` reuses it); running
the module is a command for one-off measurements::

    python -m eval.loadgen --url http://127.0.0.1:8000 --endpoint search --requests 300 --concurrency 1
    python -m eval.loadgen --url http://127.0.0.1:8000 --endpoint ask --requests 300 --concurrency 1

Questions come from eval/data/seed_questions.jsonl (cycled) unless ``--questions FILE`` (one per line or JSONL
with a "question" field) is given. Percentiles are numpy's linear interpolation over the successful requests.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

SEED_QUESTIONS = Path(__file__).resolve().parent / "data" / "seed_questions.jsonl"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request to send: method, path (relative to the base URL), query parameters or a JSON body."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None


@dataclass(slots=True)
class LoadResult:
    """What a run measured. Latencies are in milliseconds, over successful (2xx) requests only."""

    base_url: str
    label: str
    requested: int
    sent: int
    ok: int
    errors: int
    concurrency: int
    wall_seconds: float
    throughput_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    min_ms: float | None
    max_ms: float | None
    status_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    stopped_by_time_limit: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        def ms(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1f} ms"

        text = (
            f"{self.label}: {self.sent} requests ({self.ok} ok, {self.errors} errors) at concurrency "
            f"{self.concurrency} in {self.wall_seconds:.1f}s = {self.throughput_rps:.1f} req/s; "
            f"p50 {ms(self.p50_ms)}, p95 {ms(self.p95_ms)}, p99 {ms(self.p99_ms)}, max {ms(self.max_ms)}"
        )
        if self.stopped_by_time_limit:
            text += f" (stopped by the time limit after {self.sent} of {self.requested})"
        return text


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_load(
    base_url: str,
    requests: Sequence[RequestSpec] | Callable[[int], RequestSpec],
    *,
    total: int,
    concurrency: int = 1,
    time_limit: float = 300.0,
    timeout: float = 30.0,
    warmup: int = 0,
    label: str = "",
    allow_remote: bool = False,
) -> LoadResult:
    """Send ``total`` requests (``requests[i % len]`` or ``requests(i)``) with ``concurrency`` workers.

    Stops early when ``time_limit`` seconds have passed (requests already sent finish). ``warmup`` requests are
    sent first, one at a time, and not measured (the first requests load caches and warm the model).
    """
    if total < 1 or concurrency < 1:
        raise ValueError("total and concurrency must be at least 1")
    if not allow_remote and not is_loopback(base_url):
        raise ValueError(f"refusing to load {base_url}: only loopback addresses unless allow_remote=True")
    spec_for: Callable[[int], RequestSpec]
    if callable(requests):
        spec_for = requests
    else:
        if not requests:
            raise ValueError("no requests to send")
        specs = list(requests)
        spec_for = lambda i: specs[i % len(specs)]  # noqa: E731 - a one-line adapter

    with httpx.Client(base_url=base_url, timeout=timeout) as warm:
        for i in range(warmup):
            _send(warm, spec_for(i))

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    counter = itertools.count()
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + time_limit
    stopped = threading.Event()

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:  # one connection per worker
            while True:
                with lock:
                    index = next(counter)
                if index >= total:
                    return
                if time.perf_counter() >= deadline:
                    stopped.set()
                    return
                spec = spec_for(warmup + index)
                t0 = time.perf_counter()
                try:
                    response = _send(client, spec)
                    elapsed = (time.perf_counter() - t0) * 1000
                    status = str(response.status_code)
                    failure = None if response.is_success else f"{spec.path}: HTTP {status} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    elapsed, status, failure = 0.0, type(exc).__name__, f"{spec.path}: {exc!r}"
                with lock:
                    statuses[status] += 1
                    if failure is None:
                        latencies.append(elapsed)
                    elif len(samples) < 5:
                        samples.append(failure)

    threads = [threading.Thread(target=worker, name=f"loadgen-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    sent = sum(statuses.values())
    ok = len(latencies)
    values = np.asarray(latencies, dtype=np.float64)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(values, q)), 2) if ok else None

    return LoadResult(
        base_url=base_url,
        label=label or "load",
        requested=total,
        sent=sent,
        ok=ok,
        errors=sent - ok,
        concurrency=concurrency,
        wall_seconds=round(wall, 3),
        throughput_rps=round(sent / wall, 2) if wall > 0 else 0.0,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        mean_ms=round(float(values.mean()), 2) if ok else None,
        min_ms=round(float(values.min()), 2) if ok else None,
        max_ms=round(float(values.max()), 2) if ok else None,
        status_counts=dict(statuses),
        error_samples=samples,
        stopped_by_time_limit=stopped.is_set(),
    )


def _send(client: httpx.Client, spec: RequestSpec) -> httpx.Response:
    return client.request(spec.method, spec.path, params=spec.params, json=spec.json)


def load_questions(path: Path = SEED_QUESTIONS) -> list[str]:
    """Questions from a JSONL file with a "question" field, or a plain text file with one question a line."""
    questions = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        questions.append(json.loads(line)["question"] if line.startswith("{") else line)
    if not questions:
        raise ValueError(f"no questions in {path}")
    return questions


def question_requests(endpoint: str, questions: Sequence[str], *, k: int | None = None) -> list[RequestSpec]:
    """Requests for ``/search`` (GET) or ``/ask`` (POST), one per question."""
    if endpoint == "search":
        return [RequestSpec("GET", "/search", params={"q": q, **({"k": k} if k else {})}) for q in questions]
    if endpoint == "ask":
        return [RequestSpec("POST", "/ask", json={"question": q, **({"k": k} if k else {})}) for q in questions]
    raise ValueError(f"unknown endpoint {endpoint!r}; use search or ask")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of a running citesearch serve")
    parser.add_argument("--endpoint", choices=["search", "ask"], default="search")
    parser.add_argument("--requests", type=int, default=300, help="number of measured requests")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=300.0, help="stop sending after this many seconds")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests sent first")
    parser.add_argument("--k", type=int, help="k for each request (default: the service's)")
    parser.add_argument("--questions", type=Path, default=SEED_QUESTIONS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        specs = question_requests(args.endpoint, load_questions(args.questions), k=args.k)
        result = run_load(
            args.url,
            specs,
            total=args.requests,
            concurrency=args.concurrency,
            time_limit=args.time_limit,
            warmup=args.warmup,
            label=f"/{args.endpoint}",
        )
    except (ValueError, OSError, httpx.HTTPError) as exc:
        print(f"loadgen: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict()) if args.json else result.summary())
    for sample in result.error_samples:
        print(f"  error: {sample}", file=sys.stderr)
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

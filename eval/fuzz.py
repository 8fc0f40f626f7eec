"""A long schemathesis run against the real app: many generated requests per operation, counting every 5xx.

    python -m eval.fuzz --index-dir DIR --requests 100000 [--hashing] [--seed 7]

The app is the one `citesearch serve` runs (create_app, the index copied to a temporary folder so the write
endpoints journal there), called in process through its ASGI interface. Requests are generated from the app's own
OpenAPI schema, valid and invalid (schemathesis' positive and negative modes), for every operation in turn until
the total is reached; write operations are sent with the write key. It prints the requests sent, the count per
status class and per operation, and every distinct 5xx (at most 20 samples), and exits 1 if there was any 5xx.
``--hashing`` uses the test HashingEmbedder (the index must have been built with it): input handling is the same,
and a request costs a fraction of the real model's. This is a command that prints figures, not a timed test.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexer.embedder import Embedder

WRITE_KEY = "fuzz-write-key-0123456789abcdef"


def run_fuzz(
    index_dir: Path, total: int, *, hashing: bool, seed: int, time_limit: float = 0.0, log: Any = sys.stderr
) -> dict[str, Any]:
    """Send ``total`` generated requests (or as many as ``time_limit`` seconds allow, when set); see the module."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.result import Err
    from schemathesis.generation import GenerationMode
    from schemathesis.python.asgi import shutdown_lifespans

    from citesearch.settings import Settings
    from service.app import create_app

    with tempfile.TemporaryDirectory(prefix="citesearch-fuzz-") as tmp:
        copy = Path(tmp) / "index"
        shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("journal.sqlite*", "writer.lock", "write.lock"))
        app_settings = Settings(
            index_dir=copy,
            rate_limit_per_minute=0,
            api_keys=f"fuzz:write:{WRITE_KEY}",
            access_log=False,
            sentence_warmup=False,
            _env_file=None,
        )
        if hashing:
            # The tests' stand-in model (run from the repository root): a fuzz run exercises input handling, which
            # does not depend on the vectors, in a fraction of the real model's CPU time.
            from tests.fakes import HashingEmbedder

            embedder: Embedder = HashingEmbedder()
        else:
            embedder = app_settings.load_embedder()
        app = create_app(app_settings, embedder=embedder)
        schema = schemathesis.openapi.from_dict(app.openapi())
        operations = []
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # the app's own schema: an operation that does not load is a bug here
                raise RuntimeError(f"cannot load an operation of the OpenAPI schema: {result.err()}")
            operations.append(result.ok())
        by_status: collections.Counter[str] = collections.Counter()
        by_operation: collections.Counter[str] = collections.Counter()
        errors: dict[str, str] = {}
        sent = 0
        started = time.perf_counter()

        def make_sender(label: str, write: bool) -> Any:
            def send(case: Any) -> None:
                nonlocal sent
                response = case.call(app=app, headers={"X-API-Key": WRITE_KEY} if write else None)
                sent += 1
                by_status[f"{response.status_code // 100}xx"] += 1
                by_operation[label] += 1
                if response.status_code >= 500:
                    errors.setdefault(
                        f"{label} {response.status_code}", f"{case.as_curl_command()} -> {response.text[:300]}"
                    )

            return send

        per_round = max(1, min(2000, total // (len(operations) * 2) or 1))
        round_no = 0
        try:
            while sent < total and not (time_limit and time.perf_counter() - started > time_limit):
                sent_before = sent
                for operation in operations:
                    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                        budget = min(per_round, total - sent)
                        if time_limit and time.perf_counter() - started > time_limit:
                            budget = 0
                        if budget <= 0:
                            break
                        label = operation.label
                        write = operation.method.upper() in ("POST", "DELETE") and "/documents" in operation.path

                        send = settings(
                            max_examples=budget,
                            deadline=None,
                            database=None,
                            derandomize=False,
                            suppress_health_check=list(HealthCheck),
                            phases=[Phase.generate],  # new cases only: no shrinking, no replay
                        )(
                            hypothesis_seed(seed * 1_000_003 + round_no)(  # each round its own cases, repeatable
                                given(case=operation.as_strategy(generation_mode=mode))(make_sender(label, write))
                            )
                        )
                        # Unsatisfiable: nothing (more) to generate, an operation without parameters.
                        with contextlib.suppress(Unsatisfiable):
                            send()
                        round_no += 1
                if sent == sent_before:
                    print(f"fuzz: no request could be generated: {errors}", file=log)
                    break
                print(
                    f"fuzz: {sent} requests, {dict(by_status)}, {time.perf_counter() - started:.0f}s",
                    file=log,
                    flush=True,
                )
        finally:
            shutdown_lifespans()
        five = by_status.get("5xx", 0)
        return {
            "requests": sent,
            "status_classes": dict(sorted(by_status.items())),
            "server_errors": five,
            "per_operation": dict(sorted(by_operation.items())),
            "samples": dict(list(errors.items())[:20]),
            "seconds": round(time.perf_counter() - started, 1),
            "embedder": "hashing" if hashing else app_settings.model,
            "complete": sent >= total,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--hashing", action="store_true", help="the test HashingEmbedder instead of the real model")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--time-limit", type=float, default=0.0, help="stop after this many seconds (0: none)")
    args = parser.parse_args(argv)
    result = run_fuzz(args.index_dir, args.requests, hashing=args.hashing, seed=args.seed, time_limit=args.time_limit)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 1 if result["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""`citesearch serve --workers 2`: two processes on one index folder and one socket, one of them applying the
journal; every acknowledged document ends up searchable on both, and the effective rate limit is logged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import PROJECT_ROOT
from tests.servicekit import free_port, wait_for

KEY = "workers-test-key-0123456789"


def test_two_workers_serve_one_index_and_one_applies_the_journal(tmp_path: Path, seed_index) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index[0], index_dir)
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CITESEARCH_API_KEYS": f"tests:write:{KEY}",
        "CITESEARCH_RELOAD_INTERVAL_SECONDS": "0.3",
        "CITESEARCH_RATE_LIMIT_PER_MINUTE": "600",
        "CITESEARCH_SENTENCE_WARMUP": "false",
        "CITESEARCH_LOG_FORMAT": "text",
    }
    command = [sys.executable, "-m", "citesearch.cli", "serve", "--index-dir", str(index_dir), "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", "2"],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEY}):

            def both_ready() -> bool:
                assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
                return log_path.read_text(errors="replace").count("serving index version") >= 2

            wait_for(both_ready, timeout=180, interval=0.3, what="both workers to load the index")
            seqs = []
            for i in range(4):  # new connections, so both workers get some
                with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEY}) as fresh:
                    doc = {"id": f"w{i}", "text": f"Worker test note {i}: the narwhal{i} tusk is a tooth."}
                    response = fresh.post("/documents", json=doc)
                    assert response.status_code == 202, response.text
                    seqs.append(response.json()["seq"][0])

            def all_published_everywhere() -> bool:
                # Fresh connections land on either worker: "published" must hold on whichever answers.
                for seq in seqs:
                    with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEY}) as fresh:
                        status = fresh.get(f"/updates/{seq}").json()
                        if status["status"] != "published":
                            return False
                        assert status["served_version"] >= status["index_version"]
                return True

            wait_for(all_published_everywhere, timeout=120, interval=0.3, what="every update published")
            for _ in range(6):
                with httpx.Client(base_url=base, timeout=30) as fresh:
                    assert fresh.get("/documents/w3").status_code == 200
        text = log_path.read_text(errors="replace")
        assert "effectively up to 1200/min" in text
        assert text.count("applied journaled updates") >= 1
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == 0, log_path.read_text(errors="replace")[-3000:]

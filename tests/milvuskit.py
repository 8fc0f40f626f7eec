"""A `milvus-lite server` for tests: the Milvus Lite engine (BM25 function included) shared over gRPC by several
processes, on a loopback port with a fresh data folder, bounded in time and stopped by its PID."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from eval.server_process import free_port
from tests.servicekit import wait_for


@contextlib.contextmanager
def lite_server(folder: Path, *, timeout: float = 60) -> Iterator[str]:
    """The server's URI (``http://127.0.0.1:PORT``) while it runs; its data and log live in ``folder``."""
    executable = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "milvus-lite.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [executable, "server", "--data-dir", str(folder / "milvus-data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        from pymilvus import MilvusClient

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"milvus-lite server exited: {log_path.read_text()[-2000:]}")
            try:
                MilvusClient(uri=uri, timeout=2).close()
                return True
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.2)
                return False

        wait_for(up, timeout=timeout, what="milvus-lite server")
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()

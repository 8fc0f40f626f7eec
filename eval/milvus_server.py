"""A real Milvus Standalone server for tests and benchmarks: the PyPI package ``milvus`` (2.3.5) runs the Milvus
binary with embedded etcd and local storage.

Every run gets a fresh data folder, every component is bound to 127.0.0.1 (nothing listens on another interface,
and no network is needed), the start is bounded in time, and the server is stopped through the process group it
was started in (SIGINT first, which ``milvus-server`` turns into a clean stop of its child, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eval.server_process import free_port

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")


class MilvusServerUnavailable(RuntimeError):
    """The server package is not installed, or the server did not start in time (the message says which)."""


@dataclass(frozen=True, slots=True)
class RunningServer:
    uri: str
    pid: int
    data_dir: Path
    log_path: Path


def _console_script(name: str) -> str | None:
    """A package's console script: on PATH, or beside this interpreter (a virtualenv not activated)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def milvus_server_executable() -> str | None:
    return _console_script("milvus-server")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def milvus_standalone(data_dir: Path, *, timeout: float = 120.0) -> Iterator[RunningServer]:
    """Start a Standalone server with its data in ``data_dir`` (must not exist yet) and stop it afterwards."""
    executable = milvus_server_executable()
    if executable is None:
        raise MilvusServerUnavailable("the Milvus server package is not installed: pip install milvus==2.3.5")
    data_dir.mkdir(parents=True)
    ports = {"proxy-port": free_port(), "etcd-port": free_port(), "proxy-internal-port": free_port()}
    command = [executable, "--data", str(data_dir)]
    for name, port in ports.items():
        command += [f"--{name}", str(port)]
    for component in COMPONENTS:
        command += ["--extra-config", f"{component}.ip=127.0.0.1"]
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    with _serving(process, ports["proxy-port"], data_dir, log_path, timeout, "the Milvus server", poll=0.5) as server:
        yield server


@contextlib.contextmanager
def _serving(
    process: subprocess.Popen[bytes],
    port: int,
    data_dir: Path,
    log_path: Path,
    timeout: float,
    what: str,
    *,
    poll: float,
) -> Iterator[RunningServer]:
    """The started ``process`` once it listens on ``port`` and answers as healthy within ``timeout`` seconds (its
    log's tail in the error if it exits first); stopped by its PID on the way out, whatever happened."""
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-1500:]
                raise MilvusServerUnavailable(f"{what} exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise MilvusServerUnavailable(f"{what} did not listen within {timeout:.0f}s")
            time.sleep(poll)
        _wait_healthy(uri, deadline)
        yield RunningServer(uri, process.pid, data_dir, log_path)
    finally:
        _stop(process)


def _wait_healthy(uri: str, deadline: float) -> None:
    from pymilvus import MilvusClient

    from index_store.milvus_store import IDLE_SAFE_GRPC_OPTIONS

    while True:
        try:
            # the same idle-safe pings as citesearch's own connections: pymilvus keeps this channel for the process's
            # later clients of the same address, and an idle pinging one is closed by a milvus-lite server
            client = MilvusClient(uri=uri, timeout=5, grpc_options=IDLE_SAFE_GRPC_OPTIONS)
            client.list_collections()
            client.close()
            return
        except Exception as exc:  # noqa: BLE001 - still starting: its coordinators come up one by one
            if time.monotonic() > deadline:
                raise MilvusServerUnavailable(f"the Milvus server at {uri} did not become ready: {exc}") from None
            time.sleep(1.0)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the milvus binary too, should the launcher have left it behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def milvus_lite_executable() -> str | None:
    return _console_script("milvus-lite")


@contextlib.contextmanager
def milvus_lite_server(data_dir: Path, *, timeout: float = 60.0) -> Iterator[RunningServer]:
    """`milvus-lite server`: the Milvus Lite engine (BM25 function included) shared over gRPC by several processes,
    on a free loopback port with its data in ``data_dir`` (created; must not hold another server's data), started
    within ``timeout`` seconds and stopped by its PID afterwards."""
    executable = milvus_lite_executable()
    if executable is None:
        raise MilvusServerUnavailable("milvus-lite is not installed: pip install citesearch[milvus]")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "milvus-lite.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, "server", "--data-dir", str(data_dir / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    with _serving(process, port, data_dir, log_path, timeout, "milvus-lite server", poll=0.2) as server:
        yield server

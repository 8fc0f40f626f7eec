"""Helpers for the service tests: run the real app under uvicorn on a free loopback port (in a thread, or in a
subprocess that a test can kill), and wait for things."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from eval.server_process import ServerError, free_port, wait_until_ready

PROJECT_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def loopback_socket() -> socket.socket:
    """A listening-ready socket on 127.0.0.1 with a port the kernel chose, so no other test can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_server(
    app: FastAPI, *, startup_timeout: float = 60.0, config: uvicorn.Config | None = None
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL and stops it afterwards. ``config``:
    the uvicorn configuration to serve with (default: uvicorn's own, quiet)."""
    sock = loopback_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(config or uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during startup")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def start_server_process(
    command: Callable[[int], list[str]],
    log_path: Path,
    *,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``command(port)`` (a server on a free loopback port) from the project root, with its output appended to
    ``log_path`` and ``env`` added to the environment; return once ``GET /ready`` answers 200, with the process and
    its base URL. The same wait as the benchmarks' (eval/server_process.py); a server that dies or never gets ready
    fails the test with its log."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command(port),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base, timeout=timeout, poll_seconds=0.1)
    except ServerError as exc:
        process.kill()
        process.wait(10)
        raise AssertionError(f"{exc}; its log:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return process, base


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)

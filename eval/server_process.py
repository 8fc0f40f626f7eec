"""A ``citesearch serve``-like server in a subprocess on a loopback port, for the benchmark and the soak run:
a free port, waiting until ``/ready``, and a stop that always ends the process."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time

import httpx


class ServerError(RuntimeError):
    """The server subprocess died or never became ready."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, *, timeout: float, poll_seconds: float = 0.2
) -> None:
    """Return once ``GET /ready`` answers 200; ``ServerError`` if the process exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while True:
            if process.poll() is not None:
                raise ServerError(f"the server exited with code {process.returncode} during startup")
            if time.monotonic() > deadline:
                raise ServerError(f"the server was not ready after {timeout:.0f}s")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/ready").status_code == 200:
                    return
            time.sleep(poll_seconds)


def stop_server(process: subprocess.Popen[bytes], *, grace: float = 30.0) -> int | None:
    """Stop the server we started, by its pid: SIGINT (uvicorn's graceful shutdown), then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)
    return process.poll()

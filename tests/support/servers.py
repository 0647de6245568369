"""Start and stop local HTTP servers (``mlflow server``, ``mlflow models serve``) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


class RestartableServer:
    """A server that a test stops and starts again on the same port (an outage and its end)."""

    def __init__(self, command: Sequence[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, timeout_s: float = 180.0) -> None:
        self.command, self.ready_url, self.log_path = list(command), ready_url, log_path
        self.env, self.cwd, self.timeout_s = env, cwd, timeout_s
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and return once ``ready_url`` answers 200."""
        with open(self.log_path, "a") as log_file:  # the server writes to its own copy of the file
            self.process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while not http_ok(self.ready_url):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited with {self.process.returncode}: {_tail(self.log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.ready_url} not ready after {self.timeout_s:.0f} s: {_tail(self.log_path)}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop its whole process group; return once nothing answers on the port."""
        if self.process is not None:
            _stop_group(self.process)
            self.process = None
        deadline = time.monotonic() + 30
        while http_ok(self.ready_url, timeout=1.0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.ready_url} still answers after the server was stopped")
            time.sleep(0.2)


@contextmanager
def serving(command: Sequence[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout_s: float = 180.0) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group until ``ready_url`` answers 200; stop the group on exit.

    Fails with the end of the server's log if it exits early or is not ready in ``timeout_s``.
    """
    with open(log_path, "w") as log_file:  # the server writes to its own copy of the file
        process = subprocess.Popen(list(command), stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not http_ok(ready_url):
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready after {timeout_s:.0f} s: {_tail(log_path)}")
            time.sleep(0.3)
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group (the CLI and its uvicorn/gunicorn children); SIGKILL what is left after ``grace_s``."""
    group = process.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or killpg(group, 0) keeps finding its zombie
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(5)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"

"""``python -m MODULE ARGS`` for the tests, run in forks of one process that imported the heavy
modules once (tests/support/bench_forkserver.py; bench/common.py's ``run_python(fork=True)``).

Each run still gets its own process, working folder, environment (``PYTHONPATH`` included),
output, exit status and timeout; what it saves is the 4-6 s of imports (torch, transformers,
MLflow, Hydra) that a fresh interpreter pays, which made most of the suite's time. Tests that
signal or kill the process they start use ``subprocess`` themselves. ``MEDKIT_EXP_TESTS_FORK=0``
runs every command in a fresh interpreter instead.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_server: dict = {}


def _fork_server(env: dict[str, str]) -> subprocess.Popen:
    if "process" not in _server or _server["process"].poll() is not None:
        log_path = Path(tempfile.gettempdir()) / f"medkit-exp-forkserver-{os.getpid()}.log"
        with open(log_path, "w") as log:  # the server writes to its own copy of the file
            process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bench_forkserver.py"))],
                                       cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=log, text=True)
        if not process.stdout.readline():
            raise RuntimeError(f"the test fork server did not start: see {log_path}")
        _server.update(process=process)
        atexit.register(_stop)
    return _server["process"]


def _stop() -> None:
    process = _server.pop("process", None)
    if process is not None and process.poll() is None:
        process.stdin.close()
        process.wait(timeout=60)


def run_python(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with exactly ``env``; its output as text."""
    command = [sys.executable, *args]
    if os.environ.get("MEDKIT_EXP_TESTS_FORK", "1") == "0":
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    server = _fork_server(env)
    server.stdin.write(json.dumps({"args": list(args), "cwd": str(cwd), "env": env, "timeout": timeout}) + "\n")
    server.stdin.flush()
    if not select.select([server.stdout], [], [], timeout + 60)[0]:  # the server enforces the timeout itself
        server.kill()
        raise RuntimeError(f"the test fork server hangs: see {_server['log'].name}")
    line = server.stdout.readline()
    if not line:
        raise RuntimeError(f"the test fork server died: see {_server['log'].name}")
    reply = json.loads(line)
    if reply.get("timeout"):
        raise subprocess.TimeoutExpired(command, timeout)
    return subprocess.CompletedProcess(command, reply["returncode"], reply["stdout"], reply["stderr"])

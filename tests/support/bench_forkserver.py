"""Fork server of tests/test_bench_smoke.py: imports what the benchmark scripts import once, then
runs each requested script in a fork of itself (bench/common.py's ``run_python(fork=True)``).

A script run so goes end to end as ``python bench/NAME.py ARGS`` would, without its 3-6 s of
imports; with ``--fork`` the script forks its sides and app runs the same way. Requests and
replies are JSON lines on stdin and stdout: {"args", "cwd", "env", "timeout"} ->
{"returncode", "stdout", "stderr"} or {"timeout": true}. It exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def serve() -> None:
    """Preload, say ready, then answer each request line until stdin closes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import common

    common.preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            done = common.run_python(request["args"], cwd=request["cwd"], env=request["env"], capture=True,
                                     fork=True, timeout=request["timeout"])
            reply = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        except subprocess.TimeoutExpired:
            reply = {"timeout": True}
        print(json.dumps(reply), flush=True)
    os._exit(0)  # nothing to clean up: skip the seconds of tearing down what was imported


if __name__ == "__main__":
    serve()

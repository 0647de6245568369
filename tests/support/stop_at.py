"""Run `python -m medkit_exp`, holding it at the start of one phase until a stop signal arrives.

    python tests/support/stop_at.py <folder> <phase>[@<epochs>][x<signals>][+hold] <overrides...>
    python tests/support/stop_at.py --serve      # a fork server of such runs (`StopAtServer`)

When the run enters ``<phase>`` (a name of `medkit_exp.training.phases`, e.g. ``test prediction``) for
the first time after ``<epochs>`` epochs were logged to MLflow (default 0), it writes
``<folder>/reached`` and waits there: the test then sends its signal, whatever the machine's
speed. Where the app's handlers stop a phase at once, the signal's exception leaves the wait;
inside training the Trainer's handlers only take note, so the wait ends once ``<signals>``
(default 1) signals were handled and training goes on to its graceful stop. With ``+hold``, the stopped run writes
``<folder>/ending`` when it starts ending its MLflow run and waits there for another signal.
Patched in from outside: the code under test is unchanged.

Each run is a fork of a server that imported the heavy modules once (bench/common.py's fork
mode, as tests/support/forked_cli.py does), told apart from a fresh interpreter only by its start-up
time; unlike forked_cli the server answers with the run's pid at once, for the test to signal.
``MEDKIT_EXP_TESTS_FORK=0`` starts a fresh interpreter instead.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

WAIT_LIMIT_S = 300.0  # a safety net only: the test signals as soon as it sees the marker


def install(folder: Path, spec: str) -> None:
    from medkit_exp.tracking.run import TrackedRun
    from medkit_exp.training import phases
    from medkit_exp.training.signals import StopSignals

    found = re.fullmatch(r"(.+?)(?:@(\d+))?(?:x(\d+))?(\+hold)?", spec)
    target, after_epochs, signals = found.group(1), int(found.group(2) or 0), int(found.group(3) or 1)
    handled: list[int] = []
    epochs_logged: list[int] = []

    handle = StopSignals._handle

    def note_then_handle(self, signum, frame):
        handled.append(signum)
        return handle(self, signum, frame)

    log_epoch = TrackedRun.log_epoch

    def note_epoch(self, metrics, epoch, *args, **kwargs):
        log_epoch(self, metrics, epoch, *args, **kwargs)
        epochs_logged.append(epoch)

    enter = phases.RunPhases.enter

    def enter_then_wait(self, name):
        enter(self, name)
        if name != target or len(epochs_logged) < after_epochs or (folder / "reached").exists():
            return
        (folder / "reached").touch()
        deadline = time.monotonic() + WAIT_LIMIT_S
        while len(handled) < signals:
            if time.monotonic() > deadline:
                raise RuntimeError(f"stop_at: no signal came in phase {name}")
            time.sleep(0.02)

    fail = TrackedRun.fail

    def hold_then_fail(self, *args, **kwargs):
        (folder / "ending").touch()
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline:
            time.sleep(0.02)
        return fail(self, *args, **kwargs)

    StopSignals._handle = note_then_handle
    TrackedRun.log_epoch = note_epoch
    if found.group(4):
        TrackedRun.fail = hold_then_fail
    phases.RunPhases.enter = enter_then_wait


class StopAtServer:
    """Starts runs of this script (in forks of ``--serve``, or fresh interpreters) and tells their end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.fork = os.environ.get("MEDKIT_EXP_TESTS_FORK", "1") != "0"
        self.server: subprocess.Popen | None = None
        self.run: subprocess.Popen | None = None
        if self.fork:
            self.server = subprocess.Popen([sys.executable, __file__, "--serve"], cwd=REPO_ROOT, env=env,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if not self.server.stdout.readline():
                raise RuntimeError("the stop_at server did not start")

    def start(self, folder: Path, spec: str, args: list[str], cwd: Path, env: dict[str, str]) -> int:
        """Start a run (its output in ``cwd``/stdout.txt and stderr.txt); return its pid."""
        argv = [__file__, str(folder), spec, *args]
        if not self.fork:
            with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
                self.run = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=out, stderr=err)
            return self.run.pid
        self.server.stdin.write(json.dumps({"args": argv, "cwd": str(cwd), "env": env}) + "\n")
        self.server.stdin.flush()
        return json.loads(self.server.stdout.readline())["pid"]

    def ended(self, timeout: float = 0.0) -> int | None:
        """The run's exit status once it ended (waiting up to ``timeout`` s), else None."""
        if not self.fork:
            try:
                return self.run.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        if not select.select([self.server.stdout], [], [], timeout)[0]:
            return None
        return json.loads(self.server.stdout.readline())["returncode"]

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()
            self.server.wait(timeout=60)


def serve() -> None:
    """Import the heavy modules once; for each request line, fork a run, answer its pid, then its status."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import common

    common.preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        cwd = Path(request["cwd"])
        with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                common._forked_child(request["args"], cwd, request["env"], [out.fileno(), err.fileno()])
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
    os._exit(0)


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    serve()
elif __name__ == "__main__":
    # As in a terminal's foreground, whatever the test runner ignores.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    install(Path(sys.argv[1]), sys.argv[2])
    sys.argv = ["medkit_exp", *sys.argv[3:]]
    from medkit_exp.__main__ import main

    main()

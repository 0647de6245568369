"""Run `python -m medkit_exp`, pausing after chosen epochs are logged, until the test says go.

    python tests/support/pause_at.py <folder> <epochs, e.g. 1,3> <overrides...>

After `TrackedRun.log_epoch` returns for each listed epoch, the run writes ``<folder>/paused_<epoch>``
and waits for ``<folder>/go_<epoch>``: the test acts (stops or restarts a server) at a known
point of the training, whatever the machine's speed. Patched in from outside: the code under
test is unchanged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

WAIT_LIMIT_S = 600.0  # a safety net only: the test touches the go file as soon as it has acted


def install(folder: Path, epochs: set[int]) -> None:
    from medkit_exp.tracking.run import TrackedRun

    log_epoch = TrackedRun.log_epoch

    def log_then_pause(self, metrics, epoch, *args, **kwargs):
        log_epoch(self, metrics, epoch, *args, **kwargs)
        if epoch in epochs:
            (folder / f"paused_{epoch}").touch()
            deadline = time.monotonic() + WAIT_LIMIT_S
            while not (folder / f"go_{epoch}").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pause_at: nobody touched {folder / f'go_{epoch}'}")
                time.sleep(0.05)

    TrackedRun.log_epoch = log_then_pause


if __name__ == "__main__":
    install(Path(sys.argv[1]), {int(e) for e in sys.argv[2].split(",")})
    sys.argv = ["medkit_exp", *sys.argv[3:]]
    from medkit_exp.__main__ import main

    main()

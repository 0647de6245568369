"""Run `python -m medkit_exp`, holding one sweep job once one of its checkpoints is written.

    python tests/support/hold_sweep_job.py <folder> <job num> <epoch> <overrides...>

When job ``<job num>`` (Hydra's ``hydra.job.num``, the basic launcher running the jobs in this
process) has written and indexed the checkpoint of ``<epoch>``, it touches
``<folder>/job<num>_epoch<epoch>`` and waits for ``<folder>/go``: the test kills the sweep at
that known point, whatever the machine's speed. Patched in from outside: the code under test
is unchanged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

WAIT_LIMIT_S = 600.0  # a safety net only: the test kills the process as soon as the marker is there


def install(folder: Path, job_num: int, epoch: int) -> None:
    from hydra.core.hydra_config import HydraConfig

    from medkit_exp.training import checkpoint as ckpt

    write_checkpoint, rotate = ckpt.write_checkpoint, ckpt.rotate_checkpoints
    written = {}

    def write(output_dir, name, save_model, trainer_state, summary):
        written["epoch"] = summary["epoch"]
        return write_checkpoint(output_dir, name, save_model, trainer_state, summary)

    def rotate_then_hold(output_dir, index, keep):
        rotate(output_dir, index, keep)
        if written.get("epoch") == epoch and HydraConfig.get().job.num == job_num:
            (folder / f"job{job_num}_epoch{epoch}").touch()
            deadline = time.monotonic() + WAIT_LIMIT_S
            while not (folder / "go").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hold_sweep_job: nobody stopped the sweep held in {folder}")
                time.sleep(0.05)

    ckpt.write_checkpoint, ckpt.rotate_checkpoints = write, rotate_then_hold


if __name__ == "__main__":
    install(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    sys.argv = ["medkit_exp", *sys.argv[4:]]
    from medkit_exp.__main__ import main

    main()

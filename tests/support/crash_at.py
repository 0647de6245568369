"""Run `python -m medkit_exp` and die like kill -9 (``os._exit``) at one chosen point of epoch 2.

    python tests/support/crash_at.py <point> <overrides...>

Points (each patched in from outside, so the code under test is unchanged):
- ``epoch_queued``: epoch 2's metrics handed to the MLflow sender, before they are stored;
- ``during_checkpoint``: epoch 2's model written into the checkpoint's temporary folder, its
  trainer state not yet;
- ``index_not_updated``: the checkpoint folder renamed into place, ``checkpoints.json`` not yet
  pointing at it;
- ``after_checkpoint``: the checkpoint complete and indexed, before any callback hears of it;
- ``step_queued``: the first step metrics of epoch 3 handed to the sender, before they are stored.
"""

from __future__ import annotations

import os
import sys

CRASH_EPOCH = 2


def die() -> None:
    sys.stdout.flush()
    os._exit(137)


def install(point: str) -> None:
    from medkit_exp.tracking.run import TrackedRun
    from medkit_exp.training import checkpoint as ckpt

    if point == "epoch_queued":
        log_epoch = TrackedRun.log_epoch

        def crash_while_queued(self, metrics, epoch, *args, **kwargs):
            if epoch == CRASH_EPOCH:
                self._sender.flush = lambda *a, **k: die()
            return log_epoch(self, metrics, epoch, *args, **kwargs)

        TrackedRun.log_epoch = crash_while_queued
    elif point in ("during_checkpoint", "index_not_updated", "after_checkpoint"):
        write_checkpoint, update_index, rotate = ckpt.write_checkpoint, ckpt.update_index, ckpt.rotate_checkpoints
        written = {}

        def write(output_dir, name, save_model, trainer_state, summary):
            written["epoch"] = summary["epoch"]
            if point == "during_checkpoint" and summary["epoch"] == CRASH_EPOCH:
                def save_then_die(path):
                    save_model(path)
                    die()
                return write_checkpoint(output_dir, name, save_then_die, trainer_state, summary)
            return write_checkpoint(output_dir, name, save_model, trainer_state, summary)

        def index(output_dir, value):
            if point == "index_not_updated" and written.get("epoch") == CRASH_EPOCH:
                die()
            return update_index(output_dir, value)

        def rotate_then_die(output_dir, value, keep):
            rotate(output_dir, value, keep)
            if point == "after_checkpoint" and written.get("epoch") == CRASH_EPOCH:
                die()

        ckpt.write_checkpoint, ckpt.update_index, ckpt.rotate_checkpoints = write, index, rotate_then_die
    elif point == "step_queued":
        log_step_metrics = TrackedRun.log_step_metrics
        epochs_logged = []
        log_epoch = TrackedRun.log_epoch

        def note_epoch(self, metrics, epoch, *args, **kwargs):
            epochs_logged.append(epoch)
            return log_epoch(self, metrics, epoch, *args, **kwargs)

        def queue_then_die(self, logs, step):
            log_step_metrics(self, logs, step)
            if epochs_logged and epochs_logged[-1] == CRASH_EPOCH:
                die()

        TrackedRun.log_epoch, TrackedRun.log_step_metrics = note_epoch, queue_then_die
    else:
        raise SystemExit(f"unknown point {point}")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = ["medkit_exp", *sys.argv[2:]]
    from medkit_exp.__main__ import main

    main()

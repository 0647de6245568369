"""`MLflowCallback`: the Trainer's hooks, forwarded to a `TrackedRun` (any `RunTracker`).

The run (params, metrics, artifacts, its end) is `medkit_exp.tracking.run.TrackedRun`; this
callback only decides what each Trainer event logs there. The app passes the run it started
(``MLflowCallback(run=..., end_run_on_train_end=False)``) and ends it after the test scores;
code that uses the `Trainer` alone passes the run's settings and lets the callback start the
run at ``on_train_begin`` and end it at ``on_train_end``::

    Trainer(component, config, train, dev, callbacks=[MLflowCallback(experiment="ner")]).train()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medkit_exp.tracking.checkpoints import check_policy
from medkit_exp.tracking.run import TrackedRun
from medkit_exp.tracking.tracker import RunTracker
from medkit_exp.training.callbacks import TrainerCallback

__all__ = ["MLflowCallback"]


class MLflowCallback(TrainerCallback):
    """Track a training in MLflow.

    Args:
        run: the `TrackedRun` (or other `RunTracker`) to feed; None builds one from ``run_settings``
            (the arguments of `TrackedRun`: ``experiment``, ``tracking_uri``, ``tracking_root``, ``params``...).
        log_every_n_steps: log step metrics at most every n optimizer steps; None logs every
            ``on_log`` call (the Trainer already calls it every ``trainer.log_every_n_steps``).
        log_checkpoints: "best", "best_and_last" or "none": which checkpoints to upload at the end.
        end_run_on_train_end: False keeps the run open after training (checkpoints uploaded,
            logging flushed) so that its owner can log test results, then ``run.finish()``.

    Without ``params``, the `TrainerConfig` received in ``on_train_begin`` is logged under
    ``trainer.`` (it is also added when ``params`` has no ``trainer`` key).
    """

    def __init__(self, run: RunTracker | None = None, *, log_every_n_steps: int | None = None,
                 log_checkpoints: str = "best", end_run_on_train_end: bool = True, **run_settings: Any) -> None:
        check_policy(log_checkpoints)
        if run is not None and run_settings:
            raise TypeError(f"give either a TrackedRun or its settings, not both ({', '.join(run_settings)})")
        self.run: RunTracker = run if run is not None else TrackedRun(**run_settings)
        self.log_every_n_steps = log_every_n_steps
        self.log_checkpoints = log_checkpoints
        self.end_run_on_train_end = end_run_on_train_end
        self._trained = False
        self._last_logged_step: int | None = None

    @property
    def run_id(self) -> str | None:
        return self.run.run_id

    def on_train_begin(self, config: Any) -> None:
        if self._trained:
            raise RuntimeError("This MLflowCallback already tracked a training; use a new one per training")
        self._trained = True
        self.run.log_params(config)  # starts the run if its owner has not

    def on_log(self, logs: dict[str, float], global_step: int) -> None:
        if (self.log_every_n_steps and self._last_logged_step is not None
                and global_step - self._last_logged_step < self.log_every_n_steps):
            return
        self.run.log_step_metrics(logs, global_step)
        self._last_logged_step = global_step

    def on_evaluate(self, metrics: dict[str, float], epoch: int) -> None:
        self.run.remember_eval(metrics, epoch)

    def on_epoch_end(self, metrics: dict[str, Any], epoch: int, epoch_duration: float) -> None:
        self.run.log_epoch(metrics, epoch, epoch_duration)

    def on_save(self, checkpoint_dir: Path) -> None:
        self.run.record_checkpoint(checkpoint_dir)

    def on_train_end(self) -> None:
        if not self.run.logging:
            return
        self.run.upload_checkpoints(self.log_checkpoints)
        if self.end_run_on_train_end:
            self.run.finish()
        else:
            self.run.flush()

    def on_exception(self, exception: BaseException) -> None:
        self.run.fail(exception)

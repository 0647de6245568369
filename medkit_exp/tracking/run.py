"""`TrackedRun`: one MLflow run, started (or resumed, or adopted), filled and ended.

The app starts it, the Trainer's `MLflowCallback` feeds it, the app logs test scores and ends
it; with the `Trainer` alone, `MLflowCallback` makes, starts and ends one.

It is a front over parts with one job each: `lifecycle` (open, continue or adopt the run; its
end), `BackgroundSender` (backend calls off the training thread), `Spool` (what a down server
could not take, on disk), `RunHistory` (``history.json``; what a resumed run holds is not logged
again), `CheckpointUploads`, `inputs` (params, datasets) and `store` (the store, how to browse
it). `medkit_exp.tracking.tracker.NullRun` takes the same calls when tracking is off.

Metric names (see `medkit_exp.tracking.metrics`): ``step/<name>`` at optimizer steps, ``train_<k>``,
``eval_<k>``, ``lr``... at epochs (the step is the epoch), ``test_<k>``.

Everything sent (params, tags, run name, text artifacts, errors) is redacted first
(`medkit_exp.tracking.secrets.redact`). Artifacts: ``params.json`` (nested config),
``history.json`` (epoch entries, rewritten each epoch), ``config.yaml`` (`log_config`),
``best_checkpoint/`` and optionally ``last_checkpoint/`` (the checkpoints' ``model/`` folders).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import RunTag

from medkit_exp.tracking import inputs
from medkit_exp.tracking.checkpoints import CheckpointRecord, CheckpointUploads, check_policy
from medkit_exp.tracking.failures import warn_on_failure
from medkit_exp.tracking.history import HISTORY_ARTIFACT, RunHistory
from medkit_exp.tracking.lifecycle import end_run, failure_status, failure_tags, open_run
from medkit_exp.tracking.metrics import epoch_metrics, prefixed_metrics, step_metrics, to_json
from medkit_exp.tracking.params import to_plain
from medkit_exp.tracking.secrets import redact, redact_text
from medkit_exp.tracking.sender import BackgroundSender
from medkit_exp.tracking.spool import SPOOL_FILE, Spool
from medkit_exp.tracking.store import setup_tracking, ui_command

log = logging.getLogger(__name__)

LAST_TRY_OFFLINE_S = 10.0  # at the end of a run whose server is down: how long to keep trying


class TrackedRun:
    """One MLflow run: params, tags, metric histories, history, artifacts, checkpoints, its end.

    Args:
        experiment: experiment name, created if missing.
        tracking_uri: ``http://...`` or ``sqlite:///...``; default ``$MLFLOW_TRACKING_URI``, else the embedded store.
        tracking_root: root of the embedded store (``mlflow.db`` + ``artifacts/``; config key ``tracking.root``).
        run_name: display name (see `medkit_exp.tracking.run_name`); MLflow picks one if None.
        params: nested config to log as params (flattened to ``a.b.c`` keys).
        tags: extra run tags (they win over the automatic git tags).
        parent_run_id: start the run as a child of this run; default ``$MEDKIT_EXP_PARENT_RUN_ID`` (sweeps).
        run_id: continue this run (its params stay; the points it holds are not logged again).
        nested: start the run as a child of the currently active run.
        flush_timeout_s: longest wait for pending logging at an epoch's end; the rest goes on in the background.
        required: False turns a failure to start tracking into a warning, after which the run logs nothing.
        system_metrics: log CPU, memory (and GPU) use as ``system/*`` metrics (MLflow's, every 10 s).
        spool_dir: folder keeping what a down server could not take (``mlflow_unsent.json``, see `Spool`).

    One guard rule: every write (params, tags, metrics, artifacts, checkpoints, datasets) starts
    the run if it has not started yet, and does nothing when tracking is off (the run could not
    start and ``required`` is False). A run that has ended still takes writes (test scores after
    training ended it), sent at once. Ending and waiting (`flush`, `finish`, `fail`,
    `wait_until_online`) act only on a started run that has not ended.

    An active run of this thread may be adopted (`lifecycle.open_run`; its owner ends it). Tracking failures
    are warnings, retried, never a stop of training; setup failures in `start` raise when ``required``.
    """

    enabled = True  # a `NullRun` says False

    def __init__(
        self,
        experiment: str = "medkit_exp",
        tracking_uri: str | None = None,
        tracking_root: str | os.PathLike[str] = "mlruns",
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        nested: bool = False,
        flush_timeout_s: float = 60.0,
        required: bool = True,
        system_metrics: bool = False,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.experiment = experiment
        self.system_metrics = system_metrics
        self.tracking_uri = tracking_uri
        self.tracking_root = tracking_root
        self.run_name = run_name
        self.params = params
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.resume_run_id = run_id
        self.nested = nested
        self.flush_timeout_s = flush_timeout_s
        self.required = required
        self.spool_path = Path(spool_dir) / SPOOL_FILE if spool_dir is not None else None

        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.spool = Spool(self.spool_path, experiment, flush_timeout_s)
        self.history = RunHistory()
        self.checkpoints = CheckpointUploads()
        self._client: MlflowClient | None = None
        self._sender: BackgroundSender | None = None  # the run's connection once started
        self._owns_run = False
        self._finished = False
        self._disabled = False

    @property
    def logging(self) -> bool:
        """True while the run is started, not ended, and tracking is not disabled."""
        return self._live() is not None

    @property
    def offline(self) -> bool:
        """True while the tracking backend fails (what is logged meanwhile is kept, see `spool_path`)."""
        return self._sender is not None and self._sender.offline

    @property
    def unsent_summary(self) -> str | None:
        """Set when the run ended with data kept in the spool file: what, and how to send it."""
        return self.spool.summary

    def start(self) -> str | None:
        """Start (resume, adopt) the run if not done yet: its id; None when tracking is off (could not start)."""
        if self._disabled:
            return None
        if self.run_id is not None:
            return self.run_id
        try:
            return self._start()
        except Exception as exc:
            if self.required:
                raise
            log.warning("MLflow tracking disabled for this run: %s", f"{type(exc).__name__}: {exc}".splitlines()[0])
            self._disabled = True
            return None

    def _start(self) -> str:
        self.experiment_id = setup_tracking(self.tracking_uri, self.experiment, self.tracking_root)
        client = self._client = MlflowClient(mlflow.get_tracking_uri())
        opened = open_run(client, self.experiment_id, run_name=self.run_name, tags=self.tags,
                          parent_run_id=self.parent_run_id, resume_run_id=self.resume_run_id, nested=self.nested,
                          system_metrics=self.system_metrics)
        self.experiment_id, self._owns_run = opened.experiment_id, opened.owned
        if self.resume_run_id:
            self.spool.send_earlier(client, self.resume_run_id)  # before reading what the run holds: they count
            self.history.load(client, self.resume_run_id)
        self.run_id = opened.run_id
        self._sender = BackgroundSender(client, self.run_id)
        self.spool.set_aside_foreign()
        return self.run_id

    def _open(self) -> BackgroundSender | None:
        """The guard of every write: start the run if needed; None (skip the write) when tracking is off."""
        return None if self.start() is None else self._sender

    def _live(self) -> BackgroundSender | None:  # the run's sender while it is started and not ended
        return None if self._finished else self._sender

    def flush(self) -> None:
        """Wait up to ``flush_timeout_s`` (not while the server is down) for the queue; the rest goes to the spool."""
        if (sender := self._live()) is not None:
            self.spool.flush(sender)

    def wait_until_online(self, timeout: float = LAST_TRY_OFFLINE_S) -> bool:
        """While the backend fails, wait up to ``timeout`` s for one more try; True when it answers."""
        sender = self._live()
        return sender is not None and sender.wait_for_probe(timeout)

    def finish(self, status: str = "FINISHED") -> None:
        """Send what is pending and end the run with ``status`` (if this object started it)."""
        self._finish(status, timeout=max(self.flush_timeout_s, 300.0))

    def fail(self, exception: BaseException, *, stop_signal: str | None = None, phase: str | None = None) -> None:
        """End the run as KILLED (Ctrl-C, termination signal) or FAILED, tagged ``medkit.error``; never raises.

        ``stop_signal`` (``SIGTERM``...): ended by that signal whatever ``exception`` is, KILLED with the tags
        ``medkit.stop_signal`` and ``medkit.stopped_in`` (``phase``, see `medkit_exp.training.phases`)."""
        if self._live() is None:
            return
        with warn_on_failure("Could not end MLflow run %s cleanly", self.run_id):
            self.set_tags(failure_tags(exception, stop_signal, phase))
            # Someone pressing Ctrl-C does not want to wait for a slow server.
            self._finish(failure_status(exception, stop_signal), timeout=min(self.flush_timeout_s, 10.0))

    def _finish(self, status: str, timeout: float) -> None:
        sender = self._live()
        if sender is None:
            return
        self._finished = True
        if sender.offline:  # one last probe, not the full wait: the server may never come back
            timeout = min(timeout, LAST_TRY_OFFLINE_S)
        sender.close(timeout)
        if sender.all_sent and self.spool.uploads:  # the server came back: upload what waited
            self.spool.retry_uploads(sender)
        ended = not self._owns_run or end_run(sender.client, sender.run_id, status)
        self.spool.settle(sender, status, ended)

    def log_params(self, config: Any = None) -> None:
        """Log ``params`` (``config`` under ``trainer.`` if they lack it); a failure ends the run FAILED, and
        raises when ``required`` (else tracking stops with a warning)."""
        if (sender := self._open()) is None:
            return
        try:
            inputs.log_params(sender, self.params, config)
        except Exception as exc:
            self._finish("FAILED", timeout=self.flush_timeout_s)
            if self.required:
                raise
            log.warning("MLflow tracking disabled: could not log the run's params (%s)", exc)
            self._disabled = True

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values as strings)."""
        if not tags or (sender := self._open()) is None:
            return
        tags = redact({k: str(v) for k, v in tags.items()})
        sender.call(sender.client.log_batch, sender.run_id, tags=[RunTag(k, v) for k, v in tags.items()],
                    record={"tags": tags})

    def log_datasets(self, datasets: list[dict[str, Any]]) -> None:
        """Record each split as a run input (`inputs.log_datasets`); skipped while the server is down."""
        if not datasets or (sender := self._open()) is None or sender.offline:
            return
        inputs.log_datasets(sender, datasets)

    def log_model_inputs(self, model_ids: list[str]) -> None:
        """Record each MLflow LoggedModel of ``model_ids`` as an input of the run (the UI links the run
        to the model it started from; `inputs.log_model_inputs`); skipped while the server is down."""
        if not model_ids or (sender := self._open()) is None or sender.offline:
            return
        inputs.log_model_inputs(sender, model_ids)

    def log_step_metrics(self, logs: Mapping[str, float], step: int) -> None:
        """``step/<name>`` for each number of ``logs`` at optimizer step ``step`` (coalesced per step)."""
        if (sender := self._open()) is None or not self.history.step_is_new(step):
            return  # tracking off, or logged before the crash this run resumes from
        with warn_on_failure("MLflow step logging failed"):
            sender.log_metrics(step_metrics(logs), step=step, coalesce=not self._finished)

    def remember_eval(self, metrics: Mapping[str, Any], epoch: int | None) -> None:
        """Keep an epoch's eval metrics: they give a checkpoint's value when its state file lacks it."""
        self.checkpoints.remember_eval(metrics, epoch)

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int, epoch_duration: float | None = None) -> None:
        """Log a history entry at step ``epoch``, rewrite ``history.json``, and wait until it is stored."""
        if (sender := self._open()) is None:
            return
        with warn_on_failure("MLflow epoch logging failed"):
            if self.history.epoch_is_new(epoch):
                sender.log_metrics(epoch_metrics(metrics, epoch_duration), step=epoch)
            self._send_text(sender, redact_text(to_json(self.history.add(metrics, epoch))), HISTORY_ARTIFACT)
            self.spool.flush(sender)

    def log_test_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log ``test_<k>`` for every number in ``metrics`` (nested dicts joined with ``_``)."""
        self._log_numbers(prefixed_metrics("test", metrics), step)

    def log_final_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Log run-level numbers once (``best_eval_f1``...) at the last epoch's step, and wait until stored."""
        self._log_numbers({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))
                           and not isinstance(v, bool)}, None)

    def _log_numbers(self, numbers: Mapping[str, float], step: int | None) -> None:
        if (sender := self._open()) is not None:
            sender.log_metrics(numbers, step=self.history.last_epoch if step is None else step)
            self.spool.flush(sender)

    def log_dict_artifact(self, obj: Any, name: str) -> None:
        """Write ``obj`` (dict, list, dataclass, OmegaConf) as the artifact ``name`` (.json or .yaml)."""
        if (sender := self._open()) is None:
            return
        plain = redact(to_plain(obj))
        if name.endswith((".yaml", ".yml")):
            sender.call(sender.client.log_dict, sender.run_id, plain, name, record={"dict": name, "content": plain})
        else:
            self._send_text(sender, to_json(plain), name)
        self.spool.flush(sender)

    def log_config(self, resolved_cfg_yaml: str, name: str = "config.yaml") -> None:
        """Store the resolved config text (e.g. ``OmegaConf.to_yaml(cfg, resolve=True)``) as ``config.yaml``."""
        self.log_text(resolved_cfg_yaml, name)

    def log_text(self, text: str, name: str) -> None:
        """Write ``text`` as the artifact file ``name`` (e.g. ``notes/summary.md``)."""
        if (sender := self._open()) is None:
            return
        self._send_text(sender, redact_text(text), name)
        self.spool.flush(sender)

    def log_folder(self, local_dir: str | os.PathLike[str], artifact_path: str) -> None:
        """Upload the files of ``local_dir`` under ``artifact_path`` (e.g. ``plots``); a failure only warns."""
        if not Path(local_dir).is_dir() or (sender := self._open()) is None:
            return
        self.spool.upload(sender, Path(local_dir), artifact_path, {})

    def log_table(self, columns: Mapping[str, list[Any]], name: str) -> None:
        """Write ``columns`` (name -> one value per row) as the table artifact ``name`` (``.json``) with
        ``MlflowClient.log_table``: the run's page shows it as a table. Not kept for a down server."""
        if (sender := self._open()) is None or sender.offline:
            return
        with warn_on_failure(f"MLflow table {name} failed"):
            sender.call(sender.client.log_table, sender.run_id, dict(columns), name)

    @staticmethod
    def _send_text(sender: BackgroundSender, text: str, name: str) -> None:
        sender.call(sender.client.log_text, sender.run_id, text, name, record={"text": name, "content": text})

    def record_checkpoint(self, checkpoint_dir: Path) -> CheckpointRecord | None:
        """Note a checkpoint just written (tags ``checkpoint.last/best_path``); `upload_checkpoints` uploads."""
        with warn_on_failure("MLflow checkpoint record failed"):
            record = self.checkpoints.record(Path(checkpoint_dir))
            if (sender := self._open()) is not None:
                local = redact_text(str(record.path.resolve()))
                self.set_tags({"checkpoint.last_path": local}
                              | ({"checkpoint.best_path": local} if record.is_best else {}))
                # A resume replays only the steps after this checkpoint: the ones before it must be
                # in the store now (or, the server being down, on disk), not in the coalescing buffer.
                self.spool.flush(sender)
            return record
        return None

    def log_best_checkpoint(self, path: str | os.PathLike[str]) -> bool:
        """`log_checkpoint` as ``best_checkpoint/``: a plain HF model folder (download it and pass the local
        path as the model to load); tags ``best_checkpoint.*`` record its epoch, step and metric."""
        return self.log_checkpoint(path, "best_checkpoint")

    def log_checkpoint(self, path: str | os.PathLike[str], artifact_path: str) -> bool:
        """`CheckpointUploads.upload` of ``path`` as ``artifact_path``; False when tracking is off or failed."""
        if (sender := self._open()) is None:
            return False
        return self.checkpoints.upload(sender, self.spool, Path(path), artifact_path)

    def upload_checkpoints(self, policy: str = "best") -> None:
        """Upload the best checkpoint (``best``), and the last one too (``best_and_last``); never raises."""
        check_policy(policy)
        if policy == "none" or (sender := self._open()) is None:
            return
        with warn_on_failure("Could not upload checkpoints to MLflow"):
            self.checkpoints.upload_recorded(sender, self.spool, policy)

    def ui_command(self) -> str:
        """How to browse this run: the ``mlflow ui`` command for a SQLite store, else the run's URL."""
        return ui_command(self._client.tracking_uri if self._client else None, self.experiment_id, self.run_id)

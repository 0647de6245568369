"""`TrackedRun`: one MLflow run, started (or resumed, or adopted), filled and ended.

The app owns it: it starts the run before training, the Trainer's `MLflowCallback` feeds it
metrics and checkpoints, and the app logs test scores and the model and ends it. Code that
uses the `Trainer` alone gets one from `MLflowCallback`, which then starts and ends it.

Metric names (all steps are integers):

* `log_step_metrics` (step = optimizer step): ``step/train_loss``, ``step/lr``, other logged keys
  under ``step/``. They are kept apart from the per-epoch names so that one metric history
  never mixes step numbers and epoch numbers;
* `log_epoch` (step = epoch): ``train_<k>`` and ``eval_<k>`` for each number of the history
  entry (per-label ones included, e.g. ``eval_Disease_f1``), ``lr``, ``epoch_duration_s``,
  ``train_samples_per_s``;
* `log_test_metrics`: ``test_<k>``.

Everything the run sends (params, tags, the run name, text artifacts, the error of a failed run)
goes through `medkit_exp.tracking.secrets.redact` first: credentials become ``***``.

Artifacts: ``params.json`` (full nested config), ``history.json`` (list of epoch entries,
rewritten each epoch), ``config.yaml`` (`log_config`), ``best_checkpoint/`` and optionally
``last_checkpoint/`` (the checkpoints' ``model/`` folders, uploaded at the end of training).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag

from medkit_exp.tracking.metrics import (
    STEP_PREFIX,
    as_float,
    epoch_metrics,
    prefixed_metrics,
    step_metrics,
    to_json,
)
from medkit_exp.tracking.params import flatten_params, to_plain
from medkit_exp.tracking.secrets import redact, redact_text
from medkit_exp.tracking.sender import BackgroundSender
from medkit_exp.tracking.spool import SENT_SUFFIX, SPOOL_FILE, read_spool, send_spool, write_spool
from medkit_exp.tracking.store import setup_tracking, tracking_username
from medkit_exp.tracking.tags import git_tags
from medkit_exp.training.checkpoint import MODEL_DIR, STATE_JSON

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "MEDKIT_EXP_PARENT_RUN_ID"  # set by tracking.sweep in multiruns; jobs attach to that run
CHECKPOINT_POLICIES = ("best", "best_and_last", "none")
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM))
_EXIT_CODES = {128 + s for s in _EXIT_SIGNALS} | {-s for s in _EXIT_SIGNALS}
LAST_TRY_OFFLINE_S = 10.0  # at the end of a run whose server is down: how long to keep trying


@dataclass
class CheckpointRecord:
    """A checkpoint folder, with what its ``trainer_state.json`` says.

    The Trainer writes ``{"epoch", "global_step", "metric", "value", "is_best", "best_epoch", ...}``.
    """

    path: Path
    epoch: int | None = None
    global_step: int | None = None
    metric: str | None = None  # name of the tracked metric
    value: float | None = None  # its value at this checkpoint
    is_best: bool = False


class TrackedRun:
    """One MLflow run: params, tags, metric histories, history, artifacts, checkpoints, its end.

    Args:
        experiment: experiment name, created if missing.
        tracking_uri: ``http://...`` or ``sqlite:///...``; default ``$MLFLOW_TRACKING_URI``, else
            the embedded store under ``tracking_root``.
        tracking_root: root folder of the embedded store (``mlflow.db`` + ``artifacts/``), used
            only when no tracking URI is configured (the config key ``tracking.root``).
        run_name: display name (see `medkit_exp.tracking.run_name`); MLflow picks one if None.
        params: nested config to log as params (flattened to ``a.b.c`` keys).
        tags: extra run tags (they win over the automatic git tags).
        parent_run_id: start the run as a child of this run; defaults to
            ``$MEDKIT_EXP_PARENT_RUN_ID`` (set by `medkit_exp.tracking.sweep` in multiruns).
        run_id: resume this existing run instead of starting one (params already there are kept;
            history entries of the same epoch are replaced; points it already holds are not
            logged again).
        nested: start the run as a child of the currently active run.
        flush_timeout_s: longest wait for pending logging at the end of an epoch; what is not sent
            by then keeps being sent in the background.
        required: False turns a failure to start tracking (unreachable server...) into a
            warning, after which the run logs nothing.
        system_metrics: sample CPU, memory (and GPU) use as ``system/*`` metrics while the run
            is open (MLflow's system metrics, every 10 s by default).
        spool_dir: folder where what the backend could not take (server down) is kept, as
            ``mlflow_unsent.json``, for ``python -m medkit_exp.send_unsent`` (the app passes the
            checkpoint folder); None keeps it in memory only.

    If a run is already active in this thread (and neither ``run_id``, ``parent_run_id`` nor
    ``nested`` says otherwise), this object logs into it and leaves ending it to its owner.
    Tracking failures during training are logged as warnings and retried; they never stop
    training. Setup failures in `start` raise when ``required``.
    """

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
        self._unsent_uploads: list[dict[str, Any]] = []  # artifact folders to upload when the server is back
        self.unsent_summary: str | None = None  # set when the run ended with data kept in the spool file

        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.history: list[dict[str, Any]] = []
        self.best_checkpoint: CheckpointRecord | None = None
        self.last_checkpoint: CheckpointRecord | None = None
        self._client: MlflowClient | None = None
        self._sender: BackgroundSender | None = None
        self._owns_run = False
        self._finished = False
        self._disabled = False
        # When continuing a run (resume after a crash), what it already holds: points up to
        # these steps are not logged again, so histories stay free of duplicated steps.
        self._logged_until_step: int | None = None
        self._logged_until_epoch: int | None = None
        self._eval_by_epoch: dict[int, Mapping[str, Any]] = {}
        self._uploaded: dict[str, Path] = {}

    @property
    def logging(self) -> bool:
        """True while the run is started, not ended, and tracking is not disabled."""
        return self._sender is not None and not self._finished

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str | None:
        """Start (or resume, or adopt) the run if not done yet; return its id.

        Returns None when tracking is off because it could not start and ``required`` is False.
        """
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
        self._client = MlflowClient(mlflow.get_tracking_uri())
        user = tracking_username(mlflow.get_tracking_uri())
        # On a server with accounts, the run belongs to the account, not to the local login.
        tags = redact({**git_tags(), **({"mlflow.user": user} if user else {}),
                       **{k: str(v) for k, v in self.tags.items()}})
        run_name = redact_text(self.run_name) if self.run_name else self.run_name
        active = mlflow.active_run()
        parent = self.parent_run_id or (None if self.nested else os.environ.get(PARENT_RUN_ENV) or None)
        if self.resume_run_id:
            existing = self._client.get_run(self.resume_run_id)
            mlflow.set_experiment(experiment_id=existing.info.experiment_id)
            self.experiment_id = existing.info.experiment_id
            run = mlflow.start_run(run_id=self.resume_run_id, run_name=run_name, tags=tags,
                                   log_system_metrics=self.system_metrics)
            self._owns_run = True
            self._send_earlier_spool()  # before reading what the run holds: the kept points count too
            self._load_history()
            self._logged_until_step = self._last_step(STEP_PREFIX + "train_loss")
            self._logged_until_epoch = self._last_step("train_loss")
        elif active is not None and not self.nested and parent in (None, active.info.run_id):
            run = active
            self._client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        else:
            run = mlflow.start_run(
                experiment_id=self.experiment_id,
                run_name=run_name,
                nested=self.nested or active is not None,
                parent_run_id=parent,
                tags=tags,
                log_system_metrics=self.system_metrics,
            )
            self._owns_run = True
        self.run_id = run.info.run_id
        self._sender = BackgroundSender(self._client, self.run_id)
        self._set_aside_foreign_spool()
        return self.run_id

    def _send_earlier_spool(self) -> None:
        """Resuming a run whose earlier process kept data while its server was down: send it now."""
        if self.spool_path is None or not self.spool_path.is_file():
            return
        try:
            payload = read_spool(self.spool_path)
            if payload["run_id"] != self.resume_run_id:
                return  # another run's: set aside by _set_aside_foreign_spool
            payload["status"] = None  # the run goes on
            sent = send_spool(payload, self._client)
            self.spool_path.rename(self.spool_path.with_name(self.spool_path.name + SENT_SUFFIX))
            log.warning("Sent what an earlier process of run %s kept while MLflow was unreachable (%d metric "
                        "point(s))", self.resume_run_id, sent["metrics"])
        except Exception as exc:  # noqa: BLE001 - kept on disk: _set_aside_foreign_spool names it
            log.warning("Could not send %s: %s", self.spool_path, redact_text(str(exc)).splitlines()[0][:300])

    def _set_aside_foreign_spool(self) -> None:
        """A spool file this run would overwrite (another run's, or one that could not be sent)
        is renamed, never lost, and the way to send it is logged."""
        if self.spool_path is None or not self.spool_path.is_file():
            return
        try:
            owner = read_spool(self.spool_path)["run_id"]
        except (OSError, ValueError, KeyError):
            owner = "unknown"
        kept = self.spool_path.with_name(f"mlflow_unsent.{owner}.json")
        self.spool_path.rename(kept)
        log.warning("Unsent MLflow data of run %s kept in %s; send it with: python -m medkit_exp.send_unsent %s",
                    owner, kept, kept)

    def _last_step(self, metric: str) -> int | None:
        history = self._client.get_metric_history(self.resume_run_id, metric)
        return max((m.step for m in history), default=None)

    def log_params(self, config: Any = None) -> None:
        """Log ``params`` (and the `TrainerConfig` ``config`` under ``trainer.`` when params lack it).

        A failure ends the run as FAILED and raises when ``required``; else tracking stops with a warning.
        """
        if self.start() is None:
            return
        try:
            self._log_params(config)
        except Exception as exc:
            self._finish("FAILED", timeout=self.flush_timeout_s)
            if self.required:
                raise
            log.warning("MLflow tracking disabled: could not log the run's params (%s)", exc)
            self._disabled = True

    def log_folder(self, local_dir: str | os.PathLike[str], artifact_path: str) -> None:
        """Upload the files of ``local_dir`` under ``artifact_path`` (e.g. ``plots``); a failure only warns."""
        if not self.logging or not Path(local_dir).is_dir():
            return
        self._upload(Path(local_dir), artifact_path, {})

    def log_datasets(self, datasets: list[dict[str, Any]]) -> None:
        """Record each split as an input of the run (the UI's Dataset column and run page).

        Each entry: ``name``, ``digest``, ``context`` (training, validation, test) and ``source``,
        a dict of what identifies it (folder, counts), stored as the dataset's source.
        """
        if not self.logging or not datasets or self._sender.offline:
            return
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        inputs = []
        for entry in datasets:
            source = CodeDatasetSource({k: redact_text(str(v)) for k, v in entry["source"].items()})
            dataset = MetaDataset(source=source, name=entry["name"], digest=entry["digest"])
            inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                       tags=[InputTag("mlflow.data.context", entry["context"])]))
        try:
            self._client.log_inputs(self.run_id, datasets=inputs)
        except Exception as exc:
            log.warning("Could not record the datasets of MLflow run %s: %s", self.run_id, exc)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values as strings)."""
        if self.logging and tags:
            tags = redact({k: str(v) for k, v in tags.items()})
            self._sender.call(self._client.log_batch, self.run_id, tags=[RunTag(k, v) for k, v in tags.items()],
                              record={"tags": tags})

    def flush(self) -> None:
        """Wait (up to ``flush_timeout_s``; not while the server is down) until everything queued
        is in the store; what the server could not take is written to the spool file."""
        if self.logging:
            self._flush_or_spool()

    @property
    def offline(self) -> bool:
        """True while the tracking backend fails (what is logged meanwhile is kept, see `spool_path`)."""
        return self._sender is not None and self._sender.offline

    def _flush_or_spool(self) -> None:
        """Flush; keep on disk whatever the backend has not taken (a kill then loses nothing)."""
        if self._sender.flush(self.flush_timeout_s) and not self._unsent_uploads:
            if self.spool_path is not None and self.spool_path.is_file():
                self.spool_path.unlink()
            return
        self._write_spool(status=None)

    def _write_spool(self, status: str | None) -> Path | None:
        if self.spool_path is None:
            return None
        try:
            write_spool(self.spool_path, {
                "run_id": self.run_id, "experiment": self.experiment, "status": status,
                "tracking_uri": redact_text(self._client.tracking_uri),
                **self._sender.backlog(), "uploads": self._unsent_uploads,
            })
            return self.spool_path
        except OSError as exc:
            log.warning("Could not keep the unsent MLflow data in %s: %s", self.spool_path, exc)
            return None

    def finish(self, status: str = "FINISHED") -> None:
        """Send what is pending and end the run with ``status`` (if this object started it)."""
        self._finish(status, timeout=max(self.flush_timeout_s, 300.0))

    def fail(self, exception: BaseException, *, stop_signal: str | None = None, phase: str | None = None) -> None:
        """End the run as KILLED (Ctrl-C, termination signal) or FAILED; never raises.

        ``stop_signal`` (``SIGTERM``...) says a stop signal ended the run, whatever ``exception``
        is: the run ends KILLED with the tags ``medkit.stop_signal`` and ``medkit.stopped_in``
        (``phase``, the app's phase it came in, see `medkit_exp.training.phases`) instead of ``medkit.error``.
        """
        if not self.logging:
            return
        killed = stop_signal is not None or _is_kill(exception)
        try:
            if stop_signal is not None:
                tags = {"medkit.stop_signal": stop_signal, **({"medkit.stopped_in": phase} if phase else {})}
            else:
                tags = {"medkit.error": redact_text(f"{type(exception).__name__}: {exception}")[:5000]}
            self._sender.call(self._client.log_batch, self.run_id, tags=[RunTag(k, v) for k, v in tags.items()],
                              record={"tags": tags})
            # Someone pressing Ctrl-C does not want to wait for a slow server.
            self._finish("KILLED" if killed else "FAILED", timeout=min(self.flush_timeout_s, 10.0))
        except Exception as exc:
            log.warning("Could not end MLflow run %s cleanly: %s", self.run_id, exc)

    def _finish(self, status: str, timeout: float) -> None:
        if self._finished or self._sender is None:
            return
        self._finished = True
        if self._sender.offline:  # one last probe, not the full wait: the server may never come back
            timeout = min(timeout, LAST_TRY_OFFLINE_S)
        self._sender.close(timeout)
        if self._sender.all_sent and self._unsent_uploads:  # the server came back: upload what waited
            self._retry_uploads()
        ended = not self._owns_run
        if self._owns_run:
            try:
                active = mlflow.active_run()
                if active is not None and active.info.run_id == self.run_id:
                    mlflow.end_run(status=status)  # leaves the run inactive here even if the server is down
                else:
                    self._client.set_terminated(self.run_id, status=status)
                ended = True
            except Exception as exc:
                log.warning("Could not mark MLflow run %s as %s: %s", self.run_id, status,
                            redact_text(str(exc)).splitlines()[0][:300])
        if self._sender.all_sent and ended and not self._unsent_uploads:
            if self.spool_path is not None and self.spool_path.is_file():
                self.spool_path.unlink()
            return
        backlog = self._sender.backlog()
        path = self._write_spool(status=None if ended else status)
        if path is None:
            log.warning("%d metric point(s) could not be sent to MLflow run %s", len(backlog["metrics"]), self.run_id)
            return
        self.unsent_summary = (f"MLflow unreachable: {len(backlog['metrics'])} metric point(s), "
                               f"{len(backlog['calls'])} tag/artifact write(s), {len(self._unsent_uploads)} "
                               f"upload(s) and the run's end kept in {path}; when the server is back, send them "
                               f"with: python -m medkit_exp.send_unsent {path.parent}")
        log.warning("%s", self.unsent_summary)

    # ------------------------------------------------------------------ metrics
    def log_step_metrics(self, logs: Mapping[str, float], step: int) -> None:
        """``step/<name>`` for each number of ``logs`` at optimizer step ``step`` (coalesced per step)."""
        if not self.logging:
            return
        if self._logged_until_step is not None and step <= self._logged_until_step:
            return  # logged before the crash this run resumes from
        try:
            self._sender.log_metrics(step_metrics(logs), step=step, coalesce=True)
        except Exception as exc:
            log.warning("MLflow step logging failed: %s", exc)

    def remember_eval(self, metrics: Mapping[str, Any], epoch: int | None) -> None:
        """Keep an epoch's eval metrics: they give a checkpoint's value when its state file lacks it."""
        if epoch is not None:
            self._eval_by_epoch[epoch] = dict(metrics)

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int, epoch_duration: float | None = None) -> None:
        """Log one history entry (``train_*``, ``eval_*``, ``lr``...) at step ``epoch``, rewrite
        ``history.json``, and wait until it is stored."""
        if not self.logging:
            return
        try:
            if self._logged_until_epoch is None or epoch > self._logged_until_epoch:
                self._sender.log_metrics(epoch_metrics(metrics, epoch_duration), step=epoch)
            entry = {**dict(metrics), "epoch": epoch}
            self.history = [e for e in self.history if e.get("epoch") != epoch] + [entry]
            text = redact_text(to_json(self.history))
            self._sender.call(self._client.log_text, self.run_id, text, "history.json",
                              record={"text": "history.json", "content": text})
            self._flush_or_spool()
        except Exception as exc:
            log.warning("MLflow epoch logging failed: %s", exc)

    def log_test_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log ``test_<k>`` for every number in ``metrics`` (nested dicts joined with ``_``)."""
        if self.start() is None:
            return
        if step is None:
            step = self.history[-1]["epoch"] if self.history else 0
        self._sender.log_metrics(prefixed_metrics("test", metrics), step=step)
        self._flush_or_spool()

    def log_final_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Log run-level numbers once (``best_eval_f1``...) at the last epoch's step, and wait until stored."""
        if self.start() is None:
            return
        step = self.history[-1]["epoch"] if self.history else 0
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._sender.log_metrics(numbers, step=step)
        self._flush_or_spool()

    # ------------------------------------------------------------------ artifacts

    def log_dict_artifact(self, obj: Any, name: str) -> None:
        """Write ``obj`` (dict, list, dataclass, OmegaConf) as the artifact ``name`` (.json or .yaml)."""
        if self.start() is None:
            return
        plain = redact(to_plain(obj))
        if name.endswith((".yaml", ".yml")):
            self._sender.call(self._client.log_dict, self.run_id, plain, name, record={"dict": name, "content": plain})
        else:
            text = to_json(plain)
            self._sender.call(self._client.log_text, self.run_id, text, name, record={"text": name, "content": text})
        self._flush_or_spool()

    def log_config(self, resolved_cfg_yaml: str, name: str = "config.yaml") -> None:
        """Store the resolved config text (e.g. ``OmegaConf.to_yaml(cfg, resolve=True)``) as ``config.yaml``."""
        self.log_text(resolved_cfg_yaml, name)

    def log_text(self, text: str, name: str) -> None:
        """Write ``text`` as the artifact file ``name`` (e.g. ``notes/summary.md``)."""
        if self.start() is None:
            return
        text = redact_text(text)
        self._sender.call(self._client.log_text, self.run_id, text, name, record={"text": name, "content": text})
        self._flush_or_spool()

    def ui_command(self) -> str:
        """How to browse this run: the ``mlflow ui`` command for a SQLite store, else the run's URL."""
        uri = redact_text(self._client.tracking_uri) if self._client is not None else None
        if not uri:
            return "tracking is off"
        if not uri.startswith("sqlite:///"):
            if uri.startswith(("http://", "https://")) and self.run_id:
                return f"{uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
            return uri
        artifacts = Path(uri[len("sqlite:///"):].split("?", 1)[0]).parent / "artifacts"
        return (f"mlflow ui --backend-store-uri {uri} --artifacts-destination {artifacts} --port 5000\n"
                f"then open    : http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/{self.run_id}")

    def record_checkpoint(self, checkpoint_dir: Path) -> CheckpointRecord | None:
        """Note a checkpoint just written (tags ``checkpoint.last_path``/``best_path``); the
        uploads happen in `upload_checkpoints`, since the Trainer may delete old ones."""
        try:
            record = self._read_checkpoint(Path(checkpoint_dir))
            self.last_checkpoint = record
            if record.is_best:
                self.best_checkpoint = record
            if self.logging:
                local = redact_text(str(record.path.resolve()))
                tags = {"checkpoint.last_path": local, **({"checkpoint.best_path": local} if record.is_best else {})}
                self.set_tags(tags)
                # A resume replays only the steps after this checkpoint: the ones before it
                # must be in the store now (or, the server being down, on disk), not waiting
                # in the coalescing buffer.
                self._flush_or_spool()
            return record
        except Exception as exc:
            log.warning("MLflow checkpoint record failed: %s", exc)
            return None

    def log_best_checkpoint(self, path: str | os.PathLike[str]) -> bool:
        """Upload checkpoint ``path`` (its ``model/`` folder if present) as ``best_checkpoint/``.

        The artifact folder is a plain HF model folder: download it and pass the local path
        as the model to load. Tags ``best_checkpoint.*`` record its epoch, step and metric.
        See `log_checkpoint` for the return value.
        """
        return self.log_checkpoint(path, "best_checkpoint")

    def log_checkpoint(self, path: str | os.PathLike[str], artifact_path: str) -> bool:
        """Upload checkpoint ``path`` (its ``model/`` folder if present) under ``artifact_path``.

        Returns True once uploaded (a second call for the same folder and name does nothing).
        A tracking failure returns False with a warning; a missing folder raises FileNotFoundError.
        """
        if self.start() is None:
            return False
        record = self._read_checkpoint(Path(path))
        if self._uploaded.get(artifact_path) == record.path.resolve():
            return True
        model_dir = record.path / MODEL_DIR
        source = model_dir if model_dir.is_dir() else record.path
        if not source.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {source}")
        tags = {f"{artifact_path}.source": redact_text(str(record.path.resolve()))}
        for key in ("epoch", "global_step", "metric", "value"):
            value = getattr(record, key)
            if value is not None:
                tags[f"{artifact_path}.{key}"] = str(value)
        if not self._upload(source, artifact_path, tags):
            return False
        self._uploaded[artifact_path] = record.path.resolve()
        return True

    def wait_until_online(self, timeout: float = LAST_TRY_OFFLINE_S) -> bool:
        """While the backend fails, wait up to ``timeout`` s for one more try; True when it answers."""
        return self.logging and self._sender.wait_for_probe(timeout)

    def _retry_uploads(self) -> None:
        waiting, self._unsent_uploads = self._unsent_uploads, []
        for upload in waiting:
            try:
                self._client.log_artifacts(self.run_id, upload["local"], upload["artifact_path"])
                if upload["tags"]:
                    self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in upload["tags"].items()])
            except Exception as exc:  # noqa: BLE001 - kept for send_unsent
                log.warning("Could not upload %s to MLflow as %s: %s", upload["local"], upload["artifact_path"],
                            redact_text(str(exc)).splitlines()[0][:300])
                self._unsent_uploads.append(upload)

    def _upload(self, source: Path, artifact_path: str, tags: Mapping[str, str]) -> bool:
        """Upload folder ``source`` as ``artifact_path`` and set ``tags``; while the server is down
        (or if the upload fails) keep it in the spool file instead. True once uploaded."""
        self._flush_or_spool()  # keep the worker out of the client meanwhile
        if not self._sender.offline:
            try:
                self._client.log_artifacts(self.run_id, str(source), artifact_path)
                if tags:
                    self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                return True
            except Exception as exc:
                log.warning("Could not upload %s to MLflow as %s: %s", source, artifact_path,
                            redact_text(str(exc)).splitlines()[0][:300])
        self._unsent_uploads.append({"local": str(source.resolve()), "artifact_path": artifact_path,
                                     "tags": dict(tags)})
        self._write_spool(status=None)
        return False

    def upload_checkpoints(self, policy: str = "best") -> None:
        """Upload the best checkpoint (``best``), and the last one too (``best_and_last``); never raises."""
        if policy not in CHECKPOINT_POLICIES:
            raise ValueError(f"log_checkpoints must be one of {CHECKPOINT_POLICIES}, got {policy!r}")
        if policy == "none" or not self.logging:
            return
        try:
            self._upload_checkpoints(policy)
        except Exception as exc:
            log.warning("Could not upload checkpoints to MLflow: %s", exc)

    def _upload_checkpoints(self, policy: str) -> None:
        best, last = self.best_checkpoint, self.last_checkpoint
        if best is None and last is not None:
            log.warning("No checkpoint was marked as best (trainer_state.json); best_checkpoint not logged")
        if best is not None:
            self._upload_if_present(best, "best_checkpoint")
        if policy == "best_and_last" and last is not None:
            if best is not None and last.path.resolve() == best.path.resolve():
                self._client.set_tag(self.run_id, "last_checkpoint", "best_checkpoint")
            else:
                self._upload_if_present(last, "last_checkpoint")

    def _upload_if_present(self, record: CheckpointRecord, artifact_path: str) -> None:
        if not record.path.is_dir():
            log.warning("Checkpoint %s no longer exists; %s not logged", record.path, artifact_path)
            return
        self.log_checkpoint(record.path, artifact_path)

    def _read_checkpoint(self, path: Path) -> CheckpointRecord:
        state: dict[str, Any] = {}
        state_file = path / STATE_JSON
        if state_file.is_file():
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError) as exc:
                log.warning("Unreadable %s: %s", state_file, exc)
        epoch = state.get("epoch")
        metric = state.get("metric")
        value = as_float(state.get("value"))
        if value is None and metric is not None:
            value = as_float(self._eval_by_epoch.get(epoch, {}).get(metric))
        is_best = state.get("is_best")
        if is_best is None:
            is_best = _looks_best(state, value)
        return CheckpointRecord(path, epoch, state.get("global_step"), metric, value, bool(is_best))

    # ------------------------------------------------------------------ params / history

    def _log_params(self, config: Any) -> None:
        nested = to_plain(self.params) if self.params is not None else {}
        if dataclasses.is_dataclass(config) and "trainer" not in nested:
            nested["trainer"] = to_plain(config)
        if not nested:
            return
        nested = redact(nested)
        flat = flatten_params(nested)
        existing = self._client.get_run(self.run_id).data.params
        changed = sorted(k for k, v in flat.items() if k in existing and existing[k] != v)
        if changed:
            log.warning("Resumed run %s keeps its earlier values of params %s", self.run_id, ", ".join(changed))
        new = [Param(k, v) for k, v in flat.items() if k not in existing]
        if new:
            self._client.log_batch(self.run_id, params=new)
        text = to_json(nested)
        self._sender.call(self._client.log_text, self.run_id, text, "params.json",
                          record={"text": "params.json", "content": text})

    def _load_history(self) -> None:
        try:
            path = self._client.download_artifacts(self.resume_run_id, "history.json")
            self.history = json.loads(Path(path).read_text())
        except Exception:  # no history yet: a fresh start of that run
            self.history = []


def _looks_best(state: Mapping[str, Any], value: float | None) -> bool:
    """For a ``trainer_state.json`` without ``is_best``: use ``best_epoch`` or ``best_metric``."""
    if state.get("best_epoch") is not None and state.get("epoch") is not None:
        return state["best_epoch"] == state["epoch"]
    best = as_float(state.get("best_metric"))
    return best is not None and value is not None and math.isclose(value, best, rel_tol=1e-9, abs_tol=1e-12)


def _is_kill(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, SystemExit) and exc.code in _EXIT_CODES

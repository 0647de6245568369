"""MLflowCallback driven hook by hook with fake history entries, then read back with MlflowClient."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from medkit_exp.tracking import MLflowCallback, TrackingUnavailableError, flatten_params, setup_tracking
from medkit_exp.training.config import TrainerConfig


def entry(epoch: int, loss: float, f1: float) -> dict:
    return {
        "epoch": epoch,
        "train": {"loss": loss + 0.1},
        "eval": {"loss": loss, "f1": f1, "Disease_f1": f1 - 0.1, "Sign (symptom)_f1": f1 / 2, "support": 12},
        "train_samples_per_s": 100.0 + epoch,
        "lr": 1e-5 * epoch,
        "epoch_duration": 2.5,
    }


def fake_checkpoint(root: Path, epoch: int, is_best: bool | None, **state) -> Path:
    path = root / f"checkpoint_{epoch:03d}"
    (path / "model").mkdir(parents=True)
    (path / "model" / "config.json").write_text(json.dumps({"epoch": epoch}))
    (path / "model" / "model.safetensors").write_bytes(b"weights%d" % epoch)
    (path / "trainer_state.pt").write_bytes(b"optimizer")
    summary = {"epoch": epoch, "global_step": epoch * 20, "metric": "f1", "value": 0.5 + epoch / 10, **state}
    if is_best is not None:
        summary["is_best"] = is_best
    (path / "trainer_state.json").write_text(json.dumps(summary))
    return path


def make_callback(mlflow_root: Path, **kwargs) -> MLflowCallback:
    return MLflowCallback(experiment="tests", tracking_root=mlflow_root, **kwargs)


def train(callback: MLflowCallback, tmp_path: Path, epochs: int = 2, config: TrainerConfig | None = None) -> None:
    """Call the hooks in the order the Trainer does (best checkpoint: epoch 2)."""
    callback.on_train_begin(config=config or TrainerConfig(lr=3e-5, epochs=epochs))
    for epoch in range(1, epochs + 1):
        callback.on_epoch_begin(epoch=epoch)
        for step in range(1, 3):
            global_step = (epoch - 1) * 20 + step * 10
            callback.on_log(logs={"train_loss": 1.0 / global_step, "lr": 1e-5}, global_step=global_step)
        history_entry = entry(epoch, loss=1.0 / epoch, f1=0.5 + epoch / 10)
        callback.on_evaluate(metrics=history_entry["eval"], epoch=epoch)
        callback.on_save(checkpoint_dir=fake_checkpoint(tmp_path / "ckpt", epoch, is_best=epoch == 2))
        callback.on_epoch_end(metrics=history_entry, epoch=epoch, epoch_duration=2.5)


def history_of(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_a_full_training_is_recorded(mlflow_root, tmp_path):
    params = {"model": {"name": "minilm", "labels": ["Disease", "Drug"]}, "data": {"name": "demo"}}
    callback = make_callback(mlflow_root, run_name="hf_ner-demo", params=params,
                             tags={"dataset.name": "demo", "dataset.digest": "abc"}, log_checkpoints="best_and_last")
    config = TrainerConfig(lr=3e-5, epochs=3)
    train(callback, tmp_path, epochs=3, config=config)
    callback.on_train_end()

    client = MlflowClient()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "hf_ner-demo"
    assert run.data.params == flatten_params({**params, "trainer": asdict(config)})
    assert run.data.tags["dataset.digest"] == "abc"
    assert run.data.tags["git.commit"] == run.data.tags["mlflow.source.git.commit"]  # tests run in the repo

    eval_f1 = history_of(client, callback.run_id, "eval_f1")
    assert [s for s, _ in eval_f1] == [1, 2, 3] and [v for _, v in eval_f1] == pytest.approx([0.6, 0.7, 0.8])
    train_loss = history_of(client, callback.run_id, "train_loss")
    assert [s for s, _ in train_loss] == [1, 2, 3]
    assert [v for _, v in train_loss] == pytest.approx([1.1, 0.6, 0.4333333])
    assert [s for s, _ in history_of(client, callback.run_id, "step/train_loss")] == [10, 20, 30, 40, 50, 60]
    assert [s for s, _ in history_of(client, callback.run_id, "step/lr")] == [10, 20, 30, 40, 50, 60]
    metrics = run.data.metrics
    assert metrics["eval_Disease_f1"] == pytest.approx(0.7)
    assert metrics["eval_Sign _symptom__f1"] == pytest.approx(0.4)
    assert metrics["eval_support"] == 12 and metrics["epoch_duration_s"] == 2.5
    assert metrics["train_samples_per_s"] == 103.0 and metrics["lr"] == pytest.approx(3e-5)

    assert {"history.json", "params.json", "best_checkpoint", "last_checkpoint"} <= artifact_paths(client,
                                                                                                   callback.run_id)
    history = json.loads(Path(client.download_artifacts(callback.run_id, "history.json",
                                                        str(tmp_path / "dl"))).read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0]["eval"]["f1"] == pytest.approx(0.6)
    full = json.loads(Path(client.download_artifacts(callback.run_id, "params.json", str(tmp_path / "dl"))).read_text())
    assert full["model"]["labels"] == ["Disease", "Drug"] and full["trainer"]["lr"] == 3e-5

    best = Path(client.download_artifacts(callback.run_id, "best_checkpoint", str(tmp_path / "best")))
    assert sorted(p.name for p in best.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((best / "config.json").read_text()) == {"epoch": 2}
    last = Path(client.download_artifacts(callback.run_id, "last_checkpoint", str(tmp_path / "last")))
    assert json.loads((last / "config.json").read_text()) == {"epoch": 3}
    assert run.data.tags["best_checkpoint.epoch"] == "2" and run.data.tags["best_checkpoint.metric"] == "f1"
    assert run.data.tags["checkpoint.last_path"].endswith("checkpoint_003")


def test_without_params_the_trainer_config_is_logged_under_trainer(mlflow_root, tmp_path):
    callback = make_callback(mlflow_root, log_checkpoints="none")
    train(callback, tmp_path, epochs=1)
    callback.on_train_end()
    run = MlflowClient().get_run(callback.run_id)
    assert run.data.params == {f"trainer.{k}": str(v) for k, v in asdict(TrainerConfig(lr=3e-5, epochs=1)).items()}
    assert not {"best_checkpoint", "last_checkpoint"} & artifact_paths(MlflowClient(), callback.run_id)


def test_log_every_n_steps_thins_step_metrics(mlflow_root):
    callback = make_callback(mlflow_root, log_every_n_steps=25)
    callback.on_train_begin(config=TrainerConfig())
    for step in range(10, 101, 10):
        callback.on_log(logs={"train_loss": 1.0, "lr": 1e-5}, global_step=step)
    callback.on_train_end()
    steps = [s for s, _ in history_of(MlflowClient(), callback.run_id, "step/train_loss")]
    assert steps == [10, 40, 70, 100]


def test_helpers_log_test_metrics_config_and_dicts_even_after_the_run_ended(mlflow_root, tmp_path):
    callback = make_callback(mlflow_root)
    callback.run.log_config("trainer:\n  lr: 3.0e-05\n")  # before training: starts the run
    train(callback, tmp_path, epochs=2)
    callback.on_train_end()
    callback.run.log_test_metrics({"f1": 0.61, "loss": 0.4, "per_label": {"Disease": {"f1": 0.5}}, "note": "x"})
    callback.run.log_dict_artifact({"Disease": {"f1": 0.5}}, "eval/per_label.json")
    client = MlflowClient()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_f1"] == 0.61 and run.data.metrics["test_per_label_Disease_f1"] == 0.5
    assert history_of(client, callback.run_id, "test_loss") == [(2, 0.4)]
    assert {"config.yaml", "eval"} <= artifact_paths(client, callback.run_id)
    config_text = Path(client.download_artifacts(callback.run_id, "config.yaml", str(tmp_path / "dl"))).read_text()
    assert config_text == "trainer:\n  lr: 3.0e-05\n"


def test_log_best_checkpoint_is_public_and_not_uploaded_twice(mlflow_root, tmp_path, monkeypatch):
    callback = make_callback(mlflow_root)
    train(callback, tmp_path, epochs=2)
    callback.run.log_best_checkpoint(tmp_path / "ckpt" / "checkpoint_002")
    uploads = []
    monkeypatch.setattr(MlflowClient, "log_artifacts", lambda self, *a, **k: uploads.append(a))
    callback.on_train_end()
    assert uploads == []
    assert artifact_paths(MlflowClient(), callback.run_id, "best_checkpoint") == {
        "best_checkpoint/config.json", "best_checkpoint/model.safetensors"}


def test_best_checkpoint_without_is_best_uses_best_epoch(mlflow_root, tmp_path):
    callback = make_callback(mlflow_root)
    callback.on_train_begin(config=TrainerConfig())
    callback.on_save(checkpoint_dir=fake_checkpoint(tmp_path, 1, is_best=None, best_epoch=1))
    callback.on_save(checkpoint_dir=fake_checkpoint(tmp_path, 2, is_best=None, best_epoch=1))
    callback.on_train_end()
    assert MlflowClient().get_run(callback.run_id).data.tags["best_checkpoint.epoch"] == "1"


@pytest.mark.parametrize(
    ("exception", "status"),
    [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED"), (SystemExit(143), "KILLED"),
     (SystemExit(1), "FAILED")],
)
def test_exceptions_end_the_run_killed_or_failed(mlflow_root, tmp_path, exception, status):
    callback = make_callback(mlflow_root)
    train(callback, tmp_path, epochs=1)
    callback.on_log(logs={"train_loss": 0.5, "lr": 1e-5}, global_step=99)
    callback.on_exception(exception=exception)
    run = MlflowClient().get_run(callback.run_id)
    assert run.info.status == status
    assert run.data.tags["medkit.error"].startswith(type(exception).__name__)
    assert history_of(MlflowClient(), callback.run_id, "step/train_loss")[-1] == (99, 0.5)
    assert mlflow.active_run() is None
    callback.on_train_end()  # a late call changes nothing
    assert MlflowClient().get_run(callback.run_id).info.status == status


def test_on_exception_never_raises_even_when_the_backend_is_down(mlflow_root, tmp_path, monkeypatch, caplog):
    callback = make_callback(mlflow_root)
    callback.on_train_begin(config=TrainerConfig())

    def down(*args, **kwargs):
        raise ConnectionError("backend down")

    monkeypatch.setattr(MlflowClient, "set_tag", down)
    monkeypatch.setattr(MlflowClient, "set_terminated", down)
    monkeypatch.setattr(mlflow, "end_run", down)
    with caplog.at_level(logging.WARNING):
        callback.on_exception(exception=RuntimeError("boom"))
    assert "backend down" in caplog.text
    monkeypatch.undo()
    mlflow.end_run()


def test_a_failing_backend_never_stops_training_and_unsent_metrics_are_retried(mlflow_root, tmp_path, monkeypatch,
                                                                               caplog):
    callback = make_callback(mlflow_root)
    callback.on_train_begin(config=TrainerConfig())
    real_log_batch = MlflowClient.log_batch
    failures = {"left": 3}

    def flaky(self, run_id, metrics=(), *args, **kwargs):
        if metrics and failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("server gone")
        return real_log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    with caplog.at_level(logging.WARNING, logger="medkit_exp.tracking"):
        for step in range(1, 7):
            callback.on_log(logs={"train_loss": float(step), "lr": 1e-5}, global_step=step)
            # Each send answers before the next step (flush does not wait while offline: the probe does).
            callback.run._sender.flush(5)
            callback.run._sender.wait_for_probe(5)
        callback.on_epoch_end(metrics=entry(1, 0.5, 0.6), epoch=1, epoch_duration=1.0)
        callback.on_train_end()
    assert caplog.text.count("MLflow logging failed") == 1
    steps = [s for s, _ in history_of(MlflowClient(), callback.run_id, "step/train_loss")]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert MlflowClient().get_run(callback.run_id).info.status == "FINISHED"


def test_resuming_into_an_existing_run_extends_it(mlflow_root, tmp_path):
    first = make_callback(mlflow_root, params={"model": {"name": "minilm"}})
    train(first, tmp_path / "a", epochs=1)
    first.on_exception(exception=KeyboardInterrupt())

    resumed = make_callback(mlflow_root, params={"model": {"name": "minilm"}}, run_id=first.run_id)
    resumed.on_train_begin(config=TrainerConfig(lr=3e-5, epochs=2, resume_from="last"))
    resumed.on_epoch_end(metrics=entry(2, 0.4, 0.7), epoch=2, epoch_duration=1.0)
    resumed.on_train_end()

    client = MlflowClient()
    run = client.get_run(first.run_id)
    assert resumed.run_id == first.run_id and run.info.status == "FINISHED"
    assert run.data.params["trainer.resume_from"] == "None"  # params are immutable: the first value stays
    assert [s for s, _ in history_of(client, first.run_id, "eval_f1")] == [1, 2]
    history = json.loads(Path(client.download_artifacts(first.run_id, "history.json",
                                                        str(tmp_path / "dl"))).read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_child_runs_attach_to_a_parent(mlflow_root, monkeypatch):
    experiment_id = setup_tracking(root=mlflow_root, experiment="tests")
    parent = MlflowClient().create_run(experiment_id, run_name="sweep").info.run_id
    explicit = make_callback(mlflow_root, parent_run_id=parent)
    explicit.on_train_begin(config=TrainerConfig())
    explicit.on_train_end()
    monkeypatch.setenv("MEDKIT_EXP_PARENT_RUN_ID", parent)
    from_env = make_callback(mlflow_root)
    from_env.on_train_begin(config=TrainerConfig())
    from_env.on_train_end()
    for callback in (explicit, from_env):
        assert MlflowClient().get_run(callback.run_id).data.tags["mlflow.parentRunId"] == parent


def test_an_active_run_is_adopted_and_left_to_its_owner(mlflow_root, tmp_path):
    setup_tracking(root=mlflow_root, experiment="tests")
    with mlflow.start_run() as outer:
        callback = make_callback(mlflow_root)
        train(callback, tmp_path, epochs=1)
        callback.on_train_end()
        assert callback.run_id == outer.info.run_id
        assert MlflowClient().get_run(outer.info.run_id).info.status == "RUNNING"
    run = MlflowClient().get_run(outer.info.run_id)
    assert run.info.status == "FINISHED" and "eval_f1" in run.data.metrics


def test_nested_run_under_the_active_run(mlflow_root, tmp_path):
    setup_tracking(root=mlflow_root, experiment="tests")
    with mlflow.start_run() as outer:
        callback = make_callback(mlflow_root, nested=True)
        callback.on_train_begin(config=TrainerConfig())
        callback.on_train_end()
        assert mlflow.active_run().info.run_id == outer.info.run_id
    child = MlflowClient().get_run(callback.run_id)
    assert child.data.tags["mlflow.parentRunId"] == outer.info.run_id and child.info.status == "FINISHED"


def test_bad_checkpoint_policy_is_refused():
    with pytest.raises(ValueError, match="log_checkpoints"):
        MLflowCallback(log_checkpoints="all")


def test_with_the_real_trainer(mlflow_root, tmp_path):
    from support.dummy_component import AccuracyMetrics, DummyClassifier, make_data

    from medkit_exp.training import Trainer

    callback = make_callback(mlflow_root, log_checkpoints="best_and_last")
    config = TrainerConfig(output_dir=str(tmp_path / "out"), lr=0.05, epochs=2, batch_size=8, log_every_n_steps=2,
                           checkpoint_metric="accuracy", checkpoint_mode="max")
    Trainer(DummyClassifier(), config, make_data(32, seed=1), make_data(16, seed=2),
            metrics_computer=AccuracyMetrics(), callbacks=[callback]).train()
    client = MlflowClient()
    run = client.get_run(callback.run_id)
    assert run.info.status == "FINISHED" and run.data.params["trainer.lr"] == "0.05"
    assert [s for s, _ in history_of(client, callback.run_id, "eval_accuracy")] == [1, 2]
    assert [s for s, _ in history_of(client, callback.run_id, "step/train_loss")] == [2, 4, 6, 8]
    assert "best_checkpoint" in artifact_paths(client, callback.run_id)


def test_app_flow_keeps_the_run_open_for_test_results_then_finishes(mlflow_root, tmp_path, monkeypatch):
    callback = make_callback(mlflow_root, end_run_on_train_end=False)
    run_id = callback.run.start()
    assert callback.run.start() == run_id
    callback.run.log_text("a: 1\n", "config.yaml")
    train(callback, tmp_path, epochs=2)
    callback.on_train_end()
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"
    uploads = []
    real = MlflowClient.log_artifacts
    monkeypatch.setattr(MlflowClient, "log_artifacts", lambda self, *a: uploads.append(a) or real(self, *a))
    assert callback.run.log_best_checkpoint(tmp_path / "ckpt" / "checkpoint_002")  # uploaded at train end already
    callback.run.log_test_metrics({"f1": 0.7})
    callback.run.finish()
    run = client.get_run(run_id)
    assert uploads == [] and run.info.status == "FINISHED" and run.data.metrics["test_f1"] == 0.7
    assert {"config.yaml", "best_checkpoint"} <= artifact_paths(client, run_id)
    assert callback.run.ui_command() == (
        f"mlflow ui --backend-store-uri sqlite:///{mlflow_root / 'mlflow.db'} --artifacts-destination "
        f"{mlflow_root / 'artifacts'} --port 5000\n"
        f"then open    : http://127.0.0.1:5000/#/experiments/{callback.run.experiment_id}/runs/{run_id}"
    )


def test_an_unreachable_server_raises_at_start_unless_tracking_is_optional(tmp_path, caplog):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(TrackingUnavailableError, match="tracking=none"):
        MLflowCallback(tracking_uri=uri).on_train_begin(config=TrainerConfig())
    optional = MLflowCallback(tracking_uri=uri, required=False)
    with caplog.at_level(logging.WARNING):
        optional.on_train_begin(config=TrainerConfig())
    assert "MLflow tracking disabled" in caplog.text and optional.run_id is None
    optional.on_log(logs={"train_loss": 1.0}, global_step=1)
    optional.on_epoch_end(metrics=entry(1, 0.5, 0.6), epoch=1, epoch_duration=1.0)
    optional.on_save(checkpoint_dir=fake_checkpoint(tmp_path, 1, is_best=True))
    optional.run.log_test_metrics({"f1": 1.0})
    optional.on_train_end()
    optional.on_exception(exception=RuntimeError("later"))


def test_a_crash_after_training_but_before_finish_marks_the_run_failed(mlflow_root, tmp_path):
    callback = make_callback(mlflow_root, end_run_on_train_end=False)
    train(callback, tmp_path, epochs=1)
    callback.on_train_end()
    callback.on_exception(exception=ValueError("test set unreadable"))
    callback.run.finish()  # too late: the run stays FAILED
    assert MlflowClient().get_run(callback.run_id).info.status == "FAILED"


def test_a_failed_checkpoint_upload_warns_and_returns_false(mlflow_root, tmp_path, monkeypatch, caplog):
    callback = make_callback(mlflow_root, log_checkpoints="none")
    train(callback, tmp_path, epochs=1)

    def down(*args, **kwargs):
        raise ConnectionError("artifact store down")

    monkeypatch.setattr(MlflowClient, "log_artifacts", down)
    with caplog.at_level(logging.WARNING):
        assert callback.run.log_best_checkpoint(tmp_path / "ckpt" / "checkpoint_001") is False
    assert "artifact store down" in caplog.text
    with pytest.raises(FileNotFoundError):
        callback.run.log_best_checkpoint(tmp_path / "missing")
    callback.on_train_end()

"""The Trainer loop, driven by a tiny component without transformers."""

from __future__ import annotations

import glob
import json
import math
import os
import signal

import pytest
import torch
from support.dummy_component import AccuracyMetrics, DummyClassifier, make_data

from medkit_exp.training import (
    BatchData,
    NonFiniteLossError,
    Trainer,
    TrainerCallback,
    TrainerConfig,
    TrainingSetupError,
    plan_batches,
)
from medkit_exp.training import checkpoint as ckpt
from medkit_exp.training.schedulers import linear_warmup, plateau, step

TRAIN = make_data(64, seed=1)
EVAL = make_data(32, seed=2)


def config(tmp_path, **overrides) -> TrainerConfig:
    values = {"output_dir": str(tmp_path / "out"), "lr": 0.05, "epochs": 3, "batch_size": 8, "eval_batch_size": 16,
              "seed": 0}
    values.update(overrides)
    return TrainerConfig(**values)


class Recorder(TrainerCallback):
    def __init__(self):
        self.events = []
        self.logs = []

    def on_train_begin(self, config):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch):
        self.events.append(f"epoch_begin:{epoch}")

    def on_epoch_end(self, metrics, epoch, epoch_duration):
        self.events.append(f"epoch_end:{epoch}")

    def on_evaluate(self, metrics, epoch):
        self.events.append(f"evaluate:{epoch}")

    def on_save(self, checkpoint_dir):
        self.events.append(f"save:{checkpoint_dir.name}")

    def on_log(self, logs, global_step):
        self.logs.append((global_step, logs))

    def on_train_end(self):
        self.events.append("train_end")


def weights(component):
    return torch.cat([p.detach().flatten() for p in component.model.parameters()])


def test_batch_data_columns_rows_and_device():
    batch = BatchData(ids=torch.tensor([[1, 2], [3, 4]]), names=["a", "b"])
    assert batch["names"] == ["a", "b"]
    assert batch[1]["names"] == "b" and batch[1]["ids"].tolist() == [3, 4]
    moved = batch.to_device("cpu")
    assert isinstance(moved, BatchData) and moved.nb_rows == 2


def test_history_has_one_entry_per_epoch_with_train_and_eval_metrics(tmp_path):
    component = DummyClassifier()
    history = Trainer(component, config(tmp_path), TRAIN, EVAL, metrics_computer=AccuracyMetrics(),
                      callbacks=[]).train()
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for entry in history:
        assert set(entry["train"]) == {"loss"}
        assert set(entry["eval"]) == {"loss", "accuracy"}
        assert 0.0 <= entry["eval"]["accuracy"] <= 1.0
        assert entry["lr"] == pytest.approx(0.05)
        assert entry["epoch_duration"] > 0 and entry["train_samples_per_s"] > 0
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert history[-1]["eval"]["accuracy"] >= 0.8


def test_every_item_is_preprocessed_once(tmp_path):
    component = DummyClassifier()
    Trainer(component, config(tmp_path, epochs=3), TRAIN, EVAL, callbacks=[],
            metrics_computer=AccuracyMetrics()).train()
    assert component.preprocess_calls == len(TRAIN) + len(EVAL)


def test_train_metrics_when_asked(tmp_path):
    # lr 1e-12 with SGD and no dropout: the model does not change during the epoch, so the train
    # metrics must be the untrained model's accuracy on the whole train split (and not on eval).
    def accuracy(component, data):
        with torch.no_grad():
            logits = component.model(torch.tensor([features for features, _ in data]))
        return sum(int(p) == label for p, (_, label) in zip(logits.argmax(-1), data, strict=True)) / len(data)

    untrained = DummyClassifier(dropout=0.0, optimizer="sgd")
    expected_train, expected_eval = accuracy(untrained, TRAIN), accuracy(untrained, EVAL)
    assert expected_train != expected_eval  # the two splits tell a mix-up apart
    history = Trainer(DummyClassifier(dropout=0.0, optimizer="sgd"),
                      config(tmp_path, epochs=1, lr=1e-12, do_metrics_in_training=True), TRAIN, EVAL,
                      metrics_computer=AccuracyMetrics(), callbacks=[]).train()
    assert history[0]["train"]["accuracy"] == pytest.approx(expected_train)
    assert history[0]["eval"]["accuracy"] == pytest.approx(expected_eval)
    without = Trainer(DummyClassifier(), config(tmp_path / "off", epochs=1), TRAIN, EVAL,
                      metrics_computer=AccuracyMetrics(), callbacks=[]).train()
    assert set(without[0]["train"]) == {"loss"}  # not asked: the loss alone


def test_callbacks_see_events_in_order_and_base_callback_never_crashes(tmp_path):
    recorder = Recorder()
    Trainer(DummyClassifier(), config(tmp_path, epochs=2, log_every_n_steps=4), TRAIN, EVAL,
            metrics_computer=AccuracyMetrics(), callbacks=[TrainerCallback(), recorder]).train()
    assert recorder.events[0] == "train_begin" and recorder.events[-1] == "train_end"
    epoch1 = recorder.events[1:5]
    assert epoch1[0] == "epoch_begin:1" and epoch1[1] == "evaluate:1"
    # The epoch is recorded before its checkpoint is written: a checkpoint never gets ahead of the record.
    assert epoch1[2] == "epoch_end:1" and epoch1[3].startswith("save:")
    assert [step for step, _ in recorder.logs] == [4, 8, 12, 16]
    assert all(set(logs) == {"train_loss", "lr"} for _, logs in recorder.logs)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    big = DummyClassifier(dropout=0.0)
    Trainer(big, config(tmp_path / "a", batch_size=16, max_grad_norm=None), TRAIN, EVAL, callbacks=[]).train()
    accumulated = DummyClassifier(dropout=0.0)
    Trainer(accumulated, config(tmp_path / "b", batch_size=8, grad_accum_steps=2, max_grad_norm=None),
            TRAIN, EVAL, callbacks=[]).train()
    assert torch.allclose(weights(big), weights(accumulated), atol=1e-6)


def test_gradient_clipping_bounds_the_update(tmp_path):
    component = DummyClassifier(dropout=0.0, optimizer="sgd")
    before = weights(component).clone()
    Trainer(component, config(tmp_path, lr=1.0, epochs=1, batch_size=64, max_grad_norm=0.01), TRAIN, EVAL,
            callbacks=[]).train()
    assert (weights(component) - before).norm().item() == pytest.approx(0.01, rel=1e-3)


def test_scheduler_stepped_per_optimizer_step(tmp_path):
    # 64 items / batch 8 = 8 steps per epoch, 3 epochs = 24 steps; linear decay ends at 0.
    trainer = Trainer(DummyClassifier(), config(tmp_path), TRAIN, EVAL, callbacks=[],
                      lr_scheduler_builder=linear_warmup(warmup_steps=0))
    history = trainer.train()
    assert [h["lr"] for h in history] == pytest.approx([0.05 * 16 / 24, 0.05 * 8 / 24, 0.0])


def test_scheduler_stepped_per_epoch(tmp_path):
    history = Trainer(DummyClassifier(), config(tmp_path, lr_scheduler_interval="epoch"), TRAIN, EVAL, callbacks=[],
                      lr_scheduler_builder=step(step_size=1, gamma=0.5)).train()
    assert [h["lr"] for h in history] == pytest.approx([0.025, 0.0125, 0.00625])


def test_any_torch_scheduler_builder_is_accepted(tmp_path):
    history = Trainer(DummyClassifier(), config(tmp_path, epochs=1), TRAIN, EVAL, callbacks=[],
                      lr_scheduler_builder=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)).train()
    assert history[0]["lr"] == pytest.approx(0.05 * 0.5**8)


def replay_plateau(values: list[float], lr: float, mode: str, factor: float) -> list[float]:
    """The lr after each epoch of ReduceLROnPlateau(patience=0, default threshold) fed ``values``."""
    best, lrs = None, []
    for value in values:
        improved = best is None or (value > best * (1 + 1e-4) if mode == "max" else value < best * (1 - 1e-4))
        if improved:
            best = value
        else:
            lr *= factor
        lrs.append(lr)
    return lrs


def test_plateau_reads_the_tracked_metric(tmp_path):
    # Eval accuracy in "max" mode: the lr halves after each epoch that does not raise it.
    history = Trainer(DummyClassifier(), config(tmp_path, epochs=5, metric_to_track_lr="accuracy"), TRAIN, EVAL,
                      metrics_computer=AccuracyMetrics(), callbacks=[],
                      lr_scheduler_builder=plateau(mode="max", factor=0.5, patience=0)).train()
    lrs = [entry["lr"] for entry in history]
    accuracies = [entry["eval"]["accuracy"] for entry in history]
    assert lrs == pytest.approx(replay_plateau(accuracies, 0.05, "max", 0.5))
    # Kept after an improvement, halved after an epoch that did not raise the accuracy: both happen.
    steps = list(zip(accuracies, accuracies[1:], lrs, lrs[1:], strict=False))  # consecutive pairs: one fewer
    assert any(acc > before and lr == lr_before for before, acc, lr_before, lr in steps)
    assert any(acc <= before and lr == pytest.approx(lr_before / 2) for before, acc, lr_before, lr in steps)
    # Read from the eval loss (the default metric) the same scheduler gives another sequence.
    assert lrs != pytest.approx(replay_plateau([entry["eval"]["loss"] for entry in history], 0.05, "max", 0.5))
    with pytest.raises(TrainingSetupError, match="metric_to_track_lr='nope'"):
        Trainer(DummyClassifier(), config(tmp_path / "x", metric_to_track_lr="nope"), TRAIN, EVAL, callbacks=[],
                lr_scheduler_builder=plateau()).train()


def test_checkpoint_holds_everything_needed_to_resume(tmp_path):
    trainer = Trainer(DummyClassifier(), config(tmp_path, keep_checkpoints=0, checkpoint_metric="accuracy",
                                                checkpoint_mode="max"), TRAIN, EVAL,
                      metrics_computer=AccuracyMetrics(), callbacks=[])
    history = trainer.train()
    out = tmp_path / "out"
    index = json.loads((out / "checkpoints.json").read_text())
    assert index["last"] == "checkpoint_003"
    best_epoch = max(range(3), key=lambda i: (history[i]["eval"]["accuracy"], -i)) + 1
    assert index["best"] == f"checkpoint_{best_epoch:03d}"
    assert trainer.best_checkpoint == out / index["best"]
    kept = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert kept == sorted({index["best"], index["last"]})
    state = torch.load(out / index["last"] / "trainer_state.pt", weights_only=False)
    assert set(state) == {"optimizer", "scheduler", "rng", "loop", "config"}
    assert state["loop"]["epoch"] == 3 and state["loop"]["global_step"] == 24
    assert state["config"]["lr"] == 0.05 and len(state["loop"]["history"]) == 3
    assert (out / index["last"] / "model" / "weights.pt").is_file()
    summary = json.loads((out / index["last"] / "trainer_state.json").read_text())
    assert summary["epoch"] == 3 and summary["metric"] == "accuracy"


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    component = DummyClassifier()
    real_save = component.save

    def save_then_crash(path):
        if "003" in str(path.parent.name):
            real_save(path)
            raise OSError("disk full")
        real_save(path)

    component.save = save_then_crash
    trainer = Trainer(component, config(tmp_path, checkpoint_period=1, keep_checkpoints=5), TRAIN, EVAL,
                      metrics_computer=AccuracyMetrics(), callbacks=[])
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_001", "checkpoint_002", "checkpoints.json"]
    assert json.loads((out / "checkpoints.json").read_text())["last"] == "checkpoint_002"
    reloaded = DummyClassifier()
    reloaded.load(out / "checkpoint_002" / "model")


class StopAfter(TrainerCallback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, metrics, epoch, epoch_duration):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _comparable(history):
    return [(h["epoch"], h["train"]["loss"], h["eval"]["loss"], h["eval"]["accuracy"], h["lr"]) for h in history]


def test_resume_gives_the_same_weights_and_history_as_an_uninterrupted_run(tmp_path):
    settings = {"epochs": 4, "lr_scheduler_interval": "step"}
    full = DummyClassifier(dropout=0.3)
    full_history = Trainer(full, config(tmp_path / "full", **settings), TRAIN, EVAL,
                           metrics_computer=AccuracyMetrics(), callbacks=[],
                           lr_scheduler_builder=linear_warmup(warmup_ratio=0.2)).train()

    interrupted = DummyClassifier(dropout=0.3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, config(tmp_path / "part", **settings), TRAIN, EVAL, metrics_computer=AccuracyMetrics(),
                callbacks=[StopAfter(2)], lr_scheduler_builder=linear_warmup(warmup_ratio=0.2)).train()

    resumed = DummyClassifier(dropout=0.3, seed=123)  # different init: the checkpoint must win
    resumed_history = Trainer(resumed, config(tmp_path / "part", resume_from="last", **settings), TRAIN, EVAL,
                              metrics_computer=AccuracyMetrics(), callbacks=[],
                              lr_scheduler_builder=linear_warmup(warmup_ratio=0.2)).train()
    assert torch.equal(weights(full), weights(resumed))
    assert _comparable(resumed_history) == _comparable(full_history)


def test_resume_from_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="resume_from=last: no checkpoint index"):
        Trainer(DummyClassifier(), config(tmp_path, resume_from="last"), TRAIN, EVAL, callbacks=[]).train()
    with pytest.raises(ckpt.CheckpointError, match="is not a checkpoint folder"):
        Trainer(DummyClassifier(), config(tmp_path, resume_from=str(tmp_path)), TRAIN, EVAL, callbacks=[]).train()


def test_early_stopping_on_the_checkpoint_metric(tmp_path):
    # Eval loss keeps falling, so in "max" mode it never improves after epoch 1.
    trainer = Trainer(DummyClassifier(), config(tmp_path, epochs=10, checkpoint_metric="loss", checkpoint_mode="max",
                                                early_stopping_patience=2), TRAIN, EVAL, callbacks=[])
    history = trainer.train()
    assert trainer.stopped_early and len(history) == 3


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    component = DummyClassifier(fail_at_forward=8 + 2 + 3)  # epoch 2, third batch (8 train + 2 eval calls before)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, batch 3, after optimizer step 10"):
        Trainer(component, config(tmp_path), TRAIN, EVAL, callbacks=[]).train()
    out = tmp_path / "out"
    assert json.loads((out / "checkpoints.json").read_text())["last"] == "checkpoint_001"


def test_non_finite_loss_can_be_skipped(tmp_path):
    trainer = Trainer(DummyClassifier(fail_at_forward=3), config(tmp_path, epochs=1, nan_policy="skip"), TRAIN, EVAL,
                      callbacks=[])
    history = trainer.train()
    assert trainer.state.nan_skips == 1 and math.isfinite(history[0]["train"]["loss"])


@pytest.mark.parametrize(
    "overrides, message",
    [({"batch_size": 0}, "trainer.batch_size must be >= 1"), ({"lr": -1.0}, "trainer.lr must be > 0"),
     ({"checkpoint_mode": "best"}, "trainer.checkpoint_mode must be min or max")],
)
def test_bad_settings_are_rejected_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        Trainer(DummyClassifier(), config(tmp_path, **overrides), TRAIN, EVAL, callbacks=[])


def test_unknown_checkpoint_metric_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingSetupError, match="checkpoint_metric='f1' is not a computed metric"):
        Trainer(DummyClassifier(), config(tmp_path, checkpoint_metric="f1"), TRAIN, EVAL, callbacks=[]).train()


def test_a_checkpoint_metric_of_an_empty_dev_split_is_refused_before_training(tmp_path):
    component = DummyClassifier()
    with pytest.raises(TrainingSetupError, match="checkpoint_metric='accuracy' is computed on the dev split, which "
                                                 "is empty; give a dev split, or set trainer.checkpoint_metric=loss"):
        Trainer(component, config(tmp_path, checkpoint_metric="accuracy"), TRAIN, [],
                metrics_computer=AccuracyMetrics(), callbacks=[]).train()
    assert component.forward_calls == 0  # refused before one step
    assert not (tmp_path / "out" / "checkpoints.json").exists()


def test_length_grouped_batches_cover_every_example_once():
    lengths = list(range(64))
    batches = plan_batches(lengths, 8, seed=0, epoch=1, order="length_grouped")
    assert sorted(i for b in batches for i in b) == list(range(64))
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) == 7 for b in batches)
    assert batches == plan_batches(lengths, 8, seed=0, epoch=1, order="length_grouped")  # a function of its inputs
    assert batches != plan_batches(lengths, 8, seed=0, epoch=2, order="length_grouped")  # a new order each epoch


def test_the_trainer_feeds_the_planned_batches(tmp_path):
    """What benchmarks rely on to replay the Trainer's batches in a hand-written loop."""
    seen = []
    component = DummyClassifier()
    collate = component.collate
    component.collate = lambda items: seen.append([float(i["x"][0]) for i in items]) or collate(items)
    Trainer(component, config(tmp_path, epochs=1, batch_size=4, batch_order="random"), TRAIN, [], callbacks=[]).train()
    planned = plan_batches([1] * len(TRAIN), 4, seed=0, epoch=1, order="random")
    assert seen == [[TRAIN[i][0][0] for i in batch] for batch in planned]


class SendSignal(TrainerCallback):
    """Sends a signal to this process after a given train batch (the way a user or a scheduler would)."""

    def __init__(self, signum, after_step, times=1):
        self.signum, self.after_step, self.times = signum, after_step, times
        self.seen = 0

    def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
        if phase == "train":
            self.seen += 1
            if self.seen == self.after_step:
                for _ in range(self.times):
                    os.kill(os.getpid(), self.signum)


def test_ctrl_c_finishes_the_step_checkpoints_mid_epoch_and_resumes_exactly(tmp_path):
    settings = {"epochs": 3, "grad_accum_steps": 2, "batch_size": 4}
    full = DummyClassifier(dropout=0.3)
    full_history = Trainer(full, config(tmp_path / "full", **settings), TRAIN, EVAL,
                           metrics_computer=AccuracyMetrics(), callbacks=[],
                           lr_scheduler_builder=linear_warmup(warmup_ratio=0.2)).train()

    interrupted = DummyClassifier(dropout=0.3)
    # 16 batches per epoch; the signal arrives after batch 21 (epoch 2, batch 5, mid accumulation window).
    with pytest.raises(KeyboardInterrupt):
        Trainer(interrupted, config(tmp_path / "part", **settings), TRAIN, EVAL, metrics_computer=AccuracyMetrics(),
                callbacks=[SendSignal(signal.SIGINT, after_step=21)],
                lr_scheduler_builder=linear_warmup(warmup_ratio=0.2)).train()
    index = json.loads((tmp_path / "part" / "out" / "checkpoints.json").read_text())
    assert index["last"] == "checkpoint_002_step_000011"  # the window finished: 8 + 3 optimizer steps
    state = torch.load(tmp_path / "part" / "out" / index["last"] / "trainer_state.pt", weights_only=False)
    assert state["loop"]["batches_done"] == 6 and state["loop"]["epoch"] == 1

    resumed = DummyClassifier(dropout=0.3, seed=7)
    resumed_history = Trainer(resumed, config(tmp_path / "part", resume_from="last", **settings), TRAIN, EVAL,
                              metrics_computer=AccuracyMetrics(), callbacks=[],
                              lr_scheduler_builder=linear_warmup(warmup_ratio=0.2)).train()
    assert torch.equal(weights(full), weights(resumed))
    assert _comparable(resumed_history) == _comparable(full_history)
    # The mid-epoch checkpoint went once a later one existed: medkit's glob finds the last checkpoint.
    out = tmp_path / "part" / "out"
    assert sorted(glob.glob(str(out) + "/checkpoint_*"))[-1] == str(out / "checkpoint_003")
    assert not list(out.glob("*_step_*"))


def test_sigterm_exits_with_143_after_a_checkpoint(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        Trainer(DummyClassifier(), config(tmp_path), TRAIN, EVAL, callbacks=[SendSignal(signal.SIGTERM, 3)]).train()
    assert stopped.value.code == 143
    assert json.loads((tmp_path / "out" / "checkpoints.json").read_text())["last"] == "checkpoint_001_step_000003"


def test_a_second_ctrl_c_stops_at_once_and_the_callers_handler_comes_back(tmp_path):
    def callers_handler(signum, frame):  # whatever was installed before training (test runners install their own)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, callers_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            Trainer(DummyClassifier(), config(tmp_path), TRAIN, EVAL,
                    callbacks=[SendSignal(signal.SIGINT, 3, times=2)]).train()
        assert not (tmp_path / "out" / "checkpoints.json").exists()
        assert signal.getsignal(signal.SIGINT) is callers_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_checkpoints_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        Trainer(DummyClassifier(), config(tmp_path, epochs=1), TRAIN, EVAL, callbacks=[]).train()
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert (out / "checkpoint_001").stat().st_mode & 0o777 == 0o755
    assert (out / "checkpoints.json").stat().st_mode & 0o777 == 0o644


def test_an_unwritable_output_folder_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    component = DummyClassifier()
    with pytest.raises(ckpt.CheckpointError, match="is not writable"):
        Trainer(component, config(tmp_path, output_dir=str(blocker / "out")), TRAIN, EVAL, callbacks=[]).train()
    assert component.forward_calls == 0



class MedkitStyleCallback:
    """A callback written for medkit: no on_log, no on_exception, on_step_end without batch_size/loss."""

    def __init__(self):
        self.events = []

    def on_train_begin(self, config):
        self.events.append("train_begin")

    def on_epoch_end(self, metrics, epoch, epoch_duration):
        self.events.append(f"epoch_end:{epoch}")

    def on_step_end(self, step_idx, nb_batches, phase):
        self.events.append("step_end")


def test_a_medkit_style_callback_given_as_callback_gets_only_the_arguments_it_takes(tmp_path):
    callback = MedkitStyleCallback()
    Trainer(DummyClassifier(), config(tmp_path, epochs=2), TRAIN, EVAL, callback=callback).train()
    assert callback.events[0] == "train_begin" and callback.events.count("epoch_end:2") == 1
    assert "step_end" in callback.events
    single = MedkitStyleCallback()  # one callback as callbacks=, not in a list
    Trainer(DummyClassifier(), config(tmp_path / "b", epochs=1), TRAIN, EVAL, callbacks=single).train()
    assert "epoch_end:1" in single.events


def test_a_misspelled_hook_fails_instead_of_calling_nothing():
    # The Trainer calls hooks through CallbackList, one method per hook of TrainerCallback: a name
    # that is no hook raises at once (a dispatcher that accepts any name would silently call nothing).
    from medkit_exp.training.callbacks import CallbackList

    recorder = Recorder()
    callbacks = CallbackList([recorder])
    with pytest.raises(AttributeError, match="on_epoch_ends"):
        callbacks.on_epoch_ends(metrics={}, epoch=1, epoch_duration=0.0)
    assert recorder.events == []
    hooks = {name for name in vars(TrainerCallback) if name.startswith("on_")}
    assert {name for name in vars(CallbackList) if name.startswith("on_")} == hooks
    callbacks.on_epoch_end(metrics={}, epoch=1, epoch_duration=0.0)
    assert recorder.events == ["epoch_end:1"]


def test_a_failing_on_exception_never_hides_the_error_that_stopped_training(tmp_path, caplog):
    class Broken(TrainerCallback):
        def on_exception(self, exception):
            raise AttributeError("broken callback")

    with pytest.raises(NonFiniteLossError):
        Trainer(DummyClassifier(fail_at_forward=2), config(tmp_path, epochs=1), TRAIN, EVAL,
                callbacks=[Broken()]).train()
    assert "Broken.on_exception failed: broken callback" in caplog.text


def test_a_component_with_medkits_configure_optimizer_is_a_trainable_component():
    from medkit_exp.training import TrainableComponent

    class MedkitSpelling(DummyClassifier):
        create_optimizer = None

        def configure_optimizer(self, lr):
            return torch.optim.SGD(self.model.parameters(), lr=lr)

    class NoOptimizer(DummyClassifier):
        create_optimizer = None

    assert isinstance(DummyClassifier(), TrainableComponent)
    assert isinstance(MedkitSpelling(), TrainableComponent)
    assert not isinstance(NoOptimizer(), TrainableComponent) and not isinstance(object(), TrainableComponent)


def test_freed_heap_is_given_back_around_each_evaluation(tmp_path, monkeypatch):
    # glibc keeps freed activations in its heaps: the Trainer hands them back after each training
    # epoch (before evaluation allocates) and after evaluation, so the process does not grow by
    # a fragmented heap every epoch (host_memory.release_free_heap; its effect: test_host_memory.py)
    from medkit_exp.training import trainer as trainer_module

    recorder = Recorder()
    monkeypatch.setattr(trainer_module, "release_free_heap", lambda: recorder.events.append("release"))
    Trainer(DummyClassifier(), config(tmp_path, epochs=2), TRAIN, EVAL, metrics_computer=AccuracyMetrics(),
            callbacks=[recorder]).train()
    per_epoch = [e for e in recorder.events if e == "release" or e.startswith(("evaluate", "epoch_begin"))]
    assert per_epoch == ["epoch_begin:1", "release", "evaluate:1", "release",
                         "epoch_begin:2", "release", "evaluate:2", "release"]


def test_chosen_padded_lengths_pad_least_for_their_number():
    import itertools
    import random

    from medkit_exp.training.batching import choose_padded_lengths

    def padding(lengths, chosen):
        return sum(min(n for n in chosen if n >= length) - length for length in lengths)

    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 20))]
        count = rng.randint(1, 5)
        chosen = choose_padded_lengths(lengths, count)
        assert len(chosen) <= count and chosen[-1] == max(lengths) and list(chosen) == sorted(set(chosen))
        distinct = sorted(set(lengths))
        best = min(padding(lengths, list(c) + [distinct[-1]])
                   for k in range(min(count, len(distinct)))
                   for c in itertools.combinations(distinct[:-1], k))
        assert padding(lengths, chosen) == best
    assert choose_padded_lengths([], 3) == ()
    with pytest.raises(ValueError, match="count must be >= 1"):
        choose_padded_lengths([4], 0)

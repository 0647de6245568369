"""Tracking overhead: epoch time with the MLflow callback (logging every optimizer step) vs none.

    python bench/tracking_overhead.py [--pairs 3] [--epochs 2] [--model PATH]

Trains hf_ner (packaged MiniLM by default) on the demo corpus, alternating a run with
`MLflowCallback` (step metrics every optimizer step, epoch metrics, history artifact) and
a run without tracking, same seed and data, `--pairs` times. Prints the median train-epoch
time of each side and, last, their ratio (tracked / untracked; goal <= 1.02).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def one_run(model: str, epochs: int, tracked: bool, workdir: Path, run_index: int) -> list[float]:
    """Train once; return the train-phase durations of each epoch (eval excluded)."""
    from medkit_exp.io import load_demo_corpus
    from medkit_exp.text.metrics import SeqEvalMetricsComputer
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig
    from medkit_exp.training.schedulers import linear_warmup

    class TrainTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []

        def on_epoch_begin(self, epoch):
            self.start = time.perf_counter()

        def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
            if phase == "train" and step_idx + 1 == nb_batches:
                self.durations.append(time.perf_counter() - self.start)

    splits = load_demo_corpus()
    component = HFEntityMatcher.make_trainable(model, labels=["problem", "test", "treatment"])
    timer = TrainTimer()
    callbacks: list = [timer]
    if tracked:
        from medkit_exp.tracking import MLflowCallback

        callbacks.append(MLflowCallback(experiment="bench", tracking_root=str(workdir / "mlruns"),
                                        run_name=f"bench-{run_index}", log_checkpoints="none"))
    config = TrainerConfig(output_dir=str(workdir / f"ckpt-{run_index}"), lr=3e-4, epochs=epochs, batch_size=16,
                           seed=0, checkpoint_metric="f1", checkpoint_mode="max", checkpoint_period=0,
                           log_every_n_steps=1, batch_order="length_grouped")
    Trainer(component, config, splits["train"], splits["dev"],
            metrics_computer=SeqEvalMetricsComputer(component.id_to_label),
            lr_scheduler_builder=linear_warmup(0.1), callbacks=callbacks).train()
    return timer.durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    import torch

    from medkit_exp.app import resolve_model
    from medkit_exp.schema import PACKAGED_MINILM
    from medkit_exp.tracking import setup_tracking

    model = args.model or resolve_model(PACKAGED_MINILM)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        setup_tracking(experiment="bench", root=workdir / "mlruns")  # store creation is not training time
        times = {True: [], False: []}
        for pair in range(args.pairs):
            for tracked in (pair % 2 == 0, pair % 2 == 1):  # alternate which side goes first
                durations = one_run(model, args.epochs, tracked, workdir, len(times[True]) + len(times[False]))
                times[tracked].extend(durations)
                print(f"pair {pair + 1} {'tracked  ' if tracked else 'untracked'} epochs: "
                      + ", ".join(f"{d:.2f}s" for d in durations), flush=True)
    tracked_s, untracked_s = statistics.median(times[True]), statistics.median(times[False])
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"python {platform.python_version()}")
    print(f"median train epoch: tracked {tracked_s:.2f}s, untracked {untracked_s:.2f}s "
          f"({len(times[True])} epochs each, step metrics logged every optimizer step)")
    print(f"ratio tracked/untracked: {tracked_s / untracked_s:.3f}")


if __name__ == "__main__":
    sys.exit(main())

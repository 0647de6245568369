"""Tracking overhead: epoch time with the MLflow callback (logging every optimizer step) vs none.

    python bench/tracking_overhead.py [--pairs 3] [--epochs 2] [--log-every 1] [--model PATH]

Trains hf_ner (packaged MiniLM by default) on the demo corpus, alternating a run with
`MLflowCallback` (step metrics every optimizer step, epoch metrics, history artifact) and
a run without tracking, same seed and data, `--pairs` times. Prints the median train-epoch
time of each side and, last, their ratio (tracked / untracked; goal <= 1.02).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from common import epoch_timer, machine_line, packaged_model


def one_run(model: str, epochs: int, tracked: bool, workdir: Path, run_index: int, log_every: int,
            system_metrics: bool = True) -> list[float]:
    """Train once; return the train-phase durations of each epoch (eval excluded)."""
    from medkit_exp.io import load_demo_corpus
    from medkit_exp.text.metrics import SeqEvalMetricsComputer
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig
    from medkit_exp.training.schedulers import linear_warmup

    splits = load_demo_corpus()
    component = HFEntityMatcher.make_trainable(model, labels=["problem", "test", "treatment"])
    timer = epoch_timer()
    callbacks: list = [timer]
    if tracked:
        from medkit_exp.tracking import MLflowCallback

        callbacks.append(MLflowCallback(experiment="bench", tracking_root=str(workdir / "mlruns"),
                                        run_name=f"bench-{run_index}", log_checkpoints="none",
                                        system_metrics=system_metrics))
    config = TrainerConfig(output_dir=str(workdir / f"ckpt-{run_index}"), lr=3e-4, epochs=epochs, batch_size=16,
                           seed=0, checkpoint_metric="f1", checkpoint_mode="max", checkpoint_period=0,
                           log_every_n_steps=log_every, batch_order="length_grouped")
    Trainer(component, config, splits["train"], splits["dev"],
            metrics_computer=SeqEvalMetricsComputer(component.id_to_label),
            lr_scheduler_builder=linear_warmup(0.1), callbacks=callbacks).train()
    return timer.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=1, help="optimizer steps between step metrics (app: 10)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default=None)
    parser.add_argument("--no-system-metrics", action="store_true",
                        help="leave out MLflow's system metrics (on in the app by default)")
    args = parser.parse_args()

    from medkit_exp.tracking import setup_tracking

    model = args.model or packaged_model()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        setup_tracking(experiment="bench", root=workdir / "mlruns")  # store creation is not training time
        times = {True: [], False: []}
        for pair in range(args.pairs):
            for tracked in (pair % 2 == 0, pair % 2 == 1):  # alternate which side goes first
                durations = one_run(model, args.epochs, tracked, workdir, len(times[True]) + len(times[False]),
                                    args.log_every, not args.no_system_metrics)
                times[tracked].extend(durations)
                print(f"pair {pair + 1} {'tracked  ' if tracked else 'untracked'} epochs: "
                      + ", ".join(f"{d:.2f}s" for d in durations), flush=True)
    tracked_s, untracked_s = statistics.median(times[True]), statistics.median(times[False])
    print(machine_line())
    print(f"median train epoch: tracked {tracked_s:.2f}s, untracked {untracked_s:.2f}s "
          f"({len(times[True])} epochs each, step metrics logged every {args.log_every} optimizer step(s), "
          f"system metrics {'off' if args.no_system_metrics else 'on'})")
    print(f"ratio tracked/untracked: {tracked_s / untracked_s:.3f}")


if __name__ == "__main__":
    sys.exit(main())

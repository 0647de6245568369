"""Benchmark (issue 18): the same Optuna search with and without the median pruner.

Both searches run `hparams_search=ner_optuna` on the NCBI-disease preset with the same sampler
seed, the same trials and epochs per trial, one after the other, each in its own folder (its own
study and MLflow store). Printed: each search's training epochs, wall time and best objective
(read from its ``search_summary.json``), then the two figures the issue names:

    best eval_f1 difference (pruned - unpruned): +0.xxxx
    epochs pruned/unpruned: 0.xxx

    python bench/optuna_pruning.py --data-root ../shared/data/ncbi-disease --max-docs 100 --trials 16 \\
        --epochs 4 --precision bf16

More app overrides go after ``--`` (both sides get them): the smoke test runs it with the tiny
model on the demo corpus, ``--experiment '' --model <tiny BERT> -- tracking=none``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import add_fork_option, run_python


def search(side: str, args: argparse.Namespace, workdir: Path) -> dict:
    overrides = ["hparams_search=ner_optuna", f"hydra.sweeper.n_trials={args.trials}",
                 f"hydra.sweeper.sampler.seed={args.seed}", f"trainer.epochs={args.epochs}",
                 f"data.max_docs={args.max_docs}", f"threads={args.threads}", "callbacks.progress_bars=false",
                 f"tracking.experiment=bench_pruning_{side}", "tracking.log_model=false", *args.overrides]
    if args.experiment:
        overrides.insert(0, f"+experiment={args.experiment}")
    if args.data_root:
        overrides.append(f"data.root={Path(args.data_root).resolve()}")
    if args.model:
        overrides.append(f"component.model={args.model}")
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    if side == "pruned":
        overrides += ["hydra.sweeper.pruner=median",
                      f"+hydra.sweeper.pruner_options.n_startup_trials={args.startup_trials}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(args.threads))
    started = time.perf_counter()
    result = run_python(["-m", "medkit_exp", *overrides], cwd=workdir, env=env, capture=True, fork=args.fork)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"the {side} search failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    (summary_file,) = workdir.glob("multirun/*/*/search_summary.json")
    summary = json.loads(summary_file.read_text())
    summary["wall_s"] = wall
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="ncbi_disease", help="preset (empty: the demo corpus)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", default=None, help="model folder (default: the preset's)")
    parser.add_argument("--max-docs", type=int, default=150)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed, the same on both sides")
    parser.add_argument("--startup-trials", type=int, default=1,
                        help="complete trials the median pruner waits for before it prunes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default=None, help="trainer.precision (default: the preset's)")
    parser.add_argument("overrides", nargs="*", help="more app overrides for both searches (after --)")
    add_fork_option(parser)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("unpruned", "pruned"):
            workdir = Path(tmp) / side
            workdir.mkdir()
            results[side] = search(side, args, workdir)
    objective = results["unpruned"]["objective"]
    for side, s in results.items():
        best = s["best"]
        counts = s["trials"]
        print(f"{side:>8}: {s['epochs_run']} epochs of {s['epochs_full']}, {counts['complete']} complete, "
              f"{counts['pruned']} pruned, {counts['fail']} failed, wall {s['wall_s']:.0f} s, best {objective} "
              f"{best['value']:.4f} (trial {best['trial']}: {' '.join(f'{k}={v}' for k, v in best['params'].items())})")
    unpruned, pruned = results["unpruned"], results["pruned"]
    print(f"wall time pruned/unpruned: {pruned['wall_s'] / unpruned['wall_s']:.3f}")
    difference = pruned["best"]["value"] - unpruned["best"]["value"]
    print(f"best {objective} difference (pruned - unpruned): {difference:+.4f}")
    print(f"epochs pruned/unpruned: {pruned['epochs_run'] / unpruned['epochs_run']:.3f}")


if __name__ == "__main__":
    main()

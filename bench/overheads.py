"""Fixed costs a user feels: config composition, launch to first step, preprocessing speed.

    python bench/overheads.py [--repeats 3] [--data-root ../shared/data/ncbi-disease]

- ``python -m medkit_exp --cfg job``: wall time of composing and printing the config
  (median of ``--repeats``; goal under 1.5 s).
- Launch to first training step of the default run (``python -m medkit_exp``, one epoch):
  from process start to the timestamp MLflow holds for step 1's training loss, in a folder
  without a store (the first run creates the SQLite tables) and again with it.
- Preprocessing throughput of `HFEntityMatcherTrainable.preprocess` on the NCBI-disease
  training sentences, in tokens/s.

Printed last: the ``--cfg job`` time.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, add_fork_option, load_ncbi, machine_line, ncbi_parser, packaged_model, preload, run_python


def cli(args: list[str], cwd: Path, fork: bool = False) -> float:
    """Run ``python -m medkit_exp ARGS`` in ``cwd``; return its wall seconds (exit status checked)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    completed = run_python(["-m", "medkit_exp", *args], cwd=cwd, env=env, capture=True, fork=fork)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"python -m medkit_exp {' '.join(args)} failed:\n{completed.stderr[-2000:]}")
    return seconds


def launch_to_first_step(cwd: Path, extra: list[str], fork: bool = False) -> tuple[float, float]:
    """(seconds from launch to step 1's logged loss, wall seconds of the whole run)."""
    launched_ms = time.time() * 1000
    wall = cli(["trainer.epochs=1", "trainer.log_every_n_steps=1", *extra], cwd, fork)
    with sqlite3.connect(cwd / "mlruns" / "mlflow.db") as db:
        (first_ms,) = db.execute(
            "SELECT MAX(m.timestamp) FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
            "WHERE m.key = 'step/train_loss' AND m.step = 1 AND r.start_time >= ?", (int(launched_ms),)).fetchone()
    return (first_ms - launched_ms) / 1000, wall


def preprocessing_throughput(data_root: str, max_docs: int | None, model: str | None) -> tuple[float, int]:
    from medkit_exp.text.ner import HFEntityMatcher

    _, train, _ = load_ncbi(data_root, max_docs=max_docs)
    component = HFEntityMatcher.make_trainable(model or packaged_model(), labels=["Disease"], tokenizer_max_length=128)
    start = time.perf_counter()
    examples = [e for sentence in train for e in component.preprocess(sentence)]
    seconds = time.perf_counter() - start
    tokens = sum(len(e["input_ids"]) for e in examples)
    return tokens / seconds, tokens


def main() -> None:
    parser = ncbi_parser(__doc__, model_help="model of the default run and of preprocessing")
    parser.add_argument("--repeats", type=int, default=3)
    add_fork_option(parser)
    args = parser.parse_args()
    extra = [f"component.model={args.model}"] if args.model else []
    if args.fork:
        preload()  # before any clock starts

    with tempfile.TemporaryDirectory() as tmp:
        cfg_job = statistics.median(cli(["--cfg", "job"], Path(tmp), args.fork) for _ in range(args.repeats))
        cold, cold_wall = launch_to_first_step(Path(tmp), extra, args.fork)
        print(f"default run, new store: first step {cold:.1f} s after launch (whole 1-epoch run {cold_wall:.1f} s)")
        warm, warm_wall = launch_to_first_step(Path(tmp), extra, args.fork)
        print(f"default run, existing store: first step {warm:.1f} s after launch (whole run {warm_wall:.1f} s)")
    tokens_per_s, tokens = preprocessing_throughput(args.data_root, args.max_docs, args.model)
    print(f"preprocessing (NCBI-disease train sentences, {tokens:,} tokens): {tokens_per_s:,.0f} tokens/s")
    print(machine_line())
    print(f"--cfg job wall time: {cfg_job:.2f} s (median of {args.repeats}; goal < 1.5 s)")


if __name__ == "__main__":
    sys.exit(main())

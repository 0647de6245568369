"""NCBI-disease train-epoch time: medkit_exp's Trainer vs medkit-lib's Trainer (benchmark 4).

    python bench/ncbi_vs_medkit_lib.py [--epochs 1] [--max-docs N] [--medkit-venv DIR] [--json FILE]

medkit-lib is never a dependency of the project: on its first run the script builds a
separate venv (default ~/.cache/medkit_exp_bench/medkit-lib-venv, reused afterwards, built
again when the pins below change) with pip, in this order:

1. `torch==X`, X being the torch version of the project's venv without its local label
   (a CPU wheel from the local wheel folder where pip is set up with one; a bare torch
   requirement would pull a multi-GB CUDA build);
2. `medkit-lib[hf-entity-matcher,training]==0.17.0` with `transformers==Y`, Y being the
   project's transformers version, so that both sides run the very same model code.
   medkit-lib 0.17 works with transformers 5 as it is: no other pin is needed.

Both sides train on the same sentences, written once to a JSON file by this script: the
NCBI-disease training documents split into sentences as the app splits them, the four
labels collapsed to `Disease`. Same model (the packaged MiniLM), batch 16, max length 128,
AdamW lr 5e-5, constant LR, `--epochs` epochs, seed 0, IOB2 tags on first sub-tokens.
Each side runs in its own process (its time and peak memory are its own), ours first,
then medkit-lib's, never at the same time:

- ours: `medkit_exp.training.Trainer` with `batch_order="length_grouped"` and
  `HFEntityMatcher.make_trainable(model, labels=["Disease"], tokenizer_max_length=128)`;
- medkit-lib: `medkit.training.Trainer` with
  `medkit.text.ner.hf_entity_matcher.HFEntityMatcher.make_trainable(model, labels=["Disease"],
  tagging_scheme="iob2", tokenizer_max_length=128)`, run by `bench/_medkit_lib_worker.py`
  with the venv's python.

The time measured on each side is the train phase of each epoch: from the epoch-begin
callback to the end of its last train step (evaluation and checkpoints excluded). Dev F1
(exact spans on first sub-tokens, scored by our seqeval wrapper for both sides) is read
after the last epoch.

medkit-lib is run as its users get it; what it does differently is not patched:

- its AdamW is torch's default (weight decay 0.01, the foreach implementation, not fused);
  ours uses no weight decay and the fused kernel;
- it preprocesses (tokenises) every example inside each epoch, in its DataLoader; ours
  preprocesses once before the first epoch, outside the timed epoch. The time ours spends
  before its first epoch is printed too, with the ratio that counts it;
- it shuffles examples at random (no length grouping), so its batches carry more padding
  (the padded tokens of each side are printed);
- it truncates an example at 128 tokens, where ours cuts a longer sentence into windows:
  on rare long sentences ours trains on a few more tokens;
- it has no gradient clipping; ours clips at 1.0 (our default, `--max-grad-norm`), which
  is extra work on our side only;
- its base `TrainerCallback.on_epoch_end` names an argument differently from what its
  Trainer passes, so the worker's timing callback overrides that hook.

Printed last: the train-epoch time of ours / medkit-lib (goal <= 0.55).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from common import (
    REPO,
    add_fork_option,
    epoch_timer,
    load_ncbi,
    machine_line,
    ncbi_parser,
    packaged_model,
    run_side,
    write_result,
)

MEDKIT_LIB = "medkit-lib[hf-entity-matcher,training]==0.17.0"
WORKER = Path(__file__).resolve().parent / "_medkit_lib_worker.py"
VENV_MARKER = "medkit_exp_bench.json"  # written last by a complete build: what the venv was built with
VENV_BUILD_FAILED = 3  # exit status when the venv cannot be built (the smoke test tells no-network from bugs)


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "medkit_exp_bench" / "medkit-lib-venv"


def venv_steps() -> list[list[str]]:
    """pip install steps, in order: torch alone first (the project's version), then medkit-lib."""
    torch_version = version("torch").split("+")[0]
    return [[f"torch=={torch_version}"], [MEDKIT_LIB, f"transformers=={version('transformers')}"]]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_medkit_venv(venv: Path) -> Path:
    """The venv's python, after building the venv unless a complete build with the same pins is there."""
    from filelock import FileLock

    wanted = {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "steps": venv_steps()}
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):  # two runs at once build it once
        marker = venv / VENV_MARKER
        if marker.is_file() and venv_python(venv).exists() and json.loads(marker.read_text()) == wanted:
            return venv_python(venv)
        if venv.exists():
            if not (venv / "pyvenv.cfg").is_file():
                raise SystemExit(f"{venv} exists and is not a venv: pass another --medkit-venv")
            import shutil

            shutil.rmtree(venv)  # an interrupted build, or other pins
        print(f"building the medkit-lib venv in {venv} (once)...", flush=True)
        started = time.perf_counter()
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        commands = [[sys.executable, "-m", "venv", str(venv)]]
        commands += [[str(venv_python(venv)), "-m", "pip", "install", "--quiet", *step] for step in wanted["steps"]]
        for command in commands:
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
                print(f"cannot build the medkit-lib venv: {' '.join(command)} failed (exit {done.returncode})",
                      file=sys.stderr)
                raise SystemExit(VENV_BUILD_FAILED)
        marker.write_text(json.dumps(wanted))
        print(f"medkit-lib venv built in {time.perf_counter() - started:.0f} s", flush=True)
    return venv_python(venv)


# ---------------------------------------------------------------- the shared sentences
def docs_to_json(docs) -> list[dict]:
    return [{"id": d.id, "text": d.text,
             "entities": [{"label": e.label, "spans": [[s.start, s.end] for s in e.spans]} for e in d.anns.entities]}
            for d in docs]


def docs_from_json(items: list[dict]):
    from medkit_exp.core import Entity, Span, TextDocument, covered_text

    docs = []
    for item in items:
        entities = []
        for e in item["entities"]:
            spans = [Span(start, end) for start, end in e["spans"]]
            entities.append(Entity(label=e["label"], spans=spans, text=covered_text(item["text"], spans)))
        docs.append(TextDocument(text=item["text"], id=item["id"], anns=entities))
    return docs


# ---------------------------------------------------------------- our side (its own process)
def train_ours(args) -> dict:
    import torch

    from medkit_exp.text.metrics import SeqEvalMetricsComputer
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig

    data = json.loads(Path(args.sentences).read_text())
    train, dev = docs_from_json(data["train"]), docs_from_json(data["dev"])
    torch.manual_seed(0)  # the new classifier head is drawn before the Trainer seeds
    component = HFEntityMatcher.make_trainable(data["model"], labels=data["labels"], tokenizer_max_length=128)
    timer = epoch_timer()

    class Phases(TrainerCallback):
        """When the first epoch began, and whether batches being collated are train batches."""

        training = False

        def on_train_begin(self, config):
            self.train_begin = time.perf_counter()

        def on_epoch_begin(self, epoch):
            self.training = True

        def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
            if phase == "train" and step_idx + 1 == nb_batches:
                self.training = False

    phases = Phases()
    collate, padded = component.collate, [0]

    def counting_collate(items):
        batch = collate(items)
        if phases.training:
            padded[0] += int(batch["input_ids"].numel())
        return batch

    component.collate = counting_collate
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainerConfig(output_dir=tmp, lr=args.lr, epochs=args.epochs, batch_size=16, eval_batch_size=16,
                               seed=0, batch_order="length_grouped", max_grad_norm=args.max_grad_norm or None,
                               checkpoint_metric="loss", checkpoint_mode="min", checkpoint_period=0)
        trainer = Trainer(component, config, train, dev, metrics_computer=SeqEvalMetricsComputer(component),
                          callbacks=[timer, phases])
        started = time.perf_counter()
        history = trainer.train()
    return {"train_epoch_s": timer.train_seconds, "before_first_epoch_s": phases.train_begin - started,
            "dev_f1": history[-1]["eval"]["f1"] if dev else None, "padded_tokens": padded[0] / args.epochs,
            "threads": torch.get_num_threads()}


# ---------------------------------------------------------------- medkit-lib's side (its venv)
def train_medkit_lib(python: Path, sentences: Path, args, workdir: Path) -> dict:
    result_file = workdir / "medkit-lib.json"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # nothing of the project's venv or tree in medkit-lib's process
    command = [str(python), str(WORKER), "--sentences", str(sentences), "--result", str(result_file),
               "--epochs", str(args.epochs), "--lr", str(args.lr)]
    completed = subprocess.run(command, cwd=REPO, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"the medkit-lib side failed (exit {completed.returncode}): {' '.join(command)}")
    return json.loads(result_file.read_text())


def dev_f1(tags: dict | None) -> float | None:
    """Our scorer on medkit-lib's dev predictions (the same strict micro F1 as our metrics computer)."""
    if not tags or not tags["y_true"]:
        return None
    from medkit_exp.text.metrics import seqeval_scores

    return seqeval_scores(tags["y_true"], tags["y_pred"], "iob2", "micro", False)["f1"]


def main() -> None:
    parser = ncbi_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0,
                        help="ours only (medkit-lib never clips); 0: no clipping")
    parser.add_argument("--medkit-venv", default=None, help=f"default: {default_venv()}")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--side", choices=("ours",), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--sentences", help=argparse.SUPPRESS)
    add_fork_option(parser)
    args = parser.parse_args()
    if args.side:
        return write_result(args.result, train_ours(args))

    python = ensure_medkit_venv(Path(args.medkit_venv).expanduser() if args.medkit_venv else default_venv())
    model = args.model or packaged_model()
    docs, train, dev = load_ncbi(args.data_root, max_docs=args.max_docs)
    labels = sorted({e.label for d in train for e in d.anns.entities})
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sentences = Path(tmp) / "sentences.json"
        sentences.write_text(json.dumps({"model": str(model), "labels": labels,
                                         "train": docs_to_json(train), "dev": docs_to_json(dev)}))
        print(f"data: {len(train)} train / {len(dev)} dev sentences ({len(docs['train'])} / {len(docs['dev'])} "
              f"documents), labels {labels}", flush=True)
        passed = ["--sentences", str(sentences), "--epochs", str(args.epochs), "--lr", str(args.lr),
                  "--max-grad-norm", str(args.max_grad_norm)]
        results["ours"] = run_side(Path(__file__), "ours", passed, Path(tmp), fork=args.fork)  # medkit-lib: its venv
        results["medkit-lib"] = train_medkit_lib(python, sentences, args, Path(tmp))
    results["medkit-lib"]["dev_f1"] = dev_f1(results["medkit-lib"].pop("dev_tags", None))

    epoch = {side: sum(r["train_epoch_s"]) / len(r["train_epoch_s"]) for side, r in results.items()}
    for side, r in results.items():
        f1 = "n/a" if r["dev_f1"] is None else f"{r['dev_f1']:.4f}"
        print(f"{side:10s}: train epoch {epoch[side]:.1f} s (mean of {len(r['train_epoch_s'])}), "
              f"before the first epoch {r['before_first_epoch_s']:.1f} s, padded tokens {r['padded_tokens']:,.0f} "
              f"per epoch, dev F1 {f1}, peak RSS {r['peak_rss_mb']:.0f} MB, {r['threads']} torch threads")
    if args.json:
        Path(args.json).write_text(json.dumps({"epoch_s": epoch, **results}, indent=2, default=float))
    print(machine_line() + f"; medkit-lib 0.17.0 (torch {results['medkit-lib']['torch']}, transformers "
          f"{results['medkit-lib']['transformers']}); batch 16, lr {args.lr}, constant LR, {args.epochs} epoch(s)")
    ours_all = sum(results["ours"]["train_epoch_s"]) + results["ours"]["before_first_epoch_s"]
    theirs_all = sum(results["medkit-lib"]["train_epoch_s"]) + results["medkit-lib"]["before_first_epoch_s"]
    print(f"ratio counting the time before the first epoch (our one-off preprocessing): {ours_all / theirs_all:.3f}")
    print(f"train-epoch ratio ours / medkit-lib: {epoch['ours'] / epoch['medkit-lib']:.3f} (goal <= 0.55)")


if __name__ == "__main__":
    sys.exit(main())

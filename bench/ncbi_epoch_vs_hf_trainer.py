"""NCBI-disease train-epoch time: medkit_exp's Trainer vs transformers' Trainer (benchmarks 2 and 3).

    pip install -e ".[bench]"     # adds accelerate, which transformers' Trainer needs
    python bench/ncbi_epoch_vs_hf_trainer.py [--epochs 1] [--max-docs N]

The setup of the reference figures: NCBI-disease split into sentences (four labels
collapsed to Disease), the packaged MiniLM, batch 16, max length 128, AdamW lr 5e-5 without
weight decay, constant LR, clipping at 1.0, seed 0, one epoch. transformers' side trains on
the very examples our `preprocess` produces. Three sides, each in its own process (its time
and peak memory are its own), one after the other:

- ours: `Trainer` with its default `batch_order=length_grouped`;
- hf-random: transformers' `Trainer` in its default random order;
- hf-grouped: transformers' `Trainer` with `train_sampling_strategy="group_by_length"`.

Printed last: train-epoch time of ours / hf-random (goal <= 0.65) and ours / hf-grouped
(goal <= 1.0).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import (DEFAULT_NCBI_ROOT, counting, epoch_timer, load_ncbi, machine_line, ner_examples, packaged_model,
                    run_side, write_result)

SIDES = ("ours", "hf-random", "hf-grouped")


def train_ours(args, model: str, train, workdir: Path) -> dict:
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    component = HFEntityMatcher.make_trainable(model, labels=["Disease"], tokenizer_max_length=128)
    component.collate = counting(component.collate)
    timer = epoch_timer()
    config = TrainerConfig(output_dir=str(workdir / "ours"), lr=args.lr, epochs=args.epochs, batch_size=16, seed=0,
                           batch_order="length_grouped", max_grad_norm=1.0, checkpoint_metric="loss",
                           checkpoint_mode="min", checkpoint_period=0)
    Trainer(component, config, train, [], callbacks=[timer]).train()
    return {"train_epoch_s": timer.train_seconds, "padded_tokens": component.collate.padded_tokens / args.epochs}


def train_hf(args, model: str, train, workdir: Path, grouped: bool) -> dict:
    import torch
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainerCallback, TrainingArguments)

    examples, tags = ner_examples(model, ["Disease"], train)
    torch.manual_seed(0)
    network = AutoModelForTokenClassification.from_pretrained(
        model, num_labels=len(tags), id2label=tags, label2id={v: k for k, v in tags.items()},
        ignore_mismatched_sizes=True)
    collator = counting(DataCollatorForTokenClassification(AutoTokenizer.from_pretrained(model)))

    class EpochTimer(TrainerCallback):
        train_seconds: list[float] = []

        def on_epoch_begin(self, targs, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, targs, state, control, **kwargs):
            self.train_seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    targs = TrainingArguments(
        output_dir=str(workdir / "hf"), learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=16, weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=1.0, seed=0,
        eval_strategy="no", save_strategy="no", report_to="none", logging_strategy="no", dataloader_num_workers=0,
        disable_tqdm=True, use_cpu=True, train_sampling_strategy="group_by_length" if grouped else "random")
    Trainer(model=network, args=targs, train_dataset=examples, data_collator=collator, callbacks=[timer]).train()
    return {"train_epoch_s": timer.train_seconds, "padded_tokens": collator.padded_tokens / args.epochs}


def one_side(args) -> None:
    docs, train, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    model = args.model or packaged_model()
    with tempfile.TemporaryDirectory() as tmp:
        if args.side == "ours":
            result = train_ours(args, model, train, Path(tmp))
        else:
            result = train_hf(args, model, train, Path(tmp), grouped=args.side == "hf-grouped")
    result["sentences"] = len(train)
    write_result(args.result, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DEFAULT_NCBI_ROOT))
    parser.add_argument("--model", default=None, help="default: the packaged MiniLM")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-docs", type=int, default=None, help="documents per split (smoke tests)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return one_side(args)

    passed = ["--data-root", args.data_root, "--epochs", str(args.epochs), "--lr", str(args.lr)]
    passed += ["--model", args.model] if args.model else []
    passed += ["--max-docs", str(args.max_docs)] if args.max_docs else []
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            results[side] = run_side(Path(__file__), side, passed, Path(tmp))
            r = results[side]
            print(f"{side:10s}: train epoch {sum(r['train_epoch_s']) / len(r['train_epoch_s']):.1f} s "
                  f"({r['sentences']} sentences), padded tokens {r['padded_tokens']:,.0f}, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print(machine_line() + f"; batch 16, lr {args.lr}, constant LR, {args.epochs} epoch(s)")
    epoch = {side: sum(r["train_epoch_s"]) / len(r["train_epoch_s"]) for side, r in results.items()}
    print(f"train-epoch ratio ours / hf-random: {epoch['ours'] / epoch['hf-random']:.3f} (goal <= 0.65)")
    print(f"train-epoch ratio ours / hf-grouped: {epoch['ours'] / epoch['hf-grouped']:.3f} (goal <= 1.0)")


if __name__ == "__main__":
    sys.exit(main())

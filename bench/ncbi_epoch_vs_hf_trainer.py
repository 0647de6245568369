"""NCBI-disease train-epoch time: medkit_exp's Trainer vs transformers' Trainer (benchmarks 2, 3 and 9).

    pip install -e ".[bench]"     # adds accelerate, which transformers' Trainer needs
    python bench/ncbi_epoch_vs_hf_trainer.py [--repeats 2] [--sides ours hf-grouped] [--max-docs N]
    python bench/ncbi_epoch_vs_hf_trainer.py --sides ours-bf16 hf-random hf-grouped-bf16   # bf16 (benchmark 9)
    python bench/ncbi_epoch_vs_hf_trainer.py --device cuda --sides ours ours-bf16 hf-random hf-grouped-bf16  # a GPU

The setup of the reference figures: NCBI-disease split into sentences (four labels
collapsed to Disease), the packaged MiniLM, batch 16, max length 128, AdamW lr 5e-5 without
weight decay, constant LR, clipping at 1.0, seed 0, one epoch. transformers' side trains on
the very examples our `preprocess` produces. Three sides, each in its own process (its time
and peak memory are its own), one after the other:

- ours: `Trainer` with its default `batch_order=length_grouped`; ours-bf16: the same with
  `precision="bf16"` (autocast);
- hf-random: transformers' `Trainer` in its default random order (fp32, its default);
- hf-grouped: transformers' `Trainer` with `train_sampling_strategy="group_by_length"`;
  hf-grouped-bf16: the same with `bf16=True`, transformers' best on a CPU with bf16 units.

Each side's trained model then tags the dev abstracts sentence by sentence (`HFEntityMatcher`,
fp32) and its exact-span F1 is printed beside its time: speed must not cost quality.

With ``--repeats N`` the sequence of sides runs N times and each side's median epoch is
used: on a shared 2-core machine one epoch of the same run varies by up to 10%.

Printed last: train-epoch time of ours / hf-random (goal <= 0.65), ours / hf-grouped
(goal <= 1.0), ours-bf16 / hf-random (goal <= 0.40) and ours-bf16 / hf-grouped-bf16 (goal
<= 0.80), for the sides that ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    add_fork_option,
    counting,
    epoch_timer,
    load_ncbi,
    machine_line,
    ncbi_parser,
    ner_examples,
    packaged_model,
    run_side,
    write_result,
)

SIDES = ("ours", "ours-bf16", "hf-random", "hf-grouped", "hf-grouped-bf16")
GOALS = (("ours", "hf-random", 0.65), ("ours", "hf-grouped", 1.0), ("ours-bf16", "hf-random", 0.40),
         ("ours-bf16", "hf-grouped-bf16", 0.80))


def train_ours(args, model: str, train, workdir: Path, precision: str) -> dict:
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    component = HFEntityMatcher.make_trainable(model, labels=["Disease"], tokenizer_max_length=128)
    component.collate = counting(component.collate)
    timer = epoch_timer()
    config = TrainerConfig(output_dir=str(workdir / "ours"), lr=args.lr, epochs=args.epochs, batch_size=16, seed=0,
                           batch_order="length_grouped", max_grad_norm=1.0, checkpoint_metric="loss",
                           checkpoint_mode="min", checkpoint_period=0, precision=precision, device=args.device)
    Trainer(component, config, train, [], callbacks=[timer]).train()
    component.save(workdir / "trained")
    return {"train_epoch_s": timer.train_seconds, "padded_tokens": component.collate.padded_tokens / args.epochs,
            "trained": str(workdir / "trained")}


def train_hf(args, model: str, train, workdir: Path, grouped: bool, bf16: bool) -> dict:
    import torch
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

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
        disable_tqdm=True, use_cpu=args.device == "cpu", bf16=bf16,
        train_sampling_strategy="group_by_length" if grouped else "random")
    Trainer(model=network, args=targs, train_dataset=examples, data_collator=collator, callbacks=[timer]).train()
    network.save_pretrained(workdir / "trained")
    AutoTokenizer.from_pretrained(model).save_pretrained(workdir / "trained")
    return {"train_epoch_s": timer.train_seconds, "padded_tokens": collator.padded_tokens / args.epochs,
            "trained": str(workdir / "trained")}


def dev_f1(trained: str, dev_docs, device: str) -> float:
    """Exact-span F1 of a trained model on the dev abstracts, read sentence by sentence."""
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.text.ner.evaluation import predict_by_sentence, score_predictions

    matcher = HFEntityMatcher(model=trained, device=device, batch_size=32)
    return score_predictions(dev_docs, predict_by_sentence(matcher, dev_docs))["f1"]


def one_side(args) -> None:
    docs, train, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    model = args.model or packaged_model()
    with tempfile.TemporaryDirectory() as tmp:
        if args.side.startswith("ours"):
            result = train_ours(args, model, train, Path(tmp), "bf16" if args.side.endswith("bf16") else "fp32")
        else:
            result = train_hf(args, model, train, Path(tmp), grouped=args.side.startswith("hf-grouped"),
                              bf16=args.side.endswith("bf16"))
        result["dev_f1"] = dev_f1(result.pop("trained"), docs["dev"], args.device)
    result["sentences"] = len(train)
    write_result(args.result, result)


def main() -> None:
    parser = ncbi_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side (medians are compared)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=["ours", "hf-random", "hf-grouped"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the GPU version of the benchmark)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    add_fork_option(parser)
    args = parser.parse_args()
    if args.side:
        return one_side(args)

    passed = ["--data-root", args.data_root, "--epochs", str(args.epochs), "--lr", str(args.lr),
              "--device", args.device]
    passed += ["--model", args.model] if args.model else []
    passed += ["--max-docs", str(args.max_docs)] if args.max_docs else []
    epochs: dict[str, list[float]] = {side: [] for side in args.sides}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for side in args.sides:
                r = run_side(Path(__file__), side, passed, Path(tmp), name=f"{side}-{repeat}", fork=args.fork)
                epochs[side].append(sum(r["train_epoch_s"]) / len(r["train_epoch_s"]))
                print(f"{side:16s}: train epoch {epochs[side][-1]:.1f} s ({r['sentences']} sentences), padded tokens "
                      f"{r['padded_tokens']:,.0f}, peak RSS {r['peak_rss_mb']:.0f} MB, dev F1 {r['dev_f1']:.4f}",
                      flush=True)
    print(machine_line() + f"; device {args.device}, batch 16, lr {args.lr}, constant LR, {args.epochs} epoch(s), "
          f"{args.repeats} run(s) of each side")
    median = {side: statistics.median(times) for side, times in epochs.items()}
    for ours, peer, goal in GOALS:
        if ours in median and peer in median:
            print(f"train-epoch ratio {ours} / {peer}: {median[ours] / median[peer]:.3f} (goal <= {goal})")


if __name__ == "__main__":
    sys.exit(main())

"""NCBI-disease quality: medkit_exp's Trainer vs transformers' Trainer, 3 epochs, same everything (benchmark 5).

    pip install -e ".[bench]"     # adds accelerate, which transformers' Trainer needs
    python bench/ncbi_vs_hf_trainer.py [--seeds 0 1] [--jobs 2] [--labels 1|4]

Defaults: the settings of ``+experiment=ncbi_disease`` (lr 2e-4, batch 8, BILOU tags).
Both sides fine-tune the packaged MiniLM on the same examples (our `preprocess` of the
training sentences: tags on first sub-tokens, windows of ``--max-length`` tokens), with the
same batch size, AdamW without weight decay, linear decay after the same warmup, clipping
at 1.0, the same epochs and seed, and keep the epoch with the best dev F1. Both best
models are then read by the same `HFEntityMatcher` on the test documents and scored by the
same exact-span scorer. Ours orders batches with its default, fast ``length_grouped``
policy; transformers' `Trainer` keeps its default random order (``--hf-order`` changes it):
the question is whether our speed costs quality. Each side and seed runs in its own
process; ``--jobs 2`` runs two at once, each on half the cores (scores do not depend on it,
epoch times do).

Printed last: mean test F1 over the seeds, ours minus transformers' (goal >= 0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import (
    add_fork_option,
    epoch_timer,
    load_ncbi,
    machine_line,
    ncbi_parser,
    ner_examples,
    packaged_model,
    run_side,
    write_result,
)

ORDERS = ("random", "length_grouped")
# What transformers' Trainer is given in ../shared/notes/reference-figures.md: its own default
# learning rate and warmup, batch 16 and IOB2 tags (later options override earlier ones).
HF_REFERENCE_RECIPE = ["--lr=5e-05", "--batch-size=16", "--tagging-scheme=iob2", "--warmup-ratio=0.0"]


def training_items(args, docs):
    from medkit_exp.io import split_into_sentences

    return split_into_sentences(docs) if args.context == "sentences" else docs


def test_scores(args, model_dir: Path, test_docs) -> dict[str, float]:
    """Predicted as the model was trained (sentence by sentence, or whole documents), exact spans."""
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.text.ner.evaluation import predict_by_sentence, score_predictions

    matcher = HFEntityMatcher(model=model_dir, batch_size=64)
    predictions = predict_by_sentence(matcher, test_docs) if args.context == "sentences" else matcher.predict(test_docs)
    return score_predictions(test_docs, predictions, matcher.tagging_scheme)


def run_ours(args, labels, docs, workdir: Path) -> dict:
    from medkit_exp.text.metrics import SeqEvalMetricsComputer
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig
    from medkit_exp.training.runtime import seed_everything
    from medkit_exp.training.schedulers import linear_warmup

    seed_everything(args.seed)  # as the app does: the new classification head is drawn from the seed
    component = HFEntityMatcher.make_trainable(args.model, labels=labels, tokenizer_max_length=args.max_length,
                                               tagging_scheme=args.tagging_scheme,
                                               attention_dropout=args.attention_dropout)
    timer = epoch_timer()
    config = TrainerConfig(output_dir=str(workdir / "ours"), lr=args.lr, epochs=args.epochs,
                           batch_size=args.batch_size, eval_batch_size=64, seed=args.seed, checkpoint_metric="f1",
                           checkpoint_mode="max", checkpoint_period=0, batch_order=args.ours_order, max_grad_norm=1.0)
    trainer = Trainer(component, config, training_items(args, docs["train"]), training_items(args, docs["dev"]),
                      metrics_computer=SeqEvalMetricsComputer(component.id_to_label,
                                                              tagging_scheme=component.tagging_scheme),
                      lr_scheduler_builder=linear_warmup(warmup_ratio=args.warmup_ratio), callbacks=[timer])
    history = trainer.train()
    return {"dev_f1": max(h["eval"]["f1"] for h in history),
            "test": test_scores(args, trainer.best_checkpoint / "model", docs["test"]),
            "train_epoch_s": timer.train_seconds}


def run_hf(args, labels, docs, workdir: Path) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from medkit_exp.text.metrics import seqeval_scores

    train_examples, tags = ner_examples(args.model, labels, training_items(args, docs["train"]), args.max_length,
                                        args.tagging_scheme)
    dev_examples, _ = ner_examples(args.model, labels, training_items(args, docs["dev"]), args.max_length,
                                   args.tagging_scheme)
    torch.manual_seed(args.seed)
    overrides = {} if args.attention_dropout is None else {"attention_probs_dropout_prob": args.attention_dropout}
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(tags), id2label=tags, label2id={v: k for k, v in tags.items()},
        ignore_mismatched_sizes=True, **overrides)

    def compute_metrics(prediction):
        logits, gold = prediction
        predicted = np.argmax(logits, axis=-1)
        y_true, y_pred = [], []
        for p_row, g_row in zip(predicted, gold, strict=True):
            keep = g_row != -100
            y_true.append([tags[int(t)] for t in g_row[keep]])
            y_pred.append([tags[int(t)] for t in p_row[keep]])
        return {"f1": seqeval_scores(y_true, y_pred, args.tagging_scheme, "micro", False)["f1"]}

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.train_seconds = []

        def on_epoch_begin(self, targs, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, targs, state, control, **kwargs):
            self.train_seconds.append(time.perf_counter() - self.start)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    timer = EpochTimer()
    targs = TrainingArguments(
        output_dir=str(workdir / "hf"), learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64, weight_decay=0.0,
        lr_scheduler_type="linear", warmup_steps=args.warmup_ratio,  # transformers 5: a float < 1 is a ratio
        max_grad_norm=1.0, seed=args.seed, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="f1", greater_is_better=True, save_total_limit=1, report_to="none",
        logging_strategy="no", dataloader_num_workers=0, disable_tqdm=True, use_cpu=True,
        train_sampling_strategy="group_by_length" if args.hf_order == "length_grouped" else "random",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_examples, eval_dataset=dev_examples,
                      data_collator=DataCollatorForTokenClassification(tokenizer), compute_metrics=compute_metrics,
                      callbacks=[timer])
    trainer.train()
    best_dir = workdir / "hf-best"
    trainer.save_model(str(best_dir))
    tokenizer.save_pretrained(str(best_dir))
    dev_f1 = max(e["eval_f1"] for e in trainer.state.log_history if "eval_f1" in e)
    return {"dev_f1": dev_f1, "test": test_scores(args, best_dir, docs["test"]), "train_epoch_s": timer.train_seconds}


def one_side(args) -> None:
    args.model = args.model or packaged_model()
    docs, _, _ = load_ncbi(args.data_root, collapse=args.labels == 1, max_docs=args.max_docs)
    labels = sorted({e.label for d in docs["train"] for e in d.anns.entities})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_ours if args.side == "ours" else run_hf
        result = run(args, labels, docs, Path(tmp))
    result["wall_s"] = time.perf_counter() - started
    write_result(args.result, result)


def main() -> None:
    parser = ncbi_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tagging-scheme", choices=("iob2", "bilou"), default="bilou")
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per window")
    parser.add_argument("--attention-dropout", type=float, default=None, help="default: the model's (0.1)")
    parser.add_argument("--context", choices=("sentences", "documents"), default="sentences",
                        help="train and predict on sentences, or on windows of whole documents")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--labels", type=int, choices=(1, 4), default=1, help="1: Disease; 4: the original labels")
    parser.add_argument("--ours-order", choices=ORDERS, default="length_grouped")
    parser.add_argument("--hf-order", choices=ORDERS, default="random",
                        help="length_grouped: transformers' group_by_length")
    parser.add_argument("--hf-recipe", choices=("same", "reference"), default="same",
                        help="reference: transformers' side with the settings of ../shared/notes/reference-figures.md "
                             "(its defaults lr 5e-5 and no warmup, batch 16, IOB2)")
    parser.add_argument("--only", choices=("ours", "hf"), default=None)
    parser.add_argument("--jobs", type=int, default=1, help="side processes run at once")
    parser.add_argument("--side", choices=("ours", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    add_fork_option(parser)
    args = parser.parse_args()
    if args.side:
        return one_side(args)

    passed = [f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items()
              if key in ("data_root", "model", "epochs", "lr", "batch_size", "warmup_ratio", "max_length", "context",
                         "labels", "ours_order", "hf_order", "max_docs", "attention_dropout",
                         "tagging_scheme") and value is not None]
    side_args = {"ours": passed, "hf": passed + (HF_REFERENCE_RECIPE if args.hf_recipe == "reference" else [])}
    runs = [(seed, side) for seed in args.seeds for side in ([args.only] if args.only else ["ours", "hf"])]
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    results: dict[str, list[dict]] = {"ours": [], "hf": []}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_side, Path(__file__), side, [*side_args[side], f"--seed={seed}"], Path(tmp), threads,
                               f"{side}-{seed}", args.fork) for seed, side in runs]
        for (seed, side), future in zip(runs, futures, strict=True):
            result = future.result()
            results[side].append(result)
            test = result["test"]
            print(f"{side:4s} seed {seed}: dev F1 {result['dev_f1']:.4f} | test P {test['precision']:.4f} "
                  f"R {test['recall']:.4f} F1 {test['f1']:.4f} | train epochs "
                  + ", ".join(f"{s:.0f}s" for s in result["train_epoch_s"])
                  + f" | wall {result['wall_s']:.0f}s | peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    if args.hf_recipe == "reference":
        print("transformers' side: " + " ".join(HF_REFERENCE_RECIPE) + " (the reference-figures recipe); "
              "the settings below are ours")
    print(machine_line() + f"; {args.epochs} epochs, lr {args.lr}, batch {args.batch_size}, {args.tagging_scheme}, "
          f"warmup {args.warmup_ratio}, {args.context}, max length {args.max_length}, labels {args.labels}, "
          f"batch order ours {args.ours_order} / transformers {args.hf_order}, attention dropout "
          f"{'model default' if args.attention_dropout is None else args.attention_dropout}, seeds {args.seeds}, "
          f"{args.jobs} job(s) at once")
    means = {side: statistics.mean(r["test"]["f1"] for r in side_results)
             for side, side_results in results.items() if side_results}
    for side, mean in means.items():
        print(f"mean test F1 {side}: {mean:.4f}")
    if len(means) == 2:
        print(f"test F1 difference (ours - transformers Trainer): {means['ours'] - means['hf']:+.4f}")


if __name__ == "__main__":
    sys.exit(main())

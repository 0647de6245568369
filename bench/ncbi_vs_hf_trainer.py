"""NCBI-disease: medkit_exp's Trainer vs transformers' Trainer, side by side, same everything.

    pip install -e ".[bench]"     # adds accelerate, which transformers' Trainer needs
    python bench/ncbi_vs_hf_trainer.py [--epochs 3] [--seeds 0] [--lr 1e-4] [--labels 1|4]

Both sides fine-tune the packaged MiniLM on the same sentence splits of NCBI-disease (the
examples produced by `HFEntityMatcherTrainable.preprocess`: IOB2 on first sub-tokens,
max length 128), batch 16, AdamW without weight decay, linear decay with the same warmup,
the same epochs and seed; each keeps the epoch with the best dev F1. Both best models are
then read by the same `HFEntityMatcher` on the full test documents and scored by the same
exact-span scorer. Printed last: mean test F1 of ours minus transformers' (goal >= 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "ncbi-disease"


def load_data(root: Path, collapse: bool, max_docs: int | None = None):
    from medkit_exp.io import NCBI_LABEL_MAP, load_brat_splits, split_into_sentences

    splits = load_brat_splits(root, label_map=NCBI_LABEL_MAP if collapse else None, overlap_policy="keep_longest")
    docs = {name: corpus.documents[:max_docs] for name, corpus in splits.items()}
    return docs, split_into_sentences(docs["train"]), split_into_sentences(docs["dev"])


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_scores(model_dir: Path, test_docs) -> dict[str, float]:
    """Sentence by sentence, as both sides were trained (and as the app scores)."""
    from medkit_exp.tasks.ner import predict_by_sentence, score_predictions
    from medkit_exp.text.ner import HFEntityMatcher

    matcher = HFEntityMatcher(model=model_dir, batch_size=64)
    return score_predictions(test_docs, predict_by_sentence(matcher, test_docs), matcher.tagging_scheme)


def run_ours(args, labels, train, dev, test_docs, workdir: Path, seed: int) -> dict:
    from medkit_exp.text.metrics import SeqEvalMetricsComputer
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig
    from medkit_exp.training.schedulers import linear_warmup

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.train_seconds = []

        def on_epoch_begin(self, epoch):
            self.start = time.perf_counter()

        def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
            if phase == "train" and step_idx + 1 == nb_batches:
                self.train_seconds.append(time.perf_counter() - self.start)

    component = HFEntityMatcher.make_trainable(args.model, labels=labels, tokenizer_max_length=128)
    timer = EpochTimer()
    config = TrainerConfig(output_dir=str(workdir / f"ours-{seed}"), lr=args.lr, epochs=args.epochs, batch_size=16,
                           eval_batch_size=64, seed=seed, checkpoint_metric="f1", checkpoint_mode="max",
                           checkpoint_period=0, batch_order=args.batch_order, max_grad_norm=1.0)
    trainer = Trainer(component, config, train, dev, metrics_computer=SeqEvalMetricsComputer(component.id_to_label),
                      lr_scheduler_builder=linear_warmup(warmup_ratio=args.warmup_ratio), callbacks=[timer])
    history = trainer.train()
    scores = test_scores(trainer.best_checkpoint / "model", test_docs)
    return {"dev_f1": max(h["eval"]["f1"] for h in history), "test": scores,
            "train_epoch_s": timer.train_seconds}


def run_hf(args, labels, train, dev, test_docs, workdir: Path, seed: int) -> dict:
    import numpy as np
    import torch
    from transformers import (AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer,
                              TrainerCallback, TrainingArguments)

    from medkit_exp.text.metrics import seqeval_scores
    from medkit_exp.text.ner import HFEntityMatcher

    # The same examples as ours: our preprocess (IOB2 on first sub-tokens, windows of 128).
    component = HFEntityMatcher.make_trainable(args.model, labels=labels, tokenizer_max_length=128)
    def examples(docs):
        return [{k: e[k] for k in ("input_ids", "attention_mask", "labels")}
                for doc in docs for e in component.preprocess(doc)]
    train_examples, dev_examples = examples(train), examples(dev)
    tags = component.id_to_label
    del component

    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(tags), id2label=tags, label2id={v: k for k, v in tags.items()},
        ignore_mismatched_sizes=True)

    def compute_metrics(prediction):
        logits, gold = prediction
        predicted = np.argmax(logits, axis=-1)
        y_true, y_pred = [], []
        for p_row, g_row in zip(predicted, gold):
            keep = g_row != -100
            y_true.append([tags[int(t)] for t in g_row[keep]])
            y_pred.append([tags[int(t)] for t in p_row[keep]])
        return {"f1": seqeval_scores(y_true, y_pred, "iob2", "micro", False)["f1"]}

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.train_seconds = []

        def on_epoch_begin(self, targs, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, targs, state, control, **kwargs):
            self.train_seconds.append(time.perf_counter() - self.start)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    timer = EpochTimer()
    targs = TrainingArguments(
        output_dir=str(workdir / f"hf-{seed}"), learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=16, per_device_eval_batch_size=64, weight_decay=0.0,
        lr_scheduler_type="linear", warmup_steps=args.warmup_ratio,  # v5: a float < 1 is a ratio max_grad_norm=1.0, seed=seed,
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="f1",
        greater_is_better=True, save_total_limit=1, report_to="none", logging_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, use_cpu=True,
        train_sampling_strategy="group_by_length" if args.batch_order == "length_grouped" else "random",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_examples, eval_dataset=dev_examples,
                      data_collator=DataCollatorForTokenClassification(tokenizer), compute_metrics=compute_metrics,
                      callbacks=[timer])
    trainer.train()
    best_dir = workdir / f"hf-{seed}-best"
    trainer.save_model(str(best_dir))
    tokenizer.save_pretrained(str(best_dir))
    dev_f1 = max(e["eval_f1"] for e in trainer.state.log_history if "eval_f1" in e)
    return {"dev_f1": dev_f1, "test": test_scores(best_dir, test_docs), "train_epoch_s": timer.train_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    parser.add_argument("--model", default=None, help="default: the packaged MiniLM")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--labels", type=int, choices=(1, 4), default=1, help="1: Disease; 4: the original labels")
    parser.add_argument("--batch-order", choices=("random", "length_grouped"), default="length_grouped",
                        help="both sides use the same policy (transformers: group_by_length)")
    parser.add_argument("--only", choices=("ours", "hf"), default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--max-docs", type=int, default=None, help="documents per split (smoke tests)")
    args = parser.parse_args()

    import torch

    from medkit_exp.app import resolve_model
    from medkit_exp.schema import PACKAGED_MINILM

    args.model = args.model or resolve_model(PACKAGED_MINILM)
    docs, train, dev = load_data(Path(args.data_root), collapse=args.labels == 1, max_docs=args.max_docs)
    labels = sorted({e.label for d in docs["train"] for e in d.anns.entities})
    print(f"data: {len(train)} train / {len(dev)} dev sentences, {len(docs['test'])} test documents, labels {labels}")
    results: dict[str, list[dict]] = {"ours": [], "hf": []}
    sides = [args.only] if args.only else ["ours", "hf"]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for side in sides:
                started = time.perf_counter()
                run = run_ours if side == "ours" else run_hf
                result = run(args, labels, train, dev, docs["test"], Path(tmp), seed)
                result["wall_s"] = time.perf_counter() - started
                results[side].append(result)
                test = result["test"]
                print(f"{side:4s} seed {seed}: dev F1 {result['dev_f1']:.4f} | test P {test['precision']:.4f} "
                      f"R {test['recall']:.4f} F1 {test['f1']:.4f} | train epochs "
                      + ", ".join(f"{s:.0f}s" for s in result["train_epoch_s"])
                      + f" | wall {result['wall_s']:.0f}s | peak RSS so far {peak_rss_mb():.0f} MB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"python {platform.python_version()}; {args.epochs} epochs, lr {args.lr}, warmup {args.warmup_ratio}, "
          f"batch 16, batch order {args.batch_order}, seeds {args.seeds}")
    means = {side: statistics.mean(r["test"]["f1"] for r in runs) for side, runs in results.items() if runs}
    for side, mean in means.items():
        print(f"mean test F1 {side}: {mean:.4f}")
    if len(means) == 2:
        print(f"test F1 difference (ours - transformers Trainer): {means['ours'] - means['hf']:+.4f}")


if __name__ == "__main__":
    sys.exit(main())

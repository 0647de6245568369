"""NER inference throughput: `HFEntityMatcher` vs transformers' token-classification pipeline (benchmarks 7, 10).

    python bench/inference_vs_pipeline.py [--model CHECKPOINT] [--batch-sizes 1 8 32 64] [--precisions fp32 bf16 int8]

Both read the same fine-tuned checkpoint and the same texts: the NCBI-disease test
abstracts split into sentences (how the reference NER model is trained and applied). The
pipeline groups words from their first sub-token (``aggregation_strategy="first"``, the
matcher's rule) and runs at each of ``--batch-sizes``; its best is compared with the matcher
at its default batch size, reading words the same way (``decoding="greedy"``). Entities
must be identical (same spans and labels); the count of differences is printed. Without
``--model`` the script first fine-tunes the packaged MiniLM for one epoch on part of the
training set (a quick model that finds real entities).

The matcher also runs in each of ``--precisions`` (``bf16``: autocast on the CPU's bf16
units; ``int8``: dynamically quantized linear layers): its entities are compared with the
fp32 matcher's (agreement: shared / all) and scored against the gold sentences (exact-span F1).

Printed: documents/s of the fp32 matcher / the pipeline at its best batch size (goal >= 2.0,
identical entities), then, last, the same for each other precision (bf16: goal >= 4.0 with an
F1 within 0.003 of fp32).
"""

from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import load_ncbi, machine_line, ncbi_parser, packaged_model


def quick_model(train, workdir: Path) -> Path:
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    component = HFEntityMatcher.make_trainable(packaged_model(), labels=["Disease"], tokenizer_max_length=128)
    config = TrainerConfig(output_dir=str(workdir / "quick"), lr=2e-4, epochs=1, batch_size=16, seed=0,
                           batch_order="length_grouped", checkpoint_metric="loss", checkpoint_mode="min",
                           checkpoint_period=0)
    trainer = Trainer(component, config, train, [])
    trainer.train()
    return trainer.best_checkpoint / "model"


def timed(function, repeats: int):
    """(median seconds, last result) of ``repeats`` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    parser = ncbi_parser(__doc__, model_help="a NER checkpoint folder (default: train a quick one)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--matcher-batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-docs", type=int, default=150, help="documents for the quick model")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"], choices=["fp32", "bf16", "int8"])
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from medkit_exp.io import split_into_sentences
    from medkit_exp.text.metrics import ExactSpanEvaluator
    from medkit_exp.text.ner import HFEntityMatcher

    docs, train, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    sentences = split_into_sentences(docs["test"])
    texts = [s.text for s in sentences]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir = Path(args.model)
        else:
            model_dir = quick_model(split_into_sentences(docs["train"][: args.train_docs]), Path(tmp))
        # Whole sentences in one window and each word's most probable tag: what the pipeline does
        # (the matcher's default Viterbi decoding finds other, better, entities; see docs/ncbi-disease.md).
        matchers = {}
        for precision in dict.fromkeys(["fp32", *args.precisions]):
            matcher = HFEntityMatcher(model_dir, batch_size=args.matcher_batch_size, tokenizer_max_length=512,
                                      decoding="greedy", precision=precision)
            seconds, found = timed(functools.partial(matcher.predict, sentences), args.repeats)
            entities = {(i, e.spans[0].start, e.spans[0].end, e.label) for i, f in enumerate(found) for e in f}
            f1 = ExactSpanEvaluator().compute(sentences, found)["f1"]
            matchers[precision] = (seconds, entities, f1)
            agreement = len(entities & matchers["fp32"][1]) / max(1, len(entities | matchers["fp32"][1]))
            print(f"HFEntityMatcher {precision} (batch {args.matcher_batch_size}): {len(texts) / seconds:.1f} "
                  f"documents/s ({seconds:.2f} s for {len(texts)} sentences), {len(entities)} entities, "
                  f"agreement with fp32 {agreement:.4f}, exact-span F1 {f1:.4f}", flush=True)
        ours_s, ours, ours_f1 = matchers["fp32"]

        pipe = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(model_dir),
                        tokenizer=AutoTokenizer.from_pretrained(model_dir), aggregation_strategy="first", device=-1)
        best = None
        for batch_size in args.batch_sizes:
            with torch.inference_mode():
                pipe_s, outputs = timed(functools.partial(pipe, texts, batch_size=batch_size), args.repeats)
            theirs = {(i, o["start"], o["end"], o["entity_group"]) for i, found in enumerate(outputs) for o in found}
            differences = len(ours ^ theirs)
            print(f"pipeline batch {batch_size:3d}: {len(texts) / pipe_s:.1f} documents/s ({pipe_s:.2f} s), "
                  f"{len(theirs)} entities, {differences} differ from the matcher's", flush=True)
            if best is None or pipe_s < best[1]:
                best = (batch_size, pipe_s, differences)
    print(machine_line())
    print(f"best pipeline batch size {best[0]}; entities differing: {best[2]}")
    print(f"throughput ratio HFEntityMatcher / pipeline (best batch): {best[1] / ours_s:.2f} (goal >= 2.0)")
    for precision, (seconds, _, f1) in matchers.items():
        if precision != "fp32":
            goal = " (goal >= 4.0, F1 within 0.003)" if precision == "bf16" else ""
            print(f"throughput ratio HFEntityMatcher {precision} / pipeline fp32 (best batch): {best[1] / seconds:.2f}"
                  f"{goal}; F1 {f1:.4f} vs fp32 {ours_f1:.4f} ({f1 - ours_f1:+.4f})")


if __name__ == "__main__":
    sys.exit(main())

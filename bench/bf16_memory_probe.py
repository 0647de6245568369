"""Where does bf16 autocast's extra memory go? Peak RSS of one NCBI training pass, per variant.

    python bench/bf16_memory_probe.py [--max-docs 150] [--variants fp32 bf16 ...]

Each variant trains the packaged MiniLM for one epoch on the NCBI-disease sentences of the
first ``--max-docs`` train documents (batch 16, length-grouped) in a fresh process, and
prints its peak RSS and epoch time. The variants isolate one suspect each:

- fp32 / bf16: batches padded to their longest example (the Trainer before bucketing);
- bf16-nocache: autocast without its cache of weight casts;
- bf16-onednn0: oneDNN's primitive cache off (one cached kernel and scratchpad per shape);
- bf16-onednn64: oneDNN's primitive cache capped at 64 entries;
- bf16-bucket (bucket8, bucket32, fp32-bucket16): batch lengths rounded up to a multiple of
  16 (8, 32) tokens: fewer distinct shapes, so fewer cached kernels;
- bf16-arena2: glibc limited to 2 malloc arenas;
- bf16-bucket16-allrows: AdamW over every row of the input embedding, not only the rows of
  the training tokens (the Trainer's behaviour before `prepare_for_training`);
- trainer-default-bf16: the Trainer's default in bf16 (``pad_to_multiple_of=None``: 16 on CPU);
- fp32-mmap128k, fp32-mmap1m, bf16-mmap1m: glibc's mmap threshold fixed at 128 KB or 1 MB
  (``MALLOC_MMAP_THRESHOLD_``) instead of rising up to 32 MB as tensors are freed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import add_fork_option, load_ncbi, machine_line, packaged_model, peak_rss_mb, run_python

VARIANTS = {  # (environment, settings); "bucket" is trainer.pad_to_multiple_of (0: the longest example)
    "fp32": ({}, {"precision": "fp32", "bucket": 0}),
    "bf16": ({}, {"precision": "bf16", "bucket": 0}),
    "bf16-nocache": ({}, {"precision": "bf16", "bucket": 0, "autocast_cache": False}),
    "bf16-onednn0": ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}, {"precision": "bf16", "bucket": 0}),
    "bf16-onednn64": ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}, {"precision": "bf16", "bucket": 0}),
    "bf16-arena2": ({"MALLOC_ARENA_MAX": "2"}, {"precision": "bf16", "bucket": 0}),
    "bf16-bucket8": ({}, {"precision": "bf16", "bucket": 8}),
    "bf16-bucket16": ({}, {"precision": "bf16", "bucket": 16}),
    "bf16-bucket32": ({}, {"precision": "bf16", "bucket": 32}),
    "fp32-bucket16": ({}, {"precision": "fp32", "bucket": 16}),
    "bf16-bucket16-allrows": ({}, {"precision": "bf16", "bucket": 16, "embedding_rows": False}),
    "trainer-default-bf16": ({}, {"precision": "bf16", "bucket": None}),
    # glibc serves blocks above its mmap threshold with their own mapping, returned on free; below it,
    # from heaps that keep freed memory. Its default threshold rises to 32 MB as tensors are freed.
    "fp32-mmap128k": ({"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}, {"precision": "fp32", "bucket": 0}),
    "fp32-mmap1m": ({"MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)}, {"precision": "fp32", "bucket": 0}),
    "bf16-mmap1m": ({"MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)}, {"precision": "bf16", "bucket": None}),
}


def one_variant(args) -> None:
    import torch

    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    settings = json.loads(args.settings)
    _, train, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    component = HFEntityMatcher.make_trainable(args.model or packaged_model(), labels=["Disease"],
                                               tokenizer_max_length=128)
    config = TrainerConfig(output_dir=args.workdir, lr=5e-5, epochs=1, batch_size=16, batch_order="length_grouped",
                           precision=settings["precision"], checkpoint_metric="loss", checkpoint_mode="min",
                           checkpoint_period=0, pad_to_multiple_of=settings["bucket"])
    if settings.get("embedding_rows") is False:  # AdamW over the whole input embedding, as before
        component.prepare_for_training = lambda examples: None
    trainer = Trainer(component, config, train, [], callbacks=[])
    if settings.get("autocast_cache") is False:
        trainer._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
    started = time.perf_counter()
    trainer.train()
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
                      "sentences": len(train)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared/data/ncbi-disease"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-docs", type=int, default=150)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="run in this order; a variant named twice runs twice")
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    add_fork_option(parser)
    args = parser.parse_args()
    if args.settings:
        return one_variant(args)
    print(machine_line())
    for name in args.variants:
        env_extra, settings = VARIANTS[name]
        with tempfile.TemporaryDirectory() as tmp:
            command = [__file__, "--settings", json.dumps(settings), "--workdir", tmp,
                       "--data-root", args.data_root, "--max-docs", str(args.max_docs)]
            command += ["--model", args.model] if args.model else []
            # A variant that sets the environment of the libraries needs a fresh interpreter, even with --fork.
            out = run_python(command, env={**os.environ, **env_extra}, capture=True, fork=args.fork and not env_extra)
        if out.returncode:
            raise SystemExit(f"{name} failed: {out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:14s} epoch {result['seconds']:6.1f} s  peak RSS {result['peak_rss_mb']:6.0f} MB  "
              f"({result['sentences']} sentences)", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the benchmark scripts: data, model, timing, memory and the machine line.

Scripts import it as ``from common import ...`` (they run as ``python bench/NAME.py``, which
puts bench/ on sys.path). Nothing here is part of the medkit_exp package.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NCBI_ROOT = REPO.parent / "shared" / "data" / "ncbi-disease"


def packaged_model() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (the default model of hf_ner)."""
    from medkit_exp.text.hf_model import PACKAGED_MINILM, resolve_model

    return resolve_model(PACKAGED_MINILM)


def load_ncbi(root: str | Path, collapse: bool = True, max_docs: int | None = None):
    """NCBI-disease documents by split, and the train and dev sentences (as the app splits them)."""
    from medkit_exp.io import NCBI_LABEL_MAP, load_brat_splits, split_into_sentences

    splits = load_brat_splits(root, label_map=NCBI_LABEL_MAP if collapse else None, overlap_policy="keep_longest")
    docs = {name: corpus.documents[:max_docs] for name, corpus in splits.items()}
    return docs, split_into_sentences(docs["train"]), split_into_sentences(docs["dev"])


def ncbi_parser(doc: str, model_help: str = "default: the packaged MiniLM"):
    """An argument parser with the options every NCBI-disease script takes."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DEFAULT_NCBI_ROOT))
    parser.add_argument("--model", default=None, help=model_help)
    parser.add_argument("--max-docs", type=int, default=None, help="documents per split (smoke tests)")
    return parser


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
    import torch

    return (f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"python {platform.python_version()}")


def epoch_timer():
    """A TrainerCallback recording the train-phase seconds of each epoch (evaluation excluded)."""
    from medkit_exp.training import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.train_seconds: list[float] = []

        def on_epoch_begin(self, epoch):
            self.start = time.perf_counter()

        def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
            if phase == "train" and step_idx + 1 == nb_batches:
                self.train_seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def run_side(script: Path, side: str, args: list[str], workdir: Path, threads: int | None = None,
             name: str | None = None) -> dict[str, Any]:
    """Run one side of a benchmark in a fresh process (so that its time and peak memory are its own).

    The script is called with ``--side SIDE --result FILE`` plus ``args`` and must write a
    JSON object to FILE. ``threads`` caps torch's threads there (for sides run concurrently).
    """
    result_file = workdir / f"{name or side}.json"
    command = [sys.executable, str(script), "--side", side, "--result", str(result_file), *args]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    completed = subprocess.run(command, cwd=REPO, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"the {side} side failed (exit {completed.returncode}): {' '.join(command)}")
    return json.loads(result_file.read_text())


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    result.setdefault("peak_rss_mb", peak_rss_mb())
    Path(path).write_text(json.dumps(result, indent=2, default=float))


def ner_examples(model: str, labels: list[str], docs: list[Any], max_length: int = 128,
                 tagging_scheme: str = "iob2") -> tuple[list[dict], dict]:
    """Our preprocessing of ``docs`` (tags on first sub-tokens) as plain dicts, and the tag map.

    transformers' side of a benchmark trains on exactly these examples.
    """
    from medkit_exp.text.ner import HFEntityMatcher

    component = HFEntityMatcher.make_trainable(model, labels=labels, tokenizer_max_length=max_length,
                                               tagging_scheme=tagging_scheme)
    examples = [{k: e[k] for k in ("input_ids", "attention_mask", "labels")}
                for doc in docs for e in component.preprocess(doc)]
    return examples, dict(component.id_to_label)


def counting(collate):
    """Wrap a collate function to count the padded tokens it produces (``wrapper.padded_tokens``)."""
    def wrapper(items):
        batch = collate(items)
        wrapper.padded_tokens += int(batch["input_ids"].numel())
        return batch

    wrapper.padded_tokens = 0
    return wrapper

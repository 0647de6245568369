"""medkit-lib's side of bench/ncbi_vs_medkit_lib.py, run with the python of the medkit-lib venv.

    python _medkit_lib_worker.py --sentences FILE --result FILE [--epochs 1] [--lr 5e-5]

Reads the sentences the parent wrote (text, entity spans and labels), makes medkit-lib
documents of them, trains medkit-lib's `HFEntityMatcherTrainable` with medkit-lib's
`Trainer` (batch 16, max length 128, IOB2 on first sub-tokens, no scheduler, seed 0) and
writes to FILE: the train-phase seconds of each epoch, the seconds before the first
epoch, the padded tokens per epoch, the gold and predicted dev tags of the last epoch
(the parent scores them), peak RSS, torch threads and versions. Nothing of medkit_exp is
imported here: this runs in medkit-lib's venv only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

IGNORED = -100  # label of special tokens and non-first sub-tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    args = parser.parse_args()

    import torch
    from medkit.core.text import Entity, Span, TextDocument
    from medkit.text.ner.hf_entity_matcher import HFEntityMatcher
    from medkit.training import Trainer, TrainerCallback, TrainerConfig

    data = json.loads(Path(args.sentences).read_text())

    def documents(items):
        docs = []
        for item in items:
            entities = []
            for e in item["entities"]:
                text = " ".join(item["text"][start:end] for start, end in e["spans"])
                entities.append(Entity(label=e["label"], text=text, spans=[Span(s, t) for s, t in e["spans"]]))
            docs.append(TextDocument(text=item["text"], anns=entities))
        return docs

    train, dev = documents(data["train"]), documents(data["dev"])

    class Timer(TrainerCallback):
        """Train-phase seconds of each epoch (as the parent's EpochTimer), no printing."""

        def __init__(self):
            self.train_seconds = []
            self.train_begin = None
            self.training = False  # whether batches being collated are train batches

        def on_train_begin(self, config):
            self.train_begin = time.perf_counter()

        def on_epoch_begin(self, epoch):
            self.training = True
            self.start = time.perf_counter()

        def on_step_end(self, step_idx, nb_batches, phase):
            if phase == "train" and step_idx + 1 == nb_batches:
                self.train_seconds.append(time.perf_counter() - self.start)
                self.training = False

        def on_epoch_end(self, metrics, epoch, epoch_duration):  # the base class names it epoch_time
            pass

    class DevTags:
        """A medkit-lib MetricsComputer keeping the gold and predicted tags of the last evaluation."""

        def __init__(self, id_to_label):
            self.id_to_label = id_to_label
            self.last = {"y_true": [], "y_pred": []}

        def prepare_batch(self, model_output, input_batch):
            predicted = model_output["logits"].argmax(dim=-1).cpu().tolist()
            gold = input_batch["labels"].cpu().tolist()
            y_true, y_pred = [], []
            for gold_row, pred_row in zip(gold, predicted, strict=True):
                keep = [i for i, label in enumerate(gold_row) if label != IGNORED]
                y_true.append([self.id_to_label[gold_row[i]] for i in keep])
                y_pred.append([self.id_to_label[pred_row[i]] for i in keep])
            return {"y_true": y_true, "y_pred": y_pred}

        def compute(self, all_data):
            self.last = {"y_true": all_data.get("y_true", []), "y_pred": all_data.get("y_pred", [])}
            return {}

    torch.manual_seed(0)  # the new classifier head is drawn before the Trainer seeds
    component = HFEntityMatcher.make_trainable(data["model"], labels=data["labels"], tagging_scheme="iob2",
                                               tokenizer_max_length=128)
    timer = Timer()
    # Count the padded tokens of train batches (instrumentation only: the collate is medkit-lib's).
    collate = component.collate
    padded = [0]

    def counting_collate(items):
        batch = collate(items)
        if timer.training:
            padded[0] += int(batch["input_ids"].numel())
        return batch

    component.collate = counting_collate
    dev_tags = DevTags(component.id_to_label)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainerConfig(output_dir=tmp, learning_rate=args.lr, nb_training_epochs=args.epochs, batch_size=16,
                               seed=0)
        # medkit-lib's Trainer needs an eval set; with none, the dev tags are simply empty.
        trainer = Trainer(component, config, train, dev or train[:1], metrics_computer=dev_tags, callback=timer)
        started = time.perf_counter()
        trainer.train()
    result = {
        "train_epoch_s": timer.train_seconds,
        "before_first_epoch_s": timer.train_begin - started,
        "padded_tokens": padded[0] / args.epochs,
        "dev_tags": dev_tags.last if dev else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "medkit_lib": version("medkit-lib"),
    }
    Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())

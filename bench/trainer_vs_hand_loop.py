"""The Trainer's cost over a minimal hand-written PyTorch loop on identical batches (benchmark 1).

    python bench/trainer_vs_hand_loop.py [--repeats 3] [--ner-sentences 800] [--model PATH]

Two workloads, each trained alternately by the `Trainer` and by a loop of a dozen lines
(collate, forward, backward, clip, optimizer step), with the same component, the same
examples, the same batches in the same order (`plan_batches`), the same optimizer, seed and
clipping, `--repeats` times each:

- dummy: an MLP classifier on random features (a component without transformers);
- ner: `HFEntityMatcherTrainable` (packaged MiniLM) on NCBI-disease training sentences.

Only the training epoch is timed (no evaluation, no checkpoint). Printed last: the median
train-epoch time of the Trainer / the hand-written loop for each workload (goal <= 1.03).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import epoch_timer, load_ncbi, machine_line, ncbi_parser, packaged_model

BATCH_SIZE = 16


class MLPClassifier:
    """A TrainableComponent without transformers: a 3-layer MLP over 256 features, 8 classes."""

    def __init__(self, seed: int = 0) -> None:
        import torch

        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                         torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 8))
        self.device = torch.device("cpu")

    def load(self, path):  # never called: the benchmark does not resume
        raise NotImplementedError

    def save(self, path):
        import torch

        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), Path(path) / "weights.pt")

    def create_optimizer(self, lr):
        import torch

        return torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0, fused=True)

    def preprocess(self, item):
        return item

    def collate(self, items):
        import torch

        from medkit_exp.training import BatchData

        return BatchData(x=torch.stack([i["x"] for i in items]), y=torch.stack([i["y"] for i in items]))

    def forward(self, batch, return_loss, eval_mode):
        import torch

        from medkit_exp.training import BatchData

        self.model.train(not eval_mode)
        logits = self.model(batch["x"])
        loss = torch.nn.functional.cross_entropy(logits, batch["y"]) if return_loss else None
        return BatchData(logits=logits), loss


def dummy_workload(n: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 256, generator=generator)
    y = torch.randint(0, 8, (n,), generator=generator)
    return [{"x": row, "y": label} for row, label in zip(x, y, strict=True)], MLPClassifier


def ner_workload(args):
    from medkit_exp.text.ner import HFEntityMatcher

    _, train, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    model = args.model or packaged_model()

    def make():
        return HFEntityMatcher.make_trainable(model, labels=["Disease"], tokenizer_max_length=128)

    preprocessor = make()
    return [e for sentence in train[: args.ner_sentences] for e in preprocessor.preprocess(sentence)], make


def trainer_epoch(make, examples, lengths, lr: float, workdir: Path) -> float:
    """Seconds of one train epoch run by the Trainer (examples are already preprocessed)."""
    from medkit_exp.training import Trainer, TrainerConfig

    component = make()
    component.preprocess = lambda example: example  # identical inputs: both sides skip preprocessing
    length_of = {id(example): length for example, length in zip(examples, lengths, strict=True)}
    component.example_length = lambda example: length_of[id(example)]
    timer = epoch_timer()
    config = TrainerConfig(output_dir=str(workdir), lr=lr, epochs=1, batch_size=BATCH_SIZE, seed=0,
                           batch_order="length_grouped", max_grad_norm=1.0, checkpoint_metric="loss",
                           checkpoint_mode="min", checkpoint_period=0)
    Trainer(component, config, examples, [], callbacks=[timer]).train()
    return timer.train_seconds[0]


def hand_epoch(make, examples, lengths, lr: float) -> float:
    """Seconds of one train epoch of the minimal loop, on the Trainer's batches."""
    import torch

    from medkit_exp.training import plan_batches

    torch.manual_seed(0)
    component = make()
    optimizer = component.create_optimizer(lr)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    batches = plan_batches(lengths, BATCH_SIZE, seed=0, epoch=1, order="length_grouped")
    start = time.perf_counter()
    for indices in batches:
        batch = component.collate([examples[i] for i in indices])
        _, loss = component.forward(batch, return_loss=True, eval_mode=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def compare(name: str, examples, make, length_of, lr: float, repeats: int) -> float:
    lengths = [length_of(e) for e in examples]
    ours, hand = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            hand.append(hand_epoch(make, examples, lengths, lr))
            ours.append(trainer_epoch(make, examples, lengths, lr, Path(tmp) / f"{name}-{repeat}"))
    ratio = statistics.median(ours) / statistics.median(hand)
    print(f"{name}: {len(examples)} examples, batch {BATCH_SIZE}; Trainer "
          + ", ".join(f"{s:.2f}" for s in ours) + " s; hand loop " + ", ".join(f"{s:.2f}" for s in hand)
          + f" s; median ratio {ratio:.3f}", flush=True)
    return ratio


def main() -> None:
    parser = ncbi_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dummy-examples", type=int, default=8000)
    parser.add_argument("--ner-sentences", type=int, default=800)
    args = parser.parse_args()

    examples, make = dummy_workload(args.dummy_examples)
    dummy = compare("dummy", examples, make, lambda e: 1, 1e-3, args.repeats)
    examples, make = ner_workload(args)
    ner = compare("ner", examples, make, lambda e: len(e["input_ids"]), 5e-5, args.repeats)
    print(machine_line())
    print(f"train-epoch ratio Trainer / hand loop: dummy {dummy:.3f}, ner {ner:.3f} (goal <= 1.03)")


if __name__ == "__main__":
    sys.exit(main())

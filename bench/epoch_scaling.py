"""Train-epoch time at 1x, 2x and 4x a training set: does the Trainer scale linearly? (benchmark 8)

    python bench/epoch_scaling.py [--base 1000] [--repeats 2] [--model PATH]

Takes ``--base`` NCBI-disease training sentences (a fixed random sample) and their 2x and
4x supersets, and trains one epoch of `HFEntityMatcherTrainable` (packaged MiniLM, batch
16, length-grouped batches) on each, in one process after a short warm-up run; with
``--repeats N`` the 1x-2x-4x sequence runs N times and medians are compared. Printed last:
the time per sentence at 2x and 4x relative to 1x (1.0 is perfectly linear; goal: within 10%,
i.e. between 0.9 and 1.1).
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
from pathlib import Path

from common import epoch_timer, load_ncbi, machine_line, ncbi_parser, packaged_model


def epoch_seconds(model: str, sentences, workdir: Path) -> float:
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    component = HFEntityMatcher.make_trainable(model, labels=["Disease"], tokenizer_max_length=128)
    timer = epoch_timer()
    config = TrainerConfig(output_dir=str(workdir), lr=5e-5, epochs=1, batch_size=16, seed=0,
                           batch_order="length_grouped", checkpoint_metric="loss", checkpoint_mode="min",
                           checkpoint_period=0)
    Trainer(component, config, sentences, [], callbacks=[timer]).train()
    return timer.train_seconds[0]


def main() -> None:
    parser = ncbi_parser(__doc__)
    parser.add_argument("--base", type=int, default=1000, help="sentences at 1x (4x must fit in the training set)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of the 1x-2x-4x sequence (medians compared)")
    args = parser.parse_args()

    _, train, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    if 4 * args.base > len(train):
        raise SystemExit(f"--base {args.base}: 4x needs {4 * args.base} sentences, the training set has {len(train)}")
    sample = random.Random(0).sample(train, 4 * args.base)
    model = args.model or packaged_model()
    runs: dict[int, list[float]] = {1: [], 2: [], 4: []}
    with tempfile.TemporaryDirectory() as tmp:
        epoch_seconds(model, sample[: max(16, args.base // 10)], Path(tmp) / "warmup")
        for repeat in range(args.repeats):
            for factor in runs:
                sentences = sample[: factor * args.base]
                runs[factor].append(epoch_seconds(model, sentences, Path(tmp) / f"x{factor}-{repeat}"))
                print(f"{factor}x ({factor * args.base} sentences): train epoch {runs[factor][-1]:.1f} s, "
                      f"{1000 * runs[factor][-1] / (factor * args.base):.2f} ms per sentence", flush=True)
    seconds = {factor: statistics.median(times) for factor, times in runs.items()}
    print(machine_line() + f"; {args.repeats} run(s) of each size")
    relative = {f: (seconds[f] / f) / seconds[1] for f in (2, 4)}
    print(f"time per sentence relative to 1x: 2x {relative[2]:.3f}, 4x {relative[4]:.3f} (goal within 0.9-1.1)")


if __name__ == "__main__":
    sys.exit(main())

"""torch.compile (Inductor) vs eager: NCBI-disease training steps, compile time and break-even (benchmark 12).

    python bench/compile_vs_eager.py [--max-docs 150] [--precision bf16] [--epochs 2]

Each side trains the packaged MiniLM on the sentences of the first ``--max-docs`` train
documents (batch 16, length-grouped, batch lengths rounded up to 16 tokens so that the
compiled model meets few shapes) in its own process: ``eager`` as usual, ``compiled`` with
``trainer.compile=true`` (dynamic shapes). Per-step times are recorded: the compiled side's
extra time over its first epoch is its compile cost; later epochs give the steady step time.

Printed last: steady epoch ratio compiled / eager, the compile cost in seconds, and the
break-even number of steps (compile cost / time saved per step; "never" when it saves none).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import add_fork_option, load_ncbi, machine_line, ncbi_parser, packaged_model, run_side, write_result


def train(args, compiled: bool, workdir: Path) -> dict:
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.epochs: list[list[float]] = []

        def on_epoch_begin(self, epoch):
            self.epochs.append([])
            self.last = time.perf_counter()

        def on_step_end(self, step_idx, nb_batches, phase, batch_size=0, loss=None):
            if phase == "train":
                now = time.perf_counter()
                self.epochs[-1].append(now - self.last)
                self.last = now

    _, sentences, _ = load_ncbi(args.data_root, max_docs=args.max_docs)
    component = HFEntityMatcher.make_trainable(args.model or packaged_model(), labels=["Disease"],
                                               tokenizer_max_length=128)
    times = StepTimes()
    config = TrainerConfig(output_dir=str(workdir), lr=5e-5, epochs=args.epochs, batch_size=16, seed=0,
                           batch_order="length_grouped", precision=args.precision, compile=compiled,
                           pad_to_multiple_of=16, checkpoint_metric="loss", checkpoint_mode="min", checkpoint_period=0)
    Trainer(component, config, sentences, [], callbacks=[times]).train()
    return {"epochs": times.epochs, "sentences": len(sentences)}


def main() -> None:
    parser = ncbi_parser(__doc__)
    parser.set_defaults(max_docs=150)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--side", choices=("eager", "compiled"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    add_fork_option(parser)
    args = parser.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            return write_result(args.result, train(args, args.side == "compiled", Path(tmp)))
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2: the first epoch pays the compile time, later ones are steady")
    passed = ["--data-root", args.data_root, "--max-docs", str(args.max_docs), "--epochs", str(args.epochs),
              "--precision", args.precision, *(["--model", args.model] if args.model else [])]
    sides = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("eager", "compiled"):
            sides[side] = run_side(Path(__file__), side, passed, Path(tmp), fork=args.fork)
            epochs = [sum(e) for e in sides[side]["epochs"]]
            print(f"{side:8s}: epochs " + ", ".join(f"{s:.1f}s" for s in epochs)
                  + f" ({sides[side]['sentences']} sentences, {len(sides[side]['epochs'][0])} steps each), "
                  f"peak RSS {sides[side]['peak_rss_mb']:.0f} MB", flush=True)
    steady = {side: statistics.mean(sum(e) for e in r["epochs"][1:]) for side, r in sides.items()}
    steps = len(sides["eager"]["epochs"][0])
    first = {side: sum(r["epochs"][0]) for side, r in sides.items()}
    compile_cost = (first["compiled"] - steady["compiled"]) - (first["eager"] - steady["eager"])
    saved_per_step = (steady["eager"] - steady["compiled"]) / steps
    print(machine_line() + f"; {args.precision}, batch 16, lengths rounded to 16, {args.epochs} epochs")
    print(f"compile cost: {compile_cost:.1f} s; time saved per step: {saved_per_step * 1000:.1f} ms")
    break_even = f"{compile_cost / saved_per_step:.0f} steps" if saved_per_step > 0 else "never"
    print(f"steady epoch ratio compiled / eager: {steady['compiled'] / steady['eager']:.3f}; break-even: {break_even}")


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 17 (issue 32): annotation errors injected into the demo corpus, found again among the
annotation suspects of a cross-validation.

    python bench/annotation_errors.py [--folds 5] [--changes 20] [--deletions 10] [--top 60] [--seed 0]

The demo corpus (`medkit_exp.io.load_demo_corpus`) is corrupted in its train and dev splits only:
``--changes`` random entities get another label of the corpus, ``--deletions`` other random
entities are deleted (drawn with ``--seed``); the test split stays as it is. The corpus is
written as JSONL (train.jsonl, dev.jsonl, test.jsonl) into a temporary folder, and the app runs
one cross-validation multirun over it, as a user would, in a process of its own:

    python -m medkit_exp -m +cv=5fold data=jsonl data.root=<tmp>/data tracking.uri=sqlite:///<tmp>/mlflow.db ...

with the packaged MiniLM (``--model`` another), ``--epochs`` and ``--lr`` (the demo preset's
recipe by default: 5 epochs, lr 3e-4, batch 16, linear warmup). Its parent ranks the
annotation suspects from the out-of-fold predictions (`medkit_exp.analysis.suspects`) into
``<sweep dir>/analysis/annotation_suspects.tsv``; the script reads that file. An injected error
is found when a suspect among the ``--top`` most likely overlaps its span with the kind that
error calls for: a changed label, a ``label_swap`` (or a ``rejected_gold``: the model sees no
entity there, the annotation is still flagged); a deleted entity, a ``missed_annotation``.
Printed: the corpus and what was injected, the cross-validation's scores, the errors found by
type and by the kind that matched, where the missed ones rank, the precision of the top
suspects (the share of them that are injected errors: the rest are the model's own mistakes or
the corpus's), the machine, and last the figure:

    injected errors among the top 60 suspects: 0.xx (yy of 30; label changes a/20, deletions b/10) (goal >= 0.5)

Timing is not the figure (the folds take minutes on 2 cores); the fraction is.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from common import add_fork_option, cpu_model, run_python

GOAL = 0.5
SPLITS = ("train", "dev", "test")
CORRUPTED = ("train", "dev")
SUSPECTS = Path("analysis") / "annotation_suspects.tsv"
# The kinds of suspect that find an injected error of each type.
MATCHING_KINDS = {"label change": ("label_swap", "rejected_gold"), "deletion": ("missed_annotation",)}


@dataclass(frozen=True)
class Injected:
    """An annotation error put into the corpus: ``kind`` "label change" or "deletion"."""

    kind: str
    document_id: str
    start: int
    end: int
    text: str
    label: str  # the entity's true label
    new_label: str | None = None  # what a label change made of it


@dataclass(frozen=True)
class Row:
    """A line of annotation_suspects.tsv."""

    rank: int
    kind: str
    document_id: str
    start: int
    end: int
    text: str
    gold_label: str
    predicted_label: str

    def finds(self, error: Injected) -> bool:
        return (self.document_id == error.document_id and self.start < error.end and error.start < self.end
                and self.kind in MATCHING_KINDS[error.kind])


def demo_splits(max_docs: int | None) -> dict[str, list]:
    from medkit_exp.io import load_demo_corpus

    return {name: docs[:max_docs] for name, docs in load_demo_corpus().items()}


def inject(splits: dict[str, list], changes: int, deletions: int, seed: int) -> list[Injected]:
    """Change the label of ``changes`` random entities of train + dev and delete ``deletions`` others,
    in place; the errors, in the order drawn."""
    entities = [(doc, entity) for split in CORRUPTED for doc in splits[split] for entity in doc.anns.entities]
    labels = sorted({entity.label for docs in splits.values() for doc in docs for entity in doc.anns.entities})
    if changes + deletions > len(entities):
        sys.exit(f"{changes} label changes + {deletions} deletions need as many entities; train + dev hold "
                 f"{len(entities)} (lower --changes/--deletions or raise --max-docs)")
    if changes and len(labels) < 2:
        sys.exit(f"a label change needs two labels; the corpus has {labels}")
    rng = random.Random(seed)
    drawn = rng.sample(range(len(entities)), changes + deletions)
    injected = []
    for k, index in enumerate(drawn):
        doc, entity = entities[index]
        if k < changes:
            new = rng.choice([label for label in labels if label != entity.label])
            injected.append(Injected("label change", doc.id, entity.start, entity.end, entity.text, entity.label,
                                     new))
            entity.label = new
        else:
            injected.append(Injected("deletion", doc.id, entity.start, entity.end, entity.text, entity.label))
            doc.anns.remove(entity)
    return injected


def write_corpus(splits: dict[str, list], root: Path) -> None:
    from medkit_exp.io.jsonl import write_jsonl

    for name in SPLITS:
        write_jsonl(splits[name], root / f"{name}.jsonl")


def cross_validate(args: argparse.Namespace, workdir: Path) -> tuple[Path, str, float]:
    """Run the app's cross-validation multirun on ``workdir/data``; its sweep folder, its
    cross-validation line and its wall time."""
    sweep = workdir / "sweep"
    overrides = ["+cv=5fold", f"cv.folds={args.folds}", f"cv.seed={args.seed}", "data=jsonl",
                 f"data.root={workdir / 'data'}", f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
                 "tracking.experiment=bench_annotation_errors", "tracking.log_model=false",
                 "tracking.system_metrics=false", f"hydra.sweep.dir={sweep}", f"trainer.epochs={args.epochs}",
                 f"trainer.lr={args.lr}", f"trainer.batch_size={args.batch_size}", f"trainer.seed={args.seed}",
                 f"threads={args.threads}", "callbacks.progress_bars=false", *args.overrides]
    if args.model:
        overrides.append(f"component.model={args.model}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(args.threads))
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    result = run_python(["-m", "medkit_exp", "-m", *overrides], cwd=workdir, env=env, capture=True, fork=args.fork)
    wall = time.perf_counter() - started
    if result.returncode != 0 or not (sweep / SUSPECTS).is_file():
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        sys.exit(f"the cross-validation failed (exit {result.returncode}) or ranked no suspects: "
                 f"python -m medkit_exp -m {' '.join(overrides)}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("Cross-validation (")]
    return sweep, (lines[-1] if lines else "(no cross-validation line printed)"), wall


def read_suspects(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [Row(int(r["rank"]), r["kind"], r["document_id"], int(r["start"]), int(r["end"]), r["text"],
                    r["gold_label"], r["predicted_label"])
                for r in csv.DictReader(handle, delimiter="\t")]


def counted(names: list[str]) -> str:
    counts = {name: names.count(name) for name in dict.fromkeys(sorted(names))}
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def report(injected: list[Injected], suspects: list[Row], top: int) -> None:
    """Print what the top suspects found; the figure last."""
    best = suspects[:top]
    print(f"suspects: {len(suspects)} ranked ({counted([s.kind for s in suspects])}); the top {len(best)}: "
          f"{counted([s.kind for s in best])}")
    found: dict[str, list[str]] = {kind: [] for kind in MATCHING_KINDS}
    missed = []
    for error in injected:
        match = next((s for s in best if s.finds(error)), None)
        if match:
            found[error.kind].append(match.kind)
        else:
            missed.append(error)
    totals = {kind: sum(e.kind == kind for e in injected) for kind in MATCHING_KINDS}
    for kind in MATCHING_KINDS:
        print(f"{kind}s found among the top {top}: {len(found[kind])}/{totals[kind]} "
              f"(matched by {counted(found[kind])})")
    for error in missed:
        anywhere = next((s for s in suspects if s.finds(error)), None)
        where = f"rank {anywhere.rank} ({anywhere.kind})" if anywhere else "not a suspect"
        change = f"{error.label} -> {error.new_label}" if error.kind == "label change" else f"{error.label} deleted"
        print(f"  missed: {error.kind} {error.document_id} [{error.start}, {error.end}) {error.text!r} "
              f"({change}): {where}")
    ranks = sorted(r for r in (next((s.rank for s in suspects if s.finds(e)), None) for e in injected)
                   if r is not None)
    k = len(injected)
    first = [s for s in suspects[:k] if any(s.finds(e) for e in injected)]
    print(f"ranks of the injected errors (their first matching suspect): {', '.join(map(str, ranks)) or 'none'}; "
          f"the top {k} (as many as injected) hold {sum(r <= k for r in ranks)} of them, precision "
          f"{len(first) / max(min(k, len(suspects)), 1):.2f}")
    true = [s for s in best if any(s.finds(e) for e in injected)]
    false = [s for s in best if s not in true]
    precision = len(true) / len(best) if best else 0.0
    print(f"precision of the top {top}: {precision:.2f} ({len(true)} of {len(best)} suspects are injected errors; "
          f"the others: {counted([s.kind for s in false])}; with one suspect per error it cannot exceed "
          f"{min(k / top, 1) if top else 0:.2f})")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {version('torch')}, "
          f"{os.environ.get('OMP_NUM_THREADS') or 'default'} threads per fold job (folds one after another)")
    hits = sum(len(kinds) for kinds in found.values())
    share = hits / len(injected) if injected else 0.0
    print(f"injected errors among the top {top} suspects: {share:.2f} ({hits} of {len(injected)}; label changes "
          f"{len(found['label change'])}/{totals['label change']}, deletions {len(found['deletion'])}/"
          f"{totals['deletion']}) (goal >= {GOAL})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="component.model (default: the packaged MiniLM)")
    parser.add_argument("--max-docs", type=int, default=None, help="documents per split (smoke tests)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="per fold (the demo preset's 5)")
    parser.add_argument("--lr", type=float, default=3e-4, help="the demo preset's 3e-4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--top", type=int, default=60, help="suspects looked at, most likely first")
    parser.add_argument("--changes", type=int, default=20, help="entities given another label")
    parser.add_argument("--deletions", type=int, default=10, help="entities deleted")
    parser.add_argument("--seed", type=int, default=0, help="of the errors, the folds and the training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", default=None, help="write the corpus, runs and suspects here (kept) instead of "
                                                     "a temporary folder")
    parser.add_argument("overrides", nargs="*", help="more app overrides (after --)")
    add_fork_option(parser)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    splits = demo_splits(args.max_docs)
    entities = sum(len(doc.anns.entities) for split in CORRUPTED for doc in splits[split])
    injected = inject(splits, args.changes, args.deletions, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp).resolve()
        write_corpus(splits, workdir / "data")
        print(f"corpus: demo, train {len(splits['train'])} + dev {len(splits['dev'])} documents ({entities} entities), "
              f"test {len(splits['test'])} untouched; written as JSONL to {workdir / 'data'}")
        print(f"injected (seed {args.seed}): {args.changes} label changes and {args.deletions} deletions in "
              f"{len({e.document_id for e in injected})} documents of train + dev")
        sweep, cv_line, wall = cross_validate(args, workdir)
        print(f"{args.folds}-fold cross-validation ({args.model or 'the packaged MiniLM'}, {args.epochs} epochs, "
              f"lr {args.lr:g}, batch {args.batch_size}) in {wall:.0f} s: {cv_line}")
        suspects = read_suspects(sweep / SUSPECTS)
    report(injected, suspects, args.top)


if __name__ == "__main__":
    main()

"""How each phase of a run grows with the corpus and with one document (benchmark 15)

    python bench/scaling.py [--minilm] [--axes corpus document] [--data-root ROOT | --demo] [--profile]

Phases, each calling what the app calls (`medkit_exp.app.run`, the NER component's `score_test`):

- read: the data node's `load_corpus` (BRAT, or JSONL for the demo corpus) over files on
  disk, and the corpus description the app prints;
- preprocess: `Trainer.train` up to the first epoch (the preprocessing of the train and dev
  splits, the setup of the batches and the optimizer);
- train epoch, dev eval: one training epoch, then the evaluation of the dev split (seqeval);
- test predict: `predict_documents` with the best checkpoint, as `score_test` runs it;
- test report: `score_predictions`, `entity_errors` and `write_error_report`;
- plots: the app's `_write_plots`;
- mlflow: a `TrackedRun` in a temporary SQLite store fed as the app feeds it (tags with the
  dataset digest, config and corpus summary, dataset inputs, the Trainer's `MLflowCallback`
  at the start and end of training and of the epoch, test metrics, the plots and analysis
  folders, the best checkpoint, the logged model).

Two axes. corpus: the corpus grows 1x, 2x, 4x, 8x in documents (copies of the first
``--base-docs`` documents of each split of NCBI-disease, ``--data-root``, or ``--demo``).
document: each split is one document of 50k to 800k characters (the split's documents
concatenated, cycled as needed, entities shifted). Each size is written to disk and read back.
Sizes run in one process, smallest first; the smaller sizes run several times and the fastest
time of each phase counts. A phase over ``--budget`` seconds is stopped, counted as over
budget, and skipped at the larger sizes of its axis.

By default the error report scores a fixed perturbation of the gold entities (every 10th
dropped, every 10th shifted by one character, every 10th given another label when there is
one, a spurious mention every 5,000 characters: about F1 0.85), so that its rows grow exactly
with the text whatever the model learned in one epoch; ``--report-on model`` scores the
model's predictions. The tiny randomly initialised BERT (MiniLM's tokenizer) runs by default;
``--minilm`` trains, evaluates and predicts with the packaged MiniLM.

Printed: one line per size; per phase and axis, the exponent k of a least-squares fit of
log(time) on log(size) (1 is linear; goal k <= 1.15; ">=" where the largest sizes went over
budget, fitted with the budget as their time), the time and peak memory at the largest size;
last, the time of test prediction + report of one 800k-character document / the same text as
100 documents (goal < 2). Peak memory: the peak resident memory (RSS) above the phase's start,
sampled every 10 ms (and the process's peak when the phase raised it), after freed heap was
handed back to the system. ``--profile`` then runs one size of each axis once more under
cProfile (the largest at which every phase over the goal ran in full; 3x the budget) and
prints where the time of each phase with k > 1.15 went.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import itertools
import math
import os
import pstats
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from common import DEFAULT_NCBI_ROOT, REPO, machine_line

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per process: the tokenizer's too

PHASES = ("read", "preprocess", "train epoch", "dev eval", "test predict", "test report", "plots", "mlflow")
TRAINING_PHASES = ("read", "preprocess", "train epoch", "dev eval")  # one over budget ends its axis
GOAL_K = 1.15
GOAL_RATIO = 2.0
SEPARATOR = "\n\n"  # between the documents concatenated into one
TAGGING = "bilou"  # the NCBI preset's tagging scheme


# ---------------------------------------------------------------------------- phase clock
class PhaseTimeout(BaseException):
    """A phase ran past its budget (a BaseException: the app's own ``except Exception`` lets it through)."""


class RssSampler:
    """The peak resident memory of this process since `reset`, sampled by a thread every 10 ms."""

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = self.rss()
        threading.Thread(target=self._sample, daemon=True, name="rss-sampler").start()

    @classmethod
    def rss(cls) -> int:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * cls.PAGE

    def reset(self) -> int:
        self.peak = now = self.rss()
        return now

    def _sample(self) -> None:
        while True:
            time.sleep(self.interval)
            self.peak = max(self.peak, self.rss())


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PhaseClock:
    """Seconds and peak memory of named phases (a phase may run in several pieces: they add up).

    ``cpu``: the CPU seconds of the process (every thread); ``wall``: wall-clock seconds. A phase
    longer than ``budget`` wall seconds in all raises `PhaseTimeout` (SIGALRM) and is listed in
    ``timed_out`` (its times are those it ran). Phases named in ``profile`` run under cProfile.
    """

    def __init__(self, sampler: RssSampler, budget: float, profile: frozenset[str] = frozenset()) -> None:
        self.sampler, self.budget = sampler, budget
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.peak_mb: dict[str, float] = defaultdict(float)
        self.timed_out: set[str] = set()
        self.profiles = {name: cProfile.Profile() for name in profile}
        self.current: str | None = None

    def start(self, phase: str) -> None:
        from medkit_exp.training.host_memory import release_free_heap

        assert self.current is None, f"{phase} started inside {self.current}"
        gc.collect()
        release_free_heap()  # what earlier phases freed does not hide this one's growth
        self._rss0, self._max0 = self.sampler.reset(), _max_rss()
        self.current = phase
        signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, self.budget - self.wall[phase]))
        if phase in self.profiles:
            self.profiles[phase].enable()
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        elapsed, cpu = time.perf_counter() - self._t0, time.process_time() - self._cpu0
        signal.setitimer(signal.ITIMER_REAL, 0)
        phase, self.current = self.current, None
        if phase in self.profiles:
            self.profiles[phase].disable()
        peak = self.sampler.peak
        if _max_rss() > self._max0:  # this phase raised the process's peak: that figure is exact
            peak = max(peak, _max_rss())
        self.wall[phase] += elapsed
        self.cpu[phase] += cpu
        self.peak_mb[phase] = max(self.peak_mb[phase], (peak - self._rss0) / 2**20)

    def _expired(self, signum: int, frame: Any) -> None:
        if self.current is not None:
            self.timed_out.add(self.current)
            raise PhaseTimeout(self.current)

    def run(self, phase: str, function: Callable[[], Any]) -> Any:
        self.start(phase)
        try:
            return function()
        finally:
            self.stop()


class ClockCallback:
    """Trainer callback that cuts `Trainer.train` into the clock's phases. Two of them bracket
    the `MLflowCallback` (``before`` first in the list, ``after`` last), so that what it does
    at the start and end of training and of each epoch counts as mlflow."""

    def __init__(self, clock: PhaseClock, before: bool) -> None:
        self.clock, self.before = clock, before

    def on_train_begin(self) -> None:
        if self.before:
            self.clock.stop()  # preprocess
            self.clock.start("mlflow")
        else:
            self.clock.stop()

    def on_epoch_begin(self) -> None:
        if self.before:
            self.clock.start("train epoch")

    def on_step_begin(self, step_idx: int, phase: str) -> None:
        if self.before and phase == "eval" and step_idx == 0:
            self.clock.start("dev eval")

    def on_step_end(self, step_idx: int, nb_batches: int, phase: str) -> None:
        if self.before and phase == "train" and step_idx + 1 == nb_batches:
            self.clock.stop()  # train epoch

    def on_evaluate(self) -> None:
        if self.before:
            self.clock.stop()  # dev eval

    def on_epoch_end(self) -> None:
        self._bracket()

    def on_train_end(self) -> None:
        self._bracket()

    def _bracket(self) -> None:
        if self.before:
            self.clock.start("mlflow")
        else:
            self.clock.stop()


# ---------------------------------------------------------------------------- corpora on disk
@dataclass
class Source:
    """Where the documents come from, and how a corpus of them is written and read back."""

    name: str
    splits: dict[str, list[Any]]  # the source documents of each split
    jsonl: bool  # written and read as JSONL (the demo corpus), else BRAT

    def write(self, splits: dict[str, list[Any]], root: Path) -> None:
        from medkit_exp.io import write_brat, write_jsonl

        for split, docs in splits.items():
            if self.jsonl:
                write_jsonl(docs, root / f"{split}.jsonl")
            else:
                write_brat(docs, root / split)

    def read(self, root: Path) -> Any:
        """The app's data step: the data node's target, wrapped as the app wraps it, and described."""
        from medkit_exp.app.data import ExperimentData
        from medkit_exp.io import NCBI_LABEL_MAP, load_brat, load_corpus, load_jsonl

        if self.jsonl:
            corpus = load_corpus(partial(load_jsonl, overlap_policy="error"), root=str(root), name=self.name,
                                 train="train.jsonl", dev="dev.jsonl", test="test.jsonl")
        else:
            corpus = load_corpus(partial(load_brat, overlap_policy="keep_longest"), root=str(root), name=self.name,
                                 label_map=NCBI_LABEL_MAP)
        data = ExperimentData(corpus, name=self.name)
        data.describe()
        return data


def load_source(args: argparse.Namespace) -> Source:
    from medkit_exp.io import NCBI_LABEL_MAP, load_brat, load_demo_corpus

    if args.demo:
        return Source("demo", load_demo_corpus(), jsonl=True)
    root = Path(args.data_root)
    if not root.is_dir():
        raise SystemExit(f"--data-root {root}: no such folder (a BRAT corpus with train, dev and test folders)")
    splits = {split: load_brat(root / split, label_map=NCBI_LABEL_MAP, overlap_policy="keep_longest").documents
              for split in ("train", "dev", "test")}
    return Source(root.name, splits, jsonl=False)


def copied(doc: Any, doc_id: str, offset: int = 0) -> list[Any]:
    """The entities of ``doc`` shifted by ``offset`` characters (fresh annotations)."""
    from medkit_exp.core import Entity, Span

    return [Entity(label=e.label, spans=[Span(s.start + offset, s.end + offset) for s in e.spans], text=e.text)
            for e in doc.anns.entities]


def replicated(docs: list[Any], copies: int) -> list[Any]:
    """``copies`` copies of ``docs`` (ids ``<id>-c<k>``)."""
    from medkit_exp.core import TextDocument

    return [TextDocument(text=doc.text, id=f"{doc.id}-c{k}", anns=copied(doc, doc.id))
            for k in range(copies) for doc in docs]


def concatenated(docs: list[Any], doc_id: str) -> Any:
    """One document: the texts of ``docs`` joined by `SEPARATOR`, their entities shifted."""
    from medkit_exp.core import TextDocument

    entities, offset = [], 0
    for doc in docs:
        entities += copied(doc, doc.id, offset)
        offset += len(doc.text) + len(SEPARATOR)
    return TextDocument(text=SEPARATOR.join(doc.text for doc in docs), id=doc_id, anns=entities)


def documents_for(docs: list[Any], characters: int) -> list[Any]:
    """The first documents of ``docs`` (cycled) whose concatenation holds ``characters``."""
    chosen, total = [], -len(SEPARATOR)
    for doc in itertools.cycle(docs):
        if total >= characters:
            return chosen
        chosen.append(doc)
        total += len(doc.text) + len(SEPARATOR)
    raise AssertionError("unreachable")


def corpus_sizes(source: Source, multiples: list[int], base_docs: int | None) -> list[tuple[str, float, Callable]]:
    """(label, size, builder) of each corpus size: ``builder()`` gives the splits to write."""
    base = {split: docs[:base_docs] if base_docs else docs for split, docs in source.splits.items()}
    return [(f"{m}x", float(m), partial(lambda m: {s: replicated(d, m) for s, d in base.items()}, m))
            for m in multiples]


def document_sizes(source: Source, characters: list[int]) -> list[tuple[str, float, Callable]]:
    def build(n: int) -> dict[str, list[Any]]:
        return {split: [concatenated(documents_for(docs, n), f"{split}-{n}")] for split, docs in source.splits.items()}

    return [(f"{n // 1000}k", float(n), partial(build, n)) for n in characters]


# ---------------------------------------------------------------------------- predictions for the report
def perturbed_gold(docs: list[Any]) -> list[list[Any]]:
    """Predictions made from the gold entities: every 10th dropped, every 10th one character short,
    every 10th with another label (when the corpus has two), a spurious mention per 5,000 characters."""
    from medkit_exp.core import Entity, Span

    labels = sorted({e.label for doc in docs for e in doc.anns.entities})
    words = re.compile(r"[A-Za-z]{4,}")
    predictions = []
    for doc in docs:
        predicted = []
        for i, entity in enumerate(sorted(doc.anns.entities, key=lambda e: (e.start, e.end))):
            start, end, label = entity.start, entity.end, entity.label
            if i % 10 == 0:
                continue
            if i % 10 == 5 and end - start > 1:
                end -= 1
            if i % 10 == 7 and len(labels) > 1:
                label = labels[(labels.index(label) + 1) % len(labels)]
            predicted.append(Entity(label=label, spans=[Span(start, end)], text=doc.text[start:end], score=0.9))
        for position in range(0, len(doc.text), 5000):
            word = words.search(doc.text, position)
            if word and word.start() < position + 5000:
                predicted.append(Entity(label=labels[0] if labels else "X", spans=[Span(*word.span())],
                                        text=word.group(), score=0.5))
        predictions.append(predicted)
    return predictions


# ---------------------------------------------------------------------------- one run
@dataclass
class Settings:
    model: str
    store_uri: str
    split_sentences: bool
    report_on: str
    precision: str
    device: str
    batch_size: int


@dataclass
class Measure:
    """One run at one size: CPU and wall seconds and peak MB per phase; phases over budget; where it stopped."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    timed_out: set[str] = field(default_factory=set)
    aborted: bool = False  # a training phase went over budget: nothing after it ran
    report_rows: int | None = None  # None: the report did not run to its end
    characters: int = 0


def predict_and_report(clock: PhaseClock, settings: Settings, model_dir: Path, docs: list[Any], report_dir: Path,
                       skip: set[str], phases: tuple[str, str] = ("test predict", "test report"),
                       matcher: Any = None) -> tuple[dict[str, float], int | None]:
    """`score_test`'s path, its two halves timed apart: predict the documents, then score and report."""
    from medkit_exp.text.error_report import write_error_report
    from medkit_exp.text.ner.evaluation import entity_errors, predict_documents, score_predictions
    from medkit_exp.text.ner.hf_entity_matcher import HFEntityMatcher

    predictions = None
    if phases[0] not in skip:
        def predict():
            used = matcher or HFEntityMatcher(model=model_dir, device=settings.device, batch_size=32,
                                              precision="fp32")
            return predict_documents(used, docs, settings.split_sentences)

        with contextlib.suppress(PhaseTimeout):
            predictions = clock.run(phases[0], predict)
    scored = perturbed_gold(docs) if settings.report_on == "gold" else predictions
    if phases[1] in skip or scored is None:
        return {}, None

    def report():
        scores = score_predictions(docs, scored, TAGGING)
        counts = {"test documents": len(docs), "gold entities": sum(len(d.anns.entities) for d in docs),
                  "predicted entities": sum(len(p) for p in scored), "exact-span precision": scores["precision"],
                  "exact-span recall": scores["recall"], "exact-span F1": scores["f1"]}
        rows = entity_errors(docs, scored)
        write_error_report(rows, report_dir / "analysis", "Test errors of the best checkpoint (exact character spans)",
                           counts)
        return scores, len(rows)

    try:
        return clock.run(phases[1], report)
    except PhaseTimeout:
        return {}, None


def run_once(source: Source, root: Path, settings: Settings, workdir: Path, sampler: RssSampler, budget: float,
             skip: set[str], profile: frozenset[str] = frozenset(), keep_model: Path | None = None
             ) -> tuple[Measure, PhaseClock]:
    """Every phase of one run on the corpus written under ``root`` (``skip``: phases left out)."""
    from medkit_exp.app import report, train_and_test
    from medkit_exp.app.tracker import log_model
    from medkit_exp.text.metrics import SeqEvalMetricsComputer
    from medkit_exp.text.ner.experiment import hf_ner
    from medkit_exp.tracking import MLflowCallback, TrackedRun
    from medkit_exp.training import Trainer, TrainerConfig
    from medkit_exp.training.checkpoint import MODEL_DIR
    from medkit_exp.training.runtime import seed_everything

    clock = PhaseClock(sampler, budget, profile)
    measure = Measure()
    output_dir = workdir / "run"
    shutil.rmtree(output_dir, ignore_errors=True)
    tracker = None
    try:
        data = clock.run("read", lambda: source.read(root))
        measure.characters = round(sum(len(d.text) for docs in data.splits.values() for d in docs) / 3)
        seed_everything(0)
        component = hf_ner(settings.model, train_data=data.splits["train"], tagging_scheme=TAGGING,
                           split_sentences=settings.split_sentences, device=settings.device)
        config = TrainerConfig(output_dir=str(output_dir / "checkpoints"), lr=2e-4, epochs=1,
                               batch_size=settings.batch_size, eval_batch_size=64, seed=0, device=settings.device,
                               precision=settings.precision, checkpoint_metric="f1", checkpoint_mode="max")
        params = {"data": {"name": source.name, "root": str(root)}, "component": {"model": settings.model},
                  "trainer": {"lr": config.lr, "epochs": 1, "batch_size": config.batch_size}}
        tracker = TrackedRun(experiment="scaling", tracking_uri=settings.store_uri, run_name=root.name, params=params,
                             system_metrics=False, spool_dir=output_dir / "checkpoints")

        def start_tracking():  # medkit_exp.app.tracker.start_tracking's calls
            tracker.tags.update({"dataset.name": data.name, "dataset.digest": data.digest(),
                                 "dataset.source": data.source})
            tracker.start()
            tracker.log_text(repr(params), "config.yaml")
            tracker.log_dict_artifact(data.summary(), "corpus_summary.json")
            tracker.log_datasets(data.mlflow_inputs())

        clock.run("mlflow", start_tracking)
        lr_steps = train_and_test.LearningRateRecorder()
        trainer = Trainer(component, config, data.splits["train"], data.splits["dev"],
                          metrics_computer=SeqEvalMetricsComputer.for_component(component),
                          callbacks=[ClockCallback(clock, before=True), lr_steps,
                                     MLflowCallback(tracker, log_checkpoints="best", end_run_on_train_end=False),
                                     ClockCallback(clock, before=False)])
        clock.start("preprocess")
        history = trainer.train()
        best_dir = trainer.best_checkpoint
        best_entry = history[trainer.state.best_epoch - 1] if trainer.state.best_epoch else history[-1]
        clock.run("mlflow", lambda: tracker.log_final_metrics({f"best_eval_{k}": v for k, v in
                                                               (best_entry.get("eval") or {}).items()}))
        trainer.optimizer = trainer.scheduler = None
        if keep_model is not None:
            shutil.rmtree(keep_model, ignore_errors=True)
            shutil.copytree(best_dir / MODEL_DIR, keep_model)

        scores, measure.report_rows = predict_and_report(clock, settings, best_dir / MODEL_DIR, data.splits["test"],
                                                         output_dir, skip)
        if "mlflow" not in skip:
            with contextlib.suppress(PhaseTimeout):
                clock.run("mlflow", lambda: tracker.log_test_metrics(scores))
        if "plots" not in skip:
            with contextlib.suppress(PhaseTimeout):
                clock.run("plots", lambda: report.write_plots(output_dir, history, best_entry, scores, "f1",
                                                            lr_steps.points))

        def log_the_rest():  # the end of medkit_exp.app.train_and_test and medkit_exp.app.run
            for folder in ("plots", "analysis"):
                tracker.log_folder(output_dir / folder, folder)
            tracker.log_best_checkpoint(best_dir)
            logged = log_model(component, tracker, best_dir / MODEL_DIR, trainer.state.best_epoch or 0, None)
            if str(logged.get("model_uri", "")).startswith("not logged"):
                raise RuntimeError(f"the model was not logged: {logged['model_uri']}")
            tracker.finish()

        if "mlflow" not in skip:
            with contextlib.suppress(PhaseTimeout):
                clock.run("mlflow", log_the_rest)
    except PhaseTimeout:  # in reading or training: nothing after it can run
        if clock.current is not None:
            clock.stop()
        measure.aborted = True
    finally:
        if tracker is not None and tracker.logging:
            tracker.fail(RuntimeError("the benchmark stopped this run"))
        measure.cpu, measure.wall = dict(clock.cpu), dict(clock.wall)
        measure.peak_mb = dict(clock.peak_mb)
        measure.timed_out = set(clock.timed_out)
        shutil.rmtree(output_dir, ignore_errors=True)
        shutil.rmtree(Path(settings.store_uri[len("sqlite:///"):]).parent / "artifacts", ignore_errors=True)
    return measure, clock


# ---------------------------------------------------------------------------- an axis
@dataclass
class AxisResult:
    """Per phase, per size: CPU and wall seconds and peak MB (None: not run); the fit is on ``fit_on``."""

    name: str
    fit_on: str  # cpu or wall
    budget: float
    labels: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)  # of each label measured (multiple, or characters)
    cpu: dict[str, list[float | None]] = field(default_factory=lambda: {p: [] for p in PHASES})
    wall: dict[str, list[float | None]] = field(default_factory=lambda: {p: [] for p in PHASES})
    peak_mb: dict[str, list[float | None]] = field(default_factory=lambda: {p: [] for p in PHASES})
    over_budget: dict[str, int] = field(default_factory=dict)  # phase -> index of the size it went over at
    largest_model: Path | None = None

    def times(self, phase: str) -> list[float | None]:
        return (self.cpu if self.fit_on == "cpu" else self.wall)[phase]


def run_axis(name: str, sizes: list[tuple[str, float, Callable]], source: Source, settings: Settings,
             workdir: Path, sampler: RssSampler, args: argparse.Namespace) -> AxisResult:
    result = AxisResult(name, args.fit_on, args.budget)
    skip: set[str] = set()
    for index, (label, size, build) in enumerate(sizes):
        root = workdir / f"{name}-{label}"
        source.write(build(), root)
        repeats = max(1, args.repeats - index)
        keep = workdir / f"model-{name}" if name == "document" else None
        measures = []
        for _ in range(repeats):
            measure, _ = run_once(source, root, settings, workdir, sampler, args.budget, skip, keep_model=keep)
            measures.append(measure)
            if measure.timed_out:
                break
        shutil.rmtree(root, ignore_errors=True)
        result.labels.append(label)
        result.sizes.append(size if name == "corpus" else float(measures[0].characters or size))
        if keep is not None and keep.is_dir():
            result.largest_model = keep
        for phase in PHASES:
            over = [m for m in measures if phase in m.timed_out]
            if over:  # the time it ran before it was stopped: a lower bound
                result.over_budget[phase] = index
                skip.add(phase)
            ran = over or [m for m in measures if phase in m.wall]
            fastest = min(ran, key=lambda m: m.cpu[phase] if args.fit_on == "cpu" else m.wall[phase], default=None)
            result.cpu[phase].append(fastest.cpu[phase] if fastest else None)
            result.wall[phase].append(fastest.wall[phase] if fastest else None)
            result.peak_mb[phase].append(max(m.peak_mb[phase] for m in ran) if ran else None)
        note = f"{measures[0].characters:,} characters a split" + (" on average" if name == "corpus" else "")
        rows = next((m.report_rows for m in measures if m.report_rows is not None), None)
        note += f"; {len(measures)} run(s), fastest; " + (f"{rows:,} error rows" if rows is not None else "no report")
        print(f"{name} {label} ({note}): "
              + "; ".join(f"{phase} {_cell(result, phase, index)}" for phase in PHASES), flush=True)
        if any(m.aborted for m in measures):
            print(f"{name}: a training phase went over the budget of {args.budget:.0f} s at {label}: larger sizes "
                  "not run", flush=True)
            break
    return result


def _cell(result: AxisResult, phase: str, index: int) -> str:
    cpu, wall, peak = result.cpu[phase][index], result.wall[phase][index], result.peak_mb[phase][index]
    if cpu is None:
        return "-"
    over = " (stopped: over budget)" if result.over_budget.get(phase) == index else ""
    return f"{cpu:.2f} s cpu {wall:.2f} s wall {peak or 0:.0f} MB{over}"


def exponent(result: AxisResult, phase: str) -> tuple[float | None, bool]:
    """k of log(seconds) ~ k log(size) + c, and whether it is a lower bound (the size that went over
    budget counts with the time it ran before it was stopped)."""
    import numpy as np

    points = [(s, t) for s, t in zip(result.sizes, result.times(phase), strict=True) if t is not None and t > 0]
    if len(points) < 2:
        return None, phase in result.over_budget
    sizes, seconds = zip(*points, strict=True)
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0]), phase in result.over_budget


def largest(result: AxisResult, phase: str) -> str:
    """The time and peak memory at the largest size the phase ran at."""
    for index in reversed(range(len(result.labels))):
        seconds = result.times(phase)[index]
        if seconds is None:
            continue
        at = "" if index == len(result.labels) - 1 else f" at {result.labels[index]}"
        if result.over_budget.get(phase) == index:
            return f"> {seconds:.1f} s (stopped){at}"
        return f"{seconds:.2f} s, {result.peak_mb[phase][index] or 0:.0f} MB{at}"
    return "-"


def print_table(results: list[AxisResult]) -> list[tuple[str, str]]:
    """The exponents table; returns the (axis, phase) over the goal."""
    over = []
    header = "phase        " + "".join(f"| k {r.name:<9}| at {r.labels[-1]:<5} {'':<16}" for r in results)
    print(header)
    for phase in PHASES:
        line = f"{phase:<13}"
        marks = []
        for result in results:
            k, bound = exponent(result, phase)
            shown = "n/a" if k is None else (">=" if bound else "") + f"{k:.2f}"
            line += f"| {shown:<10} | {largest(result, phase):<24}"
            if bound or (k is not None and k > GOAL_K):
                marks.append(result.name)
                over.append((result.name, phase))
        print(line + (f"  <-- k > {GOAL_K} ({', '.join(marks)})" if marks else ""))
    return over


def print_profile(clock: PhaseClock, top: int) -> None:
    for phase, profile in clock.profiles.items():
        stats = pstats.Stats(profile)
        entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
        stopped = ", stopped: over budget" if phase in clock.timed_out else ""
        print(f"  profile of {phase} ({clock.wall.get(phase, 0):.1f} s wall under the profiler{stopped}), "
              f"the {top} functions of most own time:")
        for (filename, line, function), (_, calls, own, cumulative, _) in entries:
            where = filename.replace(str(REPO) + "/", "").replace(sys.prefix, "<venv>")
            print(f"    {own:8.2f} s own {cumulative:8.2f} s with callees {calls:>10,} calls  "
                  f"{where}:{line}({function})")


# ---------------------------------------------------------------------------- the ratio
def long_document_ratio(source: Source, settings: Settings, model_dir: Path, characters: int, pieces: int,
                        workdir: Path, sampler: RssSampler, args: argparse.Namespace) -> tuple[float, bool, str]:
    """Test prediction + report of one document of ``characters`` / the same text as ``pieces``
    documents (the fastest of ``--repeats`` alternated runs, at most 2), with one matcher; and
    whether the long side went over budget (the ratio is then a lower bound)."""
    from medkit_exp.text.ner.hf_entity_matcher import HFEntityMatcher

    chosen = documents_for(source.splits["test"], characters)
    pieces = min(pieces, len(chosen))
    split = [concatenated(chosen[len(chosen) * i // pieces:len(chosen) * (i + 1) // pieces], f"piece-{i}")
             for i in range(pieces)]
    whole = concatenated(chosen, "whole")
    assert SEPARATOR.join(doc.text for doc in split) == whole.text
    matcher = HFEntityMatcher(model=model_dir, device=settings.device, batch_size=32, precision="fp32")
    best: dict[str, float] = {}
    over = False
    for _ in range(min(2, args.repeats)):
        for name, docs in (("split", split), ("whole", [whole])):
            clock = PhaseClock(sampler, args.budget)
            predict_and_report(clock, settings, model_dir, docs, workdir / f"ratio-{name}", set(),
                               phases=("predict+report", "predict+report"), matcher=matcher)
            shutil.rmtree(workdir / f"ratio-{name}", ignore_errors=True)
            seconds = (clock.cpu if args.fit_on == "cpu" else clock.wall)["predict+report"]
            best[name] = min(best.get(name, math.inf), seconds)
            over = over or bool(clock.timed_out)
        if over:
            break
    note = (f"{len(whole.text):,} characters: one document {best['whole']:.2f} s {args.fit_on}"
            f"{' (stopped: over budget)' if over else ''}, {len(split)} documents {best['split']:.2f} s")
    return best["whole"] / best["split"], over, note


# ---------------------------------------------------------------------------- main
def tiny_bert(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with MiniLM's tokenizer (as tests/conftest.py builds it)."""
    import torch
    from common import packaged_model
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged_model())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertForTokenClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def commit_line() -> str:
    """The commit measured, and a digest of the uncommitted changes to medkit_exp/ if any."""
    import hashlib

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown (not a git checkout)"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "medkit_exp").splitlines()]
    if not changed:
        return f"commit {head}"
    digest = hashlib.sha1(git("diff", "HEAD", "--", "medkit_exp").encode())
    for name in sorted(c for c in changed if not (REPO / c).is_dir()):
        digest.update(name.encode() + (REPO / name).read_bytes() if (REPO / name).is_file() else b"")
    return (f"commit {head} + uncommitted changes to {len(changed)} file(s) of medkit_exp/ "
            f"(digest {digest.hexdigest()[:10]})")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data-root", default=str(DEFAULT_NCBI_ROOT), help="a BRAT corpus (train, dev, test folders)")
    data.add_argument("--demo", action="store_true", help="the packaged demo corpus instead")
    parser.add_argument("--axes", nargs="+", choices=("corpus", "document"), default=["corpus", "document"])
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 2, 4, 8], help="corpus axis")
    parser.add_argument("--base-docs", type=int, default=100, help="documents of each split at 1x (0: all)")
    parser.add_argument("--characters", type=int, nargs="+", default=[50_000, 100_000, 200_000, 400_000, 800_000],
                        help="document axis: characters of each split's one document")
    parser.add_argument("--pieces", type=int, default=100, help="the ratio's documents, cut from the largest one")
    parser.add_argument("--repeats", type=int, default=3, help="runs at the smallest size (one fewer at each next)")
    parser.add_argument("--budget", type=float, default=None, help="wall seconds a phase may take (default 30; 300 "
                        "with --minilm)")
    parser.add_argument("--fit-on", choices=("cpu", "wall"), default="cpu",
                        help="the time fitted: CPU time of the process (default: steadier on a shared machine) or wall")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--minilm", action="store_true", help="the packaged MiniLM instead of the tiny BERT (slow)")
    model.add_argument("--model", default=None, help="any other model folder")
    parser.add_argument("--whole-documents", action="store_true",
                        help="component.split_sentences=false (default: true, as the NCBI preset)")
    parser.add_argument("--report-on", choices=("gold", "model"), default="gold",
                        help="what the error report scores: perturbed gold entities (default) or the model's")
    parser.add_argument("--precision", default="auto", help="trainer.precision (the app's default: auto)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--profile", action="store_true",
                        help="then profile the phases with k > 1.15 at the largest size of their axis")
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="a cut-down run (the smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.multiples, args.base_docs, args.characters = [1, 2, 4], 3, [4_000, 8_000, 16_000]
        args.pieces, args.repeats = 4, 1
    if args.budget is None:
        args.budget = 300.0 if args.minilm else 30.0
    return args


def main() -> None:
    args = parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the benchmark's own store, always
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import logging

    import torch
    from common import packaged_model

    from medkit_exp.tracking.store import default_tracking_uri, setup_tracking

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    source = load_source(args)
    sampler = RssSampler()
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        workdir = Path(tmp)
        if args.minilm:
            model, model_name = packaged_model(), "MiniLM-L6"
        elif args.model:
            model, model_name = args.model, args.model
        else:
            model, model_name = str(tiny_bert(workdir / "tiny-bert")), "tiny random BERT (2 layers, hidden 32)"
        store = default_tracking_uri(workdir / "mlruns")
        setup_tracking(store, "scaling")  # the first migration of the store (5-7 s) is no phase's
        settings = Settings(model, store, not args.whole_documents, args.report_on, args.precision, args.device,
                            args.batch_size)
        base = "all" if not args.base_docs else str(args.base_docs)
        print(f"{source.name}: {', '.join(f'{s} {len(d)}' for s, d in source.splits.items())} documents; model "
              f"{model_name}; trainer.precision={args.precision}; split_sentences={settings.split_sentences}; "
              f"report on {args.report_on}; "
              f"budget {args.budget:.0f} s a phase; 1x = {base} documents a split", flush=True)
        builders = {"corpus": corpus_sizes(source, args.multiples, args.base_docs),
                    "document": document_sizes(source, args.characters)}
        results = [run_axis(axis, builders[axis], source, settings, workdir, sampler, args) for axis in args.axes]

        print(machine_line() + f"; CPU {cpu_model()}; {commit_line()}")
        print(f"{args.fit_on} time ~ size^k per phase (goal k <= {GOAL_K}); {args.fit_on} time and peak RSS above "
              "the phase's start at the largest size:")
        over = print_table(results)
        print("phases over the goal: " + (", ".join(f"{phase} ({axis})" for axis, phase in over) or "none"))

        if args.profile and over:
            for result in results:
                flagged = frozenset(phase for axis, phase in over if axis == result.name)
                if not flagged:
                    continue
                # The largest size every flagged phase ran at in full; with 3x the budget (the profiler's cost).
                index = min(result.over_budget.get(phase, len(result.labels)) for phase in flagged) - 1
                label, size, build = builders[result.name][max(0, index)]
                root = workdir / f"profile-{result.name}"
                source.write(build(), root)
                print(f"profile, {result.name} axis at {label}:")
                _, clock = run_once(source, root, settings, workdir, sampler, 3 * args.budget, set(), profile=flagged)
                print_profile(clock, args.profile_top)
                shutil.rmtree(root, ignore_errors=True)

        document = next((r for r in results if r.name == "document"), None)
        if document is not None and document.largest_model is not None:
            characters = args.characters[len(document.labels) - 1]
            ratio, bound, note = long_document_ratio(source, settings, document.largest_model, characters,
                                                     args.pieces, workdir, sampler, args)
            print(note)
            pieces = min(args.pieces, len(documents_for(source.splits["test"], characters)))
            print(f"test predict + report, one {characters:,}-character document / {pieces} documents: "
                  f"{'>= ' if bound else ''}{ratio:.3f} (goal < {GOAL_RATIO:g})")


if __name__ == "__main__":
    sys.exit(main())

"""Cost of the statistics of issue 31 on a test split the size of NCBI-disease's.

    python bench/significance_cost.py [--documents 100] [--repeats 3] [--data-root ../shared/data/ncbi-disease]

Two systems' predictions on 100 documents shaped like NCBI-disease's test split (9.5 gold
entities per document on average, overdispersed; recall about 0.85, 0.15 false positives per
gold entity, some of them boundary errors), or, with ``--data-root``, the gold entities of the
real test split (labels collapsed to ``Disease``) with predictions drawn the same way. Timed
(median of ``--repeats``, after one untimed call):

- building the per-document counts from the prediction records (`ner_counts`);
- a run's intervals: 1,000 document resamples of micro F1, precision, recall and every
  per-label F1 in one pass (`bootstrap_cis`), percentile and BCa; goal < 2 s;
- a comparison: 10,000 paired resamples of each test (`paired_bootstrap`,
  `approximate_randomization`); goal < 10 s each.

The two systems' predictions are drawn independently (real runs of one configuration agree
on most entities, which makes their tests more powerful): the p-values printed only show the
calls ran; the figures are the seconds. Printed last: the interval and the two tests' seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import scipy
from common import cpu_model

from medkit_exp.stats import approximate_randomization, bootstrap_cis, ner_counts, paired_bootstrap

MEAN_ENTITIES, DISPERSION, RECALL, FP_RATE = 9.5, 2.0, 0.85, 0.15


def synthetic_gold(rng: np.random.Generator, documents: int) -> list[list[list[Any]]]:
    """Gold entities ``[label, start, end]`` of ``documents`` synthetic abstracts."""
    counts = rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + MEAN_ENTITIES), documents)
    return [[["Disease", 40 * k, 40 * k + int(rng.integers(5, 30))] for k in range(n)] for n in counts]


def ncbi_gold(root: str, documents: int) -> list[list[list[Any]]]:
    """Gold entities of the first ``documents`` documents of NCBI-disease's test split."""
    from medkit_exp.io import NCBI_LABEL_MAP, load_brat_splits

    test = load_brat_splits(root, label_map=NCBI_LABEL_MAP, overlap_policy="keep_longest")["test"]
    return [[[e.label, e.spans[0].start, e.spans[-1].end] for e in doc.anns.entities]
            for doc in test.documents[:documents]]


def predicted(rng: np.random.Generator, gold: list[list[Any]], recall: float) -> list[list[Any]]:
    """A system's entities: each gold one found with probability ``recall`` (in a document of
    random difficulty), half the misses predicted with a wrong boundary, plus spurious ones."""
    document_recall = rng.beta(recall * 8, (1 - recall) * 8)
    out = []
    for label, start, end in gold:
        if rng.random() < document_recall:
            out.append([label, start, end])
        elif rng.random() < 0.5:
            out.append([label, start, end + 1])
    spurious = rng.poisson(FP_RATE / 2 * max(len(gold), 1))
    out += [["Disease", 100_000 + 50 * k, 100_000 + 50 * k + 9] for k in range(spurious)]
    return out


def timed(function: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``function`` over ``repeats`` calls, after one untimed call."""
    function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interval-resamples", type=int, default=1000)
    parser.add_argument("--test-resamples", type=int, default=10_000)
    parser.add_argument("--data-root", default=None, help="read the gold of NCBI-disease's test split from here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    golds = ncbi_gold(args.data_root, args.documents) if args.data_root else synthetic_gold(rng, args.documents)
    records = {name: [{"document_id": f"doc{i}", "gold": gold, "predicted": predicted(rng, gold, recall)}
                      for i, gold in enumerate(golds)] for name, recall in (("a", RECALL), ("b", RECALL + 0.02))}
    a, b = ner_counts(records["a"]), ner_counts(records["b"])
    entities = int(a.total()[:, [0, 2]].sum())
    print(f"data: {len(a)} documents ({'NCBI-disease test gold' if args.data_root else 'synthetic'}), "
          f"{entities} gold entities ({entities / len(a):.1f} per document); F1 A {a.score('f1'):.4f}, "
          f"B {b.score('f1'):.4f}")

    build = timed(lambda: ner_counts(records["a"]), args.repeats)
    metrics = ["f1", "precision", "recall", *(f"{label}_f1" for label in a.labels)]
    intervals = {method: timed(partial(bootstrap_cis, a, metrics, args.interval_resamples, method=method),
                               args.repeats) for method in ("percentile", "BCa")}
    f1 = bootstrap_cis(a, ["f1"], args.interval_resamples)["f1"]
    pb = paired_bootstrap(b, a, resamples=args.test_resamples)
    ar = approximate_randomization(b, a, resamples=args.test_resamples)
    paired = timed(lambda: paired_bootstrap(b, a, resamples=args.test_resamples), args.repeats)
    randomization = timed(lambda: approximate_randomization(b, a, resamples=args.test_resamples), args.repeats)

    print(f"counts from records: {build:.4f} s")
    print(f"f1 = {f1.point:.4f} [{f1.low:.4f}, {f1.high:.4f}] (95% CI, {f1.resamples:,} document resamples); "
          f"B - A = {pb.difference:+.4f} [{pb.low:+.4f}, {pb.high:+.4f}], p = {pb.p_value:.4f} (paired bootstrap), "
          f"{ar.p_value:.4f} (approximate randomization)")
    print(f"intervals of {len(metrics)} metrics, {args.interval_resamples:,} resamples: percentile "
          f"{intervals['percentile']:.3f} s, BCa {intervals['BCa']:.3f} s (goal < 2 s)")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"python {platform.python_version()}, median of {args.repeats}")
    print(f"seconds: interval {max(intervals.values()):.3f} (goal < 2), paired bootstrap {paired:.3f}, "
          f"approximate randomization {randomization:.3f} ({args.test_resamples:,} resamples each; goal < 10)")


if __name__ == "__main__":
    main()

"""`python -m medkit_exp.compare`: is run A really better than run B on the test documents?

    python -m medkit_exp.compare RUN_A RUN_B                         # two MLflow run ids
    python -m medkit_exp.compare outputs/2026-12-03/10-00-00 outputs/2026-12-03/11-00-00
    python -m medkit_exp.compare PARENT:1 PARENT:2                   # a sweep's two best configurations
    python -m medkit_exp.compare --sweep PARENT --config "trainer.lr=5e-3" --config "trainer.lr=1e-3"

Each side is an MLflow run id, a run's folder, or every seed of one configuration of a sweep
(see `medkit_exp.tracking.predictions`). The scores are recomputed from the per-document test
predictions the runs stored, over the documents both sides predicted, and the difference
A - B gets its 95% paired-bootstrap interval and the p-values of the paired bootstrap and of
approximate randomization. With several seeds on a side: both tests for every pair of runs
(with how many are significant at 0.05) and on the seed-averaged per-document counts
(`medkit_exp.stats.compare_seeds`). Nothing is logged unless ``--log-to`` names a run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medkit_exp.errors import UserError, run_command

if TYPE_CHECKING:
    from medkit_exp.stats import DocumentCounts
    from medkit_exp.tracking.predictions import Side

CONFIDENCE = 0.95
ALPHA = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medkit_exp.compare", description=__doc__.split("\n\n")[0],
                                     epilog="A is the first side given: the positional ones in order, then the "
                                            "--config ones.")
    parser.add_argument("sides", nargs="*", metavar="SIDE",
                        help="an MLflow run id, a run's folder, or <sweep parent run id>:<rank> (1 = best)")
    parser.add_argument("--sweep", metavar="PARENT_RUN_ID", help="the sweep parent run that --config refers to")
    parser.add_argument("--config", action="append", default=[], metavar="OVERRIDES",
                        help="a configuration of --sweep: its overrides without the seed, or enough of them to "
                             "single it out (every seed of it is one side)")
    parser.add_argument("--metric", default=None,
                        help="the metric compared (default: f1 for NER, accuracy for classification, the first "
                             "value for per-item values)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples and random swaps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite mlruns/mlflow.db here)")
    parser.add_argument("--log-to", metavar="RUN_ID", default=None,
                        help="record the comparison on this run (artifact comparisons/<A>_vs_<B>.json and tags)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_command("medkit_exp.compare", lambda: _main(parse_args(argv)))


def _main(args: argparse.Namespace) -> int:
    from medkit_exp.tracking.predictions import resolve_side, sweep_side

    if args.config and not args.sweep:
        raise UserError("--config names a configuration of a sweep: give its parent run with --sweep")
    if len(args.sides) + len(args.config) != 2:
        raise UserError(f"give two sides to compare (run ids, folders, PARENT:RANK or --config), "
                        f"got {len(args.sides) + len(args.config)}")
    if args.resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {args.resamples}")
    store = Store(args.tracking_uri)
    if args.log_to:  # before the work: a mistyped run id is refused at once
        from medkit_exp.tracking.predictions import get_run

        get_run(store.client(), args.log_to)
    sides = [resolve_side(spec, store.client) for spec in args.sides]
    sides += [sweep_side(store.client(), args.sweep, overrides=overrides) for overrides in args.config]
    result = compare_sides(sides[0], sides[1], args.metric, args.resamples, args.seed)
    if args.log_to:
        name = log_comparison(store.client(), args.log_to, result)
        result["logged_to"] = {"run_id": args.log_to, "artifact": name}
    print(json.dumps(result, indent=2) if args.json else format_result(result), flush=True)
    return 0


class Store:
    """The MLflow store, opened on first use (a comparison of two folders never imports MLflow)."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            from medkit_exp.tracking.store import default_tracking_uri

            uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                uri = default_tracking_uri()
                if not Path("mlruns", "mlflow.db").is_file():
                    raise UserError(f"no MLflow store here ({uri} does not exist): run this where you trained, "
                                    "or give --tracking-uri")
            self._client = MlflowClient(tracking_uri=uri)
        return self._client


def compare_sides(a: Side, b: Side, metric: str | None, resamples: int, seed: int) -> dict[str, Any]:
    """The comparison of two `medkit_exp.tracking.predictions.Side` as a JSON-ready dict."""
    from medkit_exp import stats

    runs_a, runs_b = a.counts(), b.counts()
    check_same_documents([(a.label, c) for c in runs_a] + [(b.label, c) for c in runs_b])
    kinds = {c.kind for c in [*runs_a, *runs_b]}
    if len(kinds) > 1:
        raise UserError(f"{a.label} holds {runs_a[0].kind} predictions and {b.label} {runs_b[0].kind} ones: "
                        "compare runs of the same task")
    aligned = stats.align(*runs_a, *runs_b)
    runs_a, runs_b = aligned[:len(runs_a)], aligned[len(runs_a):]
    kind = runs_a[0].kind
    metric = metric or runs_a[0].default_metric()
    try:
        runs_a[0].metric(metric)
    except ValueError as exc:
        raise UserError(f"--metric: {exc}") from exc
    if len(runs_a[0]) < 2:
        raise UserError(f"the sides share {len(runs_a[0])} test document: a paired test needs at least 2")
    if len(runs_a) == 1 and len(runs_b) == 1:
        tests = stats.compare(runs_a[0], runs_b[0], metric, resamples, CONFIDENCE, seed=seed)
        seed_pairs = None
    else:
        pooled = stats.compare_seeds(runs_a, runs_b, metric, resamples, CONFIDENCE, seed=seed, alpha=ALPHA)
        tests = pooled.pooled
        seed_pairs = {"pairs": len(pooled.pairs), "alpha": ALPHA,
                      "significant_bootstrap": pooled.significant_bootstrap,
                      "significant_randomization": pooled.significant_randomization,
                      "tests": [pair.as_dict() for pair in pooled.pairs]}
    boot, randomization = tests.bootstrap, tests.randomization
    return {
        "metric": metric, "kind": kind, "documents": boot.documents, "resamples": resamples, "seed": seed,
        "confidence": CONFIDENCE,
        "a": side_dict(a, runs_a, metric, boot.score_a), "b": side_dict(b, runs_b, metric, boot.score_b),
        "pooling": "single runs" if seed_pairs is None else "seed-averaged per-document counts",
        "difference": boot.difference, "ci_low": boot.low, "ci_high": boot.high,
        "p_bootstrap": boot.p_value, "p_randomization": randomization.p_value,
        "tests": tests.as_dict(), "seed_pairs": seed_pairs,
    }


def side_dict(side: Side, runs: Sequence[DocumentCounts], metric: str, score: float) -> dict[str, Any]:
    """One side: its label, runs and scores (``score``: of its seed-averaged counts when several)."""
    scores = [run.score(metric) for run in runs]
    return {"side": side.label, "slug": side.slug, "runs": [p.source for p in side.runs], "scores": scores,
            "mean": sum(scores) / len(scores), "score": score}


def check_same_documents(runs: Sequence[tuple[str, DocumentCounts]]) -> None:
    """`UserError` naming how many documents differ when runs were scored on different test documents."""
    first_label, first = runs[0]
    reference = set(first.document_ids)
    for label, counts in runs[1:]:
        ids = set(counts.document_ids)
        if ids != reference:
            only_first, only_other = len(reference - ids), len(ids - reference)
            raise UserError(
                f"{first_label} and {label} were scored on different test documents: {only_first + only_other} "
                f"document ids differ ({only_first} only in the first, {only_other} only in the second); "
                "compare runs scored on the same test split")


def log_comparison(client: Any, run_id: str, result: dict[str, Any]) -> str:
    """Record ``result`` on run ``run_id``: artifact ``comparisons/<A>_vs_<B>.json`` and
    ``comparison.<A>_vs_<B>.*`` tags (difference, interval, p-values); returns the artifact's path."""
    name = f"{result['a']['slug']}_vs_{result['b']['slug']}"
    artifact = f"comparisons/{name}.json"
    client.log_dict(run_id, result, artifact)
    tags = {"metric": result["metric"], "difference": f"{result['difference']:.6f}",
            "ci": f"[{result['ci_low']:.6f}, {result['ci_high']:.6f}]",
            "p_bootstrap": f"{result['p_bootstrap']:.6g}", "p_randomization": f"{result['p_randomization']:.6g}"}
    for key, value in tags.items():
        client.set_tag(run_id, f"comparison.{name}.{key}", value)
    return artifact


def format_result(result: dict[str, Any]) -> str:
    """The comparison as the lines the command prints."""
    metric, seeds = result["metric"], result["seed_pairs"]
    lines = [f"{metric} on {result['documents']} test documents both sides predicted; "
             f"{result['resamples']:,} resamples, seed {result['seed']}"]
    for key in ("a", "b"):
        side = result[key]
        line = f"  {key.upper()}: {side['side']}: {metric} {side['score']:.4f}"
        if len(side["scores"]) > 1:
            scores = " ".join(f"{s:.4f}" for s in side["scores"])
            line += f" seed-averaged ({len(side['scores'])} runs: {scores}; mean {side['mean']:.4f})"
        lines.append(line)
    on = " of the seed-averaged per-document counts" if seeds else ""
    level = f"{result['confidence']:.0%}"
    lines.append(f"  difference A - B{on}: {result['difference']:+.4f}, {level} CI "
                 f"[{result['ci_low']:+.4f}, {result['ci_high']:+.4f}] (paired bootstrap over documents)")
    lines.append(f"  p-value: {result['p_bootstrap']:.4f} (paired bootstrap), "
                 f"{result['p_randomization']:.4f} (approximate randomization)")
    if seeds:
        lines.append(f"  seed pairs: {seeds['significant_bootstrap']} of {seeds['pairs']} significant at "
                     f"{seeds['alpha']} by paired bootstrap, {seeds['significant_randomization']} of "
                     f"{seeds['pairs']} by approximate randomization")
    if "logged_to" in result:
        lines.append(f"Recorded on run {result['logged_to']['run_id']}: {result['logged_to']['artifact']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

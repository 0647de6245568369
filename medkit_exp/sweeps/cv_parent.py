"""The parent run of a cross-validation sweep: per configuration, its folds' scores with their
spread; the pooled out-of-fold predictions; a plot of the folds; the annotation suspects.

Run by the sweep callback at the end of a multirun whose jobs carry the ``cv.fold`` tag (the
app tags every job of ``-m cv.folds=5 'cv.fold=range(5)'``). Jobs are grouped by their
configuration without fold and seed (`medkit_exp.sweeps.cross_validation`); the best
configuration (by the mean over folds of the out-of-fold dev score matching the sweep's
objective), or the only one, is logged on the parent run:

- metrics ``cv_mean_<split>_<metric>``, ``cv_std_...``, ``cv_ci_low_...``, ``cv_ci_high_...``
  for ``dev`` (out-of-fold) and ``test``, ``cv_pooled_dev_<metric>``, ``cv_folds``,
  ``cv_folds_done``, ``cv_documents`` (documents the out-of-fold predictions cover);
- tags ``cv.complete`` (every fold of every seed finished), ``cv.exactly_once`` (no document
  predicted by two folds of one seed, and each seed's folds together predicted as many documents
  as train + dev held, the jobs' ``corpus_summary.json`` says), ``cv.configuration``;
- ``cv_summary.json`` (every configuration's figures and runs), ``predictions/out_of_fold.jsonl``
  (also written to ``<sweep dir>/predictions/``), ``plots/cv_fold_scores.png``;
- ``analysis/annotation_suspects.tsv`` and ``.html`` (also in ``<sweep dir>/analysis/``) when
  the records carry token probabilities (`medkit_exp.analysis.suspects`).

A job whose component stores no predictions (a user's, without ``item_values``) counts with the
best epoch's ``best_eval_*`` metrics it logged, and adds no out-of-fold record. A job that
failed is left out and the cross-validation marked incomplete; nothing here fails
the sweep (a problem becomes a warning, as for the sweep's ranking).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.sweeps.cross_validation import (
    FOLD_KEY,
    SPLITS,
    CrossValidation,
    FoldRun,
    best_cross_validation,
    cv_configuration,
    record_scores,
)

log = logging.getLogger("medkit_exp.sweep")

FOLDS_TAG = "cv.folds"
CV_SEED_TAG = "cv.seed"
SEED_PARAM = "trainer.seed"
SUMMARY_ARTIFACT = "cv_summary.json"
CORPUS_SUMMARY = "corpus_summary.json"  # each job's; its "cv" entry holds the fold's sizes
OUT_OF_FOLD = "predictions/out_of_fold.jsonl"
PLOT = "plots/cv_fold_scores.png"
ANALYSIS_DIR = "analysis"
TOP_SUSPECTS = 10


def record_cross_validation(config: Any, parent: str, maximize: bool = True, resumed: bool = False
                            ) -> CrossValidation | None:
    """Summarize the cross-validation of the sweep whose parent run is ``parent`` (see the
    module's docstring); None for a sweep without fold jobs, or when it could not (a warning).
    ``resumed``: keep one run per job, as a resumed sweep's ranking does."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        validations = gather(client, parent, resumed)
        if not validations:
            return None
        metric = str(config.get("objective") or "").removeprefix("eval_").removeprefix("test_").removeprefix("best_")
        best = best_cross_validation(validations, metric, maximize)
        log_cross_validation(client, parent, best, validations, metric, maximize)
    except Exception as exc:  # the jobs are done and logged; the summary is an extra
        log.warning("could not summarize the cross-validation on parent run %s: %s", parent, exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        return None
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    records = best.out_of_fold_records()
    _guarded("write the out-of-fold predictions", parent, write_out_of_fold, client, parent, records, sweep_dir)
    _guarded("plot the fold scores", parent, log_fold_plot, client, parent, best)
    _guarded("rank the annotation suspects", parent, record_suspects, client, parent, records, sweep_dir)
    return best


def gather(client: Any, parent: str, resumed: bool = False) -> list[CrossValidation]:
    """The fold jobs of the sweep, one `CrossValidation` per configuration (in the order first seen)."""
    experiment_id = client.get_run(parent).info.experiment_id
    children: list[Any] = list(client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'",
                                                  max_results=10_000))
    if resumed:
        from medkit_exp.sweeps.resume import latest_per_job

        children = latest_per_job(children)
    validations: dict[str, CrossValidation] = {}
    for run in sorted((r for r in children if FOLD_KEY in r.data.tags), key=lambda r: r.info.start_time or 0):
        tags = run.data.tags
        configuration = cv_configuration(tags.get("sweep.configuration", tags.get("hydra.overrides", "")))
        validation = validations.setdefault(configuration, CrossValidation(configuration, int(tags[FOLDS_TAG])))
        validation.runs.append(fold_run(client, run))
    for validation in validations.values():
        validation.expected_documents = _expected_documents(client, validation)
    return list(validations.values())


def fold_run(client: Any, run: Any) -> FoldRun:
    """A fold job read back: its out-of-fold predictions scored again, its logged test scores."""
    from medkit_exp.errors import MedkitExpError
    from medkit_exp.tracking.predictions import MISSING_TAG, run_predictions

    tags, run_id = run.data.tags, run.info.run_id
    dev: dict[str, float] | None = None
    records: tuple[dict[str, Any], ...] = ()
    if run.info.status == "FINISHED" and MISSING_TAG in tags:  # a component that stores no predictions
        dev = logged_best_eval(run.data.metrics)
        if not dev:
            log.warning("cross-validation: fold %s job's run %s is left out: no predictions (%s) and no "
                        "best_eval_* metric", tags[FOLD_KEY], run_id, tags[MISSING_TAG])
    elif run.info.status == "FINISHED":
        try:
            records = run_predictions(client, run_id, "dev").records
            dev = record_scores(records, source=f"run {run_id}'s out-of-fold predictions")
        except (MedkitExpError, OSError, ValueError) as exc:
            log.warning("cross-validation: fold %s job's run %s is left out: %s", tags[FOLD_KEY], run_id, exc)
    return FoldRun(run_id=run_id, fold=int(tags[FOLD_KEY]), seed=_seed(run), cv_seed=tags.get(CV_SEED_TAG),
                   dev=dev, test=_test_scores(client, run, list(dev or ())), records=records,
                   status=run.info.status)


def logged_best_eval(metrics: Mapping[str, float]) -> dict[str, float] | None:
    """The best epoch's dev scores a job logged (``best_eval_<metric>``, the loss left out): the
    fold's score when its component stores no out-of-fold predictions (None when it logged none)."""
    prefix = "best_eval_"
    scores = {name[len(prefix):]: float(value) for name, value in sorted(metrics.items())
              if name.startswith(prefix) and name != f"{prefix}loss"}
    return scores or None


def log_cross_validation(client: Any, parent: str, best: CrossValidation, validations: Sequence[CrossValidation],
                         metric: str, maximize: bool) -> None:
    """The best configuration's figures as the parent's metrics and tags, every configuration's in
    ``cv_summary.json``; its summary line printed (and an error logged for any document two folds predicted)."""
    from mlflow.entities import Metric

    values: dict[str, float] = {"cv_folds": best.folds, "cv_folds_done": len(best.folds_done),
                                "cv_documents": best.documents()}
    for split in SPLITS:
        for name in best.metrics:
            spread = best.spread(split, name)
            if spread is None:
                continue
            values[f"cv_mean_{split}_{name}"] = spread.mean
            for stat in ("std", "ci_low", "ci_high"):
                if getattr(spread, stat) is not None:
                    values[f"cv_{stat}_{split}_{name}"] = getattr(spread, stat)
    values.update({f"cv_pooled_dev_{name}": value for name, value in best.pooled_dev().items()})
    now = int(time.time() * 1000)
    overlaps, gaps = best.overlaps(), best.coverage_gaps()
    client.log_batch(parent, metrics=[Metric(key, float(value), now, 0) for key, value in values.items()])
    for key, value in {"cv.complete": str(best.complete).lower(), "cv.exactly_once": str(best.exactly_once).lower(),
                       "cv.configuration": best.configuration}.items():
        client.set_tag(parent, key, value)
    ranked = [best, *(v for v in validations if v is not best)]
    client.log_dict(parent, {"metric": metric or None, "maximize": maximize, "best": best.configuration,
                             "configurations": [v.as_dict() for v in ranked]}, SUMMARY_ARTIFACT)
    if overlaps:
        shown = ", ".join(f"{o['document_id']} (folds {o['folds']})" for o in overlaps[:5])
        log.error("cross-validation: %d documents were predicted by more than one fold of the same seed, "
                  "e.g. %s: the folds overlap (see %s on parent run %s)", len(overlaps), shown,
                  SUMMARY_ARTIFACT, parent)
    for gap in gaps:
        log.error("cross-validation: the folds of seed %s predicted %d documents, but train + dev held %d (see %s "
                  "on parent run %s)", gap["seed"], gap["documents"], gap["expected"], SUMMARY_ARTIFACT, parent)
    if len(validations) > 1:
        ranked_by = metric if metric in best.metrics else (best.metrics or ("score",))[0]
        print(f"Cross-validation, best of {len(validations)} configurations by mean out-of-fold dev {ranked_by}: "
              f"{best.configuration}", flush=True)
    print(best.summary_line(), flush=True)


def write_out_of_fold(client: Any, parent: str, records: Sequence[dict[str, Any]], sweep_dir: Path) -> Path | None:
    """``predictions/out_of_fold.jsonl`` in the sweep's folder and on the parent run."""
    if not records:
        return None
    path = sweep_dir / OUT_OF_FOLD
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    client.log_artifact(parent, str(path), str(Path(OUT_OF_FOLD).parent))
    print(f"Out-of-fold predictions ({len(records)} records): {path}", flush=True)
    return path


def log_fold_plot(client: Any, parent: str, best: CrossValidation) -> None:
    """``plots/cv_fold_scores.png``: each fold's out-of-fold dev and test score, and their means."""
    from medkit_exp.training import plots

    if not best.metrics:
        return
    metric = best.metrics[0]
    rows: dict[int, dict[str, Any]] = {}
    for split in SPLITS:
        for fold, score in best.fold_scores(split, metric):
            rows.setdefault(fold, {"fold": fold})[split] = score
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.cv_fold_scores([rows[fold] for fold in sorted(rows)], metric, Path(tmp) / Path(PLOT).name)
        if path is not None:
            client.log_artifact(parent, str(path), str(Path(PLOT).parent))


def record_suspects(client: Any, parent: str, records: Sequence[dict[str, Any]], sweep_dir: Path) -> None:
    """The likely annotation errors of the out-of-fold predictions (`medkit_exp.analysis.suspects`):
    on the parent under ``analysis/`` and in ``<sweep dir>/analysis/``; the top ones printed.
    Skipped, in one log line, for records without token probabilities (classification...)."""
    if not any("token_probs" in record for record in records):
        log.info("cross-validation: no annotation suspects (the out-of-fold predictions carry no token_probs)")
        return
    from medkit_exp.analysis.suspects import find_suspects, format_top, write_suspects

    suspects = find_suspects(records)
    with tempfile.TemporaryDirectory() as tmp:
        write_suspects(suspects, Path(tmp) / ANALYSIS_DIR)
        client.log_artifacts(parent, str(Path(tmp) / ANALYSIS_DIR), ANALYSIS_DIR)
    tsv, html = write_suspects(suspects, sweep_dir / ANALYSIS_DIR)
    print(format_top(suspects, TOP_SUSPECTS), flush=True)
    print(f"Annotation suspects ({len(suspects)}): {tsv} and {html.name} beside it; parent run {parent} "
          f"holds them under {ANALYSIS_DIR}/", flush=True)


def _test_scores(client: Any, run: Any, metrics: Sequence[str]) -> dict[str, float]:
    """The test scores a fold job logged (``test_<metric>``), else those of its ``predictions/test.jsonl``."""
    logged = {name: float(run.data.metrics[f"test_{name}"]) for name in metrics if f"test_{name}" in run.data.metrics}
    if logged or not metrics or run.info.status != "FINISHED":
        return logged
    from medkit_exp.errors import MedkitExpError
    from medkit_exp.tracking.predictions import run_predictions

    try:
        return record_scores(run_predictions(client, run.info.run_id, "test").records, metrics)
    except (MedkitExpError, OSError, ValueError):
        return {}


def _expected_documents(client: Any, validation: CrossValidation) -> int | None:
    """How many documents train + dev held: ``train + heldout`` of the ``cv`` entry of a finished
    job's ``corpus_summary.json`` (None when it has none, or counts items rather than documents)."""
    from medkit_exp.tracking.predictions import quiet_downloads

    for run in validation.done[:1]:
        if CORPUS_SUMMARY not in {a.path for a in client.list_artifacts(run.run_id)}:
            return None
        with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
            summary = json.loads(Path(client.download_artifacts(run.run_id, CORPUS_SUMMARY, tmp)).read_text("utf-8"))
        cv = summary.get("cv") if isinstance(summary, dict) else None
        if isinstance(cv, dict) and cv.get("unit", "documents") == "documents" and "train" in cv and "heldout" in cv:
            return int(cv["train"]) + int(cv["heldout"])
    return None


def _seed(run: Any) -> str | None:
    """A job's ``trainer.seed``: its logged param, else its override."""
    if SEED_PARAM in run.data.params:
        return str(run.data.params[SEED_PARAM])
    for override in run.data.tags.get("hydra.overrides", "").split():
        key, _, value = override.partition("=")
        if key.lstrip("+~") == SEED_PARAM:
            return value
    return None


def _guarded(what: str, parent: str, step: Any, *args: Any) -> None:
    try:
        step(*args)
    except Exception as exc:  # the scores are logged; a missing extra must not fail the sweep
        log.warning("cross-validation: could not %s on parent run %s: %s", what, parent, exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))

"""The parent run of a cross-validation sweep (`medkit_exp.sweeps.cv_parent`): per-fold scores
recomputed from the fold jobs' out-of-fold predictions, their mean, spread and t interval, the
pooled out-of-fold predictions (every document once per seed), incomplete cross-validations."""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
from pathlib import Path

import pytest
from conftest import EXAMPLE_REGRESSOR_ARGS, copy_examples
from omegaconf import OmegaConf

from medkit_exp.sweeps.cross_validation import CrossValidation, FoldRun, fold_spread
from medkit_exp.sweeps.cv_parent import record_cross_validation

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (3 folds), from a table
T_975_DF1 = 12.706204736174698  # with 1 degree of freedom (2 folds)


def document(doc_id: str, tp: int, fp: int, fn: int) -> dict:
    """An NER record with ``tp`` entities found, ``fp`` spurious ones and ``fn`` missed ones."""
    found = [["Disease", 10 * i, 10 * i + 5] for i in range(tp)]
    missed = [["Disease", 100 + 10 * i, 105 + 10 * i] for i in range(fn)]
    spurious = [["Disease", 500 + 10 * i, 505 + 10 * i] for i in range(fp)]
    return {"document_id": doc_id, "split": "dev", "gold": found + missed, "predicted": found + spurious}


# Three folds of two documents each: fold 0 tp=3 fp=1 fn=1 (F1 0.75), fold 1 tp=4 (F1 1.0),
# fold 2 tp=2 fp=2 fn=2 (F1 0.5). Pooled: tp=9 fp=3 fn=3, F1 = precision = recall = 0.75.
FOLDS = {0: [document("d0", 2, 0, 0), document("d1", 1, 1, 1)],
         1: [document("d2", 2, 0, 0), document("d3", 2, 0, 0)],
         2: [document("d4", 1, 1, 1), document("d5", 1, 1, 1)]}
TEST_F1 = {0: 0.80, 1: 0.82, 2: 0.84}


@pytest.fixture
def cv_store(mlflow_root, tmp_path):
    """``(client, make_cv)``: ``make_cv(jobs)`` logs a parent run and one child per job, as a
    cross-validation sweep leaves them; a job is a dict with ``fold``, ``records`` (None: no dev
    predictions), and optionally ``seed``, ``configuration``, ``test_f1``, ``status``, ``folds``,
    ``documents`` (train + dev, in its ``corpus_summary.json``: 6 by default)."""
    from mlflow import MlflowClient

    from medkit_exp.tracking.store import setup_tracking

    experiment_id = setup_tracking(root=mlflow_root)
    client = MlflowClient()

    def make_cv(jobs: list[dict]) -> str:
        parent = client.create_run(experiment_id, run_name="sweep-cv", tags={"sweep.id": "cv"}).info.run_id
        for job in jobs:
            configuration = job.get("configuration", "cv.folds=3")
            seed = job.get("seed", 0)
            run_id = client.create_run(experiment_id, tags={
                "mlflow.parentRunId": parent, "sweep.configuration": configuration,
                "hydra.overrides": f"{configuration} cv.fold={job['fold']} trainer.seed={seed}",
                "cv.folds": str(job.get("folds", 3)), "cv.fold": str(job["fold"]), "cv.seed": "0",
                "cv.group_by": "None"}).info.run_id
            client.log_param(run_id, "trainer.seed", str(seed))
            if job.get("test_f1") is not None:
                client.log_metric(run_id, "test_f1", job["test_f1"])
            if job["records"] is not None:
                path = tmp_path / run_id / "predictions" / "dev.jsonl"
                path.parent.mkdir(parents=True)
                path.write_text("".join(json.dumps({**r, "fold": job["fold"]}) + "\n" for r in job["records"]))
                client.log_artifact(run_id, str(path), "predictions")
            client.log_dict(run_id, {"train": {"documents": 4}, "cv": {
                "fold": job["fold"], "folds": job.get("folds", 3), "train": job.get("documents", 6) - 2, "heldout": 2,
                "unit": "documents"}}, "corpus_summary.json")
            client.set_terminated(run_id, job.get("status", "FINISHED"))
        return parent

    return client, make_cv


def three_folds(**changes) -> list[dict]:
    return [{"fold": k, "records": FOLDS[k], "test_f1": TEST_F1[k], **changes} for k in FOLDS]


def summarize(parent: str, tmp_path: Path, objective: str = "eval_f1"):
    config = OmegaConf.create({"objective": objective, "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    return record_cross_validation(config, parent)


def artifact(client, parent: str, path: str, tmp_path: Path) -> Path:
    return Path(client.download_artifacts(parent, path, str(tmp_path / "dl")))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_parent_logs_mean_std_and_t_interval_over_folds_as_computed_by_hand(cv_store, tmp_path, capsys):
    client, make_cv = cv_store
    parent = make_cv(three_folds())
    summarize(parent, tmp_path)
    metrics, tags = client.get_run(parent).data.metrics, client.get_run(parent).data.tags

    half_width = T_975_DF2 * 0.25 / math.sqrt(3)  # fold F1s 0.75, 1.0, 0.5: mean 0.75, sample std 0.25
    assert metrics["cv_mean_dev_f1"] == pytest.approx(0.75)
    assert metrics["cv_std_dev_f1"] == pytest.approx(0.25)
    assert metrics["cv_ci_low_dev_f1"] == pytest.approx(0.75 - half_width)
    assert 0.75 + half_width > 1 and metrics["cv_ci_high_dev_f1"] == 1.0  # an F1 interval stops at 1
    # precision per fold 3/4, 4/4, 2/4 (recall the same): the same figures
    assert metrics["cv_mean_dev_precision"] == pytest.approx(0.75)
    assert metrics["cv_std_dev_recall"] == pytest.approx(0.25)
    assert metrics["cv_pooled_dev_f1"] == pytest.approx(0.75)  # tp 9, fp 3, fn 3
    assert metrics["cv_pooled_dev_precision"] == pytest.approx(0.75)
    assert metrics["cv_mean_test_f1"] == pytest.approx(0.82)
    assert metrics["cv_std_test_f1"] == pytest.approx(0.02)
    assert metrics["cv_ci_low_test_f1"] == pytest.approx(0.82 - T_975_DF2 * 0.02 / math.sqrt(3))
    assert "cv_mean_test_precision" not in metrics  # the jobs logged test_f1 alone
    assert metrics["cv_folds"] == 3 and metrics["cv_folds_done"] == 3 and metrics["cv_documents"] == 6
    assert tags["cv.complete"] == "true" and tags["cv.exactly_once"] == "true"
    assert tags["cv.configuration"] == "cv.folds=3"

    out = capsys.readouterr().out
    assert (f"Cross-validation (3 folds): dev F1 0.750 +- 0.250 [{0.75 - half_width:.3f}, 1.000], "
            f"test F1 0.820 +- 0.020 [") in out
    summary = json.loads(artifact(client, parent, "cv_summary.json", tmp_path).read_text())
    only = summary["configurations"][0]
    assert summary["best"] == "cv.folds=3" and only["complete"] is True and only["missing"] == []
    assert only["dev"]["f1"]["per_fold"] == pytest.approx([0.75, 1.0, 0.5])
    assert "Bengio & Grandvalet 2004" in only["interval_note"]
    assert "cv_fold_scores.png" in {Path(a.path).name for a in client.list_artifacts(parent, "plots")}


def test_the_out_of_fold_predictions_cover_every_document_once_locally_and_on_the_parent(cv_store, tmp_path):
    client, make_cv = cv_store
    parent = make_cv(three_folds())
    summarize(parent, tmp_path)
    local = tmp_path / "sweep" / "predictions" / "out_of_fold.jsonl"
    pooled = read_jsonl(local)
    assert read_jsonl(artifact(client, parent, "predictions/out_of_fold.jsonl", tmp_path)) == pooled
    assert sorted(r["document_id"] for r in pooled) == [f"d{i}" for i in range(6)]  # each exactly once
    assert {r["document_id"]: r["fold"] for r in pooled} == {f"d{i}": i // 2 for i in range(6)}
    assert all("seed" not in r for r in pooled)  # one seed: no seed field
    assert pooled[1]["gold"] == FOLDS[0][1]["gold"] and pooled[1]["predicted"] == FOLDS[0][1]["predicted"]


def test_with_seeds_each_fold_averages_its_seeds_and_each_seed_covers_every_document_once(cv_store, tmp_path):
    client, make_cv = cv_store
    # seed 1 does better on fold 2 (F1 1.0 instead of 0.5): fold scores 0.75, 1.0, 0.75
    better = [document("d4", 2, 0, 0), document("d5", 2, 0, 0)]
    jobs = three_folds(seed=0) + [{"fold": k, "seed": 1, "test_f1": TEST_F1[k],
                                   "records": better if k == 2 else FOLDS[k]} for k in FOLDS]
    parent = make_cv(jobs)
    best = summarize(parent, tmp_path)
    metrics, tags = client.get_run(parent).data.metrics, client.get_run(parent).data.tags
    assert best.fold_scores("dev", "f1") == [(0, 0.75), (1, 1.0), (2, 0.75)]
    assert metrics["cv_mean_dev_f1"] == pytest.approx((0.75 + 1.0 + 0.75) / 3)
    assert metrics["cv_std_dev_f1"] == pytest.approx(math.sqrt(((0.75 - 5 / 6) ** 2 * 2 + (1 - 5 / 6) ** 2) / 2))
    assert metrics["cv_pooled_dev_f1"] == pytest.approx((0.75 + 11 / 12) / 2)  # seed 1 pooled: tp 11, fp 1, fn 1
    assert tags["cv.exactly_once"] == "true" and tags["cv.complete"] == "true"
    pooled = read_jsonl(tmp_path / "sweep" / "predictions" / "out_of_fold.jsonl")
    for seed in (0, 1):
        assert sorted(r["document_id"] for r in pooled if r["seed"] == seed) == [f"d{i}" for i in range(6)]


@pytest.mark.parametrize("how", ["failed run", "no run", "no dev predictions"])
def test_a_failed_fold_job_leaves_the_others_and_marks_the_parent_incomplete(cv_store, tmp_path, capsys, how):
    client, make_cv = cv_store
    jobs = three_folds()
    if how == "failed run":
        jobs[1] = {"fold": 1, "records": None, "status": "FAILED"}
    elif how == "no run":
        del jobs[1]
    else:
        jobs[1] = {"fold": 1, "records": None, "test_f1": 0.9}
    parent = make_cv(jobs)
    summarize(parent, tmp_path)
    metrics, tags = client.get_run(parent).data.metrics, client.get_run(parent).data.tags
    assert tags["cv.complete"] == "false"
    assert metrics["cv_folds_done"] == 2 and metrics["cv_folds"] == 3
    assert metrics["cv_mean_dev_f1"] == pytest.approx(0.625)  # folds 0 and 2: 0.75, 0.5
    assert metrics["cv_ci_high_dev_f1"] == min(1.0, 0.625 + T_975_DF1 * math.sqrt(0.03125) / math.sqrt(2))
    assert metrics["cv_mean_test_f1"] == pytest.approx(0.82)  # 0.80 and 0.84
    out = capsys.readouterr().out
    assert "INCOMPLETE, 2 of 3 folds done (no predictions from fold 1)" in out
    pooled = read_jsonl(tmp_path / "sweep" / "predictions" / "out_of_fold.jsonl")
    assert sorted(r["document_id"] for r in pooled) == ["d0", "d1", "d4", "d5"]
    summary = json.loads(artifact(client, parent, "cv_summary.json", tmp_path).read_text())
    missing = summary["configurations"][0]["missing"]
    assert [gap["fold"] for gap in missing] == [1]
    assert len(missing[0]["failed_run_ids"]) == (0 if how == "no run" else 1)


def test_a_document_predicted_by_two_folds_is_an_error_logged_and_tagged(cv_store, tmp_path, caplog):
    client, make_cv = cv_store
    jobs = three_folds()
    jobs[1]["records"] = [*FOLDS[1], document("d0", 1, 0, 0)]
    parent = make_cv(jobs)
    with caplog.at_level(logging.ERROR, logger="medkit_exp.sweep"):
        summarize(parent, tmp_path)
    assert client.get_run(parent).data.tags["cv.exactly_once"] == "false"
    assert any("predicted by more than one fold" in r.getMessage() and "d0 (folds [0, 1])" in r.getMessage()
               for r in caplog.records)
    summary = json.loads(artifact(client, parent, "cv_summary.json", tmp_path).read_text())
    assert summary["configurations"][0]["overlaps"] == [{"document_id": "d0", "cv_seed": "0", "seed": "0",
                                                         "folds": [0, 1]}]


def test_a_document_no_fold_predicted_is_an_error_logged_and_tagged(cv_store, tmp_path, caplog, capsys):
    client, make_cv = cv_store
    jobs = three_folds()
    jobs[2]["records"] = FOLDS[2][:1]  # d5 never predicted, though train + dev held 6 documents
    parent = make_cv(jobs)
    with caplog.at_level(logging.ERROR, logger="medkit_exp.sweep"):
        summarize(parent, tmp_path)
    tags = client.get_run(parent).data.tags
    assert tags["cv.exactly_once"] == "false" and tags["cv.complete"] == "true"
    assert any("predicted 5 documents, but train + dev held 6" in r.getMessage() for r in caplog.records)
    assert "ERROR: the folds predicted 5 of the 6 train + dev documents" in capsys.readouterr().out
    summary = json.loads(artifact(client, parent, "cv_summary.json", tmp_path).read_text())
    assert summary["configurations"][0]["coverage_gaps"] == [{"cv_seed": "0", "seed": "0", "documents": 5,
                                                              "expected": 6}]


def test_several_configurations_each_get_their_figures_and_the_best_is_logged(cv_store, tmp_path, capsys):
    client, make_cv = cv_store
    perfect = {k: [document(f"d{2 * k}", 2, 0, 0), document(f"d{2 * k + 1}", 1, 0, 0)] for k in FOLDS}
    jobs = three_folds(configuration="cv.folds=3 trainer.lr=1e-3") + [
        {"fold": k, "records": perfect[k], "test_f1": 0.9, "configuration": "cv.folds=3 trainer.lr=5e-3"}
        for k in FOLDS]
    parent = make_cv(jobs)
    summarize(parent, tmp_path)
    run = client.get_run(parent)
    assert run.data.tags["cv.configuration"] == "cv.folds=3 trainer.lr=5e-3"
    assert run.data.metrics["cv_mean_dev_f1"] == pytest.approx(1.0) and run.data.metrics["cv_std_dev_f1"] == 0.0
    summary = json.loads(artifact(client, parent, "cv_summary.json", tmp_path).read_text())
    assert [c["configuration"] for c in summary["configurations"]] == ["cv.folds=3 trainer.lr=5e-3",
                                                                      "cv.folds=3 trainer.lr=1e-3"]
    assert summary["configurations"][1]["dev"]["f1"]["mean"] == pytest.approx(0.75)
    assert "best of 2 configurations by mean out-of-fold dev f1: cv.folds=3 trainer.lr=5e-3" in capsys.readouterr().out


def test_classification_folds_report_accuracy_and_macro_f1_and_skip_the_suspects(cv_store, tmp_path, caplog):
    client, make_cv = cv_store

    def items(fold: int, right: int, wrong: int) -> list[dict]:
        return ([{"document_id": f"f{fold}-r{i}", "gold": "A", "predicted": "A"} for i in range(right)]
                + [{"document_id": f"f{fold}-w{i}", "gold": "A", "predicted": "B"} for i in range(wrong)])

    jobs = [{"fold": 0, "records": items(0, 3, 1), "folds": 2}, {"fold": 1, "records": items(1, 1, 1), "folds": 2}]
    parent = make_cv(jobs)
    with caplog.at_level(logging.INFO, logger="medkit_exp.sweep"):
        summarize(parent, tmp_path, objective="eval_accuracy")
    metrics = client.get_run(parent).data.metrics
    assert metrics["cv_mean_dev_accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    assert metrics["cv_pooled_dev_accuracy"] == pytest.approx(4 / 6)
    assert "cv_mean_dev_macro_f1" in metrics and "cv_mean_test_accuracy" not in metrics
    assert any("no annotation suspects" in r.getMessage() for r in caplog.records)
    assert "analysis" not in {a.path for a in client.list_artifacts(parent)}


def test_a_sweep_without_fold_jobs_gets_no_cross_validation(cv_store, tmp_path):
    client, make_cv = cv_store
    parent = make_cv([])
    experiment_id = client.get_run(parent).info.experiment_id
    client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "sweep.configuration": "a=1"})
    assert summarize(parent, tmp_path) is None
    assert not any(k.startswith("cv_") for k in client.get_run(parent).data.metrics)
    assert not (tmp_path / "sweep" / "predictions").exists()


def test_the_sweep_callback_summarizes_a_cross_validation_and_ends_the_parent(cv_store, tmp_path, capsys):
    from medkit_exp.sweeps.callback import MLflowSweepCallback

    client, make_cv = cv_store
    parent = make_cv(three_folds())
    callback = MLflowSweepCallback()
    callback.parent_run_id = parent
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    callback.on_multirun_end(OmegaConf.create({"objective": "eval_f1", "objective_mode": "max",
                                               "hydra": {"sweep": {"dir": str(sweep_dir)}}}))
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.metrics["cv_mean_dev_f1"] == pytest.approx(0.75)
    assert (sweep_dir / "predictions" / "out_of_fold.jsonl").is_file()
    assert "Cross-validation (3 folds): dev F1 0.750" in capsys.readouterr().out


def test_the_interval_of_one_fold_or_identical_folds():
    assert fold_spread([0.8]).std is None and fold_spread([0.8]).text() == "0.800"
    same = fold_spread([0.8, 0.8, 0.8])
    assert same.std == 0.0 and same.ci_low == same.ci_high == pytest.approx(0.8)
    with pytest.raises(ValueError):
        fold_spread([])


def test_a_run_without_a_seed_and_one_without_predictions_are_told_apart():
    validation = CrossValidation("x", 2, [FoldRun("r0", 0, dev={"f1": 0.5}, records=(document("a", 1, 1, 1),)),
                                          FoldRun("r1", 1, dev=None)])
    assert validation.folds_done == [0] and not validation.complete
    assert validation.missing == [{"fold": 1, "cv_seed": None, "seed": None, "failed_run_ids": ["r1"]}]


def test_the_suspects_of_the_out_of_fold_predictions_are_on_the_parent_and_in_the_sweep_folder(cv_store, tmp_path,
                                                                                              capsys):
    from test_suspects import planted_corpus

    client, make_cv = cv_store
    records = planted_corpus()  # twelve documents over three folds, an annotation error planted in doc2
    parent = make_cv([{"fold": k, "records": [r for r in records if r["fold"] == k]} for k in range(3)])
    summarize(parent, tmp_path)
    assert {a.path for a in client.list_artifacts(parent, "analysis")} == {
        "analysis/annotation_suspects.tsv", "analysis/annotation_suspects.html"}
    local = tmp_path / "sweep" / "analysis" / "annotation_suspects.tsv"
    assert artifact(client, parent, "analysis/annotation_suspects.tsv", tmp_path).read_text() == local.read_text()
    rows = local.read_text().splitlines()
    assert rows[1].split("\t")[2:5] == ["label_swap", "doc2", "2"]  # rank 1: kind, document, fold
    out = capsys.readouterr().out
    assert "1. 0.990 label_swap        doc2" in out and f"Annotation suspects (4): {local}" in out


def test_a_three_fold_multirun_leaves_a_parent_with_cv_scores_and_every_document_predicted_once(workdir,
                                                                                                tiny_bert_dir):
    from test_cli import client_for, quick_args, run_cli

    from medkit_exp.io import load_demo_corpus
    from medkit_exp.stats import ner_counts

    result = run_cli(["-m", *quick_args(tiny_bert_dir), "trainer.epochs=1", "data.max_docs=12", "cv.folds=3",
                      "cv.fold=range(3)", "hydra.sweep.dir=sweep"], workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    (parent,) = [r for r in runs if "sweep.id" in r.data.tags and "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if "cv.fold" in r.data.tags), key=lambda r: r.data.tags["cv.fold"])
    assert [r.info.status for r in children] == ["FINISHED"] * 3
    parent_id, metrics, tags = parent.info.run_id, parent.data.metrics, parent.data.tags
    assert metrics["cv_folds"] == 3 and metrics["cv_folds_done"] == 3
    assert tags["cv.complete"] == "true" and tags["cv.exactly_once"] == "true"

    # The fold scores are the children's out-of-fold predictions scored again, and their test F1s.
    dev_f1 = [ner_counts(read_jsonl(artifact(client, r.info.run_id, "predictions/dev.jsonl", workdir / f"c{k}")))
              .score("f1") for k, r in enumerate(children)]
    test_f1 = [r.data.metrics["test_f1"] for r in children]
    assert metrics["cv_mean_dev_f1"] == pytest.approx(statistics.fmean(dev_f1))
    assert metrics["cv_mean_test_f1"] == pytest.approx(statistics.fmean(test_f1))
    assert metrics["cv_std_dev_f1"] == pytest.approx(statistics.stdev(dev_f1))
    assert "cv_ci_low_dev_f1" in metrics and "cv_pooled_dev_f1" in metrics
    assert re.search(r"^Cross-validation \(3 folds\): dev F1 \d\.\d{3} \+- \d\.\d{3} \[-?\d\.\d{3}, \d\.\d{3}\], "
                     r"test F1 ", result.stdout, flags=re.M), result.stdout[-3000:]

    # Every train + dev document predicted by exactly one fold, in the sweep folder and on the parent.
    demo = load_demo_corpus()
    local = workdir / "sweep" / "predictions" / "out_of_fold.jsonl"
    pooled = read_jsonl(local)
    assert read_jsonl(artifact(client, parent_id, "predictions/out_of_fold.jsonl", workdir / "p")) == pooled
    ids = [r["document_id"] for r in pooled]
    assert len(ids) == len(set(ids)) and set(ids) == {d.id for d in demo["train"][:12] + demo["dev"][:12]}
    assert {r["fold"] for r in pooled} == {0, 1, 2}
    names = {a.path for a in client.list_artifacts(parent_id)} | {a.path for a in client.list_artifacts(parent_id,
                                                                                                       "plots")}
    assert {"cv_summary.json", "plots/cv_fold_scores.png"} <= names
    summary = json.loads(artifact(client, parent_id, "cv_summary.json", workdir / "s").read_text())
    only = summary["configurations"][0]
    assert only["expected_documents"] == 24 and only["coverage_gaps"] == [] and only["overlaps"] == []
    assert all("token_probs" in r for r in pooled)  # NER records keep their word probabilities: the suspects
    assert (workdir / "sweep" / "analysis" / "annotation_suspects.tsv").is_file()
    assert {a.path for a in client.list_artifacts(parent_id, "analysis")} == {
        "analysis/annotation_suspects.tsv", "analysis/annotation_suspects.html"}
    assert "annotation suspects, most likely annotation errors first" in result.stdout


def test_a_proportions_interval_stays_within_zero_and_one():
    wide = fold_spread([0.2, 0.9])  # 2 folds: t(1) = 12.7, the raw interval is [-4.1, 5.2]
    assert wide.ci_low is not None and wide.ci_low < 0 and wide.ci_high is not None and wide.ci_high > 1
    clipped = fold_spread([0.2, 0.9], bounds=(0.0, 1.0))
    assert (clipped.ci_low, clipped.ci_high) == (0.0, 1.0) and clipped.mean == pytest.approx(0.55)
    inside = fold_spread([0.80, 0.82, 0.81, 0.79, 0.83], bounds=(0.0, 1.0))
    assert 0.79 < inside.ci_low < inside.mean < inside.ci_high < 0.83  # far from the bounds: unchanged


def test_a_users_own_component_cross_validates_on_its_logged_best_epoch_scores(workdir):
    """examples/: the regressor stores no predictions, so each fold counts with the best_eval_mae it logged."""
    from test_cli import client_for, run_cli

    copy_examples(workdir)
    result = run_cli(["-m", *EXAMPLE_REGRESSOR_ARGS, "cv.folds=3", "cv.fold=range(3)", "hydra.sweep.dir=sweep"],
                     workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(workdir)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if "sweep.id" in r.data.tags and "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if "cv.fold" in r.data.tags), key=lambda r: r.data.tags["cv.fold"])
    assert [r.info.status for r in children] == ["FINISHED"] * 3
    assert all("predictions.missing" in r.data.tags for r in children)
    best_mae = [r.data.metrics["best_eval_mae"] for r in children]
    metrics, tags = parent.data.metrics, parent.data.tags
    assert metrics["cv_folds_done"] == 3 and tags["cv.complete"] == "true"
    assert metrics["cv_mean_dev_mae"] == pytest.approx(statistics.fmean(best_mae))
    assert metrics["cv_std_dev_mae"] == pytest.approx(statistics.stdev(best_mae))
    assert re.search(r"^Cross-validation \(3 folds\): dev ", result.stdout, flags=re.M), result.stdout[-3000:]

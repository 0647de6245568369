"""The model card (README.md) of a run: written beside the best checkpoint, into the logged MLflow
model and the registered version's description, every figure equal to the run's logged metric."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import with_store
from test_cli import quick_args, run_cli

from medkit_exp.tracking.model_card import CARD_FILE, ModelCardFacts, model_card, registry_description

MODEL_NAME = "card-demo"


# ------------------------------------------------------------------------------------------ helpers
def table_rows(card: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose header starts with ``| first_header |``, by first cell."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def bounds(cell: str) -> tuple[float, float]:
    low, high = re.fullmatch(r"\[([0-9.]+), ([0-9.]+)\]", cell).groups()
    return float(low), float(high)


def ner_facts(**changes) -> ModelCardFacts:
    facts = ModelCardFacts(
        task="ner", component="hf_ner", component_target="medkit_exp.text.ner.experiment.hf_ner",
        labels=["Disease", "Drug"], base_model="sentence-transformers/all-MiniLM-L6-v2", tagging_scheme="iob2",
        max_length=128, data_name="ncbi_disease", data_digest="0123456789abcdef", data_source="ncbi",
        data_summary={"train": {"documents": 10, "entities": 30, "entities_per_label": {"Disease": 20, "Drug": 10}},
                      "test": {"documents": 5, "entities": 12, "entities_per_label": {"Disease": 9, "Drug": 3}}},
        overrides=["trainer.lr=1e-4", "data=ncbi_disease"], changed_settings=[("trainer.lr", "0.0001", "0.0003")],
        test_metrics={"precision": 0.8, "recall": 0.7, "f1": 0.74666, "Disease_precision": 0.9,
                      "Disease_recall": 0.8, "Disease_f1": 0.847, "Disease_support": 9.0, "Drug_precision": 0.5,
                      "Drug_recall": 0.4, "Drug_f1": 0.444, "Drug_support": 3.0},
        headline=["precision", "recall", "f1"], test_note="exact character spans",
        intervals={"confidence": 0.9, "method": "bca", "resamples": 500, "seed": 3, "documents": 5,
                   "intervals": {"f1": {"low": 0.61, "high": 0.83}, "precision": {"low": 0.7, "high": 0.9},
                                 "recall": {"low": 0.6, "high": 0.8}, "Disease_f1": {"low": 0.7, "high": 0.95}}},
        dev_metrics={"f1": 0.7, "precision": 0.75, "recall": 0.65}, seed=0, best_epoch=3, epochs=5,
        checkpoint_metric="f1", git={"git.commit": "a" * 40, "git.branch": "main", "git.dirty": "false"},
        run_id="r123", experiment="medkit_exp", date="2026-01-02T03:04:05+00:00")
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


# ------------------------------------------------------------------------------------------ units
def test_a_ner_card_says_what_the_model_does_and_every_figure():
    card = model_card(ner_facts())
    assert card.startswith("# hf_ner on ncbi_disease\n") and "`Disease`, `Drug`" in card
    assert "- Entity labels (2): Disease, Drug" in card and "- Tagging scheme: IOB2" in card
    assert "- Max length: 128 tokens" in card and "- Base model: `sentence-transformers/all-MiniLM-L6-v2`" in card
    assert "- Best epoch: 3 of 5, chosen on dev f1 = 0.7000" in card
    assert "`0123456789abcdef`" in card and "| `trainer.lr` | `0.0001` | `0.0003` |" in card
    headline = table_rows(card, "metric")
    assert headline["f1"] == ["0.7467", "[0.6100, 0.8300]"] and list(headline) == ["precision", "recall", "f1"]
    assert "90%, BCa bootstrap over 500 resamples of the 5 test documents (seed 3)" in card
    per_label = table_rows(card, "label")
    assert per_label["Disease"] == ["0.9000", "0.8000", "0.8470", "[0.7000, 0.9500]", "9"]
    assert per_label["Drug"] == ["0.5000", "0.4000", "0.4440", "n/a", "3"]  # no interval for that label
    assert table_rows(card, "split")["test"] == ["5", "12", "9", "3"]
    assert "git checkout " + "a" * 40 + "\npython -m medkit_exp trainer.lr=1e-4 data=ncbi_disease\n" in card
    assert "- MLflow run: `r123` (experiment `medkit_exp`)" in card and "uncommitted" not in card
    assert "Language: English" in card and "No clinical validation" in card
    assert "reads IOB2 tags" in card and "Cross-validation" not in card


def test_a_bilou_model_is_sent_to_hfentitymatcher_and_a_missing_interval_is_said():
    card = model_card(ner_facts(tagging_scheme="bilou", intervals=None, no_interval_reason="evaluation.resamples=0",
                                base_model="/models/camembert", git={"git.commit": "b" * 40, "git.dirty": "true"}))
    assert "Tagging scheme: BILOU" in card and "reads IOB2 tags only" in card and "`HFEntityMatcher`" in card
    assert "No confidence interval: evaluation.resamples=0." in card
    assert table_rows(card, "metric")["f1"] == ["0.7467"]  # no CI column at all
    assert table_rows(card, "label")["Disease"][3] == "n/a"
    assert "Language: that of the base model `/models/camembert`" in card and "English" not in card
    assert "**The code had uncommitted changes**" in card and "No confidence interval was computed" in card


def test_a_cross_validation_job_says_its_fold_and_out_of_fold_scores():
    card = model_card(ner_facts(cv={"fold": 2, "folds": 5, "seed": 7, "group_by": "patient_id", "groups": 40,
                                    "stratify": True, "parent_run_id": "p42"},
                                data_summary={"train": {"documents": 8}, "dev": {"documents": 2},
                                              "cv": {"fold": 2, "train": 8, "heldout": 2}}))
    assert "This model is fold 2 of 5 (`cv.fold=2`, folds numbered from 0; `cv.seed=7`, documents grouped by " \
           "`patient_id` (40 groups), stratified by entity label)." in card
    assert list(table_rows(card, "split")) == ["train", "dev"]  # the summary's cv entry is no split
    assert table_rows(card, "out-of-fold (dev) metric")["f1"] == ["0.7000"]
    assert "cross-validation parent run (run `p42`)" in card


def test_a_classification_card_names_its_classes_and_a_run_without_test_says_so():
    card = model_card(ModelCardFacts(task="classification", component="hf_segment_classifier",
                                     labels=["negated", "affirmed"], test_metrics={}, dev_metrics={"accuracy": 0.9},
                                     headline=["accuracy"], changed_settings=None))
    assert "Classifies each mention into one of the classes `negated`, `affirmed`." in card
    assert "- Classes (2): negated, affirmed" in card and "Tagging scheme" not in card
    assert "No test score: the data has no test split. Dev scores at the best epoch: accuracy = 0.9000." in card
    assert "could not be compared with the defaults" in card and "Command-line overrides: none" in card
    assert "\npython -m medkit_exp\n" in card and "git checkout" not in card and "No git commit" in card


def test_the_registry_description_is_the_card_or_its_first_sections_that_fit():
    card = model_card(ner_facts())
    assert registry_description(card) == card
    short = registry_description(card, limit=1200)
    assert len(short) <= 1200 and short.startswith(card[: card.index("\n\n## ")])
    assert short.rstrip().endswith("it is longer than the registry keeps.)") and "## Limitations" not in short


def test_cv_facts_and_settings_outside_hydra():
    from omegaconf import OmegaConf

    from medkit_exp.app.model_card import changed_settings, cv_facts

    assert cv_facts(OmegaConf.create({"cv": {"folds": None, "fold": None}})) is None
    assert cv_facts(OmegaConf.create({})) is None
    facts = cv_facts(OmegaConf.create({"cv": {"folds": 3, "fold": 1, "seed": 0, "group_by": "patient"}}),
                     {"cv": {"groups": 12}})
    assert facts is not None and (facts["fold"], facts["folds"], facts["groups"]) == (1, 3, 12)
    assert changed_settings(OmegaConf.create({"trainer": {"lr": 1}})) is None  # no Hydra job: no defaults


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, mlflow_template_db, tiny_bert_dir):
    """A tracked NER run on the tiny BERT whose model is registered as ``card-demo``."""
    workdir = with_store(tmp_path_factory.mktemp("card"), mlflow_template_db)
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=10", "data.max_docs=80", "hydra.run.dir=out",
                      "evaluation.resamples=300", f"tracking.register_as={MODEL_NAME}"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_the_card_is_beside_the_checkpoint_in_the_model_and_the_registry(ner_run):
    from mlflow import MlflowClient

    workdir, out = ner_run
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    run_id = re.search(r"MLflow run\s+: (\w+)", out).group(1)
    checkpoint = Path(re.search(r"checkpoint\s+: (\S+)", out).group(1))
    assert re.search(r"model card\s+: (\S+)", out).group(1) == str(checkpoint / CARD_FILE)
    card = (checkpoint / CARD_FILE).read_text(encoding="utf-8")

    model_uri = re.search(r"MLflow model : (models:/m-\w+)", out).group(1)
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    beside_mlmodel = Path(model.artifact_location.removeprefix("file://"))
    assert (beside_mlmodel / "MLmodel").is_file() and (beside_mlmodel / CARD_FILE).read_text() == card
    version = client.get_model_version(MODEL_NAME, "1")
    assert version.description == card and version.source == model_uri
    assert Path(client.download_artifacts(run_id, "model_card.md", str(workdir))).read_text() == card
    assert f"- Registered as: `models:/{MODEL_NAME}/1`" in card and f"- MLflow model: `{model_uri}`" in card


def test_every_figure_of_the_card_is_the_runs_own(ner_run):
    from mlflow import MlflowClient

    workdir, out = ner_run
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    run = client.get_run(re.search(r"MLflow run\s+: (\w+)", out).group(1))
    metrics, tags = run.data.metrics, run.data.tags
    card = Path(re.search(r"model card\s+: (\S+)", out).group(1)).read_text(encoding="utf-8")

    assert metrics["test_f1"] > 0.1, "the tiny model learnt nothing: the comparison would prove little"
    headline = table_rows(card, "metric")
    assert list(headline) == ["precision", "recall", "f1"]
    for name, (value, interval) in headline.items():
        assert float(value) == pytest.approx(metrics[f"test_{name}"], abs=5e-5)
        assert bounds(interval) == pytest.approx((metrics[f"test_{name}_ci_low"], metrics[f"test_{name}_ci_high"]),
                                                 abs=5e-5)
    intervals = json.loads(Path(client.download_artifacts(run.info.run_id, "predictions/test_intervals.json",
                                                          str(workdir))).read_text())
    assert f"95%, percentile bootstrap over 300 resamples of the {intervals['documents']} test documents" in card
    per_label = table_rows(card, "label")
    assert sorted(per_label) == ["problem", "test", "treatment"]
    assert "- Entity labels (3): problem, test, treatment" in card
    for label, (precision, recall, f1, f1_interval, support) in per_label.items():
        assert [float(precision), float(recall), float(f1)] == pytest.approx(
            [metrics[f"test_{label}_{s}"] for s in ("precision", "recall", "f1")], abs=5e-5)
        expected = intervals["intervals"][f"{label}_f1"]
        assert bounds(f1_interval) == pytest.approx((expected["low"], expected["high"]), abs=5e-5)
        assert int(support) == metrics[f"test_{label}_support"]

    summary = json.loads(Path(client.download_artifacts(run.info.run_id, "corpus_summary.json",
                                                        str(workdir))).read_text())
    splits = table_rows(card, "split")
    assert {s: [int(splits[s][0]), int(splits[s][1])] for s in splits} == {
        s: [summary[s]["documents"], summary[s]["entities"]] for s in ("train", "dev", "test")}
    assert f"`{tags['dataset.digest']}`" in card and f"git checkout {tags['git.commit']}\n" in card
    assert f"\npython -m medkit_exp {tags['hydra.overrides']}\n" in card
    assert f"`{run.info.run_id}`" in card
    recipe = table_rows(card, "setting")
    assert recipe["trainer.epochs"][0] == "`10`" and recipe["evaluation.resamples"] == ["`300`", "`1000`"]
    assert "tracking.register_as" not in recipe and "callbacks.progress_bars" not in recipe  # not the model's recipe
    best_epoch = int(re.search(r"best epoch\s+: (\d+)", out).group(1))
    assert f"- Best epoch: {best_epoch} of 10, chosen on dev f1 = {metrics['best_eval_f1']:.4f}" in card


def test_an_untracked_classification_run_leaves_a_card_naming_its_classes(workdir, tiny_bert_dir):
    from test_classification_cli import write_corpus

    data = write_corpus(workdir / "data")
    result = run_cli([
        "component=hf_segment_classifier", "metrics=classification", "data=jsonl", f"data.root={data}",
        f"component.model={tiny_bert_dir}", "trainer.epochs=1", "trainer.batch_size=8", "threads=1",
        "callbacks.progress_bars=false", "tracking=none", "evaluation.resamples=100", "hydra.run.dir=out",
    ], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    card = (Path(re.search(r"checkpoint\s+: (\S+)", result.stdout).group(1)) / CARD_FILE).read_text()
    assert "- Classes (3): problem, test, treatment" in card and "Per class:" in card
    assert "Classifies each mention into one of the classes `problem`, `test`, `treatment`." in card
    assert sorted(table_rows(card, "label")) == ["problem", "test", "treatment"]
    assert {"accuracy", "macro_f1"} <= set(table_rows(card, "metric")) and "MLflow run" not in card
    assert "| `component.model` |" in card and "| `component._target_` |" not in card  # defaults of its own group


def test_a_cross_validation_jobs_card_says_its_fold_and_its_out_of_fold_scores(workdir, tiny_bert_dir):
    result = run_cli([*quick_args(tiny_bert_dir), "data.max_docs=30", "trainer.epochs=2", "tracking=none",
                      "cv.folds=3", "cv.fold=1", "evaluation.resamples=50", "hydra.run.dir=out"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    card = Path(re.search(r"model card\s+: (\S+)", result.stdout).group(1)).read_text()
    assert "This model is fold 1 of 3 (`cv.fold=1`, folds numbered from 0; `cv.seed=0`)." in card
    history = json.loads((workdir / "out" / "checkpoints" / "history.json").read_text())
    best = history[int(re.search(r"best epoch\s+: (\d+)", result.stdout).group(1)) - 1]["eval"]
    out_of_fold = table_rows(card, "out-of-fold (dev) metric")
    assert {k: float(v[0]) for k, v in out_of_fold.items()} == pytest.approx(
        {k: best[k] for k in ("precision", "recall", "f1")}, abs=5e-5)
    assert "| `cv.fold` | `1` | `None` |" in card and "cv.fold=1" in card.split("```bash")[1]

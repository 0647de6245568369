"""Per-document predictions stored with every run, and the confidence intervals of its test scores
(medkit_exp.text.predictions, medkit_exp.app.evaluation): end to end through the CLI, and the parts alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli import client_for, quick_args, run_cli

from medkit_exp.core.document import Entity, Span, TextDocument, covered_text
from medkit_exp.stats import bootstrap_cis, classification_counts, ner_counts
from medkit_exp.text.metrics import ExactSpanEvaluator
from medkit_exp.text.predictions import counts_of, ner_records, read_records, table_of, write_records


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_ner_run_stores_predictions_that_recompute_its_test_scores_and_logs_their_intervals(workdir, tiny_bert_dir):
    # test_cli's settings: the tiny model then finds entities (test F1 > 0.2).
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=12", "data.max_docs=80", "hydra.run.dir=out"],
                     workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    from medkit_exp.io import load_demo_corpus

    demo = {split: docs[:80] for split, docs in load_demo_corpus().items()}  # data.max_docs=80
    folder = workdir / "out" / "checkpoints" / "predictions"
    test, dev = read_jsonl(folder / "test.jsonl"), read_jsonl(folder / "dev.jsonl")
    assert [r["document_id"] for r in test] == [str(d.id) for d in demo["test"]]
    assert [r["document_id"] for r in dev] == [str(d.id) for d in demo["dev"]]
    assert {r["split"] for r in test} == {"test"} and {r["split"] for r in dev} == {"dev"}
    first = demo["test"][0]
    assert sorted(map(tuple, test[0]["gold"])) == sorted((e.label, e.spans[0].start, e.spans[0].end)
                                                         for e in first.anns.entities)

    client = client_for(workdir)
    run_id = re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1)
    metrics = client.get_run(run_id).data.metrics
    counts = ner_counts(test)
    assert counts.micro_f1() > 0, "a run that finds nothing would not test the recomputation"
    for name in ("f1", "precision", "recall"):
        assert counts.score(name) == pytest.approx(metrics[f"test_{name}"], rel=1e-12, abs=1e-12), name
        low, high = metrics[f"test_{name}_ci_low"], metrics[f"test_{name}_ci_high"]
        assert low <= metrics[f"test_{name}"] <= high and low < high, name
    assert counts.total()[:, 0].sum() + counts.total()[:, 2].sum() == metrics["test_support"]
    # The intervals are the stats package's, seeded: anyone recomputes them from the file.
    again = bootstrap_cis(counts, ["f1"], resamples=1000, confidence=0.95, seed=0)["f1"]
    assert (again.low, again.high) == (metrics["test_f1_ci_low"], metrics["test_f1_ci_high"])

    stored = json.loads((folder / "test_intervals.json").read_text(encoding="utf-8"))
    assert stored["resamples"] == 1000 and stored["documents"] == 60 and stored["method"] == "percentile"
    assert {f"{label}_f1" for label in counts.labels} <= set(stored["intervals"])
    assert stored["intervals"]["f1"]["low"] == metrics["test_f1_ci_low"]

    artifacts = {a.path for a in client.list_artifacts(run_id, "predictions")}
    assert {"predictions/test.jsonl", "predictions/dev.jsonl", "predictions/test_intervals.json",
            "predictions/test_table.json", "predictions/dev_table.json"} <= artifacts
    tables = json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "predictions/test_table.json", "type": "table"} in tables
    downloaded = client.download_artifacts(run_id, "predictions/test_table.json", str(workdir))
    table = json.loads(Path(downloaded).read_text(encoding="utf-8"))  # pandas' "split" layout, as MLflow writes it
    column = table["columns"].index("document_id")
    assert [row[column] for row in table["data"]] == [r["document_id"] for r in test]

    line = re.search(r"^test\s+: (.*)$", result.stdout, flags=re.M).group(1)
    f1, low, high = (float(x) for x in re.search(
        r"f1=(\d\.\d{4}) \[(\d\.\d{4}), (\d\.\d{4})\] \(95% CI, 1,000 document resamples\)", line).groups())
    assert line.startswith("precision=") and line.endswith("(exact character spans)")
    assert (f1, low, high) == (round(metrics["test_f1"], 4), round(metrics["test_f1_ci_low"], 4),
                               round(metrics["test_f1_ci_high"], 4))


def test_classification_run_writes_predictions_and_a_component_without_the_hook_says_why_it_has_none(workdir,
                                                                                                     tiny_bert_dir):
    from test_classification_cli import write_corpus
    from test_examples import run_user_cli

    data = write_corpus(workdir / "data")
    result = run_cli([
        "component=hf_segment_classifier", "metrics=classification", "data=jsonl", f"data.root={data}",
        f"component.model={tiny_bert_dir}", "component.context=window", "component.context_chars=60",
        "trainer.epochs=2", "trainer.lr=2e-3", "trainer.batch_size=8", "threads=1", "callbacks.progress_bars=false",
        "tracking=none", "evaluation.resamples=200", "evaluation.method=bca", "hydra.run.dir=out",
    ], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = workdir / "out" / "checkpoints" / "predictions"
    test = read_jsonl(folder / "test.jsonl")
    from medkit_exp.io import load_jsonl
    from medkit_exp.text.classification import items_from_entities

    items = items_from_entities(load_jsonl(data / "test.jsonl").documents)
    assert [(r["document_id"], r["gold"]) for r in test] == [(str(i.doc.id), i.segment.label) for i in items]
    assert all(isinstance(r["gold"], str) and isinstance(r["predicted"], str) for r in test)
    assert len({r["document_id"] for r in test}) > 1 and (folder / "dev.jsonl").is_file()
    counts = classification_counts(test)
    stored = json.loads((folder / "test_intervals.json").read_text(encoding="utf-8"))
    assert stored["resamples"] == 200 and stored["method"] == "BCa"
    assert stored["intervals"]["accuracy"]["point"] == pytest.approx(counts.accuracy())
    line = re.search(r"^test\s+: (.*)$", result.stdout, flags=re.M).group(1)
    assert re.search(r"accuracy=\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\], macro_f1=\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]"
                     r".* \(95% BCa CI, 200 document resamples\)", line), line

    user = run_user_cli(["trainer.epochs=1", "tracking=none", "hydra.run.dir=user"], workdir)
    assert user.returncode == 0, user.stderr[-3000:]
    said = [line for line in (user.stdout + user.stderr).splitlines() if "no per-document predictions" in line]
    assert len(said) == 1 and "no score_test taking predictions_path and its metrics computer no item_values" in said[0]
    assert not (workdir / "user" / "checkpoints" / "predictions").exists()
    assert "CI," not in re.search(r"^test\s+: (.*)$", user.stdout, flags=re.M).group(1)


def test_records_recompute_the_exact_span_scores_entities_of_several_spans_included():
    texts = {"d1": "aspirin for chest pain and pain in the back", "d2": "no finding"}

    def entity(label, *bounds, doc="d1"):
        spans = [Span(s, e) for s, e in zip(bounds[::2], bounds[1::2], strict=True)]
        return Entity(label=label, spans=spans, text=covered_text(texts[doc], spans))

    docs = [TextDocument(text=text, id=doc_id) for doc_id, text in texts.items()]
    docs[0].anns.add(entity("drug", 0, 7))
    docs[0].anns.add(entity("problem", 12, 22))
    docs[0].anns.add(entity("problem", 27, 31, 39, 43))  # "pain ... back"
    predicted = [[entity("drug", 0, 7), entity("problem", 18, 22), entity("problem", 39, 43, 27, 31)],
                 [entity("problem", 3, 10, doc="d2")]]
    records = ner_records(docs, predicted, "test")
    assert records[0]["gold"][2] == ["problem", 27, 31, 39, 43] and records[0]["predicted"][2] == records[0]["gold"][2]
    expected = ExactSpanEvaluator().compute(docs, predicted)
    counts = counts_of(records)
    assert counts.kind == "ner" and counts.micro_f1() == pytest.approx(expected["f1"], rel=1e-12)
    assert counts.per_label_f1() == pytest.approx({k: expected[f"{k}_f1"] for k in ("drug", "problem")})

    table = table_of(records, {d.id: d.text for d in docs})
    assert table["correct"] == [2, 0] and table["missed"] == [1, 0] and table["spurious"] == [1, 1]
    assert table["gold"][0].splitlines()[2] == 'problem [27, 31) [39, 43) "pain back"'


def test_records_round_trip_through_jsonl(tmp_path):
    records = [{"document_id": "a", "split": "test", "gold": "x", "predicted": "y"},
               {"document_id": "a", "split": "test", "gold": "y", "predicted": "y"}]
    path = write_records(tmp_path / "predictions" / "test.jsonl", records)
    assert read_records(path) == records and counts_of(records).kind == "classification"
    assert len(counts_of(records)) == 1  # the items of one document are one row: the document is resampled


def test_the_evaluation_python_block_recomputes_scores(tmp_path, monkeypatch):
    from support.readme_blocks import python_block

    records = [{"document_id": "a", "split": "test", "gold": [["Disease", 0, 5]], "predicted": [["Disease", 0, 5]]},
               {"document_id": "b", "split": "test", "gold": [["Disease", 3, 9]], "predicted": [["Disease", 2, 9]]}]
    write_records(tmp_path / "outputs" / "run" / "checkpoints" / "predictions" / "test.jsonl", records)
    monkeypatch.chdir(tmp_path)
    block = python_block("counts.per_label_f1()").replace("outputs/...", "outputs/run")
    scope: dict = {}
    exec(block, scope)
    assert scope["counts"].score("f1") == pytest.approx(0.5) and scope["counts"].per_label_f1() == {"Disease": 0.5}


@pytest.mark.parametrize("settings, expected", [
    ({"resamples": -1}, "evaluation.resamples=-1 must be 0 (no interval) or more"),
    ({"confidence": 95}, "evaluation.confidence=95.0 must be between 0 and 1"),
    ({"method": "wild"}, "evaluation.method=wild is unknown; use percentile or bca"),
])
def test_evaluation_settings_out_of_range_are_user_errors(settings, expected):
    from omegaconf import OmegaConf

    from medkit_exp.app.evaluation import check_evaluation_settings
    from medkit_exp.app.schema import EvaluationConfig
    from medkit_exp.errors import UserError

    check_evaluation_settings(OmegaConf.structured(EvaluationConfig(resamples=0)))
    with pytest.raises(UserError, match=re.escape(expected)):
        check_evaluation_settings(OmegaConf.structured(EvaluationConfig(**settings)))


def test_a_bad_evaluation_setting_stops_the_command_in_one_line(tmp_path):
    result = run_cli(["evaluation.method=wild", "tracking=none"], tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["medkit_exp: error: evaluation.method=wild is unknown; use percentile or bca"]

"""A user's component without predictions of its own: per-item values from its metrics computer's
``item_values`` become the run's per-document predictions (medkit_exp.app.item_predictions), with
the intervals of their means, and compare works on them; without the hook, compare says why not."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_examples import client_for, run_id_of, run_user_cli

from medkit_exp.app.item_predictions import item_records
from medkit_exp.stats import bootstrap_cis, item_value_counts
from medkit_exp.text.predictions import counts_of
from medkit_exp.training import Trainer, TrainerConfig

ITEM_METRICS = ["metrics._target_=support.item_metrics.ItemRegressionMetrics",
                "data._target_=support.item_metrics.synthetic_documents"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_item_values_become_predictions_whose_means_are_the_logged_scores_and_two_runs_compare(workdir):
    runs = {}
    for folder, lr in (("a", "0.01"), ("b", "0.0003")):
        result = run_user_cli([*ITEM_METRICS, "trainer.epochs=3", f"trainer.lr={lr}", f"hydra.run.dir={folder}"],
                              workdir)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[folder] = result
    predictions = workdir / "a" / "checkpoints" / "predictions"
    test = read_jsonl(predictions / "test.jsonl")
    # 64 test items, two per document (synthetic_documents), in the order of the split
    assert [r["document_id"] for r in test] == [f"test-doc{i // 2}" for i in range(64)]
    assert {r["split"] for r in test} == {"test"} and all(set(r["values"]) == {"mae", "squared_error"} for r in test)
    assert {r["split"] for r in read_jsonl(predictions / "dev.jsonl")} == {"dev"}

    client = client_for(workdir)
    run_id = run_id_of(runs["a"].stdout)
    metrics = client.get_run(run_id).data.metrics
    assert np.mean([r["values"]["mae"] for r in test]) == pytest.approx(metrics["test_mae"], rel=1e-9)
    counts = counts_of(test)
    assert counts.kind == "mean" and len(counts) == 32 and counts.score("mae") == pytest.approx(metrics["test_mae"])
    assert counts.score("squared_error") == pytest.approx(metrics["test_rmse"] ** 2, rel=1e-6)
    for name in ("mae", "squared_error"):
        low, high = metrics[f"test_{name}_ci_low"], metrics[f"test_{name}_ci_high"]
        assert low < counts.score(name) < high, name
    again = bootstrap_cis(counts, ["mae"], resamples=1000, seed=0)["mae"]  # the stats package's, seeded
    assert (again.low, again.high) == (metrics["test_mae_ci_low"], metrics["test_mae_ci_high"])
    stored = json.loads((predictions / "test_intervals.json").read_text(encoding="utf-8"))
    assert stored["documents"] == 32 and stored["headline"] == ["mae", "squared_error"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "predictions")}
    assert {"predictions/test.jsonl", "predictions/dev.jsonl", "predictions/test_intervals.json"} <= artifacts
    assert "predictions/test_table.json" not in artifacts  # MLflow tables: NER and classification only
    line = re.search(r"^test\s+: (.*)$", runs["a"].stdout, flags=re.M).group(1)
    assert re.search(r"mae=\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\].*\(95% CI, 1,000 document resamples\)", line), line

    compared = run_user_cli_compare(["a", "b", "--json", "--resamples", "1000"], workdir)
    assert compared.returncode == 0, compared.stderr[-3000:]
    result = json.loads(compared.stdout)
    b_metrics = client.get_run(run_id_of(runs["b"].stdout)).data.metrics
    assert result["metric"] == "mae" and result["kind"] == "mean" and result["documents"] == 32
    assert result["a"]["score"] == pytest.approx(metrics["test_mae"])
    assert result["b"]["score"] == pytest.approx(b_metrics["test_mae"])
    assert result["difference"] == pytest.approx(metrics["test_mae"] - b_metrics["test_mae"])
    assert result["ci_low"] <= result["difference"] <= result["ci_high"] and 0 < result["p_randomization"] <= 1
    other = run_user_cli_compare(["a", "b", "--metric", "squared_error", "--resamples", "500"], workdir)
    assert other.returncode == 0 and "squared_error on 32 test documents" in other.stdout, other.stderr[-3000:]
    refused = run_user_cli_compare(["a", "b", "--metric", "rmse"], workdir)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "medkit_exp.compare: error: --metric: unknown metric 'rmse': the items' values are mae, squared_error"]


def test_without_item_values_the_run_says_why_and_compare_refuses_in_one_line_quoting_it(workdir):
    plain = run_user_cli(["trainer.epochs=1", "hydra.run.dir=plain"], workdir)
    assert plain.returncode == 0, plain.stderr[-3000:]
    said = [line for line in (plain.stdout + plain.stderr).splitlines() if "no per-document predictions" in line]
    reason = "the component has no score_test taking predictions_path and its metrics computer no item_values"
    assert len(said) == 1 and reason in said[0]
    run_id = run_id_of(plain.stdout)
    assert client_for(workdir).get_run(run_id).data.tags["predictions.missing"] == reason

    refused = run_user_cli_compare([run_id, run_id], workdir)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"medkit_exp.compare: error: run {run_id} has no predictions/test.jsonl artifact: it stored no "
        f"per-document predictions because {reason}"]
    by_folder = run_user_cli_compare(["plain", "plain"], workdir)
    lines = by_folder.stderr.strip().splitlines()
    assert by_folder.returncode == 2 and len(lines) == 1 and "holds no predictions/test.jsonl" in lines[0]
    assert "their metrics computer has item_values" in lines[0]


def run_user_cli_compare(args: list[str], workdir):
    from test_cli import run_cli

    return run_cli(args, workdir, module="medkit_exp.compare")


class Items:
    """An item with an ``id`` attribute, as `TextDocument` has."""

    def __init__(self, id: str) -> None:
        self.id = id


def test_item_records_take_the_ids_given_else_those_of_the_items_the_examples_came_from():
    items = [{"document_id": "d1"}, Items("d2"), {"x": 1}]
    owners = [0, 0, 1, 2]  # item 0 gave two examples
    entries = [{"values": {"err": 1}}, {"values": {"err": 3}}, {"values": {"err": 2}, "document_id": "own"},
               {"values": {"err": 5}}]
    records = item_records(entries, items, owners, "test")
    assert [r["document_id"] for r in records] == ["d1", "d1", "own", "2"]  # the third item: its position
    assert records[0] == {"document_id": "d1", "split": "test", "values": {"err": 1.0}}
    assert item_value_counts(records).score("err") == pytest.approx(11 / 4)  # the mean over items
    labels = item_records([{"gold": "a", "predicted": "b", "document_id": "x"}], items, owners, "dev")
    assert labels == [{"document_id": "x", "split": "dev", "gold": "a", "predicted": "b"}]
    assert counts_of(labels).kind == "classification"


@pytest.mark.parametrize("entries, expected", [
    ({"values": {}}, "returned dict, not a list of dicts"),
    ([], "returned no item"),
    ([{"values": {"e": 1}}], "returned 1 dicts for 4 examples, not all with a document_id"),
    ([{"values": {"e": float("nan")}}] * 4, "returned e=nan at 0: values must be finite numbers"),
    ([{"values": {"e": 1}}, {"gold": "a", "predicted": "a"}] * 2, 'returned dicts without "values"'),
    ([{"score": 1}] * 4, 'returned dicts without "values"'),
])
def test_item_records_refuse_what_they_cannot_store_naming_the_problem(entries, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        item_records(entries, [{"x": 0}] * 4, [0, 1, 2, 3], "test")


def test_evaluate_with_data_keeps_the_metrics_data_in_order_and_where_each_example_came_from(tmp_path):
    from support.dummy_component import AccuracyMetrics, DummyClassifier, make_data

    class TwoExamplesOfOdd(DummyClassifier):
        def preprocess(self, item):
            example = super().preprocess(item)
            return [example, example] if item[0][0] > 0 else example

    items = make_data(20, seed=3)
    trainer = Trainer(TwoExamplesOfOdd(), TrainerConfig(output_dir=str(tmp_path), epochs=1, eval_batch_size=3),
                      items, items, metrics_computer=AccuracyMetrics(), callbacks=[])
    metrics, data, owners = trainer.evaluate_with_data(items)
    assert metrics == trainer.evaluate(items)
    expected = [i for i, item in enumerate(items) for _ in range(2 if item[0][0] > 0 else 1)]
    assert owners == expected and len(data["gold"]) == len(expected)
    assert data["gold"] == [items[i][1] for i in owners]
    assert trainer.evaluate_with_data([]) == ({}, {}, [])


def test_a_sweep_minimizing_a_per_item_value_calls_the_lower_best_configuration_significantly_better():
    from medkit_exp.sweeps.significance import sweep_significance
    from medkit_exp.sweeps.summary import rank_configurations

    rng = np.random.default_rng(0)

    def errors(scale: float) -> list[dict]:
        return [{"document_id": f"d{i}", "values": {"mae": float(abs(rng.normal(0, scale)))}} for i in range(80)]

    counts = {"low": item_value_counts(errors(0.5)), "high": item_value_counts(errors(1.0))}
    ranking = rank_configurations([("c=low", "low", 0.4), ("c=high", "high", 0.8)], maximize=False)
    result = sweep_significance(ranking, "eval_mae", counts.__getitem__, resamples=500, maximize=False)
    runner_up = result["comparisons"][0]
    assert runner_up["metric"] == "mae" and runner_up["difference"] < 0 and runner_up["significant"] is True
    assert "significantly better at 0.05" in result["verdict"] and "NOT" not in result["verdict"]


def test_the_docs_metrics_computer_gives_items_whose_mean_is_its_score():
    from support.readme_blocks import python_block

    scope: dict = {}
    exec(python_block("def item_values"), scope)
    metrics = scope["RegressionMetrics"]()
    data = {"pred": [0.5, 2.0, -1.0], "gold": [0.0, 1.0, 1.0]}
    records = item_records(metrics.item_values(data), [{"document_id": "p1"}, {"document_id": "p2"}], [0, 0, 1], "test")
    assert item_value_counts(records).score("mae") == pytest.approx(metrics.compute(data)["mae"])

"""Sweeps say whether their winner wins: the sweep parent tests its best configuration against the
next ones on their stored test predictions (`medkit_exp.sweeps.significance`), logs
``sweep_significance.json``, prints ``p vs best`` in the ranking and one line with Holm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_compare import ner_records, write_predictions

from medkit_exp.stats import average_over_seeds, holm, ner_counts
from medkit_exp.sweeps.callback import MLflowSweepCallback
from medkit_exp.sweeps.significance import MAX_COMPARED, p_column, sweep_significance
from medkit_exp.sweeps.summary import format_ranking, rank_configurations


@pytest.fixture
def sweep_store(mlflow_root, tmp_path):
    """``(client, make_sweep)``: ``make_sweep({overrides: [(eval_f1, records | None), ...]})``
    logs a parent run and one child run per seed, as a 2-configuration x 2-seed sweep leaves them."""
    from mlflow import MlflowClient

    from medkit_exp.tracking.store import setup_tracking

    experiment_id = setup_tracking(root=mlflow_root)
    client = MlflowClient()

    def make_sweep(configurations: dict[str, list[tuple[float, list[dict] | None]]]) -> str:
        parent = client.create_run(experiment_id, run_name="sweep-x", tags={"sweep.id": "x"}).info.run_id
        for overrides, seeds in configurations.items():
            for seed, (value, records) in enumerate(seeds):
                run_id = client.create_run(experiment_id, tags={
                    "mlflow.parentRunId": parent, "sweep.configuration": overrides,
                    "hydra.overrides": f"{overrides} trainer.seed={seed}"}).info.run_id
                client.log_metric(run_id, "best_eval_f1", value)
                if records is not None:
                    path = write_predictions(tmp_path / run_id, records)
                    client.log_artifact(run_id, str(path), "predictions")
                client.set_terminated(run_id)
        return parent

    return client, make_sweep


def end_sweep(client, parent: str, capsys, tmp_path) -> tuple[list[str], dict | None]:
    """Run the parent's end-of-sweep recording; the printed lines and ``sweep_significance.json``."""
    MLflowSweepCallback()._record_best(OmegaConf.create({"objective": "eval_f1"}), parent)
    out = capsys.readouterr().out
    names = {a.path for a in client.list_artifacts(parent)}
    if "sweep_significance.json" not in names:
        return out.splitlines(), None
    path = client.download_artifacts(parent, "sweep_significance.json", str(tmp_path / "dl"))
    return out.splitlines(), json.loads(Path(path).read_text())


def ranking_table(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("Sweep configurations by mean"))
    return lines[start:start + 4]


def test_a_clearly_better_configuration_is_significantly_better_after_holm(sweep_store, capsys, tmp_path):
    client, make_sweep = sweep_store
    strong = [ner_records(0.9, 1), ner_records(0.88, 2)]
    weak = [ner_records(0.6, 3), ner_records(0.62, 4)]
    parent = make_sweep({"trainer.lr=5e-3": [(0.80, strong[0]), (0.82, strong[1])],
                         "trainer.lr=1e-3": [(0.70, weak[0]), (0.71, weak[1])]})
    lines, significance = end_sweep(client, parent, capsys, tmp_path)

    table = ranking_table(lines)
    assert table[1].split() == ["mean", "std", "min", "max", "runs", "p", "vs", "best", "overrides"]
    best_row, second_row = table[2].split(), table[3].split()
    assert best_row[:5] == ["0.8100", "0.0141", "0.8000", "0.8200", "2"]  # the existing columns, unchanged
    assert best_row[5:] == ["best", "trainer.lr=5e-3"] and second_row[-1] == "trainer.lr=1e-3"
    comparison = significance["comparisons"][0]
    assert second_row[5] == f"{comparison['p_randomization']:.4f}"

    assert significance["test"] == "approximate randomization" and significance["correction"] == "holm"
    assert comparison["rank"] == 2 and comparison["overrides"] == "trainer.lr=1e-3"
    assert comparison["runs"] == "2 of 2 runs"
    expected = (average_over_seeds([ner_counts(r) for r in strong]).score("f1")
                - average_over_seeds([ner_counts(r) for r in weak]).score("f1"))
    assert comparison["difference"] == pytest.approx(expected) and comparison["metric"] == "f1"
    assert comparison["ci_low"] > 0 and comparison["p_randomization"] < 0.01 and comparison["significant"] is True
    assert comparison["p_holm"] == comparison["p_randomization"]  # one comparison: Holm leaves it
    verdict = next(line for line in lines if line.startswith("Best configuration vs runner-up"))
    assert "significantly better at 0.05" in verdict and "NOT" not in verdict and "Holm" in verdict
    assert client.get_run(parent).data.tags["best_config.significant"] == "true"


def test_two_configurations_within_noise_are_not_called_different(sweep_store, capsys, tmp_path):
    client, make_sweep = sweep_store
    parent = make_sweep({"a=1": [(0.80, ner_records(0.8, 5)), (0.81, ner_records(0.8, 6))],
                         "a=2": [(0.79, ner_records(0.8, 7)), (0.80, ner_records(0.8, 8))]})
    lines, significance = end_sweep(client, parent, capsys, tmp_path)
    comparison = significance["comparisons"][0]
    assert comparison["p_randomization"] > 0.05 and comparison["significant"] is False
    verdict = next(line for line in lines if line.startswith("Best configuration vs runner-up"))
    assert "NOT significantly better at 0.05" in verdict and "after Holm over 1 comparison" in verdict
    assert client.get_run(parent).data.tags["best_config.significant"] == "false"


def test_without_stored_predictions_the_column_says_dash_and_the_line_says_why(sweep_store, capsys, tmp_path):
    client, make_sweep = sweep_store
    parent = make_sweep({"a=1": [(0.80, None), (0.81, None)], "a=2": [(0.79, None), (0.80, None)]})
    lines, significance = end_sweep(client, parent, capsys, tmp_path)
    table = ranking_table(lines)
    assert table[2].split()[5] == "best" and table[3].split()[5] == "-"
    verdict = next(line for line in lines if line.startswith("Best configuration vs runner-up"))
    assert verdict.startswith("Best configuration vs runner-up: not tested (the best configuration has no test "
                              "predictions (none of its 2 runs stored test predictions))")
    assert "untested" in significance["comparisons"][0]
    assert client.get_run(parent).data.tags["best_config.significant"] == "untested"


def test_a_pruned_seed_is_left_out_and_the_others_are_tested(sweep_store, capsys, tmp_path):
    client, make_sweep = sweep_store
    parent = make_sweep({"a=1": [(0.80, ner_records(0.9, 9)), (0.81, None)],
                         "a=2": [(0.70, ner_records(0.6, 10)), (0.71, ner_records(0.6, 11))]})
    _, significance = end_sweep(client, parent, capsys, tmp_path)
    assert significance["best"]["runs"] == "1 of 2 runs" and significance["comparisons"][0]["significant"] is True


def test_up_to_five_configurations_are_tested_and_holm_corrects_across_them():
    recalls = [0.9, 0.85, 0.8, 0.88, 0.7, 0.6, 0.5]
    counts = {f"r{k}": ner_counts(ner_records(recall, 100 + k)) for k, recall in enumerate(recalls)}
    ranking = rank_configurations([(f"c={k}", f"r{k}", 1 - k / 10) for k in range(len(recalls))])
    result = sweep_significance(ranking, "eval_f1", counts.__getitem__, resamples=500)
    comparisons = result["comparisons"]
    assert [c["rank"] for c in comparisons] == [2, 3, 4, 5, 6] and len(comparisons) == MAX_COMPARED
    assert [c["p_holm"] for c in comparisons] == pytest.approx(holm([c["p_randomization"] for c in comparisons]))
    assert any(c["p_holm"] > c["p_randomization"] for c in comparisons)
    cells = p_column(ranking, result)
    assert cells["c=0"] == "best" and cells["c=6"] == "-" and cells["c=1"] == f"{comparisons[0]['p_randomization']:.4f}"
    table = format_ranking(ranking, "eval_f1", p_vs_best=cells).splitlines()
    assert table[-1].split()[-2:] == ["-", "c=6"]


def test_configurations_scored_on_different_documents_are_left_untested():
    counts = {"r0": ner_counts(ner_records(0.9, 1)), "r1": ner_counts(ner_records(0.9, 2, first=5))}
    ranking = rank_configurations([("c=0", "r0", 0.9), ("c=1", "r1", 0.8)])
    result = sweep_significance(ranking, "eval_f1", counts.__getitem__, resamples=200)
    assert "10 document ids differ" in result["comparisons"][0]["untested"]
    assert result["verdict"].startswith("Best configuration vs runner-up: not tested (the systems were scored")


def test_the_ranking_without_p_values_is_the_table_it_was():
    ranking = rank_configurations([("a=1", "r1", 0.5), ("a=1", "r2", 0.7), ("a=2", "r3", 0.4)])
    assert "p vs best" not in format_ranking(ranking, "eval_f1")
    assert format_ranking(ranking, "eval_f1").splitlines()[2].split() == ["0.6000", "0.1414", "0.5000", "0.7000",
                                                                          "2", "a=1"]

"""`python -m medkit_exp.compare` on hand-written predictions: runs in a fresh MLflow store, run
folders laid out as the app writes them, sweep configurations; every refusal is one line, exit 2."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from support.readme_blocks import command

from medkit_exp.compare import main
from medkit_exp.stats import ner_counts
from medkit_exp.text.predictions import write_records
from medkit_exp.tracking.predictions import read_records

N_DOCUMENTS = 60


def ner_records(recall: float, seed: int, documents: int = N_DOCUMENTS, first: int = 0) -> list[dict]:
    """Per-document NER predictions finding each gold entity with probability ``recall``, plus
    a spurious entity in one document of five."""
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(1234)  # the same gold entities for every system
    records = []
    for doc in range(first, first + documents):
        gold = [["Disease", 20 * j, 20 * j + 7] for j in range(int(truth.integers(1, 6)))]
        predicted = [entity for entity in gold if rng.random() < recall]
        if rng.random() < 0.2:
            predicted.append(["Disease", 1000, 1004])
        records.append({"document_id": f"PMID-{doc}", "split": "test", "gold": gold, "predicted": predicted})
    return records


def write_predictions(folder: Path, records: list[dict]) -> Path:
    """``folder/predictions/test.jsonl`` as a run writes it under its trainer.output_dir."""
    return write_records(folder / "predictions" / "test.jsonl", records)


@pytest.fixture
def store(mlflow_root, tmp_path):
    """``(uri, client, log_run)``: ``log_run(records | None, **tags)`` makes a run with those
    predictions logged as the artifact ``predictions/test.jsonl`` (none for ``None``)."""
    from mlflow import MlflowClient

    from medkit_exp.tracking.store import setup_tracking

    experiment_id = setup_tracking(root=mlflow_root)
    uri = f"sqlite:///{mlflow_root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)

    def log_run(records: list[dict] | None, **tags: str) -> str:
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        if records is not None:
            path = write_predictions(tmp_path / "logged" / run_id, records)
            client.log_artifact(run_id, str(path), "predictions")
        client.set_terminated(run_id)
        return run_id

    return uri, client, log_run


def compare(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what came before (MLflow's download progress in a test) is not the command's
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def compare_json(capsys, *args: str) -> dict:
    code, out, err = compare(capsys, *args, "--json", "--resamples", "2000")
    assert code == 0, err
    return json.loads(out)


def test_two_runs_by_id_get_their_scores_difference_interval_and_p_values(store, capsys):
    uri, _, log_run = store
    good, poor = ner_records(0.9, seed=1), ner_records(0.55, seed=2)
    a, b = log_run(good), log_run(poor)
    code, out, err = compare(capsys, a, b, "--tracking-uri", uri, "--resamples", "2000")
    assert code == 0, err
    f1_a, f1_b = ner_counts(good).score("f1"), ner_counts(poor).score("f1")
    assert f"A: run {a}: f1 {f1_a:.4f}" in out and f"B: run {b}: f1 {f1_b:.4f}" in out
    assert f"difference A - B: {f1_a - f1_b:+.4f}, 95% CI [" in out
    assert "(paired bootstrap)" in out and "(approximate randomization)" in out
    assert f"f1 on {N_DOCUMENTS} test documents" in out and "2,000 resamples, seed 0" in out

    result = compare_json(capsys, a, b, "--tracking-uri", uri)
    assert result["a"]["score"] == pytest.approx(f1_a) and result["b"]["score"] == pytest.approx(f1_b)
    assert result["difference"] == pytest.approx(f1_a - f1_b)
    assert result["ci_low"] < result["difference"] < result["ci_high"] and result["ci_low"] > 0
    assert result["p_bootstrap"] < 0.01 and result["p_randomization"] < 0.01
    assert result["documents"] == N_DOCUMENTS and result["seed_pairs"] is None and result["kind"] == "ner"
    # B against A: the same test, the other sign
    reverse = compare_json(capsys, b, a, "--tracking-uri", uri)
    assert reverse["difference"] == pytest.approx(-result["difference"])
    assert reverse["p_randomization"] == pytest.approx(result["p_randomization"])


def test_folders_are_read_as_the_app_lays_them_out_and_score_as_their_runs(store, capsys, tmp_path):
    uri, _, log_run = store
    good, poor = ner_records(0.8, seed=3), ner_records(0.7, seed=4)
    by_id = compare_json(capsys, log_run(good), log_run(poor), "--tracking-uri", uri)
    hydra_run = tmp_path / "outputs" / "2026-12-03" / "10-00-00"
    write_predictions(hydra_run / "checkpoints", good)
    write_predictions(tmp_path / "other" / "checkpoints", poor)
    # the Hydra run folder, a checkpoints/ folder (trainer.output_dir), the file itself
    for a, b in [(hydra_run, tmp_path / "other"), (hydra_run / "checkpoints", tmp_path / "other" / "checkpoints"),
                 (hydra_run / "checkpoints" / "predictions" / "test.jsonl", tmp_path / "other")]:
        by_folder = compare_json(capsys, str(a), str(b))
        for key in ("difference", "ci_low", "ci_high", "p_bootstrap", "p_randomization"):
            assert by_folder[key] == pytest.approx(by_id[key]), key
    assert by_folder["a"]["runs"] == [str(hydra_run / "checkpoints" / "predictions" / "test.jsonl")]


def test_a_run_against_itself_differs_by_zero_with_p_one(store, capsys):
    uri, _, log_run = store
    run = log_run(ner_records(0.8, seed=5))
    result = compare_json(capsys, run, run, "--tracking-uri", uri)
    assert result["difference"] == 0 and result["ci_low"] == 0 and result["ci_high"] == 0
    assert result["p_bootstrap"] == 1 and result["p_randomization"] == 1


def test_classification_runs_default_to_accuracy_and_accept_macro_f1(store, capsys):
    uri, _, log_run = store
    rng = np.random.default_rng(0)
    gold = rng.choice(["neg", "pos", "neutral"], size=80)

    def records(right: float) -> list[dict]:
        return [{"document_id": f"d{i}", "split": "test", "gold": str(g),
                 "predicted": str(g) if rng.random() < right else "neg"} for i, g in enumerate(gold)]

    a, b = log_run(records(0.9)), log_run(records(0.6))
    result = compare_json(capsys, a, b, "--tracking-uri", uri)
    assert result["metric"] == "accuracy" and result["kind"] == "classification" and result["difference"] > 0.1
    assert compare_json(capsys, a, b, "--tracking-uri", uri, "--metric", "macro_f1")["metric"] == "macro_f1"


def test_per_label_metrics_can_be_compared(store, capsys):
    uri, _, log_run = store
    result = compare_json(capsys, log_run(ner_records(0.9, 6)), log_run(ner_records(0.5, 7)),
                          "--tracking-uri", uri, "--metric", "Disease_recall")
    assert result["metric"] == "Disease_recall" and result["difference"] > 0.2


def sweep(log_run, configurations: dict[str, list[list[dict] | None]]) -> tuple[str, list[dict]]:
    """A sweep's parent run with ``sweep_summary.json`` ranking ``configurations`` in the order
    given, each with one child run per records list (``None``: a run without predictions)."""
    parent = log_run(None, **{"sweep.id": "20261203-100000"})
    summary = []
    for overrides, seeds in configurations.items():
        run_ids = [log_run(records, **{"mlflow.parentRunId": parent, "sweep.configuration": overrides})
                   for records in seeds]
        summary.append({"overrides": overrides, "run_ids": run_ids, "values": [0.5] * len(run_ids)})
    return parent, summary


@pytest.fixture
def two_configurations(store):
    uri, client, log_run = store
    parent, summary = sweep(log_run, {
        "data=ncbi trainer.lr=5e-3": [ner_records(0.9, 10), ner_records(0.88, 11)],
        "data=ncbi trainer.lr=1e-3": [ner_records(0.6, 12), ner_records(0.62, 13)]})
    client.log_dict(parent, {"objective": "eval_f1", "maximize": True, "configurations": summary},
                    "sweep_summary.json")
    return uri, client, parent


def test_sweep_configurations_by_rank_or_overrides_pool_their_seeds(two_configurations, capsys):
    uri, _, parent = two_configurations
    by_rank = compare_json(capsys, f"{parent}:1", f"{parent}:2", "--tracking-uri", uri)
    assert by_rank["a"]["side"] == f"sweep {parent} rank 1 (data=ncbi trainer.lr=5e-3)"
    assert len(by_rank["a"]["runs"]) == 2 and len(by_rank["a"]["scores"]) == 2
    assert by_rank["pooling"] == "seed-averaged per-document counts"
    pairs = by_rank["seed_pairs"]
    assert pairs["pairs"] == 4 and len(pairs["tests"]) == 4 and pairs["significant_randomization"] == 4
    assert by_rank["p_randomization"] < 0.01 and by_rank["difference"] > 0.1
    by_config = compare_json(capsys, "--sweep", parent, "--config", "trainer.lr=5e-3", "--config",
                             "data=ncbi trainer.lr=1e-3", "--tracking-uri", uri)
    assert by_config["difference"] == pytest.approx(by_rank["difference"])
    code, out, _ = compare(capsys, f"{parent}:1", f"{parent}:2", "--tracking-uri", uri, "--resamples", "500")
    assert code == 0 and "seed-averaged (2 runs:" in out and "seed pairs: 4 of 4 significant at 0.05" in out


def refusal(capsys, *args: str) -> str:
    code, out, err = compare(capsys, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medkit_exp.compare: error: "), err
    return lines[0]


def test_each_refusal_is_one_line_with_exit_2(store, capsys, tmp_path):
    uri, _, log_run = store
    run = log_run(ner_records(0.8, 20))
    old = log_run(None)
    assert f"run {old} has no predictions/test.jsonl artifact" in refusal(capsys, run, old, "--tracking-uri", uri)
    assert "train it again with this version" in refusal(capsys, old, run, "--tracking-uri", uri)
    (tmp_path / "old_run" / "checkpoints").mkdir(parents=True)
    assert "holds no predictions/test.jsonl" in refusal(capsys, str(tmp_path / "old_run"), run, "--tracking-uri", uri)

    shifted = log_run(ner_records(0.8, 21, first=3))  # PMID-3..62 against PMID-0..59
    line = refusal(capsys, run, shifted, "--tracking-uri", uri)
    assert "different test documents: 6 document ids differ (3 only in the first, 3 only in the second)" in line

    line = refusal(capsys, run, run, "--tracking-uri", uri, "--metric", "bleu")
    assert "unknown metric 'bleu'" in line and "f1, precision, recall" in line and "Disease_f1" in line

    missing = "0123456789abcdef0123456789abcdef"
    assert f"no MLflow run {missing} in sqlite:///" in refusal(capsys, run, missing, "--tracking-uri", uri)
    assert "neither a folder nor an MLflow run id" in refusal(capsys, run, "no-such-thing", "--tracking-uri", uri)
    assert "give two sides" in refusal(capsys, run, "--tracking-uri", uri)
    assert "--config names a configuration of a sweep" in refusal(capsys, run, "--config", "a=1")


def test_sweep_sides_are_refused_when_they_do_not_single_out_a_configuration(two_configurations, capsys):
    uri, _, parent = two_configurations
    assert "give a rank from 1 to 2, not 3" in refusal(capsys, f"{parent}:1", f"{parent}:3", "--tracking-uri", uri)
    line = refusal(capsys, "--sweep", parent, "--config", "data=ncbi", "--config", "trainer.lr=1e-3",
                   "--tracking-uri", uri)
    assert "matches several" in line and "1: data=ncbi trainer.lr=5e-3" in line
    assert "matches none" in refusal(capsys, "--sweep", parent, "--config", "trainer.lr=9", "--config",
                                     "trainer.lr=1e-3", "--tracking-uri", uri)


def test_a_run_that_is_not_a_sweep_parent_is_refused_as_one(store, capsys):
    uri, _, log_run = store
    run = log_run(ner_records(0.8, 22))
    assert f"run {run} is not a sweep's parent run" in refusal(capsys, f"{run}:1", run, "--tracking-uri", uri)


def test_log_to_records_the_comparison_as_an_artifact_and_tags_and_nothing_is_logged_without_it(store, capsys,
                                                                                                 tmp_path):
    uri, client, log_run = store
    a, b = log_run(ner_records(0.9, 30)), log_run(ner_records(0.7, 31))
    compare_json(capsys, a, b, "--tracking-uri", uri)
    assert not any(key.startswith("comparison.") for key in client.get_run(a).data.tags)
    assert [f.path for f in client.list_artifacts(a)] == ["predictions"]

    result = compare_json(capsys, a, b, "--tracking-uri", uri, "--log-to", a)
    name = f"{a}_vs_{b}"
    assert result["logged_to"] == {"run_id": a, "artifact": f"comparisons/{name}.json"}
    logged = json.loads(Path(client.download_artifacts(a, f"comparisons/{name}.json", str(tmp_path))).read_text())
    assert logged["difference"] == pytest.approx(result["difference"])
    tags = client.get_run(a).data.tags
    assert float(tags[f"comparison.{name}.difference"]) == pytest.approx(result["difference"], abs=1e-6)
    assert float(tags[f"comparison.{name}.p_randomization"]) == pytest.approx(result["p_randomization"], rel=1e-5)
    assert tags[f"comparison.{name}.metric"] == "f1" and tags[f"comparison.{name}.ci"].startswith("[")
    missing = "f" * 32
    assert f"no MLflow run {missing}" in refusal(capsys, a, b, "--tracking-uri", uri, "--log-to", missing)


def test_the_module_runs_as_a_command_without_a_store_for_folders(tmp_path):
    write_predictions(tmp_path / "a", ner_records(0.9, 40))
    write_predictions(tmp_path / "b", ner_records(0.6, 41))
    command = [sys.executable, "-m", "medkit_exp.compare", "a", "b", "--json", "--resamples", "1000"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "", "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["p_randomization"] < 0.01
    assert not (tmp_path / "mlruns").exists() and "mlflow" not in result.stderr.lower()
    refused = subprocess.run([*command[:3], "a", "0123456789abcdef0123456789abcdef"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={"PATH": "", "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)})
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"medkit_exp.compare: error: no MLflow store here ({'sqlite:///' + str(tmp_path / 'mlruns' / 'mlflow.db')} "
        "does not exist): run this where you trained, or give --tracking-uri")


def test_predictions_files_are_read_line_by_line_and_malformed_lines_named(tmp_path):
    path = write_predictions(tmp_path, ner_records(0.9, 50, documents=3))
    assert [r["document_id"] for r in read_records(path)] == ["PMID-0", "PMID-1", "PMID-2"]
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(Exception, match="line 4 is not JSON"):
        read_records(path)


def test_end_to_end_two_tiny_runs_compared_by_run_ids_and_by_folders(workdir, tiny_bert_dir):
    from test_cli import client_for, quick_args, run_cli

    run_ids = []
    for epochs, folder in ((1, "a"), (3, "b")):
        trained = run_cli([*quick_args(tiny_bert_dir), f"trainer.epochs={epochs}", "data.max_docs=16",
                           f"hydra.run.dir={folder}"], workdir)
        assert trained.returncode == 0, trained.stderr[-3000:]
        run_ids.append(re.search(r"MLflow run\s+: (\w+)", trained.stdout).group(1))
    # docs/comparing.md's line, as written there (the store: mlruns/ of the folder the runs were launched in)
    line = command("python -m medkit_exp.compare <run id A> <run id B> --json").text
    args = shlex.split(line.replace("<run id A>", run_ids[0]).replace("<run id B>", run_ids[1]))
    by_id = run_cli(args[3:], workdir, module="medkit_exp.compare")
    assert by_id.returncode == 0, by_id.stderr[-3000:]
    result = json.loads(by_id.stdout)
    client = client_for(workdir)
    logged = [a.path for a in client.list_artifacts(run_ids[0], "comparisons")]
    assert logged == [f"comparisons/{run_ids[0]}_vs_{run_ids[1]}.json"] and result["logged_to"]["run_id"] == run_ids[0]
    runs = [client.get_run(run_id).data.metrics for run_id in run_ids]
    assert result["a"]["score"] == pytest.approx(runs[0]["test_f1"]) and result["b"]["score"] == pytest.approx(
        runs[1]["test_f1"])
    assert result["documents"] > 1 and 0 < result["p_randomization"] <= 1
    by_folder = run_cli(["a", "b/checkpoints", "--json", "--resamples", "1000"], workdir, module="medkit_exp.compare")
    assert by_folder.returncode == 0, by_folder.stderr[-3000:]
    assert json.loads(by_folder.stdout)["difference"] == pytest.approx(result["difference"])
    itself = run_cli([run_ids[0], run_ids[0], "--json"], workdir, module="medkit_exp.compare")
    assert itself.returncode == 0, itself.stderr[-3000:]
    same = json.loads(itself.stdout)
    assert same["difference"] == 0 and same["p_bootstrap"] == 1 and same["p_randomization"] == 1


def test_a_sweep_configuration_is_found_by_its_overrides_as_typed_though_hydra_escaped_them():
    from medkit_exp.errors import UserError
    from medkit_exp.tracking.predictions import find_configuration

    configurations = [{"overrides": r"+experiment=ncbi_disease component.model=models\:/ncbi-mlm/1"},
                      {"overrides": "+experiment=ncbi_disease component.model=sentence-transformers/all-MiniLM-L6-v2"}]
    assert find_configuration(configurations, "parent", overrides="component.model=models:/ncbi-mlm/1")[0] == 1
    assert find_configuration(configurations, "parent",
                              overrides="component.model=sentence-transformers/all-MiniLM-L6-v2")[0] == 2
    with pytest.raises(UserError, match="matches none"):
        find_configuration(configurations, "parent", overrides="component.model=models:/ncbi-mlm/2")

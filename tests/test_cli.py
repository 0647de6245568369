"""End-to-end: drive `python -m medkit_exp` in a subprocess, read the runs back from MLflow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from support.forked_cli import run_python
from support.readme_blocks import command


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO_ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MEDKIT_EXP_PARENT_RUN_ID", None)
    return env


def run_cli(args: list[str], cwd: Path, module: str = "medkit_exp", timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` in ``cwd`` (in a fork of a preloaded process: tests/support/forked_cli.py)."""
    return run_python(["-m", module, *args], cwd, cli_env(), timeout)


def quick_args(model_dir: Path) -> list[str]:
    return [f"component.model={model_dir}", "data.max_docs=40", "trainer.lr=5e-3", "trainer.batch_size=8",
            "threads=1", "callbacks.progress_bars=false"]


def client_for(workdir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")


def test_one_run_is_logged_completely_and_its_checkpoint_predicts(workdir, tiny_bert_dir):
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=12", "data.max_docs=80",
                      "hydra.run.dir=out"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    run_id = re.search(r"MLflow run\s+: (\w+)", out).group(1)
    assert "mlflow ui --backend-store-uri sqlite:///" in out and "best epoch" in out

    client = client_for(workdir)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["trainer.lr"] == "0.005" and params["trainer.epochs"] == "12"
    assert params["component.model"] == str(tiny_bert_dir) and params["data._target_"] == "medkit_exp.io.demo_corpus"
    tags = run.data.tags
    assert "trainer.epochs=12" in tags["hydra.overrides"]
    assert tags["dataset.name"] == "demo" and len(tags["dataset.digest"]) >= 12
    assert re.fullmatch(r"[0-9a-f]{40}", tags["git.commit"])

    history = json.loads((workdir / "out" / "checkpoints" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 13))
    eval_f1 = client.get_metric_history(run_id, "eval_f1")
    assert [(m.step, m.value) for m in eval_f1] == [(h["epoch"], pytest.approx(h["eval"]["f1"])) for h in history]
    train_loss = client.get_metric_history(run_id, "train_loss")
    assert [m.value for m in train_loss] == [pytest.approx(h["train"]["loss"]) for h in history]
    assert client.get_metric_history(run_id, "step/train_loss")
    assert run.data.metrics["test_f1"] > 0.2 and "test_token_f1" in run.data.metrics

    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "history.json", "best_checkpoint"} <= artifacts
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="best_checkpoint",
                                                dst_path=str(workdir / "dl"))

    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner import HFEntityMatcher

    text = "The patient was started on metformin for type 2 diabetes after an HbA1c test."
    from_artifact = HFEntityMatcher(model=local).predict([TextDocument(text=text)])[0]
    best_local = re.search(r"checkpoint\s+: (\S+)", out).group(1)
    from_disk = HFEntityMatcher(model=best_local).predict([TextDocument(text=text)])[0]
    assert from_disk and [(e.label, e.spans, e.text) for e in from_artifact] == [
        (e.label, e.spans, e.text) for e in from_disk]

    # The predict CLI loads the same checkpoint by run id and scores a corpus with references.
    from medkit_exp.io import load_demo_corpus, write_jsonl

    write_jsonl(load_demo_corpus()["test"][:10], workdir / "test.jsonl")
    predicted = run_cli(["--run-id", run_id, "--input", "test.jsonl", "--output", "preds",
                         "--tracking-uri", f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"],
                        workdir, module="medkit_exp.predict")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (workdir / "preds" / "predictions.jsonl").is_file() and (workdir / "preds" / "brat").is_dir()
    assert "scores: precision=" in predicted.stdout
    assert "predict_f1" in client.get_run(run_id).data.metrics


def test_a_grid_sweep_makes_one_run_per_job_under_a_parent(workdir, tiny_bert_dir):
    result = run_cli(["-m", *quick_args(tiny_bert_dir), "trainer.epochs=1", "data.max_docs=16",
                      "trainer.lr=1e-3,5e-3", "trainer.seed=0,1"], workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("medkit_exp")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.info.run_name.startswith("sweep-")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    assert sorted((r.data.params["trainer.lr"], r.data.params["trainer.seed"]) for r in children) == [
        ("0.001", "0"), ("0.001", "1"), ("0.005", "0"), ("0.005", "1")]
    assert parents[0].data.tags["best.run_id"] in {r.info.run_id for r in children}
    assert "best_eval_f1" in parents[0].data.metrics
    # the two lrs ranked by their mean over the two seeds
    configuration_tags = {r.data.tags["sweep.configuration"] for r in children}
    assert len(configuration_tags) == 2 and not any("trainer.seed" in tag for tag in configuration_tags)
    summary = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "sweep_summary.json",
                                                        str(workdir))).read_text())
    configurations = summary["configurations"]
    assert [c["runs"] for c in configurations] == [2, 2] and configurations[0]["mean"] >= configurations[1]["mean"]
    for c in configurations:
        runs = [r for r in children if r.info.run_id in c["run_ids"]]
        assert c["mean"] == pytest.approx(sum(r.data.metrics["eval_f1"] for r in runs) / 2)
    assert parents[0].data.tags["best_config.overrides"] == configurations[0]["overrides"]
    assert parents[0].data.metrics["best_config_mean_eval_f1"] == pytest.approx(configurations[0]["mean"])
    table = result.stdout[result.stdout.index("Sweep configurations by mean eval_f1 over seeds"):].splitlines()
    assert sorted(line.split()[-1] for line in table[2:4]) == ["trainer.lr=0.001", "trainer.lr=0.005"]
    # the best configuration tested against the runner-up on the runs' stored test predictions
    assert table[1].split()[-4:] == ["p", "vs", "best", "overrides"] and table[2].split()[5] == "best"
    assert any(line.startswith("Best configuration vs runner-up on test f1:") and "Holm" in line for line in table)
    significance = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "sweep_significance.json",
                                                             str(workdir))).read_text())
    assert [c["runs"] for c in significance["comparisons"]] == ["2 of 2 runs"]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.lrr=1", "Key 'lrr' not in 'TrainerConfig'"),
        ("trainer.epochs=abc", "trainer.epochs=abc"),
        ("data=nope", "Could not find 'data/nope'"),
        ("trainer.batch_size=0", "trainer.batch_size must be >= 1"),
        ("trainer.lr=-1", "trainer.lr must be > 0"),
        ("malloc_mmap_threshold_kib=0", "malloc_mmap_threshold_kib=0 must be an integer from 1 to 32768"),
    ],
)
def test_bad_config_fails_with_one_line_and_exit_code_2(tmp_path, override, expected):
    result = run_cli([override, "tracking=none"], tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medkit_exp: error:") and expected in lines[0]
    assert not (tmp_path / "mlruns").exists()


def test_missing_data_folder_and_model_are_one_line_errors(tmp_path):
    (tmp_path / "not_a_model").mkdir()
    for args, expected in [
        (["data=brat", "data.root=/no/such/folder"], "data.root /no/such/folder does not exist"),
        (["component.model=/no/such/model"], "component.model=/no/such/model is not a local folder"),
        ([f"component.model={tmp_path / 'not_a_model'}"], "not_a_model is not a HF model folder (no config.json"),
        (["component=hf_mlm", "metrics=perplexity", f"component.model={tmp_path / 'not_a_model'}"],
         "not_a_model is not a HF model folder (no config.json"),
    ]:
        result = run_cli([*args, "tracking=none"], tmp_path, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0]


def test_cfg_job_and_help_show_the_config_without_torch_or_mlflow(tmp_path):
    probe = ("import sys, runpy; sys.argv=['medkit_exp', '--cfg', 'job', '+experiment=ncbi_disease'];\n"
             "try:\n    runpy.run_module('medkit_exp', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('HEAVY', sorted(m for m in ('torch', 'mlflow', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SpecificDisease: Disease" in result.stdout and "HEAVY []" in result.stdout
    help_result = run_cli(["--help"], tmp_path, timeout=60)
    assert help_result.returncode == 0
    assert "experiment: demo, mlm, ncbi_disease, ncbi_disease_4labels, ncbi_disease_mlm" in help_result.stdout
    assert "component: hf_mlm, hf_ner, hf_segment_classifier" in help_result.stdout
    assert "hparams_search: ner_optuna" in help_result.stdout and "trainer.resume_from" in help_result.stdout


def test_ctrl_c_then_resume_last_continues_the_same_mlflow_run(workdir, tiny_bert_dir):
    import signal

    args = [*quick_args(tiny_bert_dir), "data.max_docs=200", "trainer.epochs=12", "trainer.checkpoint_period=1"]
    process = subprocess.Popen([sys.executable, "-m", "medkit_exp", *args, "hydra.run.dir=first"], cwd=workdir,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("Epoch 2 ("):
            process.send_signal(signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    client = client_for(workdir)
    (killed,) = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    assert killed.info.status == "KILLED"
    index = json.loads((workdir / "first" / "checkpoints" / "checkpoints.json").read_text())
    # After the current step (mid-epoch 3), or, when the signal came while epoch 2 was being saved,
    # once its checkpoint is written.
    assert "_step_" in index["last"] or index["last"] == "checkpoint_002"

    resume = command("python -m medkit_exp trainer.resume_from=last").args[3:]  # README's line
    result = run_cli([*args, *resume, "hydra.run.dir=second"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"MLflow run   : {killed.info.run_id}" in result.stdout
    run = client.get_run(killed.info.run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(killed.info.run_id, "eval_f1")]
    assert steps == list(range(1, 13))  # one point per epoch, none missing, none duplicated
    train_steps = [m.step for m in client.get_metric_history(killed.info.run_id, "step/train_loss")]
    assert len(train_steps) == len(set(train_steps))
    history = json.loads((workdir / "first" / "checkpoints" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 13))


def test_kill_9_then_resume_equals_an_uninterrupted_run(workdir, tiny_bert_dir):
    import random
    import signal

    from safetensors.torch import load_file

    args = [*quick_args(tiny_bert_dir), "data.max_docs=200", "trainer.epochs=8", "trainer.checkpoint_period=1",
            "trainer.log_every_n_steps=1"]
    # The progress bar redrawn at every step (text mode reads each "\r" redraw as a line) tells
    # which step of which epoch the run is at: kill it after a random step of epoch 4.
    env = {**cli_env(), "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "medkit_exp", *args, "callbacks.progress_bars=true",
                                "hydra.run.dir=killed"], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    epoch, kill_after = 1, None
    for line in process.stderr:
        if line.startswith("Epoch "):
            epoch = int(line.split()[1]) + 1
        bar = re.match(r"train:.*\| (\d+)/(\d+) ", line)
        if epoch == 4 and bar:
            done, total = int(bar.group(1)), int(bar.group(2))
            kill_after = kill_after or random.randint(1, total - 1)
            if done >= kill_after:
                process.send_signal(signal.SIGKILL)
                break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    client = client_for(workdir)
    (left,) = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    assert left.info.status == "RUNNING"  # nobody could end it: the resume finds and continues it

    resumed = run_cli([*args, "trainer.resume_from=last", "hydra.run.dir=resumed"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"MLflow run   : {left.info.run_id}" in resumed.stdout
    run = client.get_run(left.info.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_f1")] == list(range(1, 9))
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "step/train_loss")]
    assert sorted(steps) == list(range(1, max(steps) + 1))  # every optimizer step once

    straight = run_cli([*args, "hydra.run.dir=straight", "tracking=none"], workdir)
    assert straight.returncode == 0, straight.stderr[-3000:]
    final = "checkpoints/checkpoint_008/model/model.safetensors"
    killed_then_resumed = load_file(str(workdir / "killed" / final))
    uninterrupted = load_file(str(workdir / "straight" / final))
    assert all(torch_equal(killed_then_resumed[k], uninterrupted[k]) for k in uninterrupted)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_run_left_running_by_a_dead_process_is_marked_failed(workdir):
    from medkit_exp.tracking.stale import HOST_TAG, PID_TAG, fail_dead_runs

    client = client_for(workdir)
    experiment_id = client.create_experiment("stale")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run = client.create_run(experiment_id, tags={HOST_TAG: __import__("socket").gethostname(),
                                                 PID_TAG: dead.stdout.strip()})
    alive = client.create_run(experiment_id, tags={HOST_TAG: __import__("socket").gethostname(),
                                                   PID_TAG: str(__import__("os").getppid())})
    assert fail_dead_runs(client, experiment_id) == [run.info.run_id]
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert "died" in client.get_run(run.info.run_id).data.tags["medkit.error"]
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_failed_sweep_job_does_not_end_the_sweep(workdir, tiny_bert_dir, launcher):
    """One job fails during training: it is a FAILED child with its reason, the other job runs, the
    parent ranks what finished and counts the failure, and the command exits 1 with one line."""
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    result = run_cli(["-m", *quick_args(tiny_bert_dir), "data.max_docs=16", "trainer.epochs=1",
                      "tracking.log_model=false", "trainer.checkpoint_metric=f1,no_such_metric", *extra], workdir)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("medkit_exp: error: 1 sweep job(s) failed, the others ran") and "no_such_metric" in last
    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.params["trainer.checkpoint_metric"]: r for r in runs if r is not parent}
    assert children["f1"].info.status == "FINISHED" and "eval_f1" in children["f1"].data.metrics
    failed = children["no_such_metric"]
    assert failed.info.status == "FAILED" and "no_such_metric" in failed.data.tags["medkit.error"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["failed_jobs"] == 1
    assert parent.data.tags["best.run_id"] == children["f1"].info.run_id
    markers = list((workdir / "multirun").rglob("medkit_exp_failed.txt"))
    assert len(markers) == 1 and "no_such_metric" in markers[0].read_text()


class _TouchOnLoad:
    """Unpickling this creates a file: what a malicious trainer_state.pt could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_resuming_never_runs_code_from_a_checkpoint(workdir, tiny_bert_dir):
    import torch

    first = run_cli([*quick_args(tiny_bert_dir), "data.max_docs=16", "trainer.epochs=1", "tracking=none",
                     "hydra.run.dir=first"], workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = workdir / "first" / "checkpoints" / "checkpoint_001"
    marker = workdir / "code-ran"
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)  # our own file loads safely
    state["loop"]["payload"] = _TouchOnLoad(marker)
    torch.save(state, checkpoint / "trainer_state.pt")
    assert not marker.exists()

    resumed = run_cli([*quick_args(tiny_bert_dir), "data.max_docs=16", "trainer.epochs=2", "tracking=none",
                       f"trainer.resume_from={checkpoint}", "hydra.run.dir=second"], workdir)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    errors = [line for line in resumed.stderr.splitlines() if line.startswith("medkit_exp: error:")]
    assert len(errors) == 1 and "holds more than tensors and plain data, so it was not loaded" in errors[0], errors
    assert not marker.exists()


def test_a_run_shows_its_datasets_plots_errors_and_system_metrics(workdir, tiny_bert_dir, monkeypatch):
    """What the MLflow UI shows of a run: a training experiment, the splits as inputs, system
    metrics, plots and the error analysis page (also written locally, for tracking=none)."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # a sample every second: a short run
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")  # has some too
    result = run_cli([*quick_args(tiny_bert_dir), "data.max_docs=24", "trainer.epochs=2", "tracking.log_model=false",
                      "hydra.run.dir=out"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = workdir / "out" / "checkpoints"
    assert f"errors       : {folder / 'analysis' / 'errors.html'}" in result.stdout
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("medkit_exp")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1))
    inputs = {d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags}) for d in run.inputs.dataset_inputs}
    assert {name: tags["mlflow.data.context"] for name, (_, tags) in inputs.items()} == {
        "demo/train": "training", "demo/dev": "validation", "demo/test": "test"}
    assert len({digest for digest, _ in inputs.values()}) == 3  # each split its own digest
    assert any(key.startswith("system/") for key in run.data.metrics)
    assert run.data.tags["mlflow.source.name"] == "python -m medkit_exp"
    # trainer.precision defaults to auto: bf16 where this CPU computes it natively, fp32 elsewhere
    import torch

    from medkit_exp.training.precision import resolve_precision

    expected, reason = resolve_precision("auto", torch.device("cpu"))
    assert (run.data.tags["precision"], run.data.tags["precision.reason"]) == (expected, reason)
    # where the run's time went: one metric a phase, and the summary's wall time split the same way
    spent = {k.split("/", 1)[1]: v for k, v in run.data.metrics.items() if k.startswith("phase_s/")}
    assert {"setup", "preprocessing", "training", "dev_evaluation", "test_prediction", "error_report", "plots",
            "artifact_logging"} <= set(spent) and spent["training"] > 0
    assert re.search(r"wall time\s+: [0-9.]+ s \(setup [0-9.]+, .*training [0-9.]+", result.stdout)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    logged |= {a.path for a in client.list_artifacts(run.info.run_id, "analysis")}
    assert logged == {"plots/learning_curves.png", "plots/per_label_scores.png", "analysis/errors.html",
                      "analysis/errors.tsv"}
    assert all((folder / path).stat().st_size > 1000 or path.endswith(".tsv") for path in logged)
    rows = (folder / "analysis" / "errors.tsv").read_text(encoding="utf-8").splitlines()
    page = (folder / "analysis" / "errors.html").read_text(encoding="utf-8")
    assert rows[0].split("\t")[:3] == ["kind", "label", "mention"]
    kinds = {row.split("\t")[0] for row in rows[1:]}
    assert kinds <= {"false_negative", "false_positive", "wrong_label"} and kinds  # an untrained-ish model errs
    assert page.count("<tr>") >= len(rows) - 1 and "<mark class=\"gold\"" in page

"""Models named by MLflow URIs (runs:/, models:/<name>/<version>, models:/<name>@<alias>, a bare
run id) resolve to a cached local HF folder against a real SQLite store and a real `mlflow server`;
every way it can fail is one line; a run started from one records its lineage."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import test_tracking_server
from conftest import REPO_ROOT, with_store
from support.forked_cli import run_python
from support.readme_blocks import command
from support.servers import free_port
from test_cli import cli_env, quick_args, run_cli

from medkit_exp.errors import UserError
from medkit_exp.model_uris import resolve_model_uri
from medkit_exp.tracking.tags import BASE_MODEL_RESOLVED_TAG, BASE_MODEL_TAG, BASE_RUN_TAG

MODEL_NAME = "uri-demo"
mlflow_server = test_tracking_server.mlflow_server  # a real `mlflow server` (module-scoped fixture), reused


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory, mlflow_template_db, tiny_bert_dir):
    """A tracked NER run on the tiny BERT, its model registered as ``uri-demo`` version 1 (alias
    ``champion``); the model cache of the module's CLI runs is a folder of its own."""
    workdir = with_store(tmp_path_factory.mktemp("uris"), mlflow_template_db)
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=2", "hydra.run.dir=base",
                      f"tracking.register_as={MODEL_NAME}"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    store = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    from mlflow import MlflowClient

    MlflowClient(store).set_registered_model_alias(MODEL_NAME, "champion", "1")
    return {"workdir": workdir, "store": store, "out": out,
            "run_id": re.search(r"MLflow run\s+: (\w+)", out).group(1),
            "model_id": re.search(r"MLflow model : models:/(m-\w+)", out).group(1),
            "checkpoint": Path(re.search(r"checkpoint\s+: (\S+)", out).group(1)),
            "cache": workdir / "model-cache"}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "model-cache"
    monkeypatch.setenv("MEDKIT_EXP_MODEL_CACHE", str(folder))
    return folder


def same_model(folder: Path, checkpoint: Path) -> bool:
    """The folder holds the checkpoint's model: the same config and the same weights file."""
    model = checkpoint if (checkpoint / "config.json").is_file() else checkpoint / "model"
    return (json.loads((folder / "config.json").read_text()) == json.loads((model / "config.json").read_text())
            and (folder / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes())


def no_download(monkeypatch) -> None:
    import mlflow.artifacts

    def refuse(*args, **kwargs):
        raise AssertionError("a cached model was downloaded again")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", refuse)


# ------------------------------------------------------------------------------------------ SQLite store
@pytest.mark.parametrize("form", ["runs:/{run_id}/best_checkpoint", "{run_id}", "runs:/{run_id}"])
def test_a_run_uri_or_a_bare_run_id_is_the_runs_best_checkpoint(base, cache, form, monkeypatch):
    uri = form.format(run_id=base["run_id"])
    resolved = resolve_model_uri(uri, base["store"])
    assert resolved.downloaded and same_model(resolved.local_path, base["checkpoint"])
    assert resolved.local_path.parent == cache and resolved.given == uri
    assert (resolved.source_run_id, resolved.model_id) == (base["run_id"], base["model_id"])
    assert resolved.concrete == f"runs:/{base['run_id']}" + ("" if form == "runs:/{run_id}" else "/best_checkpoint")
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # no download left behind

    no_download(monkeypatch)
    again = resolve_model_uri(uri, base["store"])
    assert not again.downloaded and again.local_path == resolved.local_path


def test_a_registered_version_and_an_alias_are_the_logged_models_folder(base, cache, monkeypatch):
    from mlflow import MlflowClient

    version = resolve_model_uri(f"models:/{MODEL_NAME}/1", base["store"])
    assert same_model(version.local_path, base["checkpoint"]) and version.concrete == f"models:/{MODEL_NAME}/1"
    assert (version.source_run_id, version.model_id) == (base["run_id"], base["model_id"])
    with monkeypatch.context() as patched:
        no_download(patched)
        alias = resolve_model_uri(f"models:/{MODEL_NAME}@champion", base["store"])
    assert alias.local_path == version.local_path and not alias.downloaded  # the same version: cached
    assert alias.concrete == f"models:/{MODEL_NAME}/1" and alias.given == f"models:/{MODEL_NAME}@champion"

    # The alias moves to a new version: the next resolution fetches that one.
    client = MlflowClient(base["store"])
    second = client.create_model_version(MODEL_NAME, f"runs:/{base['run_id']}/best_checkpoint", base["run_id"])
    client.set_registered_model_alias(MODEL_NAME, "moving", "1")
    first = resolve_model_uri(f"models:/{MODEL_NAME}@moving", base["store"])
    client.set_registered_model_alias(MODEL_NAME, "moving", second.version)
    moved = resolve_model_uri(f"models:/{MODEL_NAME}@moving", base["store"])
    assert moved.concrete == f"models:/{MODEL_NAME}/{second.version}" and moved.downloaded
    assert moved.local_path != first.local_path and same_model(moved.local_path, base["checkpoint"])
    client.delete_model_version(MODEL_NAME, second.version)


@pytest.mark.parametrize("uri, expected", [
    ("runs:/" + "0" * 32 + "/best_checkpoint", "no run 00000000000000000000000000000000 in the store"),
    ("0" * 32, "no run 00000000000000000000000000000000 in the store"),
    ("models:/no-such-model/1", "no registered model 'no-such-model'"),
    (f"models:/{MODEL_NAME}/99", f"registered model '{MODEL_NAME}' has no version 99 (its versions: 1"),
    (f"models:/{MODEL_NAME}@nope", f"registered model '{MODEL_NAME}' has no alias 'nope' (its aliases: @champion"),
    ("runs:/{run_id}/no_such_folder", "has no artifact folder 'no_such_folder' (its artifacts: "),
    ("runs:/{run_id}/predictions", "the run's artifact folder 'predictions' holds no HF model folder"),
    ("models:/" + MODEL_NAME, "is not a model URI this project reads"),
])
def test_each_refusal_is_one_line_naming_the_problem(base, cache, uri, expected):
    uri = uri.format(run_id=base["run_id"])
    with pytest.raises(UserError) as caught:
        resolve_model_uri(uri, base["store"])
    message = str(caught.value)
    assert message.startswith(f"component.model={uri}") and expected in message and "\n" not in message
    assert not cache.exists() or not any(cache.iterdir()) or all(p.name.startswith(".") for p in cache.iterdir())


def test_an_unreachable_server_or_a_missing_store_is_refused(tmp_path, cache):
    before = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=rf"the tracking server {re.escape(url)} is unreachable .*; start it"):
        resolve_model_uri(f"models:/{MODEL_NAME}/1", url)
    assert {k: os.environ.get(k) for k in before} == before  # fail-fast settings only for the call
    with pytest.raises(UserError, match="there is no MLflow store at .*; run from the folder that holds mlruns/"):
        resolve_model_uri("0" * 32, f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}")


# ------------------------------------------------------------------------------------------ a real server
def test_uris_resolve_against_a_real_mlflow_server(mlflow_server, tiny_bert_dir, cache):
    from mlflow import MlflowClient

    url = mlflow_server["url"]
    client = MlflowClient(url)
    experiment_id = client.create_experiment("model-uris")
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, str(tiny_bert_dir), "best_checkpoint")  # proxied upload over HTTP
    client.set_terminated(run.info.run_id)
    run_id = run.info.run_id
    client.create_registered_model("served-uri-demo")  # a plain HF folder registered as it is
    registered = client.create_model_version("served-uri-demo", f"runs:/{run_id}/best_checkpoint", run_id)
    client.set_registered_model_alias("served-uri-demo", "prod", registered.version)

    for uri in (f"runs:/{run_id}/best_checkpoint", run_id, "models:/served-uri-demo/1", "models:/served-uri-demo@prod"):
        resolved = resolve_model_uri(uri, url)
        assert (resolved.local_path / "config.json").read_text() == (tiny_bert_dir / "config.json").read_text()
        assert resolved.source_run_id == run_id
    assert resolved.concrete == "models:/served-uri-demo/1"
    with pytest.raises(UserError, match="has no alias 'nope'"):
        resolve_model_uri("models:/served-uri-demo@nope", url)


# ------------------------------------------------------------------------------------------ end to end
def test_a_run_started_from_a_runs_uri_records_its_lineage(base, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MEDKIT_EXP_MODEL_CACHE", str(base["cache"]))
    uri = f"runs:/{base['run_id']}/best_checkpoint"
    result = run_cli(["component.model=" + uri, "data.max_docs=40", "trainer.lr=5e-3", "trainer.batch_size=8",
                      "threads=1", "callbacks.progress_bars=false", "trainer.epochs=1", "hydra.run.dir=tuned",
                      "evaluation.resamples=50"], base["workdir"])
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(base["store"])
    run = client.get_run(re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1))
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags[BASE_MODEL_TAG], tags[BASE_MODEL_RESOLVED_TAG], tags[BASE_RUN_TAG]) == (uri, uri, base["run_id"])
    assert run.data.params["component.model"] == uri  # the config keeps the URI as written
    assert [m.model_id for m in run.inputs.model_inputs] == [base["model_id"]]
    card = Path(re.search(r"model card\s+: (\S+)", result.stdout).group(1)).read_text()
    assert f"- Base model: `{uri}`, from MLflow run `{base['run_id']}`" in card
    assert f"Fine-tuned from `{uri}`" in card


def test_a_users_component_gets_a_local_folder_for_a_runs_uri(base):
    env = {**cli_env(), "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'tests'}",
           "MEDKIT_EXP_MODEL_CACHE": str(base["cache"])}
    uri = f"runs:/{base['run_id']}/best_checkpoint"
    result = run_python(["-m", "medkit_exp", "component._target_=support.model_uri_component.ner_from_local_folder",
                         "component.model=" + uri, "data.max_docs=20", "trainer.epochs=1", "trainer.batch_size=8",
                         "threads=1", "callbacks.progress_bars=false", "tracking=none", "evaluation.resamples=0",
                         "hydra.run.dir=user"], base["workdir"], env, 300)
    assert result.returncode == 0, result.stderr[-3000:]
    local = re.search(r"user component got the local folder (\S+)", result.stdout).group(1)
    assert Path(local).parent == base["cache"] and (Path(local) / "config.json").is_file()


def test_predict_reads_a_registered_model_and_a_bad_uri_exits_2(base, monkeypatch):
    from medkit_exp.io import load_demo_corpus, write_jsonl

    monkeypatch.setenv("MEDKIT_EXP_MODEL_CACHE", str(base["cache"]))
    workdir = base["workdir"]
    write_jsonl(load_demo_corpus()["test"][:5], workdir / "predict.jsonl")
    args = ["--input", "predict.jsonl", "--tracking-uri", base["store"]]
    documented = command("python -m medkit_exp.predict --input").args  # docs/model-uris.md's line
    documented[documented.index("--input") + 1] = "predict.jsonl"
    documented[documented.index("--model") + 1] = f"models:/{MODEL_NAME}/1"
    result = run_cli([*documented[3:], "--tracking-uri", base["store"]], workdir, module="medkit_exp.predict")
    assert result.returncode == 0, result.stderr[-3000:]
    output = workdir / documented[documented.index("--output") + 1]
    assert (output / "predictions.jsonl").is_file() and "scores: precision=" in result.stdout

    refused = run_cli(["--model", f"models:/{MODEL_NAME}@nope", "--output", "preds2", *args], workdir,
                      module="medkit_exp.predict")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "has no alias 'nope'" in lines[0], refused.stderr


def test_the_app_refuses_an_unknown_run_in_one_line_before_reading_data(base, monkeypatch):
    monkeypatch.setenv("MEDKIT_EXP_MODEL_CACHE", str(base["cache"]))
    result = run_cli(["component.model=" + "f" * 32, "data=brat", "data.root=/no/such/data", "hydra.run.dir=refused"],
                     base["workdir"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"component.model={'f' * 32}: no run {'f' * 32} in the store sqlite:///" in lines[0]


def test_concurrent_resolutions_download_a_model_once_and_never_show_half_of_it(cache, tiny_bert_dir):
    """Eight jobs ask for the same model at once: one downloads (into a temporary folder, renamed
    into place), the others wait on the lock and get the complete folder."""
    import shutil
    import threading

    from medkit_exp.model_uris.cache import cached_model

    downloads, started = [], threading.Barrier(8)

    def download(scratch: Path) -> Path:
        downloads.append(scratch)
        shutil.copytree(tiny_bert_dir, scratch / "model")
        return scratch / "model"

    results = []

    def job() -> None:
        started.wait()
        folder, _ = cached_model("demo", ("store", "run", "path"), download)
        results.append(sorted(p.name for p in folder.iterdir()))

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloads) == 1 and results == [sorted(p.name for p in tiny_bert_dir.iterdir())] * 8
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [downloads[0].name.split(".")[1]]

"""From run to served model: the best checkpoint logged as a pyfunc model, registered, loaded, served."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from conftest import with_store
from support.readme_blocks import command, in_this_environment, python_block
from support.servers import free_port, serving
from test_cli import cli_env, quick_args, run_cli

from medkit_exp.text.ner.mlflow_model import OUTPUT_COLUMNS, entities_by_text, predict_entities, texts_of

REGISTER = command("python -m medkit_exp tracking.register_as=")  # README's lines, run as written
SERVE = command("mlflow models serve ")
CURL = command("curl -s http://127.0.0.1:5001/invocations")
MODEL_NAME = REGISTER.text.split("tracking.register_as=")[1].split()[0]
TEXTS = [
    "The patient was started on metformin for type 2 diabetes after an HbA1c test.",
    "No acute distress.",
    "",
    "Chest X-ray showed pneumonia; amoxicillin was given.",
]


@pytest.fixture(scope="module")
def registered_run(tmp_path_factory, mlflow_template_db, tiny_bert_dir):
    """README's ``tracking.register_as`` run on the tiny BERT (12 epochs on 80 demo documents)."""
    workdir = with_store(tmp_path_factory.mktemp("serving"), mlflow_template_db)
    result = run_cli([*quick_args(tiny_bert_dir), "trainer.epochs=12", "data.max_docs=80", "hydra.run.dir=out",
                      *REGISTER.args[3:]], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    return {
        "workdir": workdir,
        "uri": uri,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "run_id": re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1),
        "checkpoint": re.search(r"checkpoint\s+: (\S+)", result.stdout).group(1),
    }


@pytest.fixture
def tracking_uri(registered_run, monkeypatch):
    """Point MLflow at the run's store (``models:/`` URIs resolve there); restore the previous URI after."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_run["uri"])
    mlflow.set_tracking_uri(registered_run["uri"])
    yield registered_run["uri"]
    mlflow.set_tracking_uri(previous)


def checkpoint_entities(model_dir: str, texts: list[str]) -> list[list[tuple]]:
    from medkit_exp.core import TextDocument
    from medkit_exp.text.ner import HFEntityMatcher

    predictions = HFEntityMatcher(model=model_dir).predict([TextDocument(text=t) for t in texts])
    return [[(e.label, e.spans[0].start, e.spans[-1].end, e.text, e.score) for e in entities]
            for entities in predictions]


def as_tuples(grouped: list[list[dict]]) -> list[list[tuple]]:
    return [[(e["label"], e["start"], e["end"], e["text"], e["score"]) for e in entities] for entities in grouped]


def same_entities(got: list[list[tuple]], expected: list[list[tuple]]) -> bool:
    return [[e[:4] for e in x] for x in got] == [[e[:4] for e in x] for x in expected] and all(
        g[4] == pytest.approx(e[4], abs=1e-5) for gs, es in zip(got, expected, strict=True)
        for g, e in zip(gs, es, strict=True))


# ---------------------------------------------------------------------------- end to end
def test_the_run_logs_and_registers_its_best_checkpoint(registered_run, tracking_uri):
    from mlflow import MlflowClient

    out = registered_run["stdout"]
    model_uri = re.search(r"MLflow model : (models:/m-\w+)", out).group(1)
    assert f"registered as: models:/{MODEL_NAME}/1" in out
    printed = registered_run["stdout"] + registered_run["stderr"]
    seconds = float(re.search(r"Logged model models:/m-\w+ in ([0-9.]+) s", printed).group(1))
    print(f"log_model + registration took {seconds} s")

    client = MlflowClient(tracking_uri)
    version = client.get_model_version(MODEL_NAME, "1")
    assert version.source == model_uri and version.run_id == registered_run["run_id"]
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    run = client.get_run(registered_run["run_id"])
    assert model.model_id in [m.model_id for m in run.outputs.model_outputs]
    # MLflow 3: under the experiment's artifact location, not under the run's artifacts.
    experiment = client.get_experiment(run.info.experiment_id)
    assert model.artifact_location == f"{experiment.artifact_location}/models/{model.model_id}/artifacts"
    best_epoch = int(re.search(r"best epoch\s+: (\d+)", out).group(1))
    eval_f1 = {m.key: m for m in model.metrics}["eval_f1"]  # the checkpoint's metrics go with the model
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_f1")}
    assert eval_f1.step == best_epoch and eval_f1.value == pytest.approx(history[best_epoch])

    local = Path(model.artifact_location.removeprefix("file://"))
    requirements = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("medkit_exp==") for r in requirements)
    assert any(r.startswith("torch==") for r in requirements)
    assert any(r.startswith("transformers==") for r in requirements)
    assert (local / "artifacts" / "model" / "model.safetensors").is_file()


def test_the_registered_model_finds_what_the_checkpoint_finds(registered_run, tracking_uri):
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1")
    rows = model.predict(TEXTS)
    assert list(rows.columns) == list(OUTPUT_COLUMNS)
    got = as_tuples(entities_by_text(rows, len(TEXTS)))
    expected = checkpoint_entities(registered_run["checkpoint"], TEXTS)
    assert any(expected), "the tiny model found no entity: the comparison would prove nothing"
    assert same_entities(got, expected), (got, expected)
    assert all(TEXTS[r.text_index][r.start:r.end] == r.text for r in rows.itertuples())

    as_frame = model.predict(pd.DataFrame({"text": TEXTS}))
    pd.testing.assert_frame_equal(as_frame, rows)
    schema = model.metadata.get_output_schema()
    assert schema.input_names() == list(OUTPUT_COLUMNS)


@pytest.fixture(scope="module")
def served_model(registered_run, tmp_path_factory):
    """README's ``mlflow models serve`` line (with its ``export``) in the run's launch folder, on a free port
    instead of 5001; yields its URL."""
    missing = [m for m in ("uvicorn", "fastapi") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the MLflow scoring server needs {', '.join(missing)} "
                    "(pip install 'mlflow[extras]' or uvicorn fastapi)")
    folder = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {**cli_env(), **SERVE.env}  # export MLFLOW_TRACKING_URI=sqlite:///mlruns/mlflow.db
    # `mlflow` and the `uvicorn` it runs by name: this interpreter's environment's, even if not activated
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    args = in_this_environment(SERVE.args)
    args[args.index("--port") + 1] = str(port)
    with serving(args, f"http://127.0.0.1:{port}/ping", folder / "serve.log", env=env, cwd=registered_run["workdir"]):
        yield f"http://127.0.0.1:{port}"


def invoke(url: str, body: bytes) -> tuple[int, dict]:
    """POST ``body`` (JSON) to the server's /invocations; its status and decoded answer."""
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_served_model_answers_invocations(served_model, tracking_uri):
    import mlflow

    status, answer = invoke(served_model, json.dumps({"inputs": TEXTS}).encode())
    assert status == 200, answer
    got = as_tuples(entities_by_text(answer["predictions"], len(TEXTS)))
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1")
    expected = as_tuples(entities_by_text(model.predict(TEXTS), len(TEXTS)))
    assert any(got) and same_entities(got, expected), (got, expected)

    # README's curl line, sent to this server.
    args = [arg.replace("http://127.0.0.1:5001", served_model) for arg in CURL.args]
    if shutil.which(args[0]) is None:
        pytest.skip("curl is not installed: README's curl line was not sent")
    sent = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    predictions = json.loads(sent.stdout)["predictions"]
    texts = json.loads(args[args.index("-d") + 1])["inputs"]
    assert predictions and all(set(p) == set(OUTPUT_COLUMNS) for p in predictions)
    assert same_entities(as_tuples(entities_by_text(predictions, len(texts))),
                         as_tuples(entities_by_text(model.predict(texts), len(texts))))


def test_the_pyfunc_python_block_prints_the_entities(registered_run, tracking_uri):
    """README's block run in the run's launch folder (its relative SQLite URI) prints the model's table."""
    import mlflow

    code = python_block('mlflow.pyfunc.load_model("models:/')
    result = subprocess.run([sys.executable, "-c", code], cwd=registered_run["workdir"], env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = re.search(r'predict\(\["([^"]*)"\]\)', code).group(1)
    table = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1").predict([text])
    assert len(table) and result.stdout.rstrip("\n") == str(table)
    header = re.search(r"^# +(text_index .*)$", code, flags=re.M).group(1)  # the table README shows
    assert result.stdout.splitlines()[0].split() == header.split() == list(OUTPUT_COLUMNS)


@pytest.mark.parametrize("body, expected", [
    (b'{"inputs": ["fever and', "Ensure that input is a valid JSON formatted string"),
    (json.dumps({"dataframe_records": [{"text": 3}]}).encode(), "input text 0 is a int, not a str; send texts"),
    # MLflow's input check keeps the first column only (the signature has one): it is named, so not texts
    (json.dumps({"dataframe_records": [{"sex": "F", "age": 3}]}).encode(),
     "needs a 'text' column, got columns ['sex']"),
    (json.dumps({"inputs": ["fever " * 900_000]}).encode(),
     "holds 5,400,000 characters of text, more than the 1,000,000"),
], ids=["malformed-json", "number-in-text-column", "no-text-column", "5MB-text"])
def test_the_served_model_refuses_bad_input_politely_and_keeps_serving(served_model, body, expected):
    status, answer = invoke(served_model, body)
    assert status == 400 and expected in answer["message"], (status, str(answer)[:2000])
    status, answer = invoke(served_model, json.dumps({"inputs": TEXTS[:1]}).encode())
    assert status == 200 and isinstance(answer["predictions"], list), answer  # still serving


# ---------------------------------------------------------------------------- settings
def test_register_as_without_a_logged_model_is_a_one_line_error(tmp_path):
    for args, expected in [
        (["tracking=none", "tracking.register_as=x"], "tracking.register_as=x needs tracking"),
        (["tracking.log_model=false", "tracking.register_as=x"], "set tracking.log_model=true"),
    ]:
        result = run_cli(args, tmp_path, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines


class _Tracker:
    run_id = "not-active"
    offline = False


class _Component:
    def log_mlflow_model(self, model_dir, *, step=0, register_as=None):
        raise AssertionError("never reached: the run is not active")


def test_model_logging_warns_without_register_as_and_fails_with_it(tmp_path, caplog):
    from medkit_exp.app.tracker import log_model
    from medkit_exp.errors import UserError

    summary = log_model(_Component(), _Tracker(), tmp_path, 1, None)  # no active run: a warning, the run goes on
    assert summary == {"model_uri": "not logged (RuntimeError: run not-active is not the active MLflow run)"}
    assert "not logged as an MLflow model" in caplog.text
    with pytest.raises(UserError, match="tracking.register_as=prod: the model could not be logged or registered"):
        log_model(_Component(), _Tracker(), tmp_path, 1, "prod")


# ---------------------------------------------------------------------------- inputs and outputs
def test_texts_of_accepts_lists_frames_and_records():
    assert texts_of(["a", "b"]) == ["a", "b"]
    assert texts_of("a") == ["a"]
    assert texts_of(pd.DataFrame({"text": ["a"], "other": [1]})) == ["a"]
    assert texts_of(pd.DataFrame({0: ["a", "b"]})) == ["a", "b"]  # what MLflow makes of a list
    assert texts_of({"text": ["a"]}) == ["a"]
    with pytest.raises(ValueError, match="needs a 'text' column"):
        texts_of(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(ValueError, match=r"needs a 'text' column, got columns \['sex'\]"):
        texts_of(pd.DataFrame({"sex": ["F"]}))  # a named column is not the texts
    with pytest.raises(TypeError, match="input text 1 is a int, not a str"):
        texts_of(["a", 3])
    with pytest.raises(TypeError, match="got int"):
        texts_of(3)


class _FakeMatcher:
    """Finds every occurrence of "fever" (label problem, score 0.5)."""

    def predict(self, docs):
        from medkit_exp.core import Entity, Span

        return [[Entity(label="problem", spans=[Span(m.start(), m.end())], text="fever", score=0.5)
                 for m in re.finditer("fever", doc.text)] for doc in docs]


def test_predict_entities_gives_typed_flat_rows_and_regroups():
    rows = predict_entities(_FakeMatcher(), ["fever and fever", "", "no"])
    assert rows.to_dict("records") == [
        {"text_index": 0, "start": 0, "end": 5, "label": "problem", "text": "fever", "score": 0.5},
        {"text_index": 0, "start": 10, "end": 15, "label": "problem", "text": "fever", "score": 0.5}]
    assert [str(t) for t in rows.dtypes] == list(OUTPUT_COLUMNS.values())
    assert [len(x) for x in entities_by_text(rows, 3)] == [2, 0, 0]
    empty = predict_entities(_FakeMatcher(), ["nothing"])
    assert empty.empty and [str(t) for t in empty.dtypes] == list(OUTPUT_COLUMNS.values())

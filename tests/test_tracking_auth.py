"""A team server with accounts: `mlflow server --app-name basic-auth`, a user training with their
credentials (environment or URI), a wrong password refused in one line, and no secret in what a
run logs, writes or prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT
from support.servers import free_port, serving
from test_cli import cli_env, quick_args

ADMIN = ("admin", "admin-Pass-4-tests")
USERS = {"alice": "alice-Pass-4-tests", "bob": "bob-Pass-4-tests"}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, mlflow_template_db):
    """``mlflow server --app-name basic-auth`` on a free loopback port, with users alice and bob; yields its URL.

    The admin account is made at first start from MLFLOW_AUTH_ADMIN_PASSWORD (MLflow ships no
    default one). Verified credentials are cached for a minute (``auth_cache_ttl_seconds``):
    without it the server hashes the password again for each of a run's ~100 requests (measured on
    2 busy cores: the first test took 86 s instead of 20 s, the second 25 s instead of 14 s).
    """
    root = tmp_path_factory.mktemp("auth-server")
    shutil.copyfile(mlflow_template_db, root / "mlflow.db")
    config = root / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{root / 'basic_auth.db'}\nadmin_username = {ADMIN[0]}\n"
                      "auth_cache_ttl_seconds = 60\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_AUTH_CONFIG_PATH": str(config),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only-key"}
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
               str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with serving(command, f"{url}/health", root / "server.log", env=env, cwd=root, timeout_s=180):
        for user, password in USERS.items():
            answer = requests.post(f"{url}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=30,
                                   json={"username": user, "password": password})
            assert answer.status_code == 200, answer.text
        yield url


def with_credentials(url: str, user: str, password: str) -> str:
    return url.replace("http://", f"http://{user}:{password}@")


def admin_client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(with_credentials(url, *ADMIN))


def permission(url: str, user: str, experiment_id: str) -> str:
    answer = requests.get(f"{url}/api/3.0/mlflow/users/permissions/get", auth=ADMIN, timeout=30,
                          params={"username": user, "resource_type": "experiment", "resource_id": experiment_id})
    answer.raise_for_status()
    return answer.json()["permission"]


def run_cli_with(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI with ``env`` added to the usual test environment, and tests/ importable (secret_component)."""
    full = {**cli_env(), **env, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}
    return subprocess.run([sys.executable, "-m", "medkit_exp", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def everything_logged(url: str, run_id: str, result: subprocess.CompletedProcess, workdir: Path) -> dict[str, bytes]:
    """What the run left anywhere: its params, tags, name, dataset inputs, experiment tags, every run
    artifact, every file of its logged models, every file written under ``workdir`` (Hydra's local
    ``.hydra/`` record of the command line aside) and every line printed; by place."""
    import mlflow

    client = admin_client(url)
    run = client.get_run(run_id)
    found = {f"param {k}": f"{k}={v}" for k, v in run.data.params.items()}
    found |= {f"tag {k}": f"{k}={v}" for k, v in run.data.tags.items()}
    found["run name"] = run.info.run_name
    found |= {f"experiment tag {k}": v for k, v in client.get_experiment(run.info.experiment_id).tags.items()}
    found |= {f"dataset {d.dataset.name}": json.dumps(d.dataset.to_dictionary()) for d in run.inputs.dataset_inputs}
    found |= {f"printed line {i}": line for i, line in enumerate((result.stdout + result.stderr).splitlines())}
    folders = {"artifact": Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, dst_path=str(workdir / "downloaded" / "run"), tracking_uri=with_credentials(url, *ADMIN)))}
    for output in run.outputs.model_outputs:
        model = client.get_logged_model(output.model_id)
        folders[f"model {model.model_id}"] = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=str(workdir / "downloaded" / model.model_id),
            tracking_uri=with_credentials(url, *ADMIN)))
    folders["file"] = workdir / "out"
    found = {place: text.encode() for place, text in found.items()}
    for kind, folder in folders.items():
        for path in folder.rglob("*"):
            if path.is_file() and ".hydra" not in path.relative_to(folder).parts:
                found[f"{kind} {path.relative_to(folder)}"] = path.read_bytes()
    return found


def leaks(logged: dict[str, bytes], secrets: list[str]) -> list[str]:
    return sorted(place for place, content in logged.items() if any(s.encode() in content for s in secrets))


def test_a_user_trains_with_environment_credentials_and_no_secret_leaves_the_process(auth_server, tiny_bert_dir,
                                                                                       tmp_path):
    """alice's account from MLFLOW_TRACKING_USERNAME/PASSWORD; a HF token the shell expanded into an
    override; an API key a component reads through ${oc.env:...}. The run is alice's, the key reached
    the component, and none of the three secrets is in anything the run logged, wrote or printed."""
    hf_token, api_key = "hf_tEsTtOkEn4Leak", "sk-tEsTkEy-4-leak"
    env = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": USERS["alice"], "HF_TOKEN": hf_token,
           "MEDKIT_TEST_SERVICE_API_KEY": api_key}
    result = run_cli_with([*quick_args(tiny_bert_dir), "data.max_docs=16", "trainer.epochs=1", "hydra.run.dir=out",
                           f"tracking.uri={auth_server}", "tracking.experiment=alice-runs",
                           "component._target_=support.secret_component.ner_with_api_key",
                           "+component.api_key=${oc.env:MEDKIT_TEST_SERVICE_API_KEY}",
                           f"tracking.run_name=nightly-{hf_token}"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1)

    client = admin_client(auth_server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.user_id == "alice"
    assert permission(auth_server, "alice", run.info.experiment_id) == "MANAGE"  # she created the experiment
    assert run.info.run_name == "nightly-***" and run.data.params["component.api_key"] == "***"
    assert "tracking.run_name=nightly-***" in run.data.tags["hydra.overrides"]
    assert run.outputs.model_outputs, "the model was logged: its files are searched too"

    logged = everything_logged(auth_server, run_id, result, tmp_path)
    assert {"artifact config.yaml", "artifact history.json", "file checkpoints/tracking.json"} <= set(logged)
    assert leaks(logged, [USERS["alice"], hf_token, api_key]) == []


def test_credentials_in_the_uri_are_sent_and_never_logged(auth_server, tiny_bert_dir, tmp_path):
    """http://bob:<password>@host reaches the server as bob (the probe leaves the user part out);
    the password is in no param, tag, artifact, file beside the checkpoints, or line printed."""
    uri = with_credentials(auth_server, "bob", USERS["bob"])
    result = run_cli_with([*quick_args(tiny_bert_dir), "data.max_docs=16", "trainer.epochs=1", f"tracking.uri={uri}",
                           "tracking.experiment=bob-runs", "tracking.log_model=false", "hydra.run.dir=out"],
                          tmp_path, {})
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1)
    run = admin_client(auth_server).get_run(run_id)
    assert run.info.user_id == "bob" and permission(auth_server, "bob", run.info.experiment_id) == "MANAGE"
    assert run.data.params["tracking.uri"] == uri.replace(USERS["bob"], "***")
    logged = everything_logged(auth_server, run_id, result, tmp_path)
    assert leaks(logged, [USERS["bob"]]) == []


def test_a_wrong_password_is_one_line_and_no_run(auth_server, tiny_bert_dir, tmp_path):
    client = admin_client(auth_server)

    def all_runs() -> int:
        return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))

    before = all_runs()
    wrong = "not-alices-password"
    result = run_cli_with([*quick_args(tiny_bert_dir), "data.max_docs=8", f"tracking.uri={auth_server}",
                           "tracking.experiment=denied"], tmp_path,
                          {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": wrong})
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "authentication failed for user 'alice'" in lines[0], lines
    assert "MLFLOW_TRACKING_PASSWORD" in lines[0]  # the fix
    assert wrong not in result.stdout + result.stderr
    assert client.get_experiment_by_name("denied") is None and all_runs() == before

"""The commands README.md shows work as written."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import REPO_ROOT
from test_cli import client_for, run_cli

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands(prefix: str) -> list[str]:
    """Shell lines of README code blocks starting with ``prefix`` (continuations joined, comments cut)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                commands.append(line)
    return commands


APP_COMMANDS = readme_commands("python -m medkit_exp ")


def test_readme_shows_the_app_commands():
    assert len(APP_COMMANDS) >= 8


@pytest.mark.parametrize("command", APP_COMMANDS)
def test_every_app_command_in_readme_composes(tmp_path, command):
    """Each documented command composes (sweeps: their first job) and prints its config."""
    args = [a for a in shlex.split(command)[3:] if a not in ("-m", "--multirun")]
    args = [re.sub(r"=([^=,]+),\S+$", r"=\1", a) for a in args]  # a sweep's first value
    args = [a.replace("/path/to/hf-model-folder", str(tmp_path)) for a in args]
    if "--cfg" not in args and "--help" not in args:
        args += ["--cfg", "job"]
    # Commands with a user's config folder run from examples/, as README says (`cd examples`).
    cwd = REPO_ROOT / "examples" if "--config-dir" in args else tmp_path
    result = run_cli(args, cwd, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "trainer:" in result.stdout


def test_the_default_run_as_readme_gives_it(tmp_path, mlflow_template_db):
    """`python -m medkit_exp`, nothing else: the packaged MiniLM on the demo corpus, tracked."""
    import shutil

    assert "python -m medkit_exp          # the default experiment" in README
    (tmp_path / "mlruns").mkdir()
    shutil.copyfile(mlflow_template_db, tmp_path / "mlruns" / "mlflow.db")
    result = run_cli([], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout[result.stdout.index("== medkit_exp run summary =="):]
    test_f1 = float(re.search(r"test\s+: precision=\S+ recall=\S+ f1=([0-9.]+)", summary).group(1))
    assert test_f1 >= 0.8  # measured 0.933 with the defaults (5 epochs, lr 3e-4)
    run_id = re.search(r"MLflow run\s+: (\w+)", summary).group(1)
    ui = re.search(r"see it with\s+: (mlflow ui .*)", summary).group(1)
    assert f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in ui
    run = client_for(tmp_path).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_f1"] == pytest.approx(test_f1, abs=1e-4)

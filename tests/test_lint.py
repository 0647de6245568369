"""The lint gate of .ci/run: ruff, with the project's configuration, passes on the repository
and refuses a module whose imports are out of order. mypy runs in CI only: 106 s from a cold
cache on a 2-core machine, too long for the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def ruff() -> str:
    """The ruff of this environment (the dev extra installs it beside the interpreter)."""
    found = Path(sys.executable).with_name("ruff")
    if found.is_file():
        return str(found)
    on_path = shutil.which("ruff")
    if on_path is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    return on_path


def ruff_check(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([ruff(), "check", "--no-cache", "--output-format", "concise", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_unsorted_imports_fail_the_project_configuration(tmp_path):
    module = tmp_path / "unsorted.py"
    module.write_text('"""Imports out of order."""\n\nimport sys\nimport os\n\nprint(os.sep, sys.argv)\n')
    result = ruff_check("--config", str(REPO_ROOT / "pyproject.toml"), str(module), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{module.name}:3:1: I001" in result.stdout, result.stdout
    module.write_text('"""Imports in order."""\n\nimport os\nimport sys\n\nprint(os.sep, sys.argv)\n')
    fixed = ruff_check("--config", str(REPO_ROOT / "pyproject.toml"), str(module), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_the_repository_passes_ruff():
    result = ruff_check(".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr

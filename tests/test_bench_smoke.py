"""Each benchmark script runs end to end on a tiny input (figures are measured outside CI)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SHARED_DATA
from test_cli import cli_env


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), *args], cwd=REPO_ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def test_tracking_overhead_prints_its_ratio(tiny_bert_dir):
    result = run_bench("tracking_overhead.py", "--pairs", "1", "--epochs", "1", "--model", str(tiny_bert_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("ratio tracked/untracked: ")


@pytest.mark.skipif(not (SHARED_DATA / "ncbi-disease").is_dir(), reason="NCBI-disease data not found")
def test_ncbi_vs_hf_trainer_prints_the_f1_difference(tiny_bert_dir):
    sides = [] if importlib.util.find_spec("accelerate") else ["--only", "ours"]  # accelerate: bench extra only
    result = run_bench("ncbi_vs_hf_trainer.py", "--model", str(tiny_bert_dir), "--epochs", "1", "--max-docs", "4",
                       *sides)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("test F1 difference" if not sides else "mean test F1 ours")

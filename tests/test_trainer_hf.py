"""The Trainer with the HF NER component: token-level losses still accumulate exactly."""

from __future__ import annotations

import torch

from medkit_exp.io import load_demo_corpus
from medkit_exp.text.ner import HFEntityMatcher
from medkit_exp.training import Trainer, TrainerConfig


def train_weights(model_dir, tmp_path, **overrides):
    torch.manual_seed(0)
    component = HFEntityMatcher.make_trainable(model_dir, labels=["problem", "test", "treatment"])
    for module in component.model.modules():  # dropout draws differ with the batch split
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    docs = load_demo_corpus()["train"][:24]
    config = TrainerConfig(output_dir=str(tmp_path), lr=1e-3, epochs=1, seed=0, max_grad_norm=None, **overrides)
    Trainer(component, config, docs, callbacks=[]).train()
    return torch.cat([p.detach().flatten() for p in component.model.parameters()])


def test_accumulating_token_level_losses_equals_the_large_batch(tiny_bert_dir, tmp_path):
    # Micro-batches hold different numbers of labelled tokens: weighting them by rows would
    # not give the large batch's token-mean gradient; weighting by labelled tokens does.
    large = train_weights(tiny_bert_dir, tmp_path / "a", batch_size=8)
    accumulated = train_weights(tiny_bert_dir, tmp_path / "b", batch_size=4, grad_accum_steps=2)
    assert torch.allclose(large, accumulated, atol=1e-5)

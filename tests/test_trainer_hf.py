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
    config = TrainerConfig(**{"output_dir": str(tmp_path), "lr": 1e-3, "epochs": 1, "seed": 0, "max_grad_norm": None,
                              **overrides})
    Trainer(component, config, docs, callbacks=[]).train()
    return torch.cat([p.detach().flatten() for p in component.model.parameters()])


def test_accumulating_token_level_losses_equals_the_large_batch(tiny_bert_dir, tmp_path):
    # Micro-batches hold different numbers of labelled tokens: weighting them by rows would
    # not give the large batch's token-mean gradient; weighting by labelled tokens does.
    large = train_weights(tiny_bert_dir, tmp_path / "a", batch_size=8)
    accumulated = train_weights(tiny_bert_dir, tmp_path / "b", batch_size=4, grad_accum_steps=2)
    assert torch.allclose(large, accumulated, atol=1e-5)


def test_training_only_the_used_embedding_rows_is_the_same_training(tiny_bert_dir, tmp_path, monkeypatch):
    # The Trainer hands the component its training examples; the optimizer then holds only the
    # embedding rows of their tokens. Without weight decay the other rows cannot move, so the
    # trained weights (all of them, embedding included) must match the full-matrix training.
    from medkit_exp.text.hf_model import HFTrainableModel

    before = HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["problem", "test", "treatment"])
    initial_embedding = before.model.get_input_embeddings().weight.detach().clone()
    rows_only = train_weights(tiny_bert_dir, tmp_path / "rows", batch_size=4, max_grad_norm=1.0)
    monkeypatch.delattr(HFTrainableModel, "prepare_for_training")
    full = train_weights(tiny_bert_dir, tmp_path / "full", batch_size=4, max_grad_norm=1.0)
    assert torch.allclose(rows_only, full, atol=1e-6)
    vocab, width = initial_embedding.shape
    trained_embedding = full[: vocab * width].view(vocab, width)
    moved = (trained_embedding != initial_embedding).any(dim=1)
    assert 0 < int(moved.sum()) < vocab // 2  # the premise: most rows never move


def test_the_saved_model_and_the_optimizer_see_the_used_rows(tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner import HFEntityMatcherTrainable

    torch.manual_seed(0)
    component = HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["problem", "test", "treatment"])
    docs = load_demo_corpus()["train"][:8]
    config = TrainerConfig(output_dir=str(tmp_path / "run"), lr=1e-2, epochs=1, seed=0, batch_size=4)
    trainer = Trainer(component, config, docs, callbacks=[])
    trainer.train()
    embedding = component.model.get_input_embeddings()
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(embedding.weight) not in optimized and not embedding.weight.requires_grad
    first = trainer.optimizer.param_groups[0]["params"][0]
    used = {token for doc in docs for example in component.preprocess(doc) for token in example["input_ids"]}
    assert first.shape == (len(used - {embedding.padding_idx}), embedding.embedding_dim)
    reloaded = HFEntityMatcherTrainable(trainer.last_checkpoint / "model", labels=["problem", "test", "treatment"])
    assert torch.equal(reloaded.model.get_input_embeddings().weight, embedding.weight)
    ids = torch.tensor([sorted(used)])
    with torch.no_grad():
        component.model.eval(), reloaded.model.eval()
        assert torch.allclose(component.model(input_ids=ids).logits, reloaded.model(input_ids=ids).logits, atol=1e-6)


def test_resuming_with_other_training_tokens_is_refused_in_one_line(tiny_bert_dir, tmp_path):
    import pytest

    from medkit_exp.training.checkpoint import CheckpointError

    docs = load_demo_corpus()["train"]
    labels = ["problem", "test", "treatment"]
    config = TrainerConfig(output_dir=str(tmp_path), lr=1e-3, epochs=1, seed=0, batch_size=4)
    Trainer(HFEntityMatcher.make_trainable(tiny_bert_dir, labels=labels), config, docs[:4], callbacks=[]).train()
    config.epochs, config.resume_from = 2, "last"
    trainer = Trainer(HFEntityMatcher.make_trainable(tiny_bert_dir, labels=labels), config, docs[:12], callbacks=[])
    with pytest.raises(CheckpointError, match=r"parameter 0 of shape \(\d+, \d+\), the model.s is \(\d+, \d+\); "
                                              r"resume with the training data"):
        trainer.train()

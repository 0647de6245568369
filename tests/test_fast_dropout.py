"""Fast CPU dropout (`medkit_exp.training.fast_dropout`) and the HF training attention built on it."""

from __future__ import annotations

import json

import pytest
import torch

from medkit_exp.training.fast_dropout import FastDropout, dropped_levels, fast_dropout, use_fast_dropout


def test_fast_dropout_drops_the_asked_fraction_and_rescales_the_rest_exactly():
    torch.manual_seed(0)
    x = torch.rand(1_000_000) + 1.0  # no element is 0 before dropout
    y = fast_dropout(x, 0.1)
    dropped = y == 0
    # A Bernoulli(0.1) fraction over 1e6 elements has a standard deviation of 0.0003.
    assert abs(dropped.float().mean().item() - 0.1) < 0.0015
    scale = 65536 / (65536 - dropped_levels(0.1))
    assert torch.allclose(y[~dropped], x[~dropped] * scale)
    assert dropped_levels(0.1) == 6554  # p is kept to 1/65536


def test_fast_dropout_masks_differ_between_calls_and_repeat_with_the_seed():
    torch.manual_seed(3)
    first, second = fast_dropout(torch.ones(4096), 0.5), fast_dropout(torch.ones(4096), 0.5)
    torch.manual_seed(3)
    again = fast_dropout(torch.ones(4096), 0.5)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)
    assert 1800 < int((first == 0).sum()) < 2300  # about half of 4096 elements


def test_fast_dropout_gradient_flows_through_kept_elements_only():
    torch.manual_seed(1)
    x = torch.rand(64, 32, dtype=torch.bfloat16).add_(1.0).requires_grad_()
    y = fast_dropout(x, 0.25)
    assert y.dtype == torch.bfloat16
    y.sum().backward()
    scale = 65536 / (65536 - dropped_levels(0.25))
    expected = torch.where(y.detach() == 0, 0.0, scale).to(torch.bfloat16)
    assert torch.equal(x.grad, expected)


def test_fast_dropout_is_the_identity_when_not_training_or_when_p_is_zero():
    x = torch.rand(10)
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros(10))
    torch.manual_seed(0)  # PyTorch's dropout then: keeps an element with probability 1e-6
    assert torch.equal(fast_dropout(x, 0.999999), torch.zeros(10))  # 65536 of 65536 levels: no division by 0
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        fast_dropout(x, 1.5)


def test_use_fast_dropout_replaces_dropout_modules_and_keeps_the_state_dict():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2),
                                torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(4, 2)))
    keys = list(model.state_dict())
    assert use_fast_dropout(model) == 2
    assert isinstance(model[1], FastDropout) and model[1].p == 0.2
    assert isinstance(model[2][0], FastDropout) and model[2][0].p == 0.1
    assert list(model.state_dict()) == keys
    model.eval()
    x = torch.rand(3, 4)
    assert torch.equal(model(x), model[2][1](model[0](x)))  # no dropout in eval mode


@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive"])
def test_training_attention_computes_what_sdpa_computes(mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from medkit_exp.text.hf_attention import cpu_training_attention

    torch.manual_seed(0)
    query, key, value = (torch.randn(3, 2, 7, 8) for _ in range(3))
    allowed = torch.ones(3, 1, 7, 7, dtype=torch.bool)
    allowed[1, ..., 5:] = False  # padding: the last two keys of the second example
    mask = {"none": None, "bool": allowed,
            "additive": torch.zeros(3, 1, 7, 7).masked_fill(~allowed, torch.finfo(torch.float32).min)}[mask_kind]
    module = torch.nn.Module()
    module.is_causal = False
    module.train()
    # A dropout below 1/65536 drops nothing, but takes the explicit path of training.
    ours, _ = cpu_training_attention(module, query, key, value, mask, dropout=1e-9, scaling=0.3)
    reference, _ = sdpa_attention_forward(module, query, key, value, mask, dropout=0.0, scaling=0.3)
    assert ours.shape == reference.shape == (3, 7, 2, 8)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_hf_trainable_trains_with_fast_dropout_and_saves_a_plain_model(tiny_bert_dir, tmp_path):
    from transformers import AutoModelForTokenClassification

    from medkit_exp.text.hf_attention import TRAINING_ATTENTION
    from medkit_exp.text.ner import HFEntityMatcher

    component = HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["Disease"], tokenizer_max_length=32)
    assert component.fast_dropout is True
    assert component.model.config._attn_implementation == TRAINING_ATTENTION
    assert not any(type(m) is torch.nn.Dropout for m in component.model.modules())

    batch = {"input_ids": torch.randint(1000, 2000, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    batch["attention_mask"][2, 8:] = 0
    component.model.train()
    torch.manual_seed(0)
    first = component.model(**batch).logits
    torch.manual_seed(0)
    assert torch.equal(first, component.model(**batch).logits)  # seeded dropout: repeatable
    assert not torch.equal(first, component.model(**batch).logits)  # and dropout is on

    component.save(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert TRAINING_ATTENTION not in json.dumps(config)
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "saved").eval()
    component.model.eval()
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, component.model(**batch).logits)


def test_hf_trainable_keeps_torch_dropout_when_asked(tiny_bert_dir):
    from medkit_exp.text.ner import HFEntityMatcher

    component = HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["Disease"], fast_dropout=False)
    assert component.fast_dropout is False
    assert component.model.config._attn_implementation == "sdpa"
    assert any(type(m) is torch.nn.Dropout for m in component.model.modules())

"""trainer.precision=auto and the matcher's inference precisions (bf16 autocast, int8 quantization)."""

from __future__ import annotations

import pytest
import torch

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.training import precision as precision_module
from medkit_exp.training.precision import resolve_precision


def test_auto_picks_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: ("amx_bf16", "avx512_bf16"))
    assert resolve_precision("auto", cpu) == ("bf16", "auto: the CPU has amx_bf16/avx512_bf16")
    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: ())
    assert resolve_precision("auto", cpu) == ("fp32", "auto: no native bf16 on cpu")
    assert resolve_precision("bf16", cpu) == ("bf16", "asked") and resolve_precision("fp32", cpu) == ("fp32", "asked")


def test_the_trainer_computes_in_the_resolved_precision(tmp_path, monkeypatch):
    from support.dummy_component import DummyClassifier, make_data

    from medkit_exp.training import Trainer, TrainerConfig

    seen = []

    class Probe(DummyClassifier):
        def forward(self, batch, return_loss, eval_mode):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return super().forward(batch, return_loss, eval_mode)

    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: ("amx_bf16",))
    config = TrainerConfig(output_dir=str(tmp_path), epochs=1, batch_size=16, precision="auto")
    trainer = Trainer(Probe(), config, make_data(32), make_data(16, seed=1), callbacks=[])
    trainer.train()
    assert trainer.precision == "bf16" and set(seen) == {torch.bfloat16}


def _trained_folder(tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner import HFEntityMatcher

    component = HFEntityMatcher.make_trainable(str(tiny_bert_dir), labels=["problem"])
    component.save(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("precision, tolerance", [("bf16", 0.05), ("int8", 0.05)])
def test_the_matcher_predicts_in_bf16_and_int8_close_to_fp32(tiny_bert_dir, tmp_path, precision, tolerance):
    from medkit_exp.text.ner import HFEntityMatcher

    folder = _trained_folder(tiny_bert_dir, tmp_path)
    reference, other = HFEntityMatcher(model=folder), HFEntityMatcher(model=folder, precision=precision)
    assert other.precision == precision
    probabilities = {}
    for name, matcher in (("fp32", reference), (precision, other)):
        original = matcher.model.forward

        def recording(*args, _original=original, _name=name, **kwargs):
            output = _original(*args, **kwargs)
            probabilities[_name] = (torch.is_autocast_enabled("cpu"), torch.softmax(output.logits.float(), -1))
            return output

        matcher.model.forward = recording
        matcher.predict([TextDocument(text="The patient has a fever and a cough after the surgery.", id="d")])
    assert probabilities["fp32"][0] is False
    assert probabilities[precision][0] is (precision == "bf16")  # bf16: under autocast; int8: its own kernels
    if precision == "int8":
        assert any("quantized" in type(m).__module__ for m in other.model.modules())
    reference_probs, other_probs = probabilities["fp32"][1], probabilities[precision][1]
    length = reference_probs.shape[1]  # bf16 on CPU pads the batch to 16 tokens: compare the real ones
    assert other_probs.shape[1] == (16 if precision == "bf16" else length) >= length
    difference = (reference_probs - other_probs[:, :length]).abs().max().item()
    assert 0 < difference < tolerance  # a different computation, close to the fp32 one


def test_a_bad_inference_precision_is_refused(tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner import HFEntityMatcher

    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, int8, auto, got 'fp16'"):
        HFEntityMatcher(model=_trained_folder(tiny_bert_dir, tmp_path), precision="fp16")


def test_compile_trains_the_model_in_place_like_eager(tmp_path):
    """trainer.compile=true: the same updates as eager mode, and the module keeps its state dict."""
    from support.dummy_component import DummyClassifier, make_data

    from medkit_exp.training import Trainer, TrainerConfig

    weights = {}
    for compiled in (False, True):
        component = DummyClassifier(dropout=0.0)
        config = TrainerConfig(output_dir=str(tmp_path / str(compiled)), epochs=1, batch_size=16, compile=compiled,
                               batch_order="random")
        Trainer(component, config, make_data(48), make_data(16, seed=1), callbacks=[]).train()
        assert (getattr(component.model, "_compiled_call_impl", None) is not None) is compiled
        weights[compiled] = component.model.state_dict()
    assert weights[True].keys() == weights[False].keys()  # no "_orig_mod." prefix: saved checkpoints load anywhere
    assert all(torch.allclose(weights[True][k], weights[False][k], atol=1e-5) for k in weights[False])


def test_compile_needs_a_model_attribute(tmp_path):
    from support.dummy_component import make_data

    from medkit_exp.training import Trainer, TrainerConfig, TrainingSetupError

    class NoModel:
        device = torch.device("cpu")

    config = TrainerConfig(output_dir=str(tmp_path), epochs=1, compile=True)
    with pytest.raises(TrainingSetupError, match="trainer.compile=true compiles the `model` attribute"):
        Trainer(NoModel(), config, make_data(8), callbacks=[]).train()


@pytest.mark.parametrize("precision, setting, multiple, chosen", [
    ("bf16", None, 16, True), ("fp32", None, None, False), ("bf16", 0, None, False), ("fp32", 8, 8, False)])
def test_batch_padding_follows_the_precision_unless_told(tiny_bert_dir, tmp_path, precision, setting, multiple, chosen):
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    text = "A fever and a cough."
    doc = TextDocument(text=text, id="d")
    doc.anns.add(Entity(label="problem", spans=[Span(2, 7)], text="fever"))
    component = HFEntityMatcher.make_trainable(str(tiny_bert_dir), labels=["problem"])
    lengths = []
    original = component.collate
    component.collate = lambda batch: lengths.append(original(batch)["input_ids"].shape[1]) or original(batch)
    config = TrainerConfig(output_dir=str(tmp_path), epochs=1, precision=precision, pad_to_multiple_of=setting,
                           checkpoint_metric="loss", checkpoint_mode="min")
    Trainer(component, config, [doc], [doc], callbacks=[]).train()
    assert component.pad_to_multiple_of == multiple
    longest = len(component.preprocess(doc)[0]["input_ids"])  # 9 tokens with [CLS] and [SEP]
    if chosen:  # bf16 on CPU: the one training batch's own length is the length chosen
        assert component.pad_lengths == (longest,)
        assert set(lengths) == {longest}
    else:
        assert component.pad_lengths is None
        assert set(lengths) == {-(-longest // multiple) * multiple if multiple else longest}


def test_bf16_pads_to_lengths_chosen_from_the_training_batches(tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerConfig

    def document(words: int, name: str) -> TextDocument:
        doc = TextDocument(text=" ".join(["fever"] * words), id=name)
        doc.anns.add(Entity(label="problem", spans=[Span(0, 5)], text="fever"))
        return doc

    train = [document(n, f"t{n}") for n in (3, 5, 9, 14, 20, 26, 33, 41)]
    component = HFEntityMatcher.make_trainable(str(tiny_bert_dir), labels=["problem"], tokenizer_max_length=128)
    seen = []
    original = component.collate
    component.collate = lambda batch: seen.append(
        (max(len(e["input_ids"]) for e in batch), original(batch)["input_ids"].shape[1])) or original(batch)
    config = TrainerConfig(output_dir=str(tmp_path), epochs=1, batch_size=1, precision="bf16",
                           checkpoint_metric="loss", checkpoint_mode="min")
    Trainer(component, config, train, [document(60, "long")], callbacks=[]).train()
    chosen = component.pad_lengths
    train_longest = sorted(longest for longest, _ in seen[:8])
    # One batch each of 5..43 tokens: multiples of 16 would give 3 shapes (16, 32, 48), and the
    # 3 lengths that pad these batches least are 11, 28 and 43 (36 tokens of padding: 6+4+0+12+6+0+8+0;
    # multiples of 16 add 61, and 11, 22, 43 would add 42).
    assert train_longest == [5, 7, 11, 16, 22, 28, 35, 43]
    assert chosen == (11, 28, 43)
    for longest, padded in seen[:8]:
        assert padded == min(n for n in chosen if n >= longest)
    assert seen[8] == (62, 64)  # the evaluation document is longer than every training batch: a multiple of 16

"""Segment classification: context marking, HFSegmentClassifierTrainable (protocol), training, HFSegmentClassifier."""

from __future__ import annotations

import json

import pytest
import torch

from medkit_exp.core.document import Attribute, Entity, Segment, Span, TextDocument
from medkit_exp.text.classification import (
    ContextSettings,
    HFSegmentClassifier,
    HFSegmentClassifierTrainable,
    SegmentItem,
    items_from_attributes,
    items_from_entities,
    marked_text,
)
from medkit_exp.text.classification.settings import SETTINGS_FILE
from medkit_exp.training import TrainableComponent, Trainer, TrainerConfig

TEXT = (
    "Germline mutations were studied in 40 families. Patients with breast cancer were screened "
    "for the BRCA1 gene, and ovarian cancer cases for BRCA2. A deficiency of the C7 component "
    "was found in two sisters."
)
MENTIONS = [
    ("breast cancer", "SpecificDisease"), ("ovarian cancer", "Modifier"),
    ("deficiency of the C7 component", "SpecificDisease"),
]


def make_doc(text: str = TEXT, mentions=MENTIONS, doc_id: str = "doc") -> TextDocument:
    doc = TextDocument(text, id=doc_id)
    for mention, label in mentions:
        start = text.index(mention)
        doc.anns.add(Entity(label=label, spans=[Span(start, start + len(mention))], text=mention))
    return doc


def typing_docs() -> list[TextDocument]:
    """Six short documents whose mention class follows from the word after it."""
    docs = []
    for i, (mention, cue, label) in enumerate([
        ("asthma", "attacks", "A"), ("eczema", "flares", "B"), ("colitis", "attacks", "A"),
        ("anemia", "flares", "B"), ("gout", "attacks", "A"), ("psoriasis", "flares", "B"),
    ]):
        docs.append(make_doc(f"The child had {mention} {cue} last week.", [(mention, label)], doc_id=f"d{i}"))
    return docs


def trainable(model_dir, labels=("Modifier", "SpecificDisease"), **kwargs) -> HFSegmentClassifierTrainable:
    return HFSegmentClassifier.make_trainable(model_dir, list(labels), **kwargs)


# ---------------------------------------------------------------------- context
def test_sentence_context_marks_the_mention_in_its_sentence():
    item = items_from_entities([make_doc()])[0]
    marked = marked_text(item, ContextSettings("sentence"))
    assert marked.text == (
        "Patients with [E] breast cancer [/E] were screened for the BRCA1 gene, and ovarian cancer cases for BRCA2."
    )
    assert marked.text[marked.mention_start : marked.mention_end] == "[E] breast cancer [/E]"


def test_window_and_none_contexts_and_custom_markers():
    item = items_from_entities([make_doc()])[1]
    window = marked_text(item, ContextSettings("window", context_chars=12, start_marker="<m>", end_marker="</m>"))
    assert window.text == "gene, and <m> ovarian cancer </m> cases for"  # "BRCA1", "BRCA2" would be cut: left out
    assert marked_text(item, ContextSettings("none")).text == "[E] ovarian cancer [/E]"


def test_a_mention_across_a_sentence_boundary_gets_both_sentences():
    text = "He had a fever. Rash of unknown origin appeared."
    doc = make_doc(text, [("fever. Rash", "X")])
    assert marked_text(items_from_entities([doc])[0], ContextSettings()).text == (
        "He had a [E] fever. Rash [/E] of unknown origin appeared."
    )


def test_bad_items_and_settings_fail_with_the_fix():
    doc = make_doc()
    entity = doc.anns.entities[0]
    with pytest.raises(ValueError, match="needs: pass \\(document, segment\\) pairs"):
        marked_text(SegmentItem(None, entity), ContextSettings("sentence"))
    assert marked_text(SegmentItem(None, entity), ContextSettings("none")).text == "[E] breast cancer [/E]"
    other = TextDocument("A short unrelated text that is long enough to hold the spans of the entity.", id="x")
    with pytest.raises(ValueError, match="pass the document the segment is annotated on"):
        marked_text(SegmentItem(other, entity), ContextSettings())
    with pytest.raises(ValueError, match="context='paragraph' is unknown"):
        ContextSettings("paragraph")


def test_items_from_attributes_read_the_gold_from_the_attribute():
    doc = make_doc()
    doc.anns.entities[0].attrs.append(Attribute("negation", True))
    doc.anns.entities[1].attrs.append(Attribute("negation", False))
    doc.anns.add(Segment("sentence", [Span(0, 47)], TEXT[:47], attrs=[Attribute("negation", False)]))
    items = items_from_attributes([doc], "negation")
    assert [item.gold("negation") for item in items] == ["True", "False", "False"]
    assert len(items_from_attributes([doc], "negation", segment_label="sentence")) == 1
    assert len(items_from_attributes([doc], "negation", labels=["True"])) == 1
    assert [i.gold(None) for i in items_from_entities([doc], labels=["Modifier"])] == ["Modifier"]


# ---------------------------------------------------------------------- protocol
def test_preprocess_collate_forward(tiny_bert_dir):
    component = trainable(tiny_bert_dir)
    assert isinstance(component, TrainableComponent)
    items = items_from_entities([make_doc()])
    examples = [component.preprocess(item) for item in items]
    assert set(examples[0]) == {"input_ids", "attention_mask", "length", "label"}
    assert [e["label"] for e in examples] == [1, 0, 1]
    tokens = component.tokenizer.convert_ids_to_tokens(examples[0]["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert " ".join(tokens[1:-1]).startswith("patients with [ e ] breast cancer [ / e ] were")
    assert component.example_length(examples[0]) == len(examples[0]["input_ids"])

    batch = component.collate(examples)
    longest = max(e["length"] for e in examples)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, longest)
    assert batch["labels"].tolist() == [1, 0, 1]
    assert batch["attention_mask"].sum(dim=1).tolist() == [e["length"] for e in examples]
    output, loss = component.forward(batch, return_loss=True, eval_mode=False)
    assert output["logits"].shape == (3, 2) and loss.ndim == 0 and loss.requires_grad
    output, loss = component.forward(batch, return_loss=False, eval_mode=True)
    assert loss is None and not output["logits"].requires_grad


def test_a_long_context_is_cut_around_the_mention(tiny_bert_dir):
    filler = " ".join(f"word{i}" for i in range(120))
    text = f"{filler} the patient had severe asthma today {filler}"
    doc = make_doc(text, [("severe asthma", "A")])
    component = trainable(tiny_bert_dir, labels=["A", "B"], max_length=24)
    example = component.preprocess(items_from_entities([doc])[0])
    assert example["length"] == 24
    words = component.tokenizer.decode(example["input_ids"][1:-1])
    assert "[ e ] severe asthma [ / e ]" in words
    middle = words.index("[ e ]")
    assert 0.25 < middle / len(words) < 0.6  # the mention sits in the middle of the window


def test_preprocess_errors_name_the_fix(tiny_bert_dir):
    component = trainable(tiny_bert_dir)
    doc = make_doc(mentions=[("breast cancer", "DiseaseClass")])
    with pytest.raises(ValueError, match="not among the labels"):
        component.preprocess(items_from_entities([doc])[0])
    with pytest.raises(ValueError, match="has no gold class"):
        component.preprocess((doc, doc.anns.entities[0]))
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        trainable(tiny_bert_dir, labels=["A"])


def test_save_and_load_round_trip(tiny_bert_dir, tmp_path):
    component = trainable(tiny_bert_dir, context="window", context_chars=50, max_length=64)
    component.save(tmp_path / "model")
    settings = json.loads((tmp_path / "model" / SETTINGS_FILE).read_text())
    assert settings["labels"] == ["Modifier", "SpecificDisease"] and settings["context"] == "window"
    assert settings["context_chars"] == 50 and settings["max_length"] == 64 and settings["attr_label"] == "type"
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "Modifier", "1": "SpecificDisease"}

    other = trainable(tiny_bert_dir, context="window", context_chars=50, max_length=64)
    optimizer = other.create_optimizer(1e-3)
    other.load(tmp_path / "model")
    for a, b in zip(component.model.state_dict().values(), other.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in other.model.parameters()}

    with pytest.raises(ValueError, match="create the component with the checkpoint's settings"):
        trainable(tiny_bert_dir, context="sentence").load(tmp_path / "model")

    classifier = HFSegmentClassifier(tmp_path / "model")
    assert classifier.labels == ["Modifier", "SpecificDisease"] and classifier.attr_label == "type"
    assert classifier.context == ContextSettings("window", 50) and classifier.encoder.max_length == 64


# ---------------------------------------------------------------------- training and inference
def test_training_fits_a_few_items_and_the_reloaded_classifier_agrees(tiny_bert_dir, tmp_path):
    from medkit_exp.text.classification import ClassificationMetricsComputer

    docs = typing_docs()
    items = items_from_entities(docs)
    torch.manual_seed(0)
    component = trainable(tiny_bert_dir, labels=["A", "B"])
    config = TrainerConfig(output_dir=str(tmp_path / "out"), lr=5e-3, epochs=12, batch_size=3, eval_batch_size=8,
                           checkpoint_metric="accuracy", checkpoint_mode="max", checkpoint_period=0, device="cpu")
    trainer = Trainer(component, config, items, items,
                      metrics_computer=ClassificationMetricsComputer(component.id_to_label), callbacks=[])
    history = trainer.train()
    assert history[-1]["eval"]["accuracy"] == 1.0 and history[-1]["eval"]["f1"] == 1.0

    classifier = HFSegmentClassifier(trainer.last_checkpoint / "model", batch_size=4)  # = the in-memory model
    predictions = classifier.predict(items)
    assert [p.label for p in predictions] == [item.gold(None) for item in items]
    assert all(0.5 < p.score <= 1.0 for p in predictions)
    # In-memory model and reloaded checkpoint give the same probabilities.
    batch = component.collate([component.preprocess(item) for item in items])
    probs = torch.softmax(component.forward(batch, return_loss=False, eval_mode=True)[0]["logits"], dim=-1)
    assert [round(p.score, 4) for p in predictions] == [round(float(v), 4) for v in probs.max(dim=-1).values]

    # run() writes the class as an attribute with its score; pairs, items and annotate() all work.
    fresh = typing_docs()
    segments = classifier.run([(doc, doc.anns.entities[0]) for doc in fresh])
    attrs = [segment.get_attrs("type") for segment in segments]
    assert [a[0].value for a in attrs] == ["A", "B", "A", "B", "A", "B"]
    assert all(a[0].metadata["score"] == pytest.approx(p.score) for a, p in zip(attrs, predictions, strict=True))
    classifier.annotate(fresh, replace=True)
    assert all(len(doc.anns.entities[0].get_attrs("type")) == 1 for doc in fresh)


def test_a_plain_hf_model_needs_the_attribute_label(tiny_bert_dir):
    with pytest.raises(ValueError, match="pass attr_label=..."):
        HFSegmentClassifier(tiny_bert_dir)
    classifier = HFSegmentClassifier(tiny_bert_dir, attr_label="kind", context="none")
    segment = Segment("mention", [Span(0, 6)], "asthma")
    [annotated] = classifier.run([segment])
    [attr] = annotated.get_attrs("kind")
    assert attr.value in classifier.labels and 0.0 < attr.metadata["score"] <= 1.0

"""HFEntityMatcherTrainable (preprocess, windows, collate, forward, save/load) and HFEntityMatcher."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from medkit_exp.core.document import Entity, Segment, Span, TextDocument, covered_text
from medkit_exp.text.ner import HFEntityMatcher, HFEntityMatcherTrainable
from medkit_exp.text.ner.tagging import decode_tags

LABELS = ["drug", "problem"]
SENTENCE = "Patient sous paracetamol et morphine pour une douleur thoracique intense. Pas de fièvre ce matin. "
SENTENCE_ENTITIES = [("paracetamol", "drug"), ("morphine", "drug"), ("douleur thoracique", "problem"),
                     ("fièvre", "problem")]


def make_doc(text: str, mentions: list[tuple[str, str]], doc_id: str = "doc") -> TextDocument:
    """A document with an entity at every occurrence of each mention."""
    doc = TextDocument(text, id=doc_id)
    for mention, label in mentions:
        start = text.find(mention)
        assert start >= 0, mention
        while start >= 0:
            doc.anns.add(Entity(label=label, spans=[Span(start, start + len(mention))], text=mention))
            start = text.find(mention, start + 1)
    return doc


def gold_set(doc: TextDocument) -> set[tuple[int, int, str]]:
    return {(e.spans[0].start, e.spans[-1].end, e.label) for e in doc.anns.entities}


def decoded_windows(component: HFEntityMatcherTrainable, doc: TextDocument, examples: list[dict]) -> list[set]:
    """Entity char spans read back from the labels of each example (window)."""
    codec = component.codec
    tokens = codec.tokenize([doc.text])[0]
    windows = codec.windows(tokens)
    assert len(windows) == len(examples)
    units = {u.first_token: u for u in tokens.units(component.tag_subtokens)}
    prefix = len(codec.special.prefix)
    result = []
    for (start, _), example in zip(windows, examples, strict=True):
        labelled = [(i - prefix + start, tag) for i, tag in enumerate(example["labels"]) if tag != -100]
        tags = [component.id_to_label[tag] for _, tag in labelled]
        spans = set()
        for first, end, label in decode_tags(tags, component.tagging_scheme):
            spans.add((units[labelled[first][0]].start, units[labelled[end - 1][0]].end, label))
        result.append(spans)
    return result


def trainable(model_dir, **kwargs) -> HFEntityMatcherTrainable:
    return HFEntityMatcher.make_trainable(model_dir, LABELS, **kwargs)


# ---------------------------------------------------------------------- preprocess
@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@pytest.mark.parametrize("tag_subtokens", [False, True])
def test_preprocess_aligns_entities(tiny_bert_dir, scheme, tag_subtokens):
    component = trainable(tiny_bert_dir, tagging_scheme=scheme, tag_subtokens=tag_subtokens)
    doc = make_doc(SENTENCE, SENTENCE_ENTITIES)
    examples = component.preprocess(doc)
    assert len(examples) == 1
    example = examples[0]
    assert set(example) == {"input_ids", "attention_mask", "labels", "length"}
    assert example["length"] == len(example["input_ids"]) == len(example["labels"]) == len(example["attention_mask"])
    assert example["labels"][0] == -100 and example["labels"][-1] == -100  # [CLS], [SEP]
    tokens = component.tokenizer.convert_ids_to_tokens(example["input_ids"])
    subtoken_labels = [label for token, label in zip(tokens, example["labels"], strict=True) if token.startswith("##")]
    if tag_subtokens:
        assert all(label != -100 for label in subtoken_labels)
    else:
        assert all(label == -100 for label in subtoken_labels)
    assert decoded_windows(component, doc, examples) == [gold_set(doc)]


def test_adjacent_entities_of_one_label_stay_apart(tiny_bert_dir):
    doc = make_doc("Prescrire aspirine paracetamol demain.", [("aspirine", "drug"), ("paracetamol", "drug")])
    for scheme in ("iob2", "bilou"):
        component = trainable(tiny_bert_dir, tagging_scheme=scheme)
        assert decoded_windows(component, doc, component.preprocess(doc)) == [gold_set(doc)]


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_long_document_is_split_into_windows_without_losing_entities(tiny_bert_dir, scheme):
    component = trainable(tiny_bert_dir, tagging_scheme=scheme, tokenizer_max_length=32)
    assert component.max_length == 32 and component.window_stride == 8
    doc = make_doc(SENTENCE * 10, SENTENCE_ENTITIES)
    examples = component.preprocess(doc)
    assert len(examples) >= 10
    assert all(len(e["input_ids"]) <= 32 for e in examples)
    per_window = decoded_windows(component, doc, examples)
    # every entity is fully labelled in some window, and nothing else is labelled
    assert set().union(*per_window) == gold_set(doc)
    assert len(gold_set(doc)) == 40


def test_entity_longer_than_the_overlap_is_labelled_as_far_as_it_goes(tiny_bert_dir):
    component = trainable(tiny_bert_dir, tokenizer_max_length=12)
    mention = "insuffisance cardiaque aigue sévère avec oedème pulmonaire et épanchement pleural bilatéral"
    text = f"Patient admis pour {mention} hier soir."
    doc = make_doc(text, [(mention, "problem")])
    examples = component.preprocess(doc)
    assert len(examples) > 3
    start, end = text.index(mention), text.index(mention) + len(mention)
    pieces = [span for spans in decoded_windows(component, doc, examples) for span in spans]
    assert pieces and all(start <= s < e <= end and label == "problem" for s, e, label in pieces)
    assert min(s for s, _, _ in pieces) == start and max(e for _, e, _ in pieces) == end


def test_collate_pads_to_the_longest_example(tiny_bert_dir):
    component = trainable(tiny_bert_dir)
    examples = component.preprocess(make_doc("Pas de fièvre.", [("fièvre", "problem")]))
    examples += component.preprocess(make_doc(SENTENCE, SENTENCE_ENTITIES))
    short, long_ = (len(e["input_ids"]) for e in examples)
    batch = component.collate(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "token_type_ids"}
    assert batch["input_ids"].shape == (2, long_) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"][0].tolist() == [1] * short + [0] * (long_ - short)
    assert batch["labels"][0, short:].tolist() == [-100] * (long_ - short)
    assert batch["input_ids"][0, short:].tolist() == [component.tokenizer.pad_token_id] * (long_ - short)


def test_forward_switches_train_and_eval(tiny_bert_dir):
    component = trainable(tiny_bert_dir)
    batch = component.collate(component.preprocess(make_doc(SENTENCE, SENTENCE_ENTITIES)))
    output, loss = component.forward(batch, return_loss=True, eval_mode=False)
    assert component.model.training and loss.requires_grad
    assert output["logits"].shape == (*batch["input_ids"].shape, len(component.tags))
    output, loss = component.forward(batch, return_loss=False, eval_mode=True)
    assert not component.model.training and loss is None and not output["logits"].requires_grad


def test_create_optimizer_is_adamw_without_weight_decay(tiny_bert_dir):
    optimizer = trainable(tiny_bert_dir).create_optimizer(1e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["weight_decay"] == 0.0 and optimizer.defaults["lr"] == 1e-3


def test_exposes_tags_for_the_metrics(tiny_bert_dir):
    component = trainable(tiny_bert_dir, tagging_scheme="bilou")
    assert component.id_to_label[0] == "O" and len(component.id_to_label) == 9
    assert component.label_to_id["U-drug"] == 4 and component.tagging_scheme == "bilou"
    assert component.device == torch.device("cpu")


# ---------------------------------------------------------------------- errors
def test_unknown_entity_label_is_rejected(tiny_bert_dir):
    doc = make_doc("Pas de fièvre.", [("fièvre", "symptom")])
    with pytest.raises(ValueError, match=r"'symptom'.*\['drug', 'problem'\]"):
        trainable(tiny_bert_dir).preprocess(doc)


def test_discontinuous_entity_is_rejected(tiny_bert_dir):
    text = "lobe supérieur et inférieur"
    doc = TextDocument(text, id="d")
    doc.anns.add(Entity(label="problem", spans=[Span(0, 4), Span(18, 27)], text="lobe inférieur"))
    with pytest.raises(ValueError, match="discontinuous"):
        trainable(tiny_bert_dir).preprocess(doc)


def test_slow_tokenizer_is_rejected(tiny_bert_dir, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: SimpleNamespace(is_fast=False))
    with pytest.raises(ValueError, match="not a fast tokenizer.*tokenizer.json"):
        trainable(tiny_bert_dir)


def test_stride_must_fit_the_window(tiny_bert_dir):
    with pytest.raises(ValueError, match="window_stride"):
        trainable(tiny_bert_dir, tokenizer_max_length=16, window_stride=14)


# ---------------------------------------------------------------------- save / load
def test_save_then_reload(tiny_bert_dir, tmp_path):
    component = trainable(tiny_bert_dir, tagging_scheme="bilou", tokenizer_max_length=64, window_stride=10)
    with torch.no_grad():
        component.model.classifier.bias.fill_(0.5)
    component.save(tmp_path)
    settings = json.loads((tmp_path / "medkit_exp_ner.json").read_text())
    assert settings["tagging_scheme"] == "bilou" and settings["labels"] == LABELS
    assert settings["max_length"] == 64 and settings["window_stride"] == 10 and settings["tag_subtokens"] is False
    assert json.loads((tmp_path / "config.json").read_text())["id2label"]["4"] == "U-drug"

    fresh = trainable(tiny_bert_dir, tagging_scheme="bilou", tokenizer_max_length=64)
    fresh.load(tmp_path)
    assert torch.equal(fresh.model.classifier.bias, component.model.classifier.bias)

    matcher = HFEntityMatcher(model=tmp_path)
    assert matcher.tagging_scheme == "bilou" and matcher.labels == LABELS
    assert matcher.codec.max_length == 64 and matcher.codec.stride == 10
    assert matcher.codec.tags == component.tags

    # resuming from the checkpoint keeps its head
    again = HFEntityMatcher.make_trainable(tmp_path, LABELS, tagging_scheme="bilou")
    assert torch.equal(again.model.classifier.bias, component.model.classifier.bias)


def test_load_rejects_a_checkpoint_with_other_tags(tiny_bert_dir, tmp_path):
    trainable(tiny_bert_dir, tagging_scheme="bilou").save(tmp_path)
    with pytest.raises(ValueError, match="trained with tags"):
        trainable(tiny_bert_dir).load(tmp_path)


def test_matcher_reads_a_plain_hf_model(tiny_bert_dir, tmp_path):
    component = trainable(tiny_bert_dir, tagging_scheme="bilou")
    component.model.save_pretrained(tmp_path)
    component.tokenizer.save_pretrained(tmp_path)  # no medkit_exp_ner.json
    matcher = HFEntityMatcher(model=tmp_path)
    assert matcher.tagging_scheme == "bilou" and matcher.labels == LABELS and matcher.codec.max_length == 512
    with pytest.raises(ValueError, match="LABEL_0"):
        HFEntityMatcher(model=tiny_bert_dir)  # its head has no IOB tags


# ---------------------------------------------------------------------- inference
class OracleModel(torch.nn.Module):
    """Gives each token id a fixed tag (O otherwise): a model whose predictions we know."""

    def __init__(self, token_tags: dict[int, int], nb_tags: int) -> None:
        super().__init__()
        self.token_tags = token_tags
        self.nb_tags = nb_tags

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        tag_ids = torch.zeros_like(input_ids)
        for token_id, tag_id in self.token_tags.items():
            tag_ids[input_ids == token_id] = tag_id
        return SimpleNamespace(logits=torch.nn.functional.one_hot(tag_ids, self.nb_tags).float() * 6.0)


def oracle_matcher(model_dir, tmp_path, scheme: str, **kwargs) -> HFEntityMatcher:
    """A matcher whose model tags the first sub-token of SENTENCE's entity words."""
    trainable(model_dir, tagging_scheme=scheme).save(tmp_path)
    matcher = HFEntityMatcher(model=tmp_path, **kwargs)
    first = {w: matcher.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in
             ("paracetamol", "morphine", "douleur", "thoracique", "fièvre")}
    if scheme == "iob2":
        tags = {"paracetamol": "B-drug", "morphine": "B-drug", "douleur": "B-problem",
                "thoracique": "I-problem", "fièvre": "B-problem"}
    else:
        tags = {"paracetamol": "U-drug", "morphine": "U-drug", "douleur": "B-problem",
                "thoracique": "L-problem", "fièvre": "U-problem"}
    label_to_id = {tag: i for i, tag in matcher.codec.id_to_label.items()}
    matcher.model = OracleModel({first[w]: label_to_id[t] for w, t in tags.items()}, len(label_to_id))
    return matcher


def as_set(entities: list[Entity]) -> set[tuple[int, int, str]]:
    return {(e.spans[0].start, e.spans[-1].end, e.label) for e in entities}


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_matcher_reads_long_texts_through_windows(tiny_bert_dir, tmp_path, scheme):
    matcher = oracle_matcher(tiny_bert_dir, tmp_path, scheme, tokenizer_max_length=16, batch_size=4)
    doc = make_doc(SENTENCE * 10, SENTENCE_ENTITIES)
    short = make_doc(SENTENCE, SENTENCE_ENTITIES, "short")
    empty = TextDocument("", id="empty")
    predicted = matcher.predict([doc, empty, short])
    assert [len(p) for p in predicted] == [40, 0, 4]
    assert as_set(predicted[0]) == gold_set(doc) and as_set(predicted[2]) == gold_set(short)
    for entity in predicted[0]:
        assert entity.text == covered_text(doc.text, entity.spans) and entity.text == entity.text.strip()
        assert 0.9 < entity.score <= 1.0
        doc.anns.add(entity)  # validated against the text
    assert len(matcher.run([doc, short])) == 44


def test_matcher_on_segments_gives_document_spans(tiny_bert_dir, tmp_path):
    from medkit_exp.core.document import Attribute

    matcher = oracle_matcher(tiny_bert_dir, tmp_path, "iob2", labels_map={"drug": "medication"}, attrs_to_copy=["lang"])
    text = "Intro. Patient sous morphine. Rien. Pas de fièvre ce matin."
    doc = TextDocument(text, id="d")
    first = Segment(label="sentence", spans=[Span(7, 29)], text=text[7:29], attrs=[Attribute("lang", "fr")])
    pieces = [Span(7, 29), Span(36, 59)]
    joined = Segment(label="sentences", spans=pieces, text=covered_text(text, pieces))
    first_entities, joined_entities = matcher.predict([first, joined])
    assert [(e.label, e.text, e.spans) for e in first_entities] == [("medication", "morphine", [Span(20, 28)])]
    assert first_entities[0].get_attrs("lang")[0].value == "fr"
    assert [(e.label, e.text, e.spans) for e in joined_entities] == [
        ("medication", "morphine", [Span(20, 28)]),
        ("problem", "fièvre", [Span(43, 49)]),
    ]
    for entity in first_entities + joined_entities:
        doc.anns.add(entity)


# ---------------------------------------------------------------------- end to end
E2E_SENTENCES = [
    ("Le patient prend du paracetamol pour sa fièvre.", [("paracetamol", "drug"), ("fièvre", "problem")]),
    ("On donne de l'aspirine contre la douleur.", [("aspirine", "drug"), ("douleur", "problem")]),
    ("Elle a une toux sans fièvre.", [("toux", "problem"), ("fièvre", "problem")]),
    ("Arrêt du paracetamol ce matin.", [("paracetamol", "drug")]),
    ("Douleur thoracique traitée par aspirine.", [("Douleur thoracique", "problem"), ("aspirine", "drug")]),
    ("Aucun traitement ce jour.", []),
]


def test_train_save_reload_and_find_the_gold_entities(tiny_bert_dir, tmp_path):
    from medkit_exp.text.metrics import ExactSpanEvaluator, SeqEvalMetricsComputer
    from medkit_exp.training import Trainer, TrainerConfig

    docs = [make_doc(text, mentions, f"d{i}") for i, (text, mentions) in enumerate(E2E_SENTENCES)]
    component = HFEntityMatcher.make_trainable(tiny_bert_dir, LABELS)
    config = TrainerConfig(
        output_dir=str(tmp_path / "run"), lr=5e-3, epochs=25, batch_size=6, seed=0, device="cpu",
        checkpoint_metric="f1", checkpoint_mode="max",
    )
    history = Trainer(
        component, config, train_data=docs, eval_data=docs, metrics_computer=SeqEvalMetricsComputer(component),
        callbacks=[],
    ).train()
    assert history[-1]["eval"]["f1"] == 1.0 and history[-1]["eval"]["loss"] < history[0]["eval"]["loss"]

    component.save(tmp_path / "model")
    matcher = HFEntityMatcher(model=tmp_path / "model")
    predicted = matcher.predict(docs)
    for doc, entities in zip(docs, predicted, strict=True):
        assert {(e.spans[0].start, e.spans[0].end, e.label, e.text) for e in entities} == {
            (e.spans[0].start, e.spans[0].end, e.label, e.text) for e in doc.anns.entities
        }
    assert "paracetamol" in {e.text for e in predicted[0]}  # a word of several sub-tokens
    assert ExactSpanEvaluator().compute(docs, predicted)["f1"] == 1.0


def test_attention_dropout_is_set_on_the_model_and_saved(tiny_bert_dir, tmp_path):
    component = HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["D"], attention_dropout=0.0)
    assert component.model.config.attention_probs_dropout_prob == 0.0
    default = HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["D"])
    assert default.model.config.attention_probs_dropout_prob == 0.1  # the model's own when unset
    component.save(tmp_path / "ner")
    assert json.loads((tmp_path / "ner" / "config.json").read_text())["attention_probs_dropout_prob"] == 0.0
    with pytest.raises(ValueError, match=r"attention_dropout must be in \[0, 1\), got 1.5"):
        HFEntityMatcher.make_trainable(tiny_bert_dir, labels=["D"], attention_dropout=1.5)


def test_hf_ner_with_split_sentences_trains_on_each_sentence_of_a_document(tiny_bert_dir):
    """``component.split_sentences``: a document's examples are those of its sentences, in order."""
    from medkit_exp.io.sentences import split_into_sentences
    from medkit_exp.text.ner.experiment import hf_ner

    text = "Fever was seen. The patient had a cough. No rash."
    doc = TextDocument(text=text, id="d")
    for word, label in (("Fever", "problem"), ("cough", "problem")):
        start = text.index(word)
        doc.anns.add(Entity(label=label, spans=[Span(start, start + len(word))], text=word))
    whole = hf_ner(str(tiny_bert_dir), train_data=[doc])
    by_sentence = hf_ner(str(tiny_bert_dir), train_data=[doc], split_sentences=True)
    assert whole.labels == by_sentence.labels == ["problem"]  # found in the training documents

    sentences = split_into_sentences([doc])
    assert len(sentences) == 3
    expected = [window for sentence in sentences for window in whole.preprocess(sentence)]
    assert by_sentence.preprocess(doc) == expected
    assert len(whole.preprocess(doc)) == 1  # the whole short document fits one window


def test_the_matcher_takes_a_checkpoint_folder_as_its_model(tiny_bert_dir, tmp_path):
    """As medkit users write it: HFEntityMatcher(model=<checkpoint folder>), the model one level down."""
    component = HFEntityMatcher.make_trainable(str(tiny_bert_dir), labels=["problem"])
    checkpoint = tmp_path / "checkpoint_001"
    component.save(checkpoint / "model")
    matcher = HFEntityMatcher(model=checkpoint)
    assert matcher.model_name_or_path == str(checkpoint / "model") and matcher.labels == ["problem"]

"""medkit users move over by changing their imports.

The first test is the training part of medkit's fine-tuning tutorial ("Fine-tuning a
Transformers model with medkit") written as a medkit user writes it, ``medkit`` replaced by
``medkit_exp`` in the imports and nothing else. The second runs medkit-lib's own component,
metrics and callbacks under medkit_exp's Trainer (skipped where medkit-lib is not installed).
"""

from __future__ import annotations

from glob import glob

import pytest
import torch
from test_ner_component import E2E_SENTENCES as SENTENCES  # a tiny corpus the tiny model learns

LABELS = ["drug", "problem"]


def load_docs(TextDocument: type, Entity: type, Span: type) -> list:
    """The sentences as documents of medkit's or medkit_exp's classes, built as the tutorial builds them."""
    docs = []
    for text, mentions in SENTENCES:
        doc = TextDocument(text=text)
        for mention, label in mentions:
            start = text.index(mention)
            doc.anns.add(Entity(label=label, spans=[Span(start, start + len(mention))], text=mention))
        docs.append(doc)
    return docs


def test_medkits_fine_tuning_tutorial_runs_with_medkit_exp_in_its_imports(tiny_bert_dir, tmp_path):
    from medkit_exp.core.text import Entity, Span, TextDocument
    from medkit_exp.text.metrics.ner import SeqEvalEvaluator, SeqEvalMetricsComputer
    from medkit_exp.text.ner.hf_entity_matcher import HFEntityMatcher
    from medkit_exp.training import Trainer, TrainerCallback, TrainerConfig

    train_docs = dev_docs = test_docs = load_docs(TextDocument, Entity, Span)
    DEVICE = -1
    torch.manual_seed(0)  # the new classification head: the same whatever ran before

    trainable_matcher = HFEntityMatcher.make_trainable(
        model_name_or_path=str(tiny_bert_dir),
        labels=LABELS,
        tagging_scheme="iob2",
        tokenizer_max_length=64,
        device=DEVICE,
    )
    CHECKPOINT_DIR = str(tmp_path / "checkpoints/")
    trainer_config = TrainerConfig(
        output_dir=CHECKPOINT_DIR,
        learning_rate=1e-2,
        nb_training_epochs=15,
        batch_size=6,
        seed=0,
    )
    ner_metrics_computer = SeqEvalMetricsComputer(
        id_to_label=trainable_matcher.id_to_label,
        tagging_scheme=trainable_matcher.tagging_scheme,
        return_metrics_by_label=False,
    )

    class EpochLogger(TrainerCallback):
        """A callback with medkit's hook signatures."""

        def __init__(self):
            self.events = []

        def on_train_begin(self, config):
            self.events.append(("train_begin", config.nb_training_epochs, config.learning_rate))

        def on_epoch_end(self, metrics, epoch, epoch_duration):
            self.events.append(("epoch_end", epoch, metrics["eval"]["macro_f1-score"]))

        def on_step_end(self, step_idx, nb_batches, phase):
            self.events.append(("step_end", phase))

        def on_save(self, checkpoint_dir):
            self.events.append(("save", str(checkpoint_dir)))

    logger = EpochLogger()
    trainer = Trainer(
        config=trainer_config,
        component=trainable_matcher,
        train_data=train_docs,
        eval_data=dev_docs,
        metrics_computer=ner_metrics_computer,
        callback=logger,
    )
    history = trainer.train()

    recall = [epoch["eval"]["macro_recall"] for epoch in history]
    precision = [epoch["eval"]["macro_precision"] for epoch in history]
    f1_score = [epoch["eval"]["macro_f1-score"] for epoch in history]
    assert len(recall) == len(precision) == len(f1_score) == 15
    assert f1_score[-1] == 1.0 and f1_score[0] < 1.0
    assert history[-1]["eval"]["support"] == 9 and "accuracy" in history[-1]["eval"]
    assert logger.events[0] == ("train_begin", 15, 1e-2)
    assert [e[1] for e in logger.events if e[0] == "epoch_end"] == list(range(1, 16))
    assert ("step_end", "train") in logger.events and ("step_end", "eval") in logger.events

    checkpoint_path = sorted(glob(CHECKPOINT_DIR + "/checkpoint_*"))[-1]
    assert checkpoint_path == str(trainer.last_checkpoint) == [e[1] for e in logger.events if e[0] == "save"][-1]
    trained_matcher = HFEntityMatcher(model=checkpoint_path, device=DEVICE)
    predicted_entities = []
    for test_doc in test_docs:
        entities = trained_matcher.run([test_doc.raw_segment])
        predicted_entities.append(entities)
    assert [{(e.label, e.text) for e in entities} for entities in predicted_entities] == [
        {(label, mention) for mention, label in mentions} for _, mentions in SENTENCES]

    ner_metrics_evaluator = SeqEvalEvaluator(tagging_scheme="iob2", return_metrics_by_label=False)
    metrics = ner_metrics_evaluator.compute(test_docs, predicted_entities)
    assert metrics == {"accuracy": 1.0, "macro_f1-score": 1.0, "macro_precision": 1.0, "macro_recall": 1.0,
                       "support": 9}


def test_medkit_libs_component_metrics_and_callbacks_train_under_medkit_exps_trainer(tiny_bert_dir, tmp_path):
    """medkit-lib's HFEntityMatcherTrainable, SeqEvalMetricsComputer, TrainerConfig and callbacks,
    medkit_exp's Trainer; the checkpoint then reloads into medkit-lib's HFEntityMatcher."""
    pytest.importorskip("medkit.training", reason="medkit-lib is not installed")
    from medkit.core.text import Entity, Span, TextDocument
    from medkit.text.metrics.ner import SeqEvalMetricsComputer
    from medkit.text.ner.hf_entity_matcher import HFEntityMatcher
    from medkit.training import DefaultPrinterCallback, TrainerCallback, TrainerConfig

    from medkit_exp.training import Trainer

    docs = load_docs(TextDocument, Entity, Span)
    torch.manual_seed(0)
    # tag_subtokens=True: medkit-lib's matcher reads every sub-token ("max"); trained on first
    # sub-tokens only, it would miss multi-piece words, under medkit's own Trainer as well.
    trainable = HFEntityMatcher.make_trainable(model_name_or_path=str(tiny_bert_dir), labels=LABELS,
                                               tagging_scheme="iob2", tag_subtokens=True, tokenizer_max_length=64,
                                               device=-1)
    config = TrainerConfig(output_dir=str(tmp_path / "checkpoints"), learning_rate=1e-2, nb_training_epochs=15,
                           batch_size=6, seed=0, checkpoint_metric="macro_f1-score", minimize_checkpoint_metric=False)

    class Recorder(TrainerCallback):
        """Overrides some hooks; medkit's base class answers the others (its on_epoch_end takes epoch_time)."""

        def __init__(self):
            self.config = None
            self.steps = 0
            self.saved = []

        def on_train_begin(self, config):
            self.config = config

        def on_step_end(self, step_idx, nb_batches, phase):
            self.steps += 1

        def on_save(self, checkpoint_dir):
            self.saved.append(checkpoint_dir)

    recorder = Recorder()
    trainer = Trainer(
        config=config, component=trainable, train_data=docs, eval_data=docs,
        metrics_computer=SeqEvalMetricsComputer(id_to_label=trainable.id_to_label, tagging_scheme="iob2",
                                                return_metrics_by_label=False),
        callbacks=[DefaultPrinterCallback()], callback=recorder,
    )
    history = trainer.train()

    assert len(history) == 15 and history[-1]["eval"]["macro_f1-score"] == 1.0
    assert trainer.config.lr == 1e-2 and trainer.config.checkpoint_mode == "max"
    assert recorder.config.nb_training_epochs == 15 and recorder.config.minimize_checkpoint_metric is False
    assert recorder.steps == 15 * 2 and recorder.saved[-1] == trainer.last_checkpoint  # one train, one eval batch
    matcher = HFEntityMatcher(model=str(trainer.best_checkpoint / "model"), device=-1)
    found = [{(e.label, e.text) for e in matcher.run([doc.raw_segment])} for doc in docs]
    assert found == [{(label, mention) for mention, label in mentions} for _, mentions in SENTENCES]


# ---------------------------------------------------------------------- the pieces, one by one
def test_trainer_config_takes_medkits_names_beside_its_own():
    from dataclasses import asdict

    from medkit_exp.training import TrainerConfig

    config = TrainerConfig(output_dir="ckpt", learning_rate=2e-5, nb_training_epochs=4, gradient_accumulation_steps=2,
                           dataloader_nb_workers=1, minimize_checkpoint_metric=False, batch_size=5, seed=3,
                           checkpoint_metric="macro_f1-score", do_metrics_in_training=True)
    assert (config.lr, config.epochs, config.grad_accum_steps, config.num_workers, config.checkpoint_mode) == (
        2e-5, 4, 2, 1, "max")
    assert (config.learning_rate, config.nb_training_epochs, config.minimize_checkpoint_metric) == (2e-5, 4, False)
    config.nb_training_epochs = 6  # medkit code may set them too
    assert config.epochs == 6
    assert "learning_rate" not in asdict(config) and asdict(config)["lr"] == 2e-5  # each setting logged once
    assert TrainerConfig(lr=1e-4, learning_rate=1e-4).lr == 1e-4  # two names, one value: fine

    with pytest.raises(ValueError, match=r"^TrainerConfig got lr=0.001 and learning_rate=0.0001, two names of one "
                                         r"setting with different values: give only one of them$"):
        TrainerConfig(lr=1e-3, learning_rate=1e-4)
    with pytest.raises(ValueError, match="got checkpoint_mode='min' and minimize_checkpoint_metric=False"):
        TrainerConfig(checkpoint_mode="min", minimize_checkpoint_metric=False)
    with pytest.raises(ValueError, match="minimize_checkpoint_metric must be True or False, got 'max'"):
        TrainerConfig(minimize_checkpoint_metric="max")


def test_a_config_object_with_medkits_attributes_configures_the_trainer(tmp_path):
    """What a medkit ``TrainerConfig`` is to the Trainer: an object whose settings are read by name."""
    from types import SimpleNamespace

    from support.dummy_component import AccuracyMetrics, DummyClassifier, make_data

    from medkit_exp.training import Trainer

    medkit_config = SimpleNamespace(
        output_dir=str(tmp_path / "out"), learning_rate=0.05, nb_training_epochs=2, dataloader_nb_workers=0,
        batch_size=8, seed=None, gradient_accumulation_steps=2, do_metrics_in_training=True, metric_to_track_lr="loss",
        checkpoint_period=1, checkpoint_metric="accuracy", minimize_checkpoint_metric=False)
    trainer = Trainer(DummyClassifier(), medkit_config, make_data(32, seed=1), make_data(16, seed=2),
                      metrics_computer=AccuracyMetrics(), callbacks=[])
    history = trainer.train()
    config = trainer.config
    assert (config.lr, config.epochs, config.batch_size, config.grad_accum_steps, config.checkpoint_metric,
            config.checkpoint_mode, config.seed) == (0.05, 2, 8, 2, "accuracy", "max", 0)
    assert len(history) == 2 and "accuracy" in history[0]["train"]  # do_metrics_in_training was read
    assert sorted(glob(medkit_config.output_dir + "/checkpoint_*"))[-1] == str(trainer.last_checkpoint)
    with pytest.raises(TypeError, match="config must be a TrainerConfig \\(medkit_exp's or medkit's\\), got object"):
        Trainer(DummyClassifier(), object(), make_data(8), callbacks=[])


def test_components_take_medkits_device_numbers():
    from medkit_exp.text.hf_model import as_device

    assert as_device(-1) == torch.device("cpu") and as_device(1) == torch.device("cuda", 1)
    assert as_device("cpu") == torch.device("cpu") and as_device(torch.device("cuda:0")) == torch.device("cuda:0")


def test_medkit_names_and_scores_match_medkit_libs_own():
    """The same tags give the same keys and values as medkit-lib's metrics computer and evaluator."""
    pytest.importorskip("medkit.text.metrics.ner", reason="medkit-lib is not installed")
    import random

    import medkit.core.text
    from medkit.text.metrics import ner as medkit_ner

    import medkit_exp.core.text
    from medkit_exp.text.metrics import ner

    rng = random.Random(0)
    tags = ["O", "B-drug", "I-drug", "B-problem", "I-problem"]
    y_true = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(30)]  # I- without B- included
    data = {"y_true": y_true, "y_pred": [[rng.choice(tags) for _ in seq] for seq in y_true]}
    for by_label in (False, True):
        for average in ("macro", "weighted"):
            ours = ner.SeqEvalMetricsComputer(dict(enumerate(tags)), "iob2", by_label, average).compute(data)
            theirs = medkit_ner.SeqEvalMetricsComputer(dict(enumerate(tags)), "iob2", by_label, average).compute(data)
            assert ours == pytest.approx(theirs, abs=1e-12)

    def documents(text_module):
        return load_docs(text_module.TextDocument, text_module.Entity, text_module.Span)[:1]

    def predictions(text_module):
        text = SENTENCES[0][0]
        spans = {word: text_module.Span(text.index(word), text.index(word) + len(word))
                 for word in ("paracetamol", "patient prend")}
        return [[text_module.Entity(label="drug", spans=[span], text=word) for word, span in spans.items()]]

    for scheme in ("iob2", "bilou"):
        ours = ner.SeqEvalEvaluator(tagging_scheme=scheme, labels_remapping={"drug": "DRUG"}).compute(
            documents(medkit_exp.core.text), predictions(medkit_exp.core.text))
        theirs = medkit_ner.SeqEvalEvaluator(tagging_scheme=scheme, labels_remapping={"drug": "DRUG"}).compute(
            documents(medkit.core.text), predictions(medkit.core.text))
        assert ours == pytest.approx(theirs, abs=1e-12) and "DRUG_f1-score" in ours

    # With a HF tokenizer its tokens are tagged: the same entity scores ([CLS]/[SEP], which
    # medkit-lib also tags, change only the accuracy).
    from conftest import MINILM_DIR
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MINILM_DIR))

    def first_mentions_as_drugs(text_module):
        return [[text_module.Entity(label="drug", spans=e.spans[:1], text=e.text) for e in doc.anns.entities[:1]]
                for doc in load_docs(text_module.TextDocument, text_module.Entity, text_module.Span)]

    ours = ner.SeqEvalEvaluator(tagging_scheme="iob2", tokenizer=tokenizer).compute(
        load_docs(medkit_exp.core.text.TextDocument, medkit_exp.core.text.Entity, medkit_exp.core.text.Span),
        first_mentions_as_drugs(medkit_exp.core.text))
    theirs = medkit_ner.SeqEvalEvaluator(tagging_scheme="iob2", tokenizer=tokenizer).compute(
        load_docs(medkit.core.text.TextDocument, medkit.core.text.Entity, medkit.core.text.Span),
        first_mentions_as_drugs(medkit.core.text))
    assert ours.pop("accuracy") < 1.0 and 0 < ours["macro_f1-score"] < 1
    theirs.pop("accuracy")
    assert ours == pytest.approx(theirs, abs=1e-12)

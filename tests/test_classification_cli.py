"""End-to-end: `python -m medkit_exp component=hf_segment_classifier` on a small JSONL corpus."""

from __future__ import annotations

import re

import pytest
from test_cli import client_for, run_cli


def write_corpus(root):
    """Train/dev/test JSONL files of demo documents (entities labelled problem, treatment, test)."""
    from medkit_exp.io import load_demo_corpus, write_jsonl

    demo = load_demo_corpus()
    for split, count in (("train", 40), ("dev", 12), ("test", 12)):
        write_jsonl(demo[split][:count], root / f"{split}.jsonl")
    return root


def test_segment_classification_run_logs_test_scores_and_baseline(workdir, tiny_bert_dir):
    data = write_corpus(workdir / "data")
    result = run_cli([
        "component=hf_segment_classifier", "metrics=classification", "data=jsonl", f"data.root={data}",
        f"component.model={tiny_bert_dir}", "component.context=window", "component.context_chars=60",
        "trainer.epochs=3", "trainer.lr=2e-3", "trainer.batch_size=8", "trainer.checkpoint_metric=f1",
        "threads=1", "callbacks.progress_bars=false", "tracking.experiment=typing", "hydra.run.dir=out",
    ], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "macro_f1=" in result.stderr  # the printer's epoch lines
    run_id = re.search(r"MLflow run\s+: (\w+)", result.stdout).group(1)
    run = client_for(workdir).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["component"] == "hf_segment_classifier"
    metrics = run.data.metrics
    for key in ("test_problem_f1", "eval_macro_f1", "eval_accuracy"):
        assert key in metrics, key

    from collections import Counter

    from medkit_exp.io import load_jsonl
    from medkit_exp.text.classification import HFSegmentClassifier, items_from_entities

    # The baseline predicts the most frequent train class for every test mention.
    train = Counter(e.label for doc in load_jsonl(data / "train.jsonl").documents for e in doc.anns.entities)
    majority = max(sorted(train), key=train.get)
    test_items = items_from_entities(load_jsonl(data / "test.jsonl").documents)
    gold = [item.segment.label for item in test_items]
    share = gold.count(majority) / len(gold)
    classes = set(gold) | {majority}  # macro F1 averages the classes seen (as for the model)
    # The train and test splits have different majorities: a baseline taken from the test labels scores otherwise.
    assert majority != Counter(gold).most_common(1)[0][0] and 0 < share < 1 and len(classes) == 3
    assert metrics["test_majority_accuracy"] == pytest.approx(share)
    assert metrics["test_majority_macro_f1"] == pytest.approx(2 * share / (1 + share) / len(classes))

    # The model's test scores are those of the best checkpoint on the test mentions.
    best = re.search(r"checkpoint\s+: (\S+)", result.stdout).group(1)
    classifier = HFSegmentClassifier(best)
    assert classifier.labels == ["problem", "test", "treatment"] and classifier.context.context == "window"
    predicted = [p.label for p in classifier.predict(test_items)]
    right = sum(p == g for p, g in zip(predicted, gold, strict=True))
    assert metrics["test_accuracy"] == pytest.approx(right / len(gold))
    assert set(predicted) != {majority}, "the model predicts like the baseline: the two would not be told apart"
    assert metrics["test_f1"] == metrics["test_macro_f1"]
    assert metrics["test_items"] == len(gold)


def test_segment_classification_needs_classification_metrics(workdir, tiny_bert_dir):
    data = write_corpus(workdir / "data")
    result = run_cli(["component=hf_segment_classifier", "data=jsonl", f"data.root={data}",
                      f"component.model={tiny_bert_dir}", "tracking=none"], workdir, timeout=120)
    assert result.returncode == 2
    assert "use metrics=classification" in result.stderr and len(result.stderr.strip().splitlines()) == 1

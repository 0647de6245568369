"""The shipped demo corpus: shape, labels, determinism, and held-out vocabulary in dev/test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from medkit_exp.io import DEMO_LABELS, corpus_digest, load_demo_corpus

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_demo_corpus", REPO / "scripts" / "make_demo_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shape_and_labels():
    splits = load_demo_corpus()
    assert {k: len(v) for k, v in splits.items()} == {"train": 280, "dev": 60, "test": 60}
    docs = [d for v in splits.values() for d in v]
    assert len({d.id for d in docs}) == 400
    assert {e.label for d in docs for e in d.anns.entities} == set(DEMO_LABELS)
    assert all(d.metadata["split"] == k for k, v in splits.items() for d in v)
    assert sum(not d.anns.entities for d in splits["train"]) >= 20
    assert sum(len(d.anns.entities) >= 3 for d in splits["train"]) >= 20
    assert any(" " in e.text for d in docs for e in d.anns.entities)  # multi-word terms


def test_dev_and_test_hold_unseen_terms():
    splits = load_demo_corpus()
    seen = {e.text.lower() for d in splits["train"] for e in d.anns.entities}
    for split in ("dev", "test"):
        ents = [e for d in splits[split] for e in d.anns.entities]
        unseen = sum(e.text.lower() not in seen for e in ents)
        assert 0.15 * len(ents) < unseen < 0.6 * len(ents)


def test_deterministic_and_shipped_file_is_current():
    first, second = load_demo_corpus(), load_demo_corpus()
    assert [corpus_digest(v) for v in first.values()] == [corpus_digest(v) for v in second.values()]
    script = _load_script()
    assert len(script.TEMPLATES.split("\n")) >= 30
    assert script.render(script.build_records()) == script.OUTPUT.read_text(encoding="utf-8"), (
        "demo.jsonl is stale: run python scripts/make_demo_corpus.py"
    )

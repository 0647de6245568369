"""Guards against quadratic paths in what scales with document and corpus size.

Time is not measured (these machines are shared and noisy): the work is counted instead, as
the lines of medkit_exp code executed (`sys.settrace`) and the characters sliced out of the
document's text. Both must grow in proportion to the document: a text 4x longer may cost at
most `MAX_GROWTH` x more, where a path that rescans the document per sentence, per entity or
per window would cost about 16x more.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from medkit_exp.core.document import Entity, Span, TextDocument
from medkit_exp.io import demo_corpus

GROWTH = 4  # the long document is this many times the short one
MAX_GROWTH = GROWTH * 1.25  # linear, with room for fixed costs and per-size constants; quadratic gives ~16
PACKAGE_DIR = str(Path(__import__("medkit_exp").__file__).resolve().parent)


class CountingText(str):
    """A document text that counts the characters sliced out of it."""

    sliced = 0

    def __getitem__(self, key):  # type: ignore[override]
        piece = str.__getitem__(self, key)
        if isinstance(key, slice):
            CountingText.sliced += len(piece)
        return piece


def _concatenated(docs: list[TextDocument], doc_id: str) -> TextDocument:
    """One document made of ``docs`` (entities shifted), its text a `CountingText`."""
    pieces, entities, offset = [], [], 0
    for doc in docs:
        for entity in doc.anns.entities:
            spans = [Span(s.start + offset, s.end + offset) for s in entity.spans]
            entities.append(Entity(label=entity.label, spans=spans, text=entity.text))
        pieces.append(doc.text)
        offset += len(doc.text) + 1
    return TextDocument(text=CountingText(" ".join(pieces)), id=doc_id, anns=entities)


def _noisy_predictions(doc: TextDocument, seed: int = 0) -> list[Entity]:
    """Gold entities with misses, boundary shifts, wrong labels and spurious spans."""
    rng = random.Random(seed)
    labels = sorted({e.label for e in doc.anns.entities})
    text = str(doc.text)
    predicted = []
    for entity in doc.anns.entities:
        start, end = entity.start, entity.end
        draw = rng.random()
        if draw < 0.15:
            continue
        if draw < 0.3:
            start = max(0, start - 2)
        label = rng.choice(labels) if rng.random() < 0.1 else entity.label
        predicted.append(Entity(label=label, spans=[Span(start, end)], text=text[start:end], score=0.9))
    for _ in range(len(text) // 300):
        start = rng.randrange(0, len(text) - 10)
        end = start + rng.randrange(1, 10)
        predicted.append(Entity(label=rng.choice(labels), spans=[Span(start, end)], text=text[start:end], score=0.5))
    return predicted


def _work(func) -> tuple[int, int]:
    """(lines of medkit_exp code executed, characters sliced from document texts) by ``func()``."""
    lines = 0

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return None  # not our code: do not trace inside it
        return local

    def local(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return local

    CountingText.sliced = 0
    sys.settrace(tracer)
    try:
        func()
    finally:
        sys.settrace(None)
    return lines, CountingText.sliced


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from conftest import MINILM_DIR
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MINILM_DIR))


@pytest.fixture(scope="module")
def short_and_long() -> tuple[TextDocument, TextDocument]:
    docs = list(demo_corpus()["train"])
    return _concatenated(docs[:60], "short"), _concatenated(docs[: 60 * GROWTH], "long")


def _assert_linear(name: str, short_work: tuple[int, int], long_work: tuple[int, int]) -> None:
    for what, short, long in zip(("lines executed", "characters sliced"), short_work, long_work, strict=True):
        if short == 0:
            continue
        assert long / short <= MAX_GROWTH, (
            f"{name}: {what} grew {long / short:.1f}x for a document {GROWTH}x longer ({short} -> {long}): "
            "a path rescans the document")


def _report(doc: TextDocument, folder: Path) -> None:
    from medkit_exp.text.error_report import write_error_report
    from medkit_exp.text.ner.evaluation import entity_errors

    write_error_report(entity_errors([doc], [_noisy_predictions(doc)]), folder, "errors", {})


def _scores(doc: TextDocument) -> None:
    from medkit_exp.text.ner.evaluation import score_predictions

    score_predictions([doc], [_noisy_predictions(doc)])


def _sentences(doc: TextDocument) -> None:
    from medkit_exp.io.sentences import split_into_sentences

    split_into_sentences([doc])


def _reader_overlaps(doc: TextDocument) -> None:
    from medkit_exp.io.corpus import find_overlap, resolve_overlaps

    entities = doc.anns.entities + _noisy_predictions(doc)  # many overlapping pairs
    resolve_overlaps(entities, "keep_longest")
    resolve_overlaps(entities, "keep_first")
    find_overlap(doc.anns.entities)


@pytest.mark.parametrize("name", ["error report", "scores", "sentence split", "reader overlap policies"])
def test_cost_grows_linearly_with_the_document(name, short_and_long, tmp_path):
    short, long = short_and_long
    step = {
        "error report": lambda doc: _report(doc, tmp_path / doc.id),
        "scores": _scores,
        "sentence split": _sentences,
        "reader overlap policies": _reader_overlaps,
    }[name]
    step(short)  # imports and first-call caches are not part of the count
    _assert_linear(name, _work(lambda: step(short)), _work(lambda: step(long)))


def test_window_encoding_cost_grows_linearly_with_the_document(short_and_long, minilm_tokenizer):
    from medkit_exp.text.ner.codec import NerCodec
    from medkit_exp.text.ner.tagging import build_tag_set

    short, long = short_and_long
    labels = sorted({e.label for e in long.anns.entities})
    # Short windows: many windows per document, each window's entities looked up.
    codec = NerCodec(minilm_tokenizer, build_tag_set(labels), "iob2", False, max_length=32, stride=8)
    codec.encode_document(short)
    _assert_linear("window encoding", _work(lambda: codec.encode_document(short)),
                   _work(lambda: codec.encode_document(long)))


@pytest.mark.parametrize("split_sentences", [False, True])
def test_prediction_cost_grows_linearly_with_the_document(split_sentences, short_and_long, tiny_bert_dir, tmp_path):
    from medkit_exp.text.ner.evaluation import predict_documents
    from medkit_exp.text.ner.hf_entity_matcher import HFEntityMatcher

    short, long = short_and_long
    labels = sorted({e.label for e in long.anns.entities})
    HFEntityMatcher.make_trainable(tiny_bert_dir, labels=labels, tokenizer_max_length=32).save(tmp_path / "model")
    matcher = HFEntityMatcher(model=tmp_path / "model", batch_size=64)
    predict_documents(matcher, [short], split_sentences)
    _assert_linear("prediction", _work(lambda: predict_documents(matcher, [short], split_sentences)),
                   _work(lambda: predict_documents(matcher, [long], split_sentences)))


def test_the_error_report_splits_each_document_into_sentences_once(monkeypatch, short_and_long, tmp_path):
    import medkit_exp.text.error_report as error_report

    calls = []
    real = error_report.sentence_spans
    monkeypatch.setattr(error_report, "sentence_spans", lambda text, *a, **k: calls.append(1) or real(text, *a, **k))
    short, long = short_and_long
    _report(long, tmp_path)
    assert len(calls) == 1


def test_the_guard_catches_a_quadratic_path(short_and_long):
    """The counters see a path that slices the rest of the text at every sentence end."""
    import re

    def quadratic(doc: TextDocument) -> None:
        for match in re.finditer(r"\. ", doc.text):
            doc.text[match.end():].lstrip()

    short, long = short_and_long
    with pytest.raises(AssertionError, match="characters sliced grew"):
        _assert_linear("quadratic", _work(lambda: quadratic(short)), _work(lambda: quadratic(long)))


# ---------------------------------------------------------------------------- same results
GOLDEN_DIR = Path(__file__).parent / "golden" / "demo_report"


def write_demo_results(folder: Path) -> None:
    """What the scoring path makes of the demo test split, and of the same split read as one
    long document, with noisy predictions: the error report, the scores, the sentence split and
    the training windows. ``python tests/test_linear_cost.py`` wrote `GOLDEN_DIR` with the code
    from before the linear-time rewrite; the test below checks the output is still byte-identical."""
    import hashlib
    import json

    from conftest import MINILM_DIR
    from transformers import AutoTokenizer

    from medkit_exp.io.sentences import split_into_sentences
    from medkit_exp.text.error_report import write_error_report
    from medkit_exp.text.ner.codec import NerCodec
    from medkit_exp.text.ner.evaluation import entity_errors, score_predictions
    from medkit_exp.text.ner.tagging import build_tag_set

    docs = list(demo_corpus()["test"])
    docs.append(_concatenated(docs, "demo-test-as-one"))
    predictions = [_noisy_predictions(doc, seed=i) for i, doc in enumerate(docs)]
    folder.mkdir(parents=True, exist_ok=True)
    write_error_report(entity_errors(docs, predictions), folder, "Demo test errors", {"documents": len(docs)})
    scores = score_predictions(docs, predictions)
    (folder / "scores.json").write_text(json.dumps(scores, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    sentences = [[s.id, s.metadata["parent_offset"], len(s.text), [[e.label, e.start, e.end] for e in s.anns.entities]]
                 for s in split_into_sentences(docs[-1:])]
    (folder / "sentences.json").write_text(json.dumps(sentences) + "\n", encoding="utf-8")
    labels = sorted({e.label for e in docs[-1].anns.entities})
    codec = NerCodec(AutoTokenizer.from_pretrained(str(MINILM_DIR)), build_tag_set(labels), "iob2", False, 32, 8)
    windows = json.dumps(codec.encode_document(docs[-1]), sort_keys=True).encode("utf-8")
    (folder / "windows.sha256").write_text(hashlib.sha256(windows).hexdigest() + "\n", encoding="utf-8")


def test_results_are_byte_identical_to_those_before_the_linear_rewrite(tmp_path):
    write_demo_results(tmp_path)
    for golden in sorted(GOLDEN_DIR.iterdir()):
        produced = tmp_path / golden.name
        assert produced.read_bytes() == golden.read_bytes(), f"{golden.name} differs from {golden}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    write_demo_results(GOLDEN_DIR)


# ---------------------------------------------------------------------------- seqeval
def test_seqeval_gets_bounded_pieces_of_a_long_document(monkeypatch, short_and_long):
    """seqeval's strict mode copies the rest of a sequence at every entity: it must never see a
    whole long document as one sequence."""
    import seqeval.metrics

    from medkit_exp.text.metrics.seqeval_metrics import PIECE_LENGTH

    longest = []
    real = seqeval.metrics.classification_report

    def recording(y_true, y_pred, **kwargs):
        longest.append(max(len(seq) for seq in y_true))
        return real(y_true, y_pred, **kwargs)

    monkeypatch.setattr(seqeval.metrics, "classification_report", recording)
    _, long = short_and_long
    _scores(long)
    assert longest and longest[0] <= 2 * PIECE_LENGTH  # the long document has ~16k words


@pytest.mark.parametrize("scheme, strict", [("iob2", True), ("bilou", True), ("iob2", False)])
def test_scores_of_pieces_equal_those_of_whole_sequences(scheme, strict):
    from medkit_exp.text.metrics.seqeval_metrics import seqeval_scores, split_at_shared_outside
    from medkit_exp.text.ner.tagging import encode_tags

    rng = random.Random(3)
    for _ in range(200):
        y_true, y_pred = [], []
        for _ in range(rng.randrange(1, 4)):
            n = rng.randrange(0, 60)
            sides = []
            for _ in range(2):
                ranges, pos = [], 0
                while pos < n:
                    pos += rng.randrange(0, 4)
                    end = min(n, pos + rng.randrange(1, 4))
                    if pos < end:
                        ranges.append((pos, end, rng.choice("AB")))
                    pos = end
                tags = encode_tags(n, ranges, scheme)
                if not strict:  # conlleval reads I- without B- as a start: try such tags too
                    tags = [t.replace("B-", "I-") if rng.random() < 0.2 else t for t in tags]
                sides.append(tags)
            y_true.append(sides[0])
            y_pred.append(sides[1])
        true_pieces, pred_pieces = split_at_shared_outside(y_true, y_pred, piece_length=5)
        assert [t for seq in true_pieces for t in seq] == [t for seq in y_true for t in seq]
        # each piece is cut at the first shared O past 5 tags
        for true_piece, pred_piece in zip(true_pieces, pred_pieces, strict=True):
            shared_outside = [i for i, (t, p) in enumerate(zip(true_piece, pred_piece, strict=True)) if t == p == "O"]
            assert len(true_piece) <= 5 or not [i for i in shared_outside if 4 <= i < len(true_piece) - 1]
        whole = _seqeval_on_whole(y_true, y_pred, scheme, strict)
        assert seqeval_scores(y_true, y_pred, scheme, strict=strict, labels=["A", "B"]) == whole


def _seqeval_on_whole(y_true, y_pred, scheme, strict):
    """seqeval_scores without the cutting into pieces."""
    import medkit_exp.text.metrics.seqeval_metrics as module

    original = module.split_at_shared_outside
    module.split_at_shared_outside = lambda t, p: ([list(s) for s in t], [list(s) for s in p])
    try:
        return module.seqeval_scores(y_true, y_pred, scheme, strict=strict, labels=["A", "B"])
    finally:
        module.split_at_shared_outside = original

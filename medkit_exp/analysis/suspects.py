"""Annotation-error suspects: the places where out-of-fold predictions most likely show a mistake
of the annotation rather than of the model.

Each document's words carry the model's label probabilities (the ``token_probs`` of its NER
records, `medkit_exp.text.predictions`) and a gold class: the label of the gold entity covering
the word, else ``O``. cleanlab scores every word's gold class (its label quality: the probability
the model gives it, ``self_confidence``) and finds the words whose gold class is likely wrong by
confident learning (`cleanlab.token_classification.filter.find_label_issues`, per-class
thresholds learnt from the whole set). A word is an issue when cleanlab flags it or when the
model gives another class more than half the probability. Consecutive issue words of one document with the
same gold entity (or none) and the same gold and suggested classes form one suspect, of one kind:

- ``label_swap``: gold entity of label X where the model says label Y;
- ``missed_annotation``: no gold entity where the model says there is one (a likely missing
  annotation);
- ``rejected_gold``: a gold entity where the model says ``O``.

The suggested class is the most probable one other than the gold one; a suspect's score is
``1 - label quality`` of its worst word: the likelihood that the annotation is wrong there.
Suspects come most likely first. Several records of one document (one per seed, say) are
averaged word by word first, so that one run's whim does not make a suspect.
"""

from __future__ import annotations

import csv
import html
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medkit_exp.errors import UserError
from medkit_exp.text.error_report import _STYLE, MarkedSpan, MarkIndex, SentenceLocator, highlighted
from medkit_exp.text.predictions import OUTSIDE, TokenProbabilities

SUSPECTS_TSV = "annotation_suspects.tsv"
SUSPECTS_HTML = "annotation_suspects.html"
KINDS = {
    "label_swap": "label swap (the model reads another label)",
    "missed_annotation": "missed annotation (the model sees an entity nobody marked)",
    "rejected_gold": "rejected gold (the model sees no entity there)",
}
COLUMNS = ("rank", "score", "kind", "document_id", "fold", "start", "end", "text", "gold_label",
           "predicted_label", "context")
CONFIDENT = 0.5  # a word is an issue when the model gives another class more than this, even unflagged
HTML_ROWS = 1000  # the page stays readable; the TSV holds every suspect


@dataclass(frozen=True)
class Suspect:
    """A place where the annotation is likely wrong.

    Attributes:
        document_id: the document.
        kind: ``label_swap``, ``missed_annotation`` or ``rejected_gold`` (see the module).
        start, end: characters ``[start, end)`` of the suspect words in the document.
        gold_label: the annotation's class of those words (``O`` for a missed annotation).
        predicted_label: the class the model suggests (``O`` for a rejected gold entity).
        score: likelihood of an annotation error, in [0, 1] (``1 -`` cleanlab's label quality
            of the worst word).
        text: the words, ``text[start:end]`` of the document (empty when the records hold no text).
        context: the sentence around them (``text[context_start:...]`` of the document).
        fold: the cross-validation fold that predicted the document (None outside CV).
        context_start: where ``context`` starts in the document.
        marks: ``(start, end, "gold" | "pred", label)`` of the gold and predicted entities
            meeting the context, in document characters (what the HTML page highlights).
    """

    document_id: str
    kind: str
    start: int
    end: int
    gold_label: str
    predicted_label: str
    score: float
    text: str
    context: str
    fold: int | None
    context_start: int = field(default=0, compare=False, repr=False)
    marks: tuple[tuple[int, int, str, str], ...] = field(default=(), compare=False, repr=False)


@dataclass
class _Document:
    """One document's words, averaged over its records, and what the page shows around them."""

    document_id: str
    text: str
    fold: int | None
    gold: list[list[Any]]
    predicted: list[list[Any]]
    words: TokenProbabilities


def find_suspects(records: Sequence[Mapping[str, Any]]) -> list[Suspect]:
    """The annotation suspects of NER ``records`` holding ``token_probs``, most likely first.

    Records without ``token_probs`` are skipped; several records of one document are averaged.
    `UserError` when no record has ``token_probs``.
    """
    documents = _documents(records)
    if not documents:
        raise UserError(f"none of the {len(records)} records has token_probs (the per-word label probabilities "
                        "NER runs store since annotation suspects exist): re-run the cross-validation with this "
                        "version")
    labels = _labels(documents)
    column = {label: k for k, label in enumerate(labels)}
    gold = [_gold_classes(doc, column) for doc in documents]
    given = [classes for classes, _ in gold]
    probs = [_reindexed(doc.words, labels) for doc in documents]
    quality, flagged = _cleanlab(given, probs)
    suspects = []
    for index, doc in enumerate(documents):
        suspects += _document_suspects(doc, index, labels, given[index], probs[index], quality[index], flagged,
                                       gold[index][1])
    return sorted(suspects, key=lambda s: (-s.score, s.document_id, s.start))


def _documents(records: Sequence[Mapping[str, Any]]) -> list[_Document]:
    """The documents of ``records`` with word probabilities, in order of first appearance; the
    probabilities of several records of one document averaged over the words they share."""
    by_id: dict[str, list[tuple[Mapping[str, Any], TokenProbabilities]]] = {}
    for record in records:
        try:
            words = TokenProbabilities.of_record(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"record of document {record.get('document_id')!r}: malformed token_probs ({exc}); "
                            "give the records as the runs wrote them") from exc
        if words is not None:
            by_id.setdefault(str(record["document_id"]), []).append((record, words))
    documents = []
    for document_id, group in by_id.items():
        first, base = group[0]
        labels = tuple(dict.fromkeys(label for _, words in group for label in words.labels))
        total = np.zeros((len(base.tokens), len(labels)))
        seen = np.zeros(len(base.tokens))
        row_of = {token: k for k, token in enumerate(base.tokens)}
        for _, words in group:
            rows = [(row_of[token], k) for k, token in enumerate(words.tokens) if token in row_of]
            if rows:
                target, source = (np.array(side) for side in zip(*rows, strict=True))
                total[target] += _reindexed(words, labels)[source]
                seen[target] += 1
        folds = [int(record["fold"]) for record, _ in group if record.get("fold") is not None]
        documents.append(_Document(document_id, str(first.get("text") or ""), folds[0] if folds else None,
                                   list(first.get("gold") or []), list(first.get("predicted") or []),
                                   TokenProbabilities(labels, base.tokens, total / np.maximum(seen, 1)[:, None])))
    return documents


def _labels(documents: Sequence[_Document]) -> tuple[str, ...]:
    """``O``, the labels the model gives probabilities to, then gold labels it never predicts."""
    labels = [OUTSIDE]
    for doc in documents:
        labels += [label for label in doc.words.labels if label not in labels]
    unknown = sorted({str(entity[0]) for doc in documents for entity in doc.gold} - set(labels))
    return tuple(labels + unknown)


def _reindexed(words: TokenProbabilities, labels: Sequence[str]) -> np.ndarray:
    """``words.probs`` with the columns ``labels`` (0 for a label it lacks), rows summing to 1."""
    probs = np.zeros((len(words.tokens), len(labels)))
    for k, label in enumerate(words.labels):
        probs[:, list(labels).index(label)] = words.probs[:, k]
    sums = probs.sum(axis=1, keepdims=True)
    return np.divide(probs, sums, out=np.full_like(probs, 1.0 / len(labels)), where=sums > 0)


def _gold_classes(doc: _Document, column: Mapping[str, int]) -> tuple[np.ndarray, list[int | None]]:
    """Each word's gold class (the column of the label of the longest gold entity overlapping it,
    else ``O``) and the index of that entity in ``doc.gold`` (None for ``O``)."""
    classes = np.zeros(len(doc.words.tokens), dtype=int)
    owner: list[int | None] = [None] * len(doc.words.tokens)
    starts = np.array([s for s, _ in doc.words.tokens], dtype=int)
    ends = np.array([e for _, e in doc.words.tokens], dtype=int)

    def length(entity: Sequence[Any]) -> int:
        bounds = entity[1:]
        return sum(e - s for s, e in zip(bounds[::2], bounds[1::2], strict=True))

    # Shortest first, so that the longest entity over a word (the one flat tagging keeps) wins.
    for index in sorted(range(len(doc.gold)), key=lambda i: length(doc.gold[i])):
        label, *bounds = doc.gold[index]
        for start, end in zip(bounds[::2], bounds[1::2], strict=True):
            for k in np.nonzero((starts < end) & (ends > start))[0]:
                classes[k], owner[k] = column[str(label)], index
    return classes, owner


def _cleanlab(given: Sequence[np.ndarray],
              probs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], set[tuple[int, int]]]:
    """cleanlab's label quality of every word, and the ``(document, word)`` it flags as label issues."""
    from cleanlab.token_classification.filter import find_label_issues
    from cleanlab.token_classification.rank import get_label_quality_scores

    kept = [k for k, words in enumerate(given) if len(words)]
    quality = [np.ones(0) for _ in given]
    if not kept:
        return quality, set()
    labels = [[int(c) for c in given[k]] for k in kept]
    pred_probs = [probs[k] for k in kept]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too few examples in class ...": said for every rare label, and expected
        _, token_scores = get_label_quality_scores(labels, pred_probs, token_score_method="self_confidence")
        issues = find_label_issues(labels, pred_probs, n_jobs=1)
    for k, scores in zip(kept, token_scores, strict=True):
        quality[k] = np.asarray(scores, dtype=float)
    return quality, {(kept[i], j) for i, j in issues}


def _document_suspects(doc: _Document, index: int, labels: Sequence[str], given: np.ndarray, probs: np.ndarray,
                       quality: np.ndarray, flagged: set[tuple[int, int]],
                       owner: Sequence[int | None]) -> list[Suspect]:
    """The suspects of one document: its issue words, consecutive ones of the same kind merged."""
    others = probs.copy()
    others[np.arange(len(given)), given] = -1.0
    suggested = others.argmax(axis=1) if len(given) else np.zeros(0, dtype=int)
    issue = [(index, j) in flagged or probs[j, suggested[j]] > CONFIDENT for j in range(len(given))]
    runs: list[list[int]] = []
    for j in range(len(given)):
        if not issue[j]:
            continue
        key = (given[j], suggested[j], owner[j])
        if runs and runs[-1][-1] == j - 1 and (given[j - 1], suggested[j - 1], owner[j - 1]) == key:
            runs[-1].append(j)
        else:
            runs.append([j])
    if not runs:
        return []
    sentences = SentenceLocator(doc.text) if doc.text else None
    marks = [(int(e[1]), int(e[-1]), "gold", str(e[0])) for e in doc.gold]
    marks += [(int(e[1]), int(e[-1]), "pred", str(e[0])) for e in doc.predicted]
    suspects = []
    for run in runs:
        gold, predicted = labels[given[run[0]]], labels[suggested[run[0]]]
        start, end = doc.words.tokens[run[0]][0], doc.words.tokens[run[-1]][1]
        lo, hi = sentences.around(start, end) if sentences else (start, start)
        suspects.append(Suspect(
            document_id=doc.document_id, kind=_kind(gold, predicted), start=start, end=end, gold_label=gold,
            predicted_label=predicted, score=float(1.0 - min(quality[j] for j in run)), text=doc.text[start:end],
            context=doc.text[lo:hi], fold=doc.fold, context_start=lo,
            marks=tuple(m for m in marks if m[0] < hi and m[1] > lo)))
    return suspects


def _kind(gold: str, predicted: str) -> str:
    if gold == OUTSIDE:
        return "missed_annotation"
    return "rejected_gold" if predicted == OUTSIDE else "label_swap"


# ---------------------------------------------------------------------------- output
def write_suspects(suspects: Sequence[Suspect], folder: Path) -> tuple[Path, Path]:
    """Write ``annotation_suspects.tsv`` (every suspect, columns `COLUMNS`) and
    ``annotation_suspects.html`` (the most likely ones in their sentence) under ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / SUSPECTS_TSV
    with table.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(COLUMNS)
        for rank, s in enumerate(suspects, start=1):
            writer.writerow([rank, f"{s.score:.4f}", s.kind, s.document_id, "" if s.fold is None else s.fold,
                             s.start, s.end, _one_line(s.text), s.gold_label, s.predicted_label, _one_line(s.context)])
    page = folder / SUSPECTS_HTML
    page.write_text(_page(suspects), encoding="utf-8")
    return table, page


def _page(suspects: Sequence[Suspect]) -> str:
    title = "Annotation-error suspects (out-of-fold predictions)"
    counts = {kind: sum(s.kind == kind for s in suspects) for kind in KINDS}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}\n.suspect {{ outline: 2px solid #c0392b; padding: 0 1px; }}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>Where the model, trained without the document, confidently contradicts its annotation: most "
             "likely annotation errors first (score: 1 - cleanlab's label quality of the worst word).</p>",
             "<p><span class='suspect'>suspect words</span> &nbsp; <mark class='gold'>gold span</mark> &nbsp; "
             "<mark class='pred'>predicted span</mark></p>",
             "<table class='summary'><tr><th>kind</th><th>suspects</th></tr>"]
    parts += [f"<tr><td>{html.escape(KINDS[kind])}</td><td>{count}</td></tr>" for kind, count in counts.items()]
    parts.append(f"<tr><td>all</td><td>{len(suspects)}</td></tr></table>")
    if not suspects:
        parts.append("<p>No suspect: the model nowhere contradicts the annotation.</p>")
    else:
        shown = suspects[:HTML_ROWS]
        if len(suspects) > len(shown):
            parts.append(f"<p>The {len(shown)} most likely of {len(suspects)}; {SUSPECTS_TSV} lists them all.</p>")
        parts.append("<table><tr><th>rank</th><th>score</th><th>kind</th><th>gold &rarr; model</th><th>words</th>"
                     "<th>document</th><th>in its sentence</th></tr>")
        for rank, s in enumerate(shown, start=1):
            fold = "" if s.fold is None else f" (fold {s.fold})"
            parts.append(f"<tr><td>{rank}</td><td>{s.score:.3f}</td><td>{html.escape(s.kind)}</td>"
                         f"<td>{html.escape(s.gold_label)} &rarr; {html.escape(s.predicted_label)}</td>"
                         f"<td>{html.escape(s.text)}</td><td>{html.escape(s.document_id)}{fold}</td>"
                         f"<td>{_sentence(s)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _sentence(suspect: Suspect) -> str:
    """The suspect's sentence as HTML: gold and predicted entities marked, the suspect words outlined."""
    lo, context = suspect.context_start, suspect.context
    start, end = suspect.start - lo, suspect.end - lo
    if not 0 <= start <= end <= len(context):
        return html.escape(context)
    index = MarkIndex([MarkedSpan(max(a - lo, 0), min(b - lo, len(context)), css, label)
                       for a, b, css, label in suspect.marks])
    pieces = [highlighted(context, bounds, index) for bounds in ((0, start), (start, end), (end, len(context)))]
    return f"{pieces[0]}<span class='suspect'>{pieces[1]}</span>{pieces[2]}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_top(suspects: Sequence[Suspect], n: int = 10) -> str:
    """The ``n`` most likely suspects as the lines a command prints."""
    if not suspects:
        return "No annotation suspect: the model nowhere contradicts the annotation."
    shown = suspects[:max(n, 0)]
    lines = [f"{len(suspects)} annotation suspects, most likely annotation errors first"
             + (f"; the top {len(shown)}:" if shown else ".")]
    for rank, s in enumerate(shown, start=1):
        fold = "" if s.fold is None else f", fold {s.fold}"
        lines.append(f"{rank:>4}. {s.score:.3f} {s.kind:<17} {s.document_id} [{s.start}, {s.end}) "
                     f"{_quoted(s.text)}: gold {s.gold_label}, model {s.predicted_label}{fold}")
    return "\n".join(lines)


def _quoted(text: str) -> str:
    import json

    return json.dumps(_one_line(text), ensure_ascii=False)

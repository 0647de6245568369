"""Error analysis pages: every mistake of a model on the test split, in its sentence.

`write_error_report` writes ``errors.html`` (readable in MLflow's artifact viewer: mistakes
grouped by kind and label, most frequent first, each shown in its sentence with the gold and
predicted spans highlighted) and ``errors.tsv`` (the same rows, for a spreadsheet). The NER
and classifier components build the rows (`ErrorRow`) from their predictions.
"""

from __future__ import annotations

import bisect
import csv
import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medkit_exp.io.sentences import sentence_spans

KINDS = {
    "false_negative": "missed (false negative)",
    "false_positive": "spurious (false positive)",
    "wrong_label": "wrong label",
}


@dataclass
class ErrorRow:
    """One mistake: its kind, the label it is grouped under, the mention and where it is."""

    kind: str  # false_negative, false_positive or wrong_label
    label: str  # gold label (false negative, wrong label) or predicted label (false positive)
    text: str
    doc_id: str
    start: int
    end: int
    gold: str = ""  # gold label, if any
    predicted: str = ""  # predicted label, if any
    context: str = ""  # the sentence, as HTML with the spans highlighted
    context_text: str = ""  # the sentence, plain
    score: float | None = None


@dataclass
class MarkedSpan:
    start: int
    end: int
    css: str  # gold or pred
    title: str = ""


class SentenceLocator:
    """The sentences of one text, split once: `around` places a span among them by bisection.

    Build one per document and ask it for every mistake of that document; splitting the text
    again for each mistake would make a report quadratic in the document's length.
    """

    def __init__(self, text: str) -> None:
        spans = sentence_spans(text) or [(0, len(text))]
        self._starts = [start for start, _ in spans]
        self._ends = [end for _, end in spans]
        self._length = len(text)

    def around(self, start: int, end: int) -> tuple[int, int]:
        """Character bounds of the sentence(s) holding ``[start, end)``."""
        first_index = bisect.bisect_right(self._ends, start)  # the first sentence ending after start
        first = self._starts[first_index] if first_index < len(self._starts) else 0
        last_index = bisect.bisect_left(self._starts, end) - 1  # the last sentence starting before end
        last = self._ends[last_index] if last_index >= 0 else self._length
        return min(first, start), max(last, end)


class MarkIndex:
    """The marks of one document, sorted once, so that `within` finds those meeting a window
    by bisection instead of scanning them all for every row of a report."""

    def __init__(self, marks: Sequence[MarkedSpan]) -> None:
        self._marks = sorted(marks, key=lambda m: (m.start, -m.end))  # stable: ties keep their given order
        self._starts = [m.start for m in self._marks]
        self._longest = max((m.end - m.start for m in self._marks), default=0)

    def within(self, lo: int, hi: int) -> list[MarkedSpan]:
        """The marks overlapping ``[lo, hi)``, by start then longest first."""
        # A mark starting before lo - longest ends before lo: the candidates start in [lo - longest, hi).
        first = bisect.bisect_left(self._starts, lo - self._longest)
        last = bisect.bisect_left(self._starts, hi)
        return [m for m in self._marks[first:last] if m.end > lo]


def highlighted(text: str, bounds: tuple[int, int], marks: Sequence[MarkedSpan] | MarkIndex) -> str:
    """``text[bounds]`` as HTML, with each mark inside the bounds wrapped in ``<mark class=...>``.

    ``marks``: the document's marks, best as one `MarkIndex` shared by all the rows of a document."""
    lo, hi = bounds
    index = marks if isinstance(marks, MarkIndex) else MarkIndex(marks)
    out, pos = [], lo
    for mark in index.within(lo, hi):
        start, end = max(mark.start, pos), min(mark.end, hi)
        if start >= end:
            continue
        out.append(html.escape(text[pos:start]))
        out.append(f'<mark class="{mark.css}" title="{html.escape(mark.title)}">{html.escape(text[start:end])}</mark>')
        pos = end
    out.append(html.escape(text[pos:hi]))
    return "".join(out)


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; font-size: 0.92em; }
th { background: #f4f4f4; text-align: left; }
mark.gold { background: none; border-bottom: 3px solid #2a9d4b; }
mark.pred { background: #ffd08a; }
.summary td { text-align: right; } .summary td:first-child { text-align: left; }
"""


def write_error_report(rows: Sequence[ErrorRow], folder: str | Path, title: str,
                       counts: dict[str, float]) -> list[Path]:
    """Write ``errors.html`` and ``errors.tsv`` under ``folder``; return their paths.

    ``counts``: figures shown on top of the page (e.g. gold and predicted entities, F1).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    by_group: dict[tuple[str, str], list[ErrorRow]] = defaultdict(list)
    for row in rows:
        by_group[(row.kind, row.label)].append(row)
    groups = {key: len(members) for key, members in by_group.items()}
    ordered = sorted(groups, key=lambda key: (-groups[key], key))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             "<p><mark class='gold'>gold span</mark> &nbsp; <mark class='pred'>predicted span</mark></p>",
             "<table class='summary'><tr><th>figure</th><th>value</th></tr>"]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in counts.items()]
    parts.append("</table><table class='summary'><tr><th>kind</th><th>label</th><th>mistakes</th></tr>")
    parts += [f"<tr><td><a href='#{kind}-{html.escape(label)}'>{KINDS.get(kind, kind)}</a></td>"
              f"<td>{html.escape(label)}</td><td>{groups[(kind, label)]}</td></tr>" for kind, label in ordered]
    parts.append("</table>")
    for kind, label in ordered:
        members = list(by_group[(kind, label)])
        texts = Counter(row.text.lower() for row in members)
        members.sort(key=lambda row: (-texts[row.text.lower()], row.text.lower(), row.doc_id, row.start))
        parts.append(f"<h2 id='{kind}-{html.escape(label)}'>{KINDS.get(kind, kind)}: {html.escape(label)} "
                     f"({len(members)})</h2><table><tr><th>mention</th><th>gold</th><th>predicted</th>"
                     "<th>document</th><th>in its sentence</th></tr>")
        parts += [f"<tr><td>{html.escape(row.text)}</td><td>{html.escape(row.gold)}</td>"
                  f"<td>{html.escape(row.predicted)}</td><td>{html.escape(row.doc_id)}</td><td>{row.context}</td></tr>"
                  for row in members]
        parts.append("</table>")
    if not rows:
        parts.append("<p>No mistake on the test split.</p>")
    parts.append("</body></html>")
    page = folder / "errors.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    table = folder / "errors.tsv"
    with table.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["kind", "label", "mention", "gold", "predicted", "document", "start", "end", "sentence"])
        for kind, label in ordered:
            for row in by_group[(kind, label)]:
                writer.writerow([row.kind, row.label, row.text, row.gold, row.predicted, row.doc_id, row.start,
                                 row.end, row.context_text.replace("\n", " ")])
    return [page, table]


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"

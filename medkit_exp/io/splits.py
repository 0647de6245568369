"""A corpus read as its train, dev and test splits: the built-in targets of the ``data`` group.

A data node's ``_target_`` returns a mapping with ``train``, ``dev`` and optionally ``test``,
each a sequence of the items the component's ``preprocess`` takes. The built-in targets
read annotated corpora into `TextDocument` s: `load_corpus` (a folder per split, read by
the node's ``reader``: BRAT, CoNLL, JSONL or a user's own) and `demo_corpus` (the shipped
demo). The app wraps whatever a target returned in `medkit_exp.app.data.ExperimentData`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from medkit_exp.core import TextDocument
from medkit_exp.errors import UserError

SPLITS = ("train", "dev", "test")
DATA_ENV = "MEDKIT_EXP_DATA"


class CorpusSplits(Mapping):
    """Documents of each split, as read, with the reader's reports (a mapping split -> documents)."""

    def __init__(self, name: str, splits: dict[str, list[TextDocument]], reports: dict[str, Any] | None = None,
                 source: str = "") -> None:
        self.name = name
        self.splits = {split: list(splits.get(split) or []) for split in SPLITS}
        self.reports = reports or {}
        self.source = source

    def __getitem__(self, split: str) -> list[TextDocument]:
        return self.splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    def with_splits(self, splits: Mapping[str, list[TextDocument]]) -> CorpusSplits:
        """The same corpus with other splits (a cross-validation fold's); the reader's reports of the
        splits that changed are dropped (they describe the documents as read)."""
        kept = {split: report for split, report in self.reports.items()
                if split in splits and list(splits[split]) == self.splits.get(split)}
        return CorpusSplits(self.name, dict(splits), kept, source=self.source)

    @property
    def labels(self) -> list[str]:
        """Entity labels of the train split."""
        return sorted({e.label for doc in self.splits["train"] for e in doc.anns.entities})

    def summary(self) -> dict[str, Any]:
        from medkit_exp.io.corpus import corpus_summary

        return {split: corpus_summary(docs) for split, docs in self.splits.items()}

    def describe(self) -> str:
        """One line per split: documents, entities per label, and what the reader dropped."""
        from medkit_exp.io.corpus import format_summary

        lines = []
        for split in SPLITS:
            line = format_summary(self.splits[split], name=f"{self.name}/{split}")
            report = self.reports.get(split)
            dropped = getattr(report, "total_dropped", 0) if report is not None else 0
            if report is not None and dropped:
                line += f" Reader dropped {dropped} entities ({report.describe()})."
            lines.append(line)
        return "\n".join(lines)

    def digest(self, split: str | None = None) -> str:
        """A short hash of every document (of ``split`` alone when given)."""
        from medkit_exp.io.corpus import corpus_digest

        splits = [split] if split else SPLITS
        return corpus_digest([doc for name in splits for doc in self.splits[name]], short=True)


def data_root(name: str, root: str | None) -> Path:
    """The folder ``root`` (else ``$MEDKIT_EXP_DATA``) of ``data=name``, which must exist."""
    root = root or os.environ.get(DATA_ENV)
    if not root:
        raise UserError(f"data={name} needs a data folder: set data.root=/path/to/corpus or the {DATA_ENV} "
                        "environment variable")
    path = Path(root).expanduser()
    if not path.exists():
        raise UserError(f"data.root {path} does not exist (data={name}); set data.root to the folder "
                        f"holding the {', '.join(SPLITS)} splits, or {DATA_ENV}")
    return path


def load_corpus(
    reader: Callable[..., Any],
    root: str | None = None,
    name: str = "corpus",
    train: str = "train",
    dev: str = "dev",
    test: str = "test",
    label_map: dict[str, str] | None = None,
    labels: list[str] | None = None,
    max_docs: int | None = None,
) -> CorpusSplits:
    """Read the splits ``root/<train>``, ``root/<dev>``, ``root/<test>`` with ``reader``.

    ``reader(path, label_map=..., labels=...)`` returns a corpus with ``documents`` and
    ``report`` (`medkit_exp.io.load_brat`, ``load_jsonl``, ``load_conll``, or a user's own, given
    in the node as a ``_partial_`` node with its own settings). ``label_map`` renames labels,
    ``labels`` keeps only those (after renaming), ``max_docs`` keeps the first documents of each
    split (quick runs). ``root`` defaults to ``$MEDKIT_EXP_DATA``.
    """
    folder = data_root(name, root)
    splits, reports = {}, {}
    for split, relative in zip(SPLITS, (train, dev, test), strict=True):
        path = folder / relative
        if not path.exists():
            raise UserError(f"split {path} does not exist; check data.root and data.{split}")
        corpus = reader(path, label_map=dict(label_map or {}), labels=list(labels) if labels else None)
        splits[split], reports[split] = corpus.documents, corpus.report
    return _checked(CorpusSplits(name, splits, reports, source=str(folder.resolve())), labels, max_docs)


def demo_corpus(label_map: dict[str, str] | None = None, labels: list[str] | None = None,
                max_docs: int | None = None) -> CorpusSplits:
    """The demo corpus shipped with the package (clinical sentences: problem, treatment, test)."""
    from medkit_exp.io.corpus import apply_label_map, filter_labels
    from medkit_exp.io.demo import load_demo_corpus

    splits = load_demo_corpus()
    if label_map:
        splits = {s: apply_label_map(d, dict(label_map)) for s, d in splits.items()}
    if labels:
        splits = {s: filter_labels(d, list(labels)) for s, d in splits.items()}
    return _checked(CorpusSplits("demo", splits, source="medkit_exp.io.demo"), labels, max_docs)


def _checked(corpus: CorpusSplits, labels: list[str] | None, max_docs: int | None) -> CorpusSplits:
    if max_docs:
        corpus.splits = {s: docs[:max_docs] for s, docs in corpus.splits.items()}
    if not corpus.splits["train"]:
        raise UserError(f"data={corpus.name}: the train split is empty; check data.root and data.train")
    if not any(doc.anns.entities for doc in corpus.splits["train"]):
        raise UserError(f"data={corpus.name}: the train split has no entity"
                        + (f" with labels {list(labels)}" if labels else "") + "; check data.labels and data.label_map")
    return corpus

"""Turn a ``data`` config into train/dev/test documents, with a summary and a digest."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkit_exp.core import TextDocument
from medkit_exp.errors import UserError

SPLITS = ("train", "dev", "test")
DATA_ENV = "MEDKIT_EXP_DATA"


@dataclass
class DatasetSplits:
    """The documents of each split, as read (before any sentence splitting)."""

    name: str
    splits: dict[str, list[TextDocument]]
    reports: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def labels(self) -> list[str]:
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
            if dropped:
                line += f" Reader dropped {dropped} entities ({report.describe()})."
            lines.append(line)
        return "\n".join(lines)

    def digest(self) -> str:
        from medkit_exp.io.corpus import corpus_digest

        return corpus_digest([doc for split in SPLITS for doc in self.splits[split]], short=True)


def _root(data_cfg: Any) -> Path:
    root = data_cfg.root or os.environ.get(DATA_ENV)
    if not root:
        raise UserError(
            f"data={data_cfg.name} needs a data folder: set data.root=/path/to/corpus "
            f"or the {DATA_ENV} environment variable"
        )
    path = Path(root).expanduser()
    if not path.exists():
        raise UserError(
            f"data.root {path} does not exist (data={data_cfg.name}); set data.root to the folder "
            f"holding the {', '.join(SPLITS)} splits, or {DATA_ENV}"
        )
    return path


def load_dataset(data_cfg: Any) -> DatasetSplits:
    """Read the three splits described by ``data_cfg`` (a `DataConfig` or its DictConfig)."""
    label_map = dict(data_cfg.label_map or {})
    labels = list(data_cfg.labels) if data_cfg.labels else None
    fmt = data_cfg.format
    if fmt == "demo":
        from medkit_exp.io.corpus import apply_label_map, filter_labels
        from medkit_exp.io.demo import load_demo_corpus

        splits = load_demo_corpus()
        if label_map:
            splits = {s: apply_label_map(d, label_map) for s, d in splits.items()}
        if labels:
            splits = {s: filter_labels(d, labels) for s, d in splits.items()}
        dataset = DatasetSplits(data_cfg.name, splits, source="medkit_exp.io.demo")
    else:
        root = _root(data_cfg)
        splits, reports = {}, {}
        for split in SPLITS:
            path = root / getattr(data_cfg, split)
            corpus = _load_split(fmt, path, label_map, labels, data_cfg.overlap_policy)
            splits[split], reports[split] = corpus.documents, corpus.report
        dataset = DatasetSplits(data_cfg.name, splits, reports, source=str(root.resolve()))
    if data_cfg.max_docs:
        dataset.splits = {s: docs[: data_cfg.max_docs] for s, docs in dataset.splits.items()}
    if not dataset.splits["train"]:
        raise UserError(f"data={data_cfg.name}: the train split is empty; check data.root and data.train")
    if not any(doc.anns.entities for doc in dataset.splits["train"]):
        raise UserError(
            f"data={data_cfg.name}: the train split has no entity"
            + (f" with labels {labels}" if labels else "")
            + "; check data.labels and data.label_map"
        )
    return dataset


def _load_split(fmt: str, path: Path, label_map: dict, labels: list[str] | None, overlap_policy: str):
    if not path.exists():
        raise UserError(f"split {path} does not exist; check data.root and the data.train/dev/test names")
    if fmt == "brat":
        from medkit_exp.io.brat import load_brat

        return load_brat(path, label_map=label_map, labels=labels, overlap_policy=overlap_policy,
                         split=path.name)
    if fmt == "jsonl":
        from medkit_exp.io.jsonl import load_jsonl

        return load_jsonl(path, label_map=label_map, labels=labels, overlap_policy=overlap_policy)
    if fmt == "conll":
        from medkit_exp.io.conll import load_conll

        return load_conll(path, label_map=label_map, labels=labels)
    raise UserError(f"data.format={fmt!r} is not supported; use demo, brat, conll or jsonl")

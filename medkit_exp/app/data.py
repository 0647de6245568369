"""The data a run trains, selects and tests on, as the app shows and tracks it.

`ExperimentData` wraps whatever the ``data`` node's target returned (`medkit_exp.io.load_corpus`,
a user's own function...) with what the app prints and logs about it: a description, a summary,
a digest and MLflow dataset inputs, asking the object for them when it offers them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from medkit_exp.errors import UserError
from medkit_exp.io.splits import SPLITS


class ExperimentData:
    """The splits a data target returned, with what the app prints and tracks about them."""

    def __init__(self, splits: Any, name: str) -> None:
        if not isinstance(splits, Mapping):
            raise UserError(f"data={name} returned a {type(splits).__name__}, not a mapping of splits; "
                            "return {'train': [...], 'dev': [...], 'test': [...]}")
        missing = [s for s in ("train", "dev") if s not in splits]
        if missing:
            raise UserError(f"data={name} returned no {' and no '.join(missing)} split (keys: {sorted(splits)}); "
                            "return a mapping with train, dev and optionally test")
        self.source_object = splits
        self.name = getattr(splits, "name", None) or name
        self.source = str(getattr(splits, "source", "") or name)
        self.splits: dict[str, list[Any]] = {s: list(splits.get(s) or []) for s in SPLITS}
        if not self.splits["train"]:
            raise UserError(f"data={name}: the train split is empty; check the data settings")
        self.notes: list[str] = []  # lines the description ends with (the cross-validation fold)
        self.details: dict[str, Any] = {}  # entries the summary gains

    def replace_splits(self, train: list[Any], dev: list[Any], note: str = "",
                       details: dict[str, Any] | None = None) -> None:
        """Train and dev become ``train`` and ``dev`` (a cross-validation fold's); the test split stays.

        The description, summary and digests then describe the new splits: through the data's own
        ``with_splits(splits)`` when it offers one (`medkit_exp.io.CorpusSplits` does), else as
        plain lists of items."""
        splits = {"train": list(train), "dev": list(dev), "test": self.splits["test"]}
        rebuild = self._offered("with_splits")
        self.source_object = rebuild(splits) if rebuild else splits
        self.splits = splits
        if note:
            self.notes.append(note)
        self.details.update(details or {})

    def _offered(self, method: str) -> Callable[..., Any] | None:
        found = getattr(self.source_object, method, None)
        return found if callable(found) else None

    def describe(self) -> str:
        offered = self._offered("describe")
        lines = [offered()] if offered else [f"{self.name}/{split}: {len(items)} items"
                                             for split, items in self.splits.items()]
        return "\n".join([*lines, *self.notes])

    def summary(self) -> dict[str, Any]:
        offered = self._offered("summary")
        summary = offered() if offered else {split: {"items": len(items)} for split, items in self.splits.items()}
        return summary | self.details if isinstance(summary, dict) else summary

    def digest(self, split: str | None = None) -> str:
        """A short hash of every item, or of ``split``'s (the data's own ``digest()`` when it has one)."""
        offered = self._offered("digest")
        if offered:
            try:
                return offered(split) if split else offered()
            except TypeError:  # a digest() of the whole data only
                if split is None:
                    raise
        items = self.splits[split] if split else self.splits
        payload = json.dumps(items, sort_keys=True, default=repr).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()[:16]

    def mlflow_inputs(self) -> list[dict[str, Any]]:
        """One entry per non-empty split for `TrackedRun.log_datasets`: name, digest, context, source."""
        contexts = {"train": "training", "dev": "validation", "test": "test"}
        summary = self.summary()
        inputs = []
        for split, items in self.splits.items():
            if not items:
                continue
            counts = summary.get(split, {}) if isinstance(summary, dict) else {}
            source = {"source": self.source, "items": len(items)}
            source.update({k: v for k, v in counts.items()
                           if k in ("documents", "entities") and not isinstance(v, dict)})
            inputs.append({"name": f"{self.name}/{split}", "digest": self.digest(split), "context": contexts[split],
                           "source": source})
        return inputs

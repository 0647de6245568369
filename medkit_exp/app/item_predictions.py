"""Part of phase `train_and_test`: the per-document predictions of a component that has no
``score_test`` of its own, from its metrics computer's ``item_values``
(`medkit_exp.training.protocols.MetricsComputer`).

The best checkpoint is evaluated on the split as the dev split is during training, keeping the
data the metrics computer accumulated (`Trainer.evaluate_with_data`); ``item_values`` turns them
into one dict per item, stored as the records of `medkit_exp.text.predictions`:
``{"document_id", "split", "values": {name: number}}`` (scored as means), or classification
records when the dicts hold ``gold`` and ``predicted``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medkit_exp.text.predictions import Record, classification_records, value_records, write_records
from medkit_exp.training.trainer import Trainer

log = logging.getLogger("medkit_exp")

ItemValues = Callable[[dict[str, list[Any]]], Any]


def evaluate_item_values(trainer: Trainer, items: Sequence[Any], item_values: ItemValues, path: Path
                         ) -> dict[str, float]:
    """The metrics of the component (loaded with the checkpoint to score) on ``items``, as
    `Trainer.evaluate` gives them; writes the records of ``item_values`` at ``path`` (the split is
    its stem). A malformed result of ``item_values`` is a warning, and nothing is written: the
    scores stand without their records."""
    path.unlink(missing_ok=True)  # a resumed run's earlier records must not stand for these
    metrics, data, owners = trainer.evaluate_with_data(items)
    if not owners:
        return metrics
    try:
        records = item_records(item_values(data), items, owners, path.stem)
    except ValueError as exc:
        log.warning("no per-document predictions of the %s split: the metrics computer's item_values %s",
                    path.stem, exc)
        return metrics
    write_records(path, records)
    return metrics


def item_records(entries: Any, items: Sequence[Any], owners: Sequence[int], split: str) -> list[Record]:
    """The records of what ``item_values`` returned (see `MetricsComputer`); ``owners[i]``: the
    position in ``items`` of the item example ``i`` came from. ``ValueError`` saying what is wrong
    (its message follows "item_values")."""
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"returned {type(entries).__name__}, not a list of dicts (one per item)")
    if not entries:
        raise ValueError("returned no item")
    for number, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"returned {type(entry).__name__} at {number}, not a dict")
    document_ids = entry_document_ids(entries, items, owners)
    if all("values" in entry for entry in entries):
        return value_records(document_ids, [checked_values(entry["values"], n) for n, entry in enumerate(entries)],
                             split)
    if all("gold" in entry and "predicted" in entry for entry in entries):
        return classification_records(document_ids, [e["gold"] for e in entries], [e["predicted"] for e in entries],
                                      split)
    raise ValueError('returned dicts without "values" (or without "gold" and "predicted"): give every item '
                     'either {"values": {name: number}} or {"gold": class, "predicted": class}')


def entry_document_ids(entries: Sequence[Mapping[str, Any]], items: Sequence[Any], owners: Sequence[int]
                       ) -> list[str]:
    """Each entry's ``document_id``, else (one entry per example) that of the item its example came from."""
    if all("document_id" in entry for entry in entries):
        return [str(entry["document_id"]) for entry in entries]
    if len(entries) != len(owners):
        raise ValueError(f"returned {len(entries)} dicts for {len(owners)} examples, not all with a document_id: "
                         "return one per example (in the order of the data), or a document_id in each")
    return [str(entry["document_id"]) if "document_id" in entry else item_id(items[owner], owner)
            for entry, owner in zip(entries, owners, strict=True)]


def item_id(item: Any, position: int) -> str:
    """The id of the document an item belongs to: its ``document_id`` or ``id`` (key or
    attribute), else its position in the split."""
    for key in ("document_id", "id"):
        value = item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)
        if value is not None:
            return str(value)
    return str(position)


def checked_values(values: Any, number: int) -> dict[str, float]:
    """``values`` as ``{name: float}``; ``ValueError`` for anything but finite numbers."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f'returned "values" {values!r} at {number}: give a dict of names to numbers')
    checked = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"returned {name}={value!r} at {number}: values must be finite numbers")
        checked[str(name)] = float(value)
    return checked

"""Folds over the documents of train + dev, drawn by scikit-learn's splitters.

`assign_folds` gives each item its fold: deterministic for a seed (the same items in the same
order give the same folds in every job of a sweep), every item in exactly one fold, and with
``groups`` every group inside one fold (all the notes of one patient). ``strata`` balances a
label across folds as far as the groups allow. `split_for_fold` pools a corpus's train and dev
splits and holds one fold out; `group_values` reads each document's group (a metadata field,
an attribute, or a regex over the document id).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from medkit_exp.errors import UserError

REGEX_PREFIX = "regex:"
NO_ENTITY = "none"  # the stratum of a document without entities


def assign_folds(items: Sequence[Any], folds: int, seed: int, groups: Sequence[Any] | None = None,
                 strata: Sequence[Any] | None = None) -> list[int]:
    """The fold (0 to ``folds`` - 1) of each item.

    Without groups: `KFold` (shuffled by ``seed``), or `StratifiedKFold` with ``strata`` (each
    fold holds every stratum's count divided by ``folds``, within one). With ``groups``:
    `GroupKFold`, which balances the folds' sizes by putting the largest groups first, groups of
    equal size in an order drawn from ``seed``; or `StratifiedGroupKFold` (shuffled by ``seed``)
    with ``strata``. Raises `UserError` when the items (or groups) are fewer than the folds.
    """
    import numpy as np
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    count = len(items)
    if (groups is not None and len(groups) != count) or (strata is not None and len(strata) != count):
        raise ValueError(f"{count} items but {len(groups or [])} groups and {len(strata or [])} strata")
    if folds < 2:
        raise UserError(f"cv.folds={folds} must be 2 or more")
    if groups is None and count < folds:
        raise UserError(f"cv.folds={folds}: train + dev hold {count} items, fewer than the folds; use fewer folds")
    if groups is not None:
        distinct = len(set(groups))
        if distinct < folds:
            raise UserError(f"cv.folds={folds}: train + dev hold {distinct} groups, fewer than the folds (a group "
                            "stays in one fold); use fewer folds or another cv.group_by")
    x = np.zeros((count, 1))
    y = np.asarray([str(s) for s in strata]) if strata is not None else None
    codes = group_codes(groups, seed) if groups is not None else None
    if codes is None:
        splitter: Any = (StratifiedKFold(folds, shuffle=True, random_state=seed) if y is not None
                         else KFold(folds, shuffle=True, random_state=seed))
    else:
        # GroupKFold's own shuffle gives each fold as many groups, not as many documents.
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed) if y is not None else GroupKFold(folds)
    assigned = [-1] * count
    with warnings.catch_warnings():
        # "The least populated class in y has only 2 members": that stratum is spread as far as it goes.
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        try:
            for fold, (_, heldout) in enumerate(splitter.split(x, y, codes)):
                for index in heldout:
                    assigned[int(index)] = fold
        except ValueError as exc:  # StratifiedKFold: every stratum has fewer members than the folds
            raise UserError(f"cv.folds={folds} with cv.stratify=true: {exc}; use fewer folds or "
                            "cv.stratify=false") from None
    sizes = Counter(assigned)
    empty = [fold for fold in range(folds) if not sizes[fold]]
    if empty:
        raise UserError(f"cv.folds={folds}: fold {empty[0]} would hold no item (too few groups to spread); "
                        "use fewer folds")
    return assigned


def group_codes(groups: Sequence[Any], seed: int) -> list[int]:
    """Each item's group as an integer, the groups numbered in an order drawn from ``seed``:
    GroupKFold orders groups of equal size by these numbers."""
    import numpy as np

    names = sorted({str(g) for g in groups})
    order = np.random.default_rng(seed).permutation(len(names))
    code = {name: int(order[i]) for i, name in enumerate(names)}
    return [code[str(g)] for g in groups]


def item_id(item: Any) -> str | None:
    """A document's ``id`` (an attribute, or the ``"id"`` key of a mapping); None without one."""
    value = item.get("id") if isinstance(item, Mapping) else getattr(item, "id", None)
    return None if value is None else str(value)


def _field(item: Any, name: str) -> Any:
    """``name`` from the item's metadata, else its attribute, else its key; None when it has none."""
    metadata = getattr(item, "metadata", None)
    if isinstance(metadata, Mapping) and metadata.get(name) is not None:
        return metadata[name]
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _keys_of(items: Sequence[Any]) -> list[str]:
    """The fields items do have: their metadata keys, else their mapping keys."""
    keys: set[str] = set()
    for item in items:
        metadata = getattr(item, "metadata", None)
        if isinstance(metadata, Mapping):
            keys.update(str(k) for k in metadata)
        elif isinstance(item, Mapping):
            keys.update(str(k) for k in item)
    return sorted(keys)


def group_values(items: Sequence[Any], group_by: str) -> list[str]:
    """The group of each item by ``group_by``: a document metadata field (``patient_id``, from a
    JSONL record's ``metadata``), else an attribute or mapping key of the item; or
    ``regex:<pattern>`` searched in the document id (its first capture group, else the match).

    Raises `UserError` when no item has the field (naming the fields they have), or when some
    items have none (naming the first)."""
    if group_by.startswith(REGEX_PREFIX):
        return _regex_groups(items, group_by)
    values = [_field(item, group_by) for item in items]
    missing = [i for i, value in enumerate(values) if value is None]
    if len(missing) == len(items):
        keys = _keys_of(items)
        have = f"their metadata has {', '.join(keys[:12])}" if keys else "they have no metadata"
        raise UserError(f"cv.group_by={group_by}: no document has a {group_by!r} field ({have}); name one of "
                        f"those, or use cv.group_by='regex:<pattern>' over the document ids")
    if missing:
        first = item_id(items[missing[0]]) or f"item {missing[0]}"
        raise UserError(f"cv.group_by={group_by}: {len(missing)} of {len(items)} documents have no {group_by!r} "
                        f"(the first: {first}); give every document one")
    return [str(value) for value in values]


def _regex_groups(items: Sequence[Any], group_by: str) -> list[str]:
    try:
        pattern = re.compile(group_by[len(REGEX_PREFIX):])
    except re.error as exc:
        raise UserError(f"cv.group_by={group_by}: not a valid regular expression ({exc})") from None
    groups = []
    for index, item in enumerate(items):
        identifier = item_id(item)
        if identifier is None:
            raise UserError(f"cv.group_by={group_by}: item {index} has no id to search; give the items an id, "
                            "or name a field instead of a regex")
        found = pattern.search(identifier)
        if found is None:
            raise UserError(f"cv.group_by={group_by}: the pattern does not match document id {identifier!r}; "
                            "write one that matches every id")
        captured = found.group(1) if pattern.groups and found.group(1) is not None else found.group(0)
        groups.append(captured)
    return groups


def stratum(item: Any) -> str:
    """A document's most frequent entity label (the first alphabetically on a tie); ``"none"``
    without entities."""
    entities = item.anns.entities
    if not entities:
        return NO_ENTITY
    counts = Counter(entity.label for entity in entities)
    return min(counts, key=lambda label: (-counts[label], label))


def strata_of(items: Sequence[Any]) -> list[str]:
    """`stratum` of each item; `UserError` for items that are not documents with entities."""
    for index, item in enumerate(items):
        if not hasattr(getattr(item, "anns", None), "entities"):
            raise UserError(f"cv.stratify=true balances entity labels, but item {index} is a "
                            f"{type(item).__name__}, not a document with entities; set cv.stratify=false")
    return [stratum(item) for item in items]


@dataclass(frozen=True)
class FoldInfo:
    """What `split_for_fold` did: which fold of how many, drawn how, and the sizes."""

    fold: int
    folds: int
    seed: int
    group_by: str | None
    stratify: bool
    train: int
    heldout: int
    groups: int | None  # distinct groups over train + dev, with group_by
    unit: str = "documents"

    def describe(self, test: int | None = None) -> str:
        """``cv: fold 2 of 5 (seed 0, grouped by patient_id): 412 train / 103 held-out documents,
        test unchanged`` (``test``: the test split's size; 0 says there is none)."""
        how = [f"seed {self.seed}"]
        if self.group_by:
            how.append(f"grouped by {self.group_by} ({self.groups} groups)")
        if self.stratify:
            how.append("stratified by entity label")
        line = (f"cv: fold {self.fold} of {self.folds} ({', '.join(how)}): {self.train} train / "
                f"{self.heldout} held-out {self.unit}")
        if test is not None:
            line += f", test unchanged ({test} {self.unit})" if test else ", no test split"
        return line

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_for_fold(train: Sequence[Any], dev: Sequence[Any], folds: int, fold: int, seed: int = 0,
                   group_by: str | None = None, stratify: bool = False) -> tuple[list[Any], list[Any], FoldInfo]:
    """Pool ``train`` and ``dev`` (in that order), draw the folds, and hold out fold ``fold``:
    ``(train items, held-out items, info)``, each list in the pooled order."""
    if not 0 <= fold < folds:
        raise UserError(f"cv.fold={fold} is not a fold of cv.folds={folds}; folds are numbered 0 to {folds - 1}")
    pooled = [*train, *dev]
    groups = group_values(pooled, group_by) if group_by else None
    strata = strata_of(pooled) if stratify else None
    assigned = assign_folds(pooled, folds, seed, groups=groups, strata=strata)
    kept = [item for item, k in zip(pooled, assigned, strict=True) if k != fold]
    heldout = [item for item, k in zip(pooled, assigned, strict=True) if k == fold]
    unit = "documents" if all(hasattr(item, "anns") for item in pooled) else "items"
    info = FoldInfo(fold=fold, folds=folds, seed=seed, group_by=group_by, stratify=stratify, train=len(kept),
                    heldout=len(heldout), groups=len(set(groups)) if groups is not None else None, unit=unit)
    return kept, heldout, info

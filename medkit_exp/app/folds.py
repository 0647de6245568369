"""Part of phases `validate` and `build`: the ``cv`` settings, and the fold a job trains on.

With ``cv.folds`` set, each job of ``-m cv.folds=5 'cv.fold=range(5)'`` pools the corpus's train
and dev documents, draws the folds from ``cv.seed`` (`medkit_exp.cv.split_for_fold`) and holds
fold ``cv.fold`` out as its dev split: best-epoch selection and ``predictions/dev.jsonl`` (the
out-of-fold predictions, each record with its ``fold``) are on it. The test split is left as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medkit_exp.app.data import ExperimentData
from medkit_exp.cv.folds import REGEX_PREFIX
from medkit_exp.errors import UserError


def cv_settings(cfg: Any) -> Any:
    """``cfg.cv`` when cross-validation is on (``cv.folds`` set), else None."""
    cv = cfg.get("cv")
    return cv if cv is not None and cv.get("folds") is not None else None


def cv_fold(cfg: Any) -> int | None:
    """The fold this job holds out; None outside cross-validation."""
    cv = cv_settings(cfg)
    return int(cv.fold) if cv is not None else None


def check_cv_settings(cfg: Any) -> None:
    """The ``cv`` settings that need no data: folds >= 2, a fold given and in range, a valid
    regex, and the dev predictions kept (they are the out-of-fold predictions)."""
    cv = cfg.get("cv")
    if cv is None:
        return
    if cv.folds is None:
        if cv.fold is not None:
            raise UserError(f"cv.fold={cv.fold} needs cv.folds, the number of folds: run every fold with "
                            f"-m cv.folds=5 'cv.fold=range(5)' (or -m +cv=5fold)")
        return
    if cv.folds < 2:
        raise UserError(f"cv.folds={cv.folds} must be 2 or more (each fold holds out 1/folds of train + dev); "
                        "drop cv.folds for no cross-validation")
    if cv.fold is None:
        raise UserError(f"cv.folds={cv.folds} needs cv.fold, the fold this job holds out: run every fold with "
                        f"-m cv.folds={cv.folds} 'cv.fold=range({cv.folds})'")
    if not 0 <= cv.fold < cv.folds:
        raise UserError(f"cv.fold={cv.fold} is not a fold of cv.folds={cv.folds}; folds are numbered 0 to "
                        f"{cv.folds - 1}")
    if cv.group_by is not None:
        group_by = str(cv.group_by)
        if not group_by.strip() or group_by == REGEX_PREFIX:
            raise UserError(f"cv.group_by={group_by!r} is empty; name a document metadata field or "
                            "regex:<pattern>, or drop it")
        if group_by.startswith(REGEX_PREFIX):
            try:
                re.compile(group_by[len(REGEX_PREFIX):])
            except re.error as exc:
                raise UserError(f"cv.group_by={group_by}: not a valid regular expression ({exc})") from None
    evaluation = cfg.get("evaluation")
    if evaluation is not None and not evaluation.dev_predictions:
        raise UserError("evaluation.dev_predictions=false: a cross-validation job's dev predictions are its "
                        "out-of-fold predictions; drop evaluation.dev_predictions=false or cv.folds")


def apply_fold(cfg: Any, data: ExperimentData) -> None:
    """Replace ``data``'s train and dev splits by this job's fold (nothing without ``cv.folds``);
    a group field no document has, or fewer groups than folds, fail here in one line."""
    cv = cv_settings(cfg)
    if cv is None:
        return
    from medkit_exp.cv import split_for_fold

    group_by = str(cv.group_by) if cv.group_by is not None else None
    train, heldout, info = split_for_fold(data.splits["train"], data.splits["dev"], folds=int(cv.folds),
                                          fold=int(cv.fold), seed=int(cv.seed), group_by=group_by,
                                          stratify=bool(cv.stratify))
    data.replace_splits(train, heldout, note=info.describe(test=len(data.splits["test"])),
                        details={"cv": info.as_dict()})


def cv_tags(cfg: Any) -> dict[str, str]:
    """The run tags of a cross-validation job: ``cv.folds``, ``cv.fold``, ``cv.seed``,
    ``cv.group_by`` (``(none)`` without one), ``cv.stratify``; none outside cross-validation."""
    cv = cv_settings(cfg)
    if cv is None:
        return {}
    return {"cv.folds": str(cv.folds), "cv.fold": str(cv.fold), "cv.seed": str(cv.seed),
            "cv.group_by": str(cv.group_by) if cv.group_by is not None else "(none)",
            "cv.stratify": str(bool(cv.stratify)).lower()}


def mark_fold(path: Path, fold: int) -> None:
    """Add ``"fold": <fold>`` to every record of the JSON Lines file ``path`` (the out-of-fold predictions)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) | {"fold": fold} for line in lines]
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")

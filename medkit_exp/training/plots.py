"""Pictures of a training, as PNG files: learning curves, per-label scores, a confusion matrix,
a sweep's objective against its hyperparameters, and a cross-validation's scores by fold.

matplotlib runs headless (the Agg backend) and is imported only when a picture is drawn.
Each function writes one file and returns its path; the app logs them under ``plots/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SCORES = ("precision", "recall", "f1")
_NOT_LABELS = ("macro", "micro", "weighted", "token")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def learning_curves(history: Sequence[Mapping[str, Any]], tracked_metric: str, path: str | Path,
                    lr_by_step: Sequence[tuple[int, float]] = ()) -> Path:
    """Train and eval loss by epoch, the tracked eval metric by epoch, and the lr (by step when given)."""
    plt = _pyplot()
    epochs = [entry["epoch"] for entry in history]
    figure, (loss_ax, metric_ax, lr_ax) = plt.subplots(1, 3, figsize=(13, 3.8))
    for phase, style in (("train", "o-"), ("eval", "s-")):
        values = [(entry.get(phase) or {}).get("loss") for entry in history]
        if any(v is not None for v in values):
            loss_ax.plot(epochs, [math.nan if v is None else v for v in values], style, label=f"{phase} loss")
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend()
    tracked = [(entry.get("eval") or entry.get("train") or {}).get(tracked_metric) for entry in history]
    metric_ax.plot(epochs, [math.nan if v is None else v for v in tracked], "s-", color="tab:green")
    metric_ax.set(title=f"eval {tracked_metric}", xlabel="epoch")
    if lr_by_step:
        lr_ax.plot([s for s, _ in lr_by_step], [v for _, v in lr_by_step], "-", color="tab:purple")
        lr_ax.set(title="learning rate", xlabel="optimizer step")
    else:
        lr_ax.plot(epochs, [entry.get("lr", math.nan) for entry in history], "o-", color="tab:purple")
        lr_ax.set(title="learning rate (end of epoch)", xlabel="epoch")
    for ax in (loss_ax, metric_ax, lr_ax):
        ax.grid(alpha=0.3)
    return _save(figure, path)


def per_label_scores(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{label: {"precision", "recall", "f1"}}`` read from ``<label>_<score>`` keys (averages left out)."""
    found: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        for score in _SCORES:
            suffix = f"_{score}"
            if key.endswith(suffix) and isinstance(value, (int, float)):
                label = key[: -len(suffix)]
                if label and not label.startswith(_NOT_LABELS):
                    found.setdefault(label, {})[score] = float(value)
    return {label: scores for label, scores in sorted(found.items()) if len(scores) == len(_SCORES)}


def per_label_chart(scores_by_split: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path) -> Path | None:
    """Bars of each label's precision, recall and F1, one panel per split (dev, test). None: no label."""
    splits = {split: scores for split, scores in scores_by_split.items() if scores}
    if not splits:
        return None
    plt = _pyplot()
    labels = sorted({label for scores in splits.values() for label in scores})
    figure, axes = plt.subplots(1, len(splits), figsize=(max(5.0, 1.2 * len(labels) + 2) * len(splits), 3.8),
                                squeeze=False)
    width = 0.27
    for ax, (split, scores) in zip(axes[0], splits.items(), strict=True):
        for i, score in enumerate(_SCORES):
            values = [scores.get(label, {}).get(score, 0.0) for label in labels]
            ax.bar([x + (i - 1) * width for x in range(len(labels))], values, width, label=score)
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0,
                      ha="right" if len(labels) > 4 else "center")
        ax.set(title=f"{split}: per-label scores (best epoch)", ylim=(0, 1.05))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def confusion_matrix(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str], path: str | Path) -> Path:
    """Counts of gold (rows) against predicted (columns) classes, with the count in each cell."""
    plt = _pyplot()
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        if g in index and p in index:
            counts[index[g]][index[p]] += 1
    size = max(4.0, 0.9 * len(labels) + 2)
    figure, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(counts, cmap="Blues")
    peak = max((max(row) for row in counts), default=0)
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="gold", title="test confusion matrix")
    figure.colorbar(image, ax=ax, fraction=0.046)
    return _save(figure, path)


def objective_by_hyperparameter(runs: Sequence[Mapping[str, Any]], objective: str, path: str | Path) -> Path | None:
    """One panel per swept hyperparameter: every run's objective (dots) and the mean and spread
    (error bar: standard deviation over the runs, e.g. seeds) at each value. ``runs``: dicts
    with ``params`` (the swept ones, as strings) and ``value``. None when nothing was swept."""
    names = sorted({name for run in runs for name in run["params"]})
    if not names or not runs:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        groups: dict[str, list[float]] = {}
        for run in runs:
            groups.setdefault(str(run["params"].get(name)), []).append(run["value"])
        keys = sorted(groups, key=_sort_key)
        positions = range(len(keys))
        for x, key in zip(positions, keys, strict=True):
            ax.plot([x] * len(groups[key]), groups[key], "o", color="tab:blue", alpha=0.5)
        means = [sum(groups[k]) / len(groups[k]) for k in keys]
        spreads = [_std(groups[k]) for k in keys]
        ax.errorbar(list(positions), means, yerr=spreads, fmt="s-", color="tab:red", capsize=4, label="mean ± sd")
        ax.set_xticks(list(positions), keys, rotation=30 if len(keys) > 4 else 0)
        ax.set(xlabel=name, ylabel=objective, title=f"{objective} by {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(figure, path)


def ranked_configurations(ranking: Sequence[Mapping[str, Any]], objective: str, path: str | Path) -> Path | None:
    """Horizontal bars of each configuration's mean objective (best on top) with its spread."""
    if not ranking:
        return None
    plt = _pyplot()
    shown = list(ranking)[:20]
    figure, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.5))
    labels = [f"{r['overrides'] or '(defaults)'}  ({r['runs']} run{'s' if r['runs'] > 1 else ''})" for r in shown]
    ax.barh(range(len(shown)), [r["mean"] for r in shown], xerr=[r.get("std") or 0.0 for r in shown],
            color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(range(len(shown)), labels, fontsize="small")
    ax.invert_yaxis()
    low = min(r["mean"] - (r.get("std") or 0.0) for r in shown)
    high = max(r["mean"] + (r.get("std") or 0.0) for r in shown)
    margin = (high - low) * 0.2 or 0.01
    ax.set(xlim=(low - margin, high + margin), xlabel=f"mean {objective}", title="configurations, best first")
    ax.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def cv_fold_scores(folds: Sequence[Mapping[str, Any]], metric: str, path: str | Path) -> Path | None:
    """A cross-validation's folds: each fold's out-of-fold dev score and its test score (dots), and
    their means over folds (dashed lines). ``folds``: dicts with ``fold`` and ``dev`` and/or
    ``test`` (a fold's seeds averaged). None when no fold has a score."""
    splits = [(split, color) for split, color in (("dev", "tab:blue"), ("test", "tab:orange"))
              if any(split in row for row in folds)]
    if not splits:
        return None
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(folds) + 3), 3.8))
    for split, color in splits:
        points = [(row["fold"], row[split]) for row in folds if split in row]
        mean = sum(value for _, value in points) / len(points)
        label = "out-of-fold dev" if split == "dev" else split
        ax.plot([f for f, _ in points], [v for _, v in points], "o", color=color, label=f"{label} {metric}")
        ax.axhline(mean, color=color, linestyle="--", alpha=0.8, label=f"{label} mean {mean:.3f}")
    ax.set_xticks([row["fold"] for row in folds])
    ax.set(xlabel="fold", ylabel=metric, title=f"{metric} by fold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(figure, path)


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _sort_key(value: str) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)

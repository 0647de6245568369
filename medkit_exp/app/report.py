"""Phase `report`: what a run leaves for its reader: plots, the summary printed at the end,
and the objective handed to a sweeper."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from medkit_exp.tracking import RunTracker

log = logging.getLogger("medkit_exp")

_MAX_SHOWN = 8


def write_plots(output_dir: Path, history: list[dict[str, Any]], best_entry: dict[str, Any],
                test_metrics: dict[str, float], tracked_metric: str,
                lr_steps: list[tuple[int, float]]) -> dict[str, str]:
    """Learning curves and per-label scores as PNG under ``output_dir/plots``; a failure only warns."""
    from medkit_exp.training import plots

    folder = output_dir / "plots"
    try:
        plots.learning_curves(history, tracked_metric, folder / "learning_curves.png", lr_steps)
        by_split = {"dev": plots.per_label_scores(best_entry.get("eval") or {}),
                    "test": plots.per_label_scores(test_metrics)}
        plots.per_label_chart(by_split, folder / "per_label_scores.png")
    except Exception as exc:  # pictures are a help, never a reason to lose a run
        log.warning("Could not draw the run's plots: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
    shown = {"plots": str(folder)}
    if (output_dir / "analysis" / "errors.html").is_file():
        shown["error_analysis"] = str(output_dir / "analysis" / "errors.html")
    return shown


def report(cfg: DictConfig, summary: dict[str, Any], tracker: RunTracker, shown: Any = None,
           note: str = "", main_process: bool = True) -> float | None:
    """Print the run summary (rank 0) and return the objective, ``summary[cfg.objective]``."""
    if main_process:
        print_summary(cfg, summary, tracker, shown, note)
    objective = summary.get(cfg.objective) if cfg.objective else None
    if cfg.objective and objective is None and main_process:
        log.warning("objective %r is not in the run summary (keys: %s)", cfg.objective, sorted(summary))
    return objective


def shown_metrics(summary: dict[str, Any], shown: Any) -> list[str]:
    """The component's ``summary_metrics``, else the scalar eval metrics (not per label), at most eight."""
    if shown:
        return list(shown)
    from medkit_exp.training.callbacks import is_per_label

    names = [k[len("eval_"):] for k, v in summary.items() if k.startswith("eval_") and isinstance(v, (int, float))]
    return [n for n in names if not is_per_label(n)][:_MAX_SHOWN]


def printed_intervals(summary: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The test intervals printed beside the scores: the headline ``f1``'s when it is shown, else
    those of every shown metric that has one (classification: accuracy and macro F1)."""
    intervals = {k: v for k, v in (summary.get("intervals") or {}).items() if k in keys}
    return {"f1": intervals["f1"]} if "f1" in intervals else intervals


def print_summary(cfg: DictConfig, summary: dict[str, Any], tracker: RunTracker, shown: Any = None,
                  note: str = "") -> None:
    """The block a run prints last: best epoch, scores, precision, where its files and MLflow run are."""
    keys = shown_metrics(summary, shown)

    def scores(prefix: str, intervals: Mapping[str, Any] | None = None) -> str:
        return ", ".join(f"{k}={summary[prefix + k]:.4f}" + (f" [{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]"
                                                              if intervals and k in intervals else "")
                         for k in keys if isinstance(summary.get(prefix + k), (int, float)))

    tested = note and any(k.startswith("test_") for k in summary)
    phases = ", ".join(f"{name} {s:g}" for name, s in summary.get("phase_seconds", {}).items() if s >= 0.1)
    precision_reason = summary.get("precision_reason")
    lines = [
        "",
        "== medkit_exp run summary ==",
        f"best epoch   : {summary.get('best_epoch')}",
        f"eval (dev)   : {scores('eval_')}",
        *([f"dev (before) : {scores('initial_eval_')}"] if any(k.startswith("initial_eval_") for k in summary) else []),
        f"test         : {scores('test_', printed_intervals(summary, keys))}"
        + (f" ({summary['interval_note']})" if printed_intervals(summary, keys) else "")
        + (f"  ({note})" if tested else ""),
        f"precision    : {summary.get('precision')}"
        + (f" ({precision_reason})" if precision_reason != "asked" else ""),
        f"checkpoint   : {summary['best_checkpoint']}",
        *([f"model card   : {summary['model_card']}"] if summary.get("model_card") else []),
        f"plots        : {summary.get('plots')}",
        f"wall time    : {summary['wall_time_s']} s" + (f" ({phases})" if phases else ""),
    ]
    if summary.get("error_analysis"):
        lines.append(f"errors       : {summary['error_analysis']}"
                     + (" (artifact analysis/errors.html)" if tracker.enabled else ""))
    if tracker.enabled:
        lines += [f"MLflow run   : {tracker.run_id} (experiment {cfg.tracking.experiment!r})",
                  f"see it with  : {tracker.ui_command()}"]
        if "model_uri" in summary:
            lines.append(f"MLflow model : {summary['model_uri']}")
        if "registered_model" in summary:
            lines.append(f"registered as: {summary['registered_model']}")
        if tracker.unsent_summary:
            lines.append(f"NOT SENT     : {tracker.unsent_summary}")
    print("\n".join(lines), file=sys.stdout, flush=True)

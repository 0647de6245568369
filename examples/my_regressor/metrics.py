"""`RegressionMetrics`: mean absolute error and root mean squared error."""

from __future__ import annotations

import math
from typing import Any


class RegressionMetrics:
    """A `MetricsComputer`: ``mae`` and ``rmse`` of the predictions (lower is better)."""

    def __init__(self, digits: int | None = None) -> None:
        self.digits = digits

    def prepare_batch(self, model_output: Any, input_batch: Any) -> dict[str, list[float]]:
        return {"pred": model_output["prediction"].tolist(), "gold": input_batch["y"].tolist()}

    def compute(self, all_data: dict[str, list[float]]) -> dict[str, float]:
        errors = [p - g for p, g in zip(all_data["pred"], all_data["gold"], strict=True)]
        scores = {"mae": sum(abs(e) for e in errors) / len(errors),
                  "rmse": math.sqrt(sum(e * e for e in errors) / len(errors))}
        return {k: round(v, self.digits) for k, v in scores.items()} if self.digits else scores

"""A user's metrics computer with ``item_values``, and data whose items belong to documents, for
the example regressor (examples/my_regressor, on the path in `test_examples.run_user_cli`)."""

from __future__ import annotations

from typing import Any

from my_regressor import RegressionMetrics, synthetic_splits


class ItemRegressionMetrics(RegressionMetrics):
    """`RegressionMetrics` (``mae``, ``rmse``) that also gives each item's absolute and squared
    error: their means are ``mae`` and the mean squared error."""

    def item_values(self, all_data: dict[str, list[float]]) -> list[dict[str, Any]]:
        return [{"values": {"mae": abs(p - g), "squared_error": (p - g) ** 2}}
                for p, g in zip(all_data["pred"], all_data["gold"], strict=True)]


def synthetic_documents(items_per_document: int = 2, **settings: Any) -> dict[str, list[dict]]:
    """`synthetic_splits` whose items carry a ``document_id``: ``items_per_document`` consecutive
    items share one (the unit a bootstrap resamples)."""
    splits = synthetic_splits(**settings)
    return {split: [item | {"document_id": f"{split}-doc{i // items_per_document}"} for i, item in enumerate(items)]
            for split, items in splits.items()}
